/**
 * get_user_pages in the core (mm/gup.c): GUP-fast, the lockless walk, and the slow path's
 * follow_page_mask over pages already present, both taking references as the kernel does.
 *
 * - FOLL_GET adds @refs to the folio's refcount. FOLL_PIN adds GUP_PIN_COUNTING_BIAS per
 *   page to a small folio's refcount; a large folio gets @refs on its refcount and on its
 *   _pincount. One grab per PTE, one per huge leaf (all the subpages it covers).
 * - GUP-fast (no GUPM_LOCKED) runs as the kernel's does with interrupts off: this thread's
 *   walker word is odd for the whole walk, so no page-table page it may read is freed under
 *   it (tableFree waits in gupFastSync, assembly/mmu/pgtable.ts). Each entry is read once; the folio is grabbed only
 *   if its refcount is not zero (folio_try_get); then the table entry and the leaf are read
 *   again and the grab is undone if either changed. The walk stops at the first page it may
 *   not take; the host's slow path goes on from there.
 * - For FOLL_PIN, GUP-fast samples mm->write_protect_seq (kept in the root table's record):
 *   odd (fork is write-protecting) means no pages; a change by the end undoes every pin.
 * - The slow path (GUPM_LOCKED) runs with mmap_lock held by the host, which has checked the
 *   VMA. It stops where the kernel's follow_page_mask returns no page (the host faults and
 *   retries), returns the shared zero page (a FOLL_PIN of it counts nothing), applies
 *   FOLL_TOUCH, and takes pages that are not long-term pinnable, counting them for the
 *   host's migration step.
 *
 * The call's state is in gup-call.ts, the grab and the checks after it in gup-grab.ts,
 * GUP-fast's PTE loop in gup-fast.ts, the slow path's in gup-locked.ts, the tests' race
 * scripts in gup-race.ts.
 */
import {
  FOLL_WRITE, FOLL_GET, FOLL_PIN, FOLL_LONGTERM, GUPM_LOCKED, GUPM_RACE,
  GUP_STOP_NONE, GUP_STOP_NOT_PRESENT, GUP_STOP_PERM, GUP_STOP_SPECIAL, GUP_STOP_DEVMAP,
  GUP_STOP_CHANGED, GUP_STOP_SEQ, GUP_STOP_NO_PAGE, GUP_STOP_P2PDMA, REG_GUP_STOP, REG_GUP_GRABS, REG_GUP_LOADS, REG_GUP_HUGE_PAGES,
  REG_GUP_UNPINNABLE, RACE_BASE, RACE_MAX,
} from "../../src/abi/gup";
import { HDR_ADDR, HDR_ZERO_PFN, HDR_FOLL_PIN_ACQUIRED, RING_ENTRY0, RENT_SIZE, REG_PAGES } from "../../src/abi/header";
import { FRAME_REFCOUNT, FRAME_MAPCOUNT, PG_has_pinned, PG_pgtable, ZONE_DEVICE } from "../../src/abi/frame";
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT, R_FLAGS, R_NONCANONICAL, R_SIZE_ZERO, R_OUT } from "../../src/abi/reason";
import { fail } from "../errno";
import { NR_FRAMES, LEVELS, VA_BITS, RING_ENTRIES, inKheap } from "../layout";
import { RING, THREAD, ringCheck } from "../ring";
import { frame, frameFlags } from "../phys/frame";
import { P, RW, PS, ptePfn, levelPages } from "../mmu/pte";
import { rootCheck, walkerWord } from "../mmu/pgtable";
import { folioHead, pageFlagsUpdate } from "./page";
import { gupPutFolio, flushPinReleased } from "./unpin";
import {
  ALLOWED, NONE, SPECIAL, fl, pkru, rootPfn, taken, stopWhy, grabs, loads, unpinnable, hugePages, pinAcquired, out,
  races, raceBase, zoneKindOf, p2pdmaRefused, p2pdmaRefusedSet, longtermPinnable, accessPermitted, tableBytes, emit, stop,
} from "./gup-call";
import { grab, leafChecks, writeAllowed } from "./gup-grab";
import { race } from "./gup-race";
import { ptesFast } from "./gup-fast";
import { ptesLocked } from "./gup-locked";

