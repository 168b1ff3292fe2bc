/**
 * get_user_pages and pin_user_pages (mm/gup.c), for a process of the machine.
 *
 * - The *Fast variants run GUP-fast in the core (no mmap_lock) and hand the rest of the range
 *   to the slow path, as gup_fast_fallback does; getUserPagesFastOnly never falls back.
 * - The slow path (__get_user_pages) holds mmap_lock (the caller's if it holds it, else for
 *   read), checks each VMA
 *   (check_vma_flags), takes present pages in the core a batch at a time (follow_page_mask),
 *   and faults in what is missing, not writable or must be unshared, then goes on.
 * - FOLL_LONGTERM pins go through __gup_longterm_locked: pages in MOVABLE or CMA are unpinned,
 *   migrated to NORMAL and the whole range pinned again.
 * - Each returns how many pages it took, their frames in @pages, as the kernel does: a count
 *   short of @nrPages when the range runs into what cannot be taken, and an error (thrown
 *   DmaError) only when nothing was.
 * @module
 */
import * as G from "../abi/gup.js";
import { DmaError } from "../errors.js";
import { type Address, hex, splitAddress } from "../core/addr.js";
import type { Kernel } from "../mm/kernel.js";
import type { MmStruct } from "../mm/mm.js";
import type { Process } from "../mm/process.js";
import { handleMmFaultLocked } from "../mm/fault.js";
import { VM_IO, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_PFNMAP, VM_READ, VM_SHARED, VM_WRITE, type Vma } from "../mm/vma.js";
import { GUP_STOP_NAMES, type GupFlags, foll, follNames, isValidGupArgs } from "./flags.js";
import { type GupRangeStats, type PagesArray, gupModeledNs, gupRangeChunked, newGupRangeStats } from "./range.js";
import { checkAndMigrateMovablePages } from "./longterm.js";
import { unpinFrames } from "./unpin.js";

/** What one entry-point call did, for the trace and the checkers. */
interface CallRecord {
  fn: string;
  fast: number;
  faults: number;
  stop: number;
  /** Pages taken by the current slow-path round that are not long-term pinnable. */
  unpinnable: number;
  /** Pages GUP-fast took from huge leaves, and the current slow-path round. */
  hugeFast: number;
  hugeSlow: number;
}

const st = newGupRangeStats();
/** The pages array of a call that takes none (get_user_pages without pages faults in only). */
const NO_PAGES = new Float64Array(0);

/** The FOLL_* flags the core acts on (the rest are the host's business). */
const CORE_FOLL =
  G.FOLL_WRITE | G.FOLL_GET | G.FOLL_PIN | G.FOLL_LONGTERM | G.FOLL_PCI_P2PDMA | G.FOLL_FORCE | G.FOLL_TOUCH |
  G.FOLL_NOFAULT;

function efault(msg: string): DmaError {
  return new DmaError("EFAULT", msg, { arg: "start" });
}

/** The range's first page and count; EOVERFLOW / EFAULT as gup_fast_fallback checks them. */
function gupRangeArgs(k: Kernel, start: Address, nrPages: number, fn: string): number {
  if (!Number.isSafeInteger(nrPages) || nrPages < 0) {
    throw new DmaError("EINVAL", `${fn}: nrPages: ${nrPages} is not a page count`, { arg: "nrPages" });
  }
  // untagged_addr(start) & PAGE_MASK: rounded down (a plain number needs no split).
  const vpn = typeof start === "number" && Number.isSafeInteger(start) && start >= 0 ? Math.floor(start / 4096) : splitAddress(start, "start")[0];
  if (vpn + nrPages > 2 ** 52) throw new DmaError("EOVERFLOW", `${fn}: start + nrPages pages overflows`, { arg: "nrPages" });
  if (vpn + nrPages > k.taskSizePages()) {
    throw efault(`${fn}: the range ${hex(start)} + ${nrPages} pages ends above the user address space`);
  }
  return vpn;
}

function checkPages(pages: PagesArray | undefined, nrPages: number, fn: string): void {
  if (pages === undefined) return;
  if (!(pages instanceof Float64Array) && !Array.isArray(pages)) {
    throw new DmaError("EINVAL", `${fn}: pages must be a Float64Array or an array`, { arg: "pages" });
  }
  if (pages.length < nrPages) {
    throw new DmaError("EINVAL", `${fn}: pages holds ${pages.length} entries, fewer than nrPages (${nrPages})`, { arg: "pages" });
  }
}

/** The VMA's start for a message (formatted only for an error: checkVmaFlags runs once per VMA of every call). */
function vmaAt(vma: Vma): string {
  return hex(vma.start * 4096);
}

