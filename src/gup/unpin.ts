/**
 * Releasing what GUP took (mm/gup.c unpin_user_page(s), unpin_user_pages_dirty_lock;
 * mm/swap.c release_pages and put_page for FOLL_GET references), and
 * folio_maybe_dma_pinned. Each takes a machine handle (any thread's), as the kernel's take
 * only the pages.
 *
 * Unlike the kernel, which trusts its caller, a release of a page that holds fewer pins (or
 * references) than its entries give back is refused with EINVAL naming the entry, and
 * nothing is released.
 * @module
 */
import * as G from "../abi/gup.js";
import * as H from "../abi/header.js";
import { DmaError } from "../errors.js";
import type { Core } from "../core/core.js";
import type { Machine } from "../machine.js";
import { maybeDmaPinned } from "../mm/page.js";
import type { PagesArray } from "./range.js";

/** What the last unpinFrames did. */
export interface UnpinStats {
  /** Folio operations (one per run of entries in the same folio). */
  folios: number;
  /** Folios newly marked dirty. */
  dirtied: number;
  /** Folios whose last reference went (freed). */
  freed: number;
}

const last: UnpinStats = { folios: 0, dirtied: 0, freed: 0 };

function checkEntries(pages: PagesArray, off: number, n: number, fn: string): void {
  for (let i = off; i < off + n; i++) {
    const v = pages[i]!;
    if ((v >>> 0) !== v) throw new DmaError("EINVAL", `${fn}: pages[${i}]: ${v} is not a frame number`, { arg: "pages" });
  }
}

/**
 * unpinFrames - release @n frames of @pages from @off in the core, a ring at a time, with
 * UNPIN_* @flags. A batch larger than a ring is checked whole first, so a refusal still
 * leaves everything as it was. Returns the stats (a reused object).
 */
export function unpinFrames(core: Core, pages: PagesArray, off: number, n: number, flags: number, fn: string): UnpinStats {
  if (!(pages instanceof Float64Array)) checkEntries(pages, off, n, fn); // the core checks a Float64Array's

  last.folios = 0;
  last.dirtied = 0;
  last.freed = 0;
  // A checked call (dirtying) adds up each folio's entries in the ring's spare room: smaller batches.
  const max = flags & G.UNPIN_DIRTY ? core.unpinCheckedMax : core.gupMax;
  const first = (core.ring + H.RING_ENTRY0) >>> 3;
  const load = (at: number, k: number): void => {
    if (pages instanceof Float64Array) core.f64.set(pages.subarray(at, at + k), first);
    else for (let i = 0; i < k; i++) core.f64[first + i] = pages[at + i]!;
  };
  if (n > max) {
    // (Each batch is checked on its own: a folio listed in two batches is checked against
    // each batch's entries, not their sum.)
    const cmax = core.unpinCheckedMax;
    for (let at = 0; at < n; at += cmax) {
      const k = Math.min(cmax, n - at);
      load(off + at, k);
      const rc = core.x.unpinPages(k, flags | G.UNPIN_CHECK);
      if (rc < 0) throw indexed(core, rc, fn, off + at);
    }
  }
  for (let at = 0; at < n; at += max) {
    const k = Math.min(max, n - at);
    load(off + at, k);
    const rc = core.x.unpinPages(k, flags);
    if (rc < 0) throw indexed(core, rc, fn, off + at);
    last.folios += core.reg32(G.REG_GUP_GRABS);
    last.dirtied += core.reg32(G.REG_GUP_DIRTIED);
    last.freed += core.reg32(H.REG_FREED);
  }
  return last;
}

/** The core's refusal of a batch starting at pages[@base], with the entry's index in the whole array. */
function indexed(core: Core, rc: number, fn: string, base: number): DmaError {
  const reason = core.x.coreReason();
  const arg = core.x.coreReasonArg();
  try {
    core.check(rc, fn);
  } catch (e) {
    if (!(e instanceof DmaError)) throw e;
    return new DmaError(e.code, e.message.replace(/^[A-Z]+: /, "").replace(/pages\[(\d+)\]/, (_, i: string) => `pages[${base + Number(i)}]`), {
      arg: "pages",
      cause: { reason, arg },
    });
  }
  return new DmaError("EINVAL", `${fn}: refused`);
}