/** gupMaxPages - the most pages one gupRange call returns (the ring's f64 slots). */
export function gupMaxPages(): u32 {
  return (RING_ENTRIES * RENT_SIZE - RACE_BASE) >> 3;
}

/**
 * ptes - gup_fast_pte_range / follow_page_pte over the PTE table @t (found through the entry
 * at @pmdAddr, read as @pmd) for pages [@lv, @end) of one table. False once the walk stops.
 */
function ptes(t: u32, pmdAddr: usize, pmd: u64, lv: u64, end: u64, first: u64): bool {
  const locked = (fl & GUPM_LOCKED) != 0;
  const write = (fl & FOLL_WRITE) != 0;
  const zeroPfn = load<u32>(HDR_ADDR + HDR_ZERO_PFN);
  const base = tableBytes(t);
  const nframes = NR_FRAMES;
  for (let v = lv; v < end; v++) {
    const pa = base + ((<usize>v & 511) << 3);
    const e = atomic.load<u64>(pa);
    loads++;
    if ((e & P) == 0) return stop(GUP_STOP_NOT_PRESENT);
    // pte_access_permitted; a write through a read-only entry is judged below, once the
    // page is known (the slow path's FOLL_FORCE rule).
    if (!accessPermitted(e, write && (!locked || (e & RW) != 0), pkru)) return stop(GUP_STOP_PERM);
    const pfn = <u32>ptePfn(e);
    if (e & SPECIAL) {
      // vm_normal_page() is NULL; only the slow path hands out the zero page, and a write
      // faults instead (COW away from it).
      if (!locked || pfn != zeroPfn) return stop(GUP_STOP_SPECIAL);
      if (write) return stop(GUP_STOP_PERM);
      if (fl & FOLL_GET) {
        grabs++;
        atomic.add<i32>(frame(pfn) + FRAME_REFCOUNT, 1);
      }
      emit(pfn);
      continue;
    }
    if (<u64>pfn >= <u64>nframes) return stop(GUP_STOP_NO_PAGE);
    if (p2pdmaRefused(pfn)) return stop(GUP_STOP_P2PDMA);
    const pf = frameFlags(pfn);
    if (write && (e & RW) == 0 && !writeAllowed(e, pf, frameFlags(folioHead(pfn)))) return stop(GUP_STOP_PERM);
    if (!locked && (fl & FOLL_LONGTERM) != 0 && zoneKindOf(pfn) == ZONE_DEVICE) return stop(GUP_STOP_DEVMAP);
    if (races) race(<u32>(v - first), 0);
    const head = grab(pfn, 1);
    if (head == NONE) return false;
    if (races) race(<u32>(v - first), 1);
    if (!locked && (atomic.load<u64>(pmdAddr) != pmd || atomic.load<u64>(pa) != e)) {
      gupPutFolio(head, 1, fl);
      return stop(GUP_STOP_CHANGED);
    }
    if (!leafChecks(e, head, pf)) {
      gupPutFolio(head, 1, fl);
      return false;
    }
    if (locked && (fl & FOLL_LONGTERM) != 0 && !longtermPinnable(pfn)) unpinnable++;
    emit(pfn);
  }
  return true;
}

/**
 * hugeLeaf - gup_fast_pmd_leaf / gup_fast_pud_leaf (or follow_huge_pmd): the pages
 * [@lv, @end) of the huge leaf @e at @ea, one grab for all of them.
 */