/**
 * checkVmaFlags - may GUP with @flags take pages of @vma? null, or the error (check_vma_flags).
 */
export function checkVmaFlags(vma: Vma, flags: number): DmaError | null {
  if (vma.flags & (VM_IO | VM_PFNMAP)) return efault(`the VMA at ${vmaAt(vma)} is VM_IO | VM_PFNMAP: no struct pages to take`);
  if ((flags & G.FOLL_ANON) && vma.kind !== "anon") return efault(`FOLL_ANON, and the VMA at ${vmaAt(vma)} is not anonymous`);
  if ((flags & G.FOLL_LONGTERM) && vma.kind === "dax") {
    return new DmaError("EOPNOTSUPP", `FOLL_LONGTERM on the fsdax VMA at ${vmaAt(vma)}: a long-term pin would block truncate`, { arg: "gupFlags" });
  }
  if (flags & G.FOLL_WRITE) {
    // writable_file_mapping_allowed: a long-term writable pin of a shared file mapping whose
    // file system tracks dirty pages would let the device write behind writeback's back.
    const longtermPin = (flags & (G.FOLL_PIN | G.FOLL_LONGTERM)) === (G.FOLL_PIN | G.FOLL_LONGTERM);
    const dirtyTracked = vma.kind === "file" && (vma.flags & (VM_WRITE | VM_SHARED)) === (VM_WRITE | VM_SHARED);
    if (longtermPin && dirtyTracked) {
      return efault(`FOLL_LONGTERM | FOLL_WRITE pin of the shared file mapping at ${vmaAt(vma)}: its file system tracks dirty pages`);
    }
    if (!(vma.flags & VM_WRITE)) {
      if (!(flags & G.FOLL_FORCE)) return efault(`write to the read-only VMA at ${vmaAt(vma)} without FOLL_FORCE`);
      if (!vma.isCow) return efault(`FOLL_FORCE write to the VMA at ${vmaAt(vma)}: only private mappings may be forced`);
    }
  } else if (!(vma.flags & VM_READ)) {
    if (!(flags & G.FOLL_FORCE)) return efault(`read of the unreadable VMA at ${vmaAt(vma)} without FOLL_FORCE`);
    if (!(vma.flags & VM_MAYREAD)) return efault(`FOLL_FORCE read of the VMA at ${vmaAt(vma)}, which may never be read`);
  }
  return null;
}

/** The GUPM_* bits the core needs to know about @vma. */
function vmaMode(vma: Vma): number {
  let m = G.GUPM_LOCKED;
  // can_follow_write_pte's VMA half: private, may write, not writable.
  if (!(vma.flags & (VM_SHARED | VM_MAYSHARE)) && (vma.flags & VM_MAYWRITE) && !(vma.flags & VM_WRITE)) {
    m |= G.GUPM_FORCE_WRITE_OK;
  }
  if (vma.isCow) m |= G.GUPM_COW_VMA;
  return m;
}

/**
 * getUserPagesLocked - __get_user_pages: pages [@vpn0, @vpn0 + @nr) of @mm into
 * @pages[@off..], mmap_lock held. Returns the pages taken; throws only when none was.
 */
