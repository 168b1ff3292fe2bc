/**
 * The core's gupRange over any number of pages: a ring's worth per call, the frames copied
 * into the caller's pages array, and the counts the cost model charges. Shared by the main
 * thread's entry points and by Worker handles (which have a core but no kernel).
 * @module
 */
import * as G from "../abi/gup.js";
import * as H from "../abi/header.js";
import type { Core } from "../core/core.js";
import type { CostTable } from "../sim/cost.js";

/** A pages array: the frames GUP returns (struct page **pages). */
export type PagesArray = Float64Array | number[];

/** What the last gupRangeChunked call did. */
export interface GupRangeStats {
  /** Pages taken. */
  taken: number;
  /** GUP_STOP_* of the page after the last taken (GUP_STOP_NONE if all were). */
  stop: number;
  /** Folio reference operations (one per PTE, one per huge leaf; undone ones included). */
  grabs: number;
  /** Pages taken from huge leaves (2 MiB, 1 GiB). */
  hugePages: number;
  /** Page-table entries read. */
  loads: number;
  /** Pages taken that are not long-term pinnable (slow path with FOLL_LONGTERM). */
  unpinnable: number;
}

/**
 * gupRangeChunked - take pages [@vpn, @vpn + @n) under root @root with core flags @flags
 * (FOLL_* | GUPM_*) and @pkru, writing their frames to @pages from @off; stops at the first
 * page the core will not take. Returns the stats (reused object: copy what you keep).
 */
export function gupRangeChunked(
  core: Core, root: number, vpn: number, n: number, flags: number, pkru: number, pages: PagesArray, off: number,
  st: GupRangeStats,
): GupRangeStats {
  st.taken = 0;
  st.stop = G.GUP_STOP_NONE;
  st.grabs = 0;
  st.hugePages = 0;
  st.loads = 0;
  st.unpinnable = 0;
  const max = core.gupMax;
  const first = (core.ring + H.RING_ENTRY0) >>> 3;
  const x = core.x;
  while (st.taken < n) {
    const want = Math.min(max, n - st.taken);
    // pages[] in the kernel heap is written in place; any other array gets a copy from the ring.
    const at = core.kheapAddr(pages, off + st.taken, want);
    const got = x.gupRange(root, vpn + st.taken, want, flags, pkru, at);
    if (got < 0) core.check(got, "gupRange");
    const u32 = core.u32; // after the call: the memory may have grown (the views with it)
    const regs = core.ring >>> 2;
    st.grabs += u32[regs + G.REG_GUP_GRABS / 4]!;
    st.hugePages += u32[regs + G.REG_GUP_HUGE_PAGES / 4]!;
    st.loads += u32[regs + G.REG_GUP_LOADS / 4]!;
    st.unpinnable += u32[regs + G.REG_GUP_UNPINNABLE / 4]!;
    if (at === 0) {
      const f64 = core.f64Fresh;
      if (pages instanceof Float64Array) pages.set(f64.subarray(first, first + got), off + st.taken);
      else for (let i = 0; i < got; i++) pages[off + st.taken + i] = f64[first + i]!;
    }
    st.taken += got;
    if (got < want) {
      st.stop = u32[regs + G.REG_GUP_STOP / 4]!;
      break;
    }
  }
  return st;
}

/** The modeled time of what @st took (the call's own cost is charged once, by the entry point). */
export function gupModeledNs(costs: CostTable, st: GupRangeStats): number {
  return st.grabs * costs.gupPage.ns + st.hugePages * costs.gupSubpage.ns;
}

/** newGupRangeStats - a stats object to reuse. */
export function newGupRangeStats(): GupRangeStats {
  return { taken: 0, stop: 0, grabs: 0, hugePages: 0, loads: 0, unpinnable: 0 };
}