function hugeLeaf(ea: usize, e: u64, level: u32, lv: u64, end: u64, first: u64): bool {
  const locked = (fl & GUPM_LOCKED) != 0;
  const write = (fl & FOLL_WRITE) != 0;
  if (!accessPermitted(e, write && (!locked || (e & RW) != 0), pkru)) return stop(GUP_STOP_PERM);
  if (e & SPECIAL) return stop(GUP_STOP_SPECIAL);
  const span = levelPages(level);
  const basePfn = ptePfn(e) & ~(span - 1);
  const pfn = <u32>(basePfn + (lv & (span - 1)));
  if (<u64>pfn + (end - lv) > <u64>NR_FRAMES) return stop(GUP_STOP_NO_PAGE);
  if (p2pdmaRefused(pfn)) return stop(GUP_STOP_P2PDMA);
  const hf0 = frameFlags(folioHead(pfn));
  if (write && (e & RW) == 0 && !writeAllowed(e, hf0, hf0)) return stop(GUP_STOP_PERM);
  if (!locked && (fl & FOLL_LONGTERM) != 0 && zoneKindOf(pfn) == ZONE_DEVICE) return stop(GUP_STOP_DEVMAP);
  const nr = <i32>(end - lv);
  if (races) race(<u32>(lv - first), 0);
  const head = grab(pfn, nr);
  if (head == NONE) return false;
  if (races) race(<u32>(lv - first), 1);
  if (!locked && atomic.load<u64>(ea) != e) {
    gupPutFolio(head, nr, fl);
    return stop(GUP_STOP_CHANGED);
  }
  if (!leafChecks(e, head, frameFlags(head))) {
    gupPutFolio(head, nr, fl);
    return false;
  }
  if (locked && (fl & FOLL_LONGTERM) != 0 && !longtermPinnable(pfn)) unpinnable += <u32>nr;
  // pages[] for every subpage (record_subpages), four at a time.
  let at = out + (<usize>taken << 3);
  const stopAt = at + (<usize>nr << 3);
  let f = <f64>pfn;
  if (at + 32 <= stopAt) {
    let v0 = f64x2(f, f + 1.0);
    let v1 = f64x2(f + 2.0, f + 3.0);
    const four = f64x2.splat(4.0);
    while (at + 32 <= stopAt) {
      v128.store(at, v0);
      v128.store(at, v1, 16);
      v0 = f64x2.add(v0, four);
      v1 = f64x2.add(v1, four);
      at += 32;
    }
    f = f64x2.extract_lane(v0, 0);
  }
  while (at < stopAt) {
    store<f64>(at, f);
    f += 1.0;
    at += 8;
  }
  taken += <u32>nr;
  hugePages += <u32>nr;
  return true;
}

/** The walk over [@lv, @end) (linear page numbers in the lower half). */
function walkRange(lv: u64, end: u64): void {
  const first = lv;
  while (lv < end) {
    let t = rootPfn;
    let level = LEVELS;
    let ok = true;
    while (true) {
      const ea = tableBytes(t) + ((<usize>(lv >> (9 * (level - 1))) & 511) << 3);
      const e = atomic.load<u64>(ea);
      loads++;
      const span = levelPages(level);
      const spanEnd = (lv & ~(span - 1)) + span;
      const to = end < spanEnd ? end : spanEnd;
      if ((e & P) == 0) {
        stop(GUP_STOP_NOT_PRESENT);
        return;
      }
      if (level <= 3 && (e & PS) != 0) {
        if (!hugeLeaf(ea, e, level, lv, to, first)) return;
        lv = to;
        break;
      }
      const next64 = ptePfn(e);
      // A table entry that does not lead to a page-table page (never made by the kernel's
      // own code; a test may write one) ends the walk rather than read a frame's bytes.
      if (next64 >= <u64>NR_FRAMES || (frameFlags(<u32>next64) & PG_pgtable) == 0) {
        stop(GUP_STOP_NOT_PRESENT);
        return;
      }
      const next = <u32>next64;
      if (level == 2) {
        ok = races != 0 ? ptes(next, ea, e, lv, to, first) : (fl & GUPM_LOCKED) != 0 ? ptesLocked(next, lv, to) : ptesFast(next, ea, e, lv, to);
        if (!ok) return;
        lv = to;
        break;
      }
      t = next;
      level--;
    }
  }
}

/**
 * gupRange - take the pages [@vpn, @vpn + @npages) of the address space under @root, the
 * GUP-fast way or (GUPM_LOCKED) the slow path's, with FOLL_* @flags and the task's @pkru.
 * Exactly one of FOLL_GET and FOLL_PIN. Writes one f64 pfn per page taken at @outAddr, an
 * array in the kernel heap, or (0) from the ring's first entry. Returns the number of pages
 * taken (REG_GUP_STOP says why it stopped there), or -EINVAL for a bad root, range, flags or
 * output, with nothing taken.
 */