function getUserPagesLocked(mm: MmStruct, vpn0: number, nr: number, flags: number, pages: PagesArray, off: number, rec: CallRecord): number {
  const k = mm.kernel;
  let i = 0;
  let vma: Vma | null = null;
  let err: DmaError | null = null;
  let faultedAt = -1;
  let tries = 0;
  while (i < nr) {
    const vpn = vpn0 + i;
    if (!vma || vpn >= vma.end) {
      vma = mm.vmas.find(vpn);
      if (!vma) {
        err = efault(`no VMA at ${hex(vpn * 4096)}`);
        break;
      }
      err = checkVmaFlags(vma, flags);
      if (err) break;
    }
    const n = Math.min(nr - i, vma.end - vpn);
    gupRangeChunked(k.core, mm.pgd.pfn, vpn, n, (flags & CORE_FOLL) | vmaMode(vma), 0, pages, off + i, st);
    k.clock.advance(gupModeledNs(k.costs, st));
    i += st.taken;
    rec.unpinnable += st.unpinnable;
    rec.hugeSlow += st.hugePages;
    if (st.taken === n) continue;
    rec.stop = st.stop;
    const at = vpn0 + i;
    const s = st.stop;
    if (s === G.GUP_STOP_NOT_PRESENT || s === G.GUP_STOP_PERM || s === G.GUP_STOP_UNSHARE) {
      if (flags & G.FOLL_NOFAULT) {
        err = efault(`FOLL_NOFAULT, and the page at ${hex(at * 4096)} needs a fault`);
        break;
      }
      tries = at === faultedAt ? tries + 1 : 0;
      faultedAt = at;
      if (tries === 3) {
        err = efault(`the page at ${hex(at * 4096)} still cannot be taken after ${tries} faults (${GUP_STOP_NAMES[s]})`);
        break;
      }
      const unshare = s === G.GUP_STOP_UNSHARE;
      const r = handleMmFaultLocked(mm, at, { write: !unshare && (flags & G.FOLL_WRITE) !== 0, unshare, gup: true });
      k.clock.advance(k.costs.minorFault.ns);
      rec.faults++;
      if (r === "ok") continue;
      err = r === "OOM"
        ? new DmaError("ENOMEM", `out of memory faulting in ${hex(at * 4096)}`, { arg: "start" })
        : efault(`faulting in ${hex(at * 4096)} ended in ${r}`);
      break;
    }
    if (s === G.GUP_STOP_SPECIAL) {
      err = new DmaError("EEXIST", `the page at ${hex(at * 4096)} has no struct page (a special or pfn-only entry)`, { arg: "start" });
    } else if (s === G.GUP_STOP_P2PDMA) {
      err = new DmaError("EREMOTEIO", `the page at ${hex(at * 4096)} is PCI P2PDMA memory and FOLL_PCI_P2PDMA is not set`, { arg: "gupFlags" });
    } else if (s === G.GUP_STOP_GRAB) {
      err = new DmaError("ENOMEM", `the folio at ${hex(at * 4096)} has no references left to add to`, { arg: "start" });
    } else {
      err = efault(`the page at ${hex(at * 4096)} cannot be taken (${GUP_STOP_NAMES[s]})`);
    }
    break;
  }
  if (i > 0) return i;
  if (err) throw err;
  return 0;
}

/**
 * gupLongtermLocked - __gup_longterm_locked: the slow path, and for FOLL_LONGTERM the
 * migrate-and-retry loop (with PF_MEMALLOC_PIN, so new pages come from NORMAL). mmap_lock held.
 */
function gupLongtermLocked(p: Process, vpn: number, nr: number, flags: number, pages: PagesArray, off: number, rec: CallRecord): number {
  const mm = p.mm;
  const k = p.kernel;
  // mm_set_has_pinned_flag: tested first, so a pinning mm's flags are not written every call.
  if (flags & G.FOLL_PIN && !mm.hasPinned) mm.hasPinned = true;
  if (!(flags & G.FOLL_LONGTERM)) return getUserPagesLocked(mm, vpn, nr, flags, pages, off, rec);
  k.memallocPin++;
  try {
    for (let round = 0; ; round++) {
      rec.unpinnable = 0;
      rec.hugeSlow = 0;
      const n = getUserPagesLocked(mm, vpn, nr, flags, pages, off, rec);
      if (rec.unpinnable === 0 || checkAndMigrateMovablePages(k, pages, off, n, round) === "ok") return n;
    }
  } finally {
    k.memallocPin--;
  }
}

/**
 * gupSlow - the slow path of a call under mmap_lock: with @callerMayHold (get_user_pages,
 * pin_user_pages) the caller's hold if any, else taken for read; the fast variants' fallback
 * always takes it (so under a write hold it deadlocks: EDEADLK). No @pages: fault in only.
 */
function gupSlow(
  p: Process, vpn: number, nr: number, flags: number, pages: PagesArray | undefined, off: number, rec: CallRecord,
  callerMayHold: boolean,
): number {
  const lock = p.mm.mmapLock;
  const h = callerMayHold && lock.held ? null : lock.lock("read", `pid ${p.pid} ${rec.fn}`);
  try {
    return pages ? gupLongtermLocked(p, vpn, nr, flags, pages, off, rec) : populate(p.mm, vpn, nr, flags, rec);
  } finally {
    if (h) lock.unlock(h);
  }
}

/** The end of an entry point: its trace event, counters, and the checkers' pin log. */
function finish(p: Process, name: string, start: Address, vpn: number, nrPages: number, flags: number, pages: PagesArray, got: number, rec: CallRecord | null, ts: number): void {
  const k = p.kernel;
  if (k.trace.enabled) {
    k.trace.emit(
      "gup.call",
      {
        pid: p.pid, fn: name, va: hex(start), nr: nrPages, got, flags: follNames(flags), fast: rec ? rec.fast : got,
        stop: GUP_STOP_NAMES[rec ? rec.stop : st.stop] ?? "?", faults: rec ? rec.faults : 0,
      },
      ts, k.clock.now - ts, p.cpu.index,
    );
  }
  if (got > 0) {
    k.trace.count(flags & G.FOLL_PIN ? "gup.pinned_pages" : "gup.got_pages", got);
    if (flags & G.FOLL_PIN) k.checkers.pinned(p, name, vpn, pages, got, (rec ? rec.hugeFast + rec.hugeSlow : st.hugePages) === got);
  }
}