/** The modeled time of a release: each entry walked, each folio dropped. */
function charge(m: Machine, n: number, s: UnpinStats): number {
  const ns = n * m.costs.unpinPage.ns + s.folios * m.costs.unpinFolio.ns;
  m.clock.advance(ns);
  return ns;
}

function release(m: Machine, fn: string, pages: PagesArray, npages: number, flags: number): void {
  if (!Number.isSafeInteger(npages) || npages < 0) throw new DmaError("EINVAL", `${fn}: npages: ${npages} is not a count`, { arg: "npages" });
  if (!(pages instanceof Float64Array) && !Array.isArray(pages)) {
    throw new DmaError("EINVAL", `${fn}: pages must be a Float64Array or an array`, { arg: "pages" });
  }
  if (pages.length < npages) throw new DmaError("EINVAL", `${fn}: pages holds ${pages.length} entries, fewer than npages (${npages})`, { arg: "pages" });
  if (npages === 0) return;
  const core = m.core;
  const k = m.kernelIfHere;
  if (k && flags & G.UNPIN_DIRTY) k.checkers.unpinDirty(pages, npages);
  const ts = m.clock.now;
  const s = unpinFrames(core, pages, 0, npages, flags, fn);
  const ns = charge(m, npages, s);
  if (m.trace.enabled) m.trace.emit("gup.unpin", { fn, n: npages, folios: s.folios, dirtied: s.dirtied, freed: s.freed }, ts, ns);
  if (!(flags & G.UNPIN_PUT)) m.trace.count("gup.unpinned_pages", npages);
}

/** unpinUserPages - unpin_user_pages: give back one pin per entry of @pages[0..@npages). */
export function unpinUserPages(m: Machine, pages: PagesArray, npages: number): void {
  release(m, "unpinUserPages", pages, npages, 0);
}

/** unpinUserPage - unpin_user_page: give back one pin of frame @pfn. */
export function unpinUserPage(m: Machine, pfn: number): void {
  release(m, "unpinUserPage", [pfn], 1, 0);
}

/**
 * unpinUserPagesDirtyLock - unpin_user_pages_dirty_lock: with @makeDirty, mark each folio
 * dirty (under its lock) unless it already is, then unpin: what a driver does after a
 * device wrote into the pages. The dirtying is what tells the file system the page changed.
 */
export function unpinUserPagesDirtyLock(m: Machine, pages: PagesArray, npages: number, makeDirty: boolean): void {
  release(m, "unpinUserPagesDirtyLock", pages, npages, makeDirty ? G.UNPIN_DIRTY : 0);
}

/** releasePages - release_pages: drop one FOLL_GET reference per entry (put_page on each). */
export function releasePages(m: Machine, pages: PagesArray, npages: number): void {
  release(m, "releasePages", pages, npages, G.UNPIN_PUT);
}

/** putPage - put_page: drop one reference of the folio holding @pfn (the last frees it). */
export function putPage(m: Machine, pfn: number): void {
  release(m, "putPage", [pfn], 1, G.UNPIN_PUT);
}

/**
 * folioMaybeDmaPinned - folio_maybe_dma_pinned for the folio holding @pfn: a large folio's
 * exact _pincount, or a small one's refcount >= GUP_PIN_COUNTING_BIAS (1024), which 1024
 * ordinary references also reach (a false positive; never a false negative).
 */
export function folioMaybeDmaPinned(m: Machine, pfn: number): boolean {
  const core = m.core;
  const nr = core.hdr(H.HDR_NR_FRAMES);
  if (!Number.isSafeInteger(pfn) || pfn < 0 || pfn >= nr) {
    throw new DmaError("EINVAL", `folioMaybeDmaPinned: pfn ${pfn} is not a frame of this machine (0..${nr - 1})`, { arg: "pfn" });
  }
  return maybeDmaPinned(core, core.hdr(H.HDR_FRAMES_BASE), pfn);
}

/** pageMaybeDmaPinned - page_maybe_dma_pinned: folioMaybeDmaPinned of the page's folio. */
export function pageMaybeDmaPinned(m: Machine, pfn: number): boolean {
  return folioMaybeDmaPinned(m, pfn);
}