export function gupRange(root: f64, vpn: f64, npages: u32, flags: u32, pk: u32, outAddr: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  if (flags & ~ALLOWED) return fail(EINVAL, R_FLAGS, flags & ~ALLOWED);
  if (((flags & FOLL_GET) != 0) == ((flags & FOLL_PIN) != 0)) return fail(EINVAL, R_FLAGS, flags);
  if (npages == 0) return fail(EINVAL, R_SIZE_ZERO, 0);
  if (npages > gupMaxPages()) return fail(EINVAL, R_COUNT, npages);
  const half: f64 = <f64>(<u64>1 << (VA_BITS - 13));
  if (!(vpn >= 0) || vpn != Math.floor(vpn) || vpn + <f64>npages > half) return fail(EINVAL, R_NONCANONICAL, 0);
  if (outAddr != 0 && !inKheap(outAddr, npages)) return fail(EINVAL, R_OUT, outAddr);
  fl = flags;
  pkru = pk;
  rootPfn = <u32>r;
  taken = 0;
  stopWhy = GUP_STOP_NONE;
  grabs = 0;
  loads = 0;
  unpinnable = 0;
  hugePages = 0;
  p2pdmaRefusedSet(flags);
  out = outAddr != 0 ? <usize>outAddr : RING + RING_ENTRY0;
  races = 0;
  if (flags & GUPM_RACE) {
    raceBase = RING + RING_ENTRY0 + <usize>RING_ENTRIES * RENT_SIZE - RACE_BASE;
    races = load<u32>(raceBase);
    if (races > <u32>RACE_MAX) return fail(EINVAL, R_COUNT, races);
  }
  const lv = <u64>vpn;
  if (flags & GUPM_LOCKED) {
    walkRange(lv, lv + npages);
  } else {
    const w = walkerWord(<u32>THREAD);
    atomic.add<u32>(w, 1); // local_irq_save
    const seqAddr = frame(rootPfn) + FRAME_MAPCOUNT;
    let seq: i32 = 0;
    if (flags & FOLL_PIN) {
      seq = atomic.load<i32>(seqAddr);
      if ((frameFlags(rootPfn) & PG_has_pinned) == 0) pageFlagsUpdate(rootPfn, PG_has_pinned, 0);
    }
    if ((flags & FOLL_PIN) != 0 && (seq & 1) != 0) {
      stopWhy = GUP_STOP_SEQ;
    } else {
      walkRange(lv, lv + npages);
      if ((flags & FOLL_PIN) != 0 && atomic.load<i32>(seqAddr) != seq) {
        undoAll();
        stopWhy = GUP_STOP_SEQ;
      }
    }
    atomic.add<u32>(w, 1); // local_irq_restore
  }
  if (pinAcquired != 0) atomic.add<i64>(HDR_ADDR + HDR_FOLL_PIN_ACQUIRED, pinAcquired);
  pinAcquired = 0;
  flushPinReleased();
  store<u32>(RING + REG_GUP_STOP, stopWhy);
  store<u32>(RING + REG_GUP_GRABS, grabs);
  store<u32>(RING + REG_GUP_LOADS, loads);
  store<u32>(RING + REG_GUP_UNPINNABLE, unpinnable);
  store<u32>(RING + REG_GUP_HUGE_PAGES, hugePages);
  store<f64>(RING + REG_PAGES, <f64>taken);
  return <i32>taken;
}

/** undoAll - unpin everything this call took (fork raced with the walk), a folio at a time. */
function undoAll(): void {
  let i: u32 = 0;
  while (i < taken) {
    const pfn = <u32>load<f64>(out + (<usize>i << 3));
    const head = folioHead(pfn);
    let n: u32 = 1;
    while (i + n < taken && folioHead(<u32>load<f64>(out + (<usize>(i + n) << 3))) == head) n++;
    gupPutFolio(head, <i32>n, fl);
    i += n;
  }
  taken = 0;
  hugePages = 0;
}