/**
 * The whole of getUserPages and pinUserPages after their arguments are checked: the call's
 * cost, the slow path, then finish(). EFAULT when no page was taken (unless FOLL_NOWAIT).
 */
function slowEntry(p: Process, name: string, start: Address, vpn: number, nrPages: number, flags: number, pages: PagesArray | undefined): number {
  const k = p.kernel;
  const ts = k.clock.now;
  k.clock.advance(k.costs.gupCall.ns);
  const rec: CallRecord = { fn: name, fast: 0, faults: 0, stop: G.GUP_STOP_NONE, unpinnable: 0, hugeFast: 0, hugeSlow: 0 };
  let got = 0;
  try {
    if (nrPages === 0) return 0;
    got = gupSlow(p, vpn, nrPages, flags, pages, 0, rec, true);
    if (got === 0 && !(flags & G.FOLL_NOWAIT)) throw efault(`${name}: no page ${flags & G.FOLL_PIN ? "pinned" : "taken"}`);
    return got;
  } finally {
    finish(p, name, start, vpn, nrPages, flags, pages ?? NO_PAGES, got, rec, ts);
  }
}

function alive(p: Process, fn: string): void {
  if (p.exited) throw new DmaError("ESRCH", `${fn}: process ${p.pid} has exited`, { arg: "process" });
}

/**
 * gupFastFallback - gup_fast_fallback: GUP-fast over the range, then the slow path for the
 * rest (unless FOLL_FAST_ONLY). @flags already carries FOLL_GET or FOLL_PIN.
 */
function gupFastFallback(p: Process, name: string, start: Address, nrPages: number, flags: number, pages: PagesArray): number {
  const k = p.kernel;
  if (flags & ~G.FOLL_FAST_ALLOWED) {
    throw new DmaError("EINVAL", `${name}: gupFlags ${follNames(flags)} are not allowed here`, { arg: "gupFlags" });
  }
  const vpn = gupRangeArgs(k, start, nrPages, name);
  const ts = k.clock.now;
  st.taken = 0;
  st.stop = G.GUP_STOP_NONE;
  if (nrPages > 0) gupRangeChunked(k.core, p.mm.pgd.pfn, vpn, nrPages, flags & CORE_FOLL, p.cpu.pkru, pages, 0, st);
  k.clock.advance(k.costs.gupCall.ns + (nrPages > 0 ? gupModeledNs(k.costs, st) : 0));
  const fast = st.taken;
  if (fast === nrPages || flags & G.FOLL_FAST_ONLY) {
    finish(p, name, start, vpn, nrPages, flags, pages, fast, null, ts);
    return fast;
  }
  // The slow path for the rest, with FOLL_TOUCH; a failure there keeps the fast pages.
  const rec: CallRecord = { fn: name, fast, faults: 0, stop: st.stop, unpinnable: 0, hugeFast: st.hugePages, hugeSlow: 0 };
  let got = fast;
  try {
    got += gupSlow(p, vpn + fast, nrPages - fast, flags | G.FOLL_TOUCH | G.FOLL_UNLOCKABLE, pages, fast, rec, false);
  } catch (e) {
    if (!(fast > 0 && e instanceof DmaError)) throw e;
  } finally {
    finish(p, name, start, vpn, nrPages, flags, pages, got, rec, ts);
  }
  return got;
}

/**
 * getUserPagesFast - get_user_pages_fast: take a reference (FOLL_GET) on each of the
 * @nrPages pages from @start, GUP-fast first. Returns the pages taken; their frames are in
 * @pages. Release them with releasePages / putPage.
 */
export function getUserPagesFast(p: Process, start: Address, nrPages: number, gupFlags: GupFlags | number, pages: PagesArray): number {
  alive(p, "getUserPagesFast");
  checkPages(pages, nrPages, "getUserPagesFast");
  const f = isValidGupArgs(foll(gupFlags), G.FOLL_GET, pages !== undefined);
  if (f === null) throw new DmaError("EINVAL", `getUserPagesFast: invalid gupFlags ${follNames(foll(gupFlags))}`, { arg: "gupFlags" });
  return gupFastFallback(p, "getUserPagesFast", start, nrPages, f, pages);
}

/**
 * getUserPagesFastOnly - get_user_pages_fast_only: GUP-fast alone, never the slow path, so
 * never a fault or mmap_lock (what code in atomic context may call).
 */
export function getUserPagesFastOnly(p: Process, start: Address, nrPages: number, gupFlags: GupFlags | number, pages: PagesArray): number {
  alive(p, "getUserPagesFastOnly");
  checkPages(pages, nrPages, "getUserPagesFastOnly");
  const f = isValidGupArgs(foll(gupFlags), G.FOLL_GET | G.FOLL_FAST_ONLY, pages !== undefined);
  if (f === null) throw new DmaError("EINVAL", `getUserPagesFastOnly: invalid gupFlags ${follNames(foll(gupFlags))}`, { arg: "gupFlags" });
  return gupFastFallback(p, "getUserPagesFastOnly", start, nrPages, f, pages);
}

/**
 * pinUserPagesFast - pin_user_pages_fast: pin (FOLL_PIN) each of the @nrPages pages from
 * @start, GUP-fast first. Release with unpinUserPages / unpinUserPagesDirtyLock.
 */
export function pinUserPagesFast(p: Process, start: Address, nrPages: number, gupFlags: GupFlags | number, pages: PagesArray): number {
  alive(p, "pinUserPagesFast");
  checkPages(pages, nrPages, "pinUserPagesFast");
  const f = isValidGupArgs(foll(gupFlags), G.FOLL_PIN, pages !== undefined);
  if (f === null) throw new DmaError("EINVAL", `pinUserPagesFast: invalid gupFlags ${follNames(foll(gupFlags))}`, { arg: "gupFlags" });
  return gupFastFallback(p, "pinUserPagesFast", start, nrPages, f, pages);
}

/**
 * getUserPages - get_user_pages: the slow path under mmap_lock (FOLL_TOUCH), a reference
 * on each page when @pages is given; without it the pages are only faulted in. Call it with
 * mmap_lock held, as the kernel requires; a caller that does not hold it has it taken for
 * read around the call.
 */
export function getUserPages(p: Process, start: Address, nrPages: number, gupFlags: GupFlags | number, pages?: PagesArray): number {
  alive(p, "getUserPages");
  checkPages(pages, nrPages, "getUserPages");
  let f = isValidGupArgs(foll(gupFlags), G.FOLL_TOUCH, pages !== undefined);
  if (f === null) throw new DmaError("EINVAL", `getUserPages: invalid gupFlags ${follNames(foll(gupFlags))}`, { arg: "gupFlags" });
  if (pages) f |= G.FOLL_GET;
  const vpn = gupRangeArgs(p.kernel, start, nrPages, "getUserPages");
  return slowEntry(p, "getUserPages", start, vpn, nrPages, f, pages);
}

/** Fault in [vpn, vpn + nr) without taking references (get_user_pages with pages == NULL). */
function populate(mm: MmStruct, vpn: number, nr: number, flags: number, rec: CallRecord): number {
  const tmp = new Float64Array(Math.min(nr, mm.kernel.core.gupMax));
  let done = 0;
  while (done < nr) {
    const n = Math.min(tmp.length, nr - done);
    const got = getUserPagesLocked(mm, vpn + done, n, flags | G.FOLL_GET, tmp, 0, rec);
    releaseFrames(mm.kernel, tmp, got);
    done += got;
    if (got < n) break;
  }
  return done;
}

/** Drop the FOLL_GET references of @n frames just taken. */
function releaseFrames(k: Kernel, pfns: Float64Array, n: number): void {
  unpinFrames(k.core, pfns, 0, n, G.UNPIN_PUT, "releasePages");
}

/**
 * pinUserPages - pin_user_pages: pin each page through the slow path under mmap_lock (the
 * caller's, or taken for read around the call as for getUserPages); FOLL_LONGTERM pins
 * migrate pages out of MOVABLE and CMA first. Invalid flag combinations
 * return 0, as the kernel's does (after a warning, in the trace as gup.invalid_args).
 */
export function pinUserPages(p: Process, start: Address, nrPages: number, gupFlags: GupFlags | number, pages: PagesArray): number {
  alive(p, "pinUserPages");
  checkPages(pages, nrPages, "pinUserPages");
  const f = isValidGupArgs(foll(gupFlags), G.FOLL_PIN, pages !== undefined);
  if (f === null) {
    p.kernel.trace.count("gup.invalid_args");
    return 0;
  }
  const vpn = gupRangeArgs(p.kernel, start, nrPages, "pinUserPages");
  return slowEntry(p, "pinUserPages", start, vpn, nrPages, f, pages);
}

export type { GupRangeStats };
