/**
 * The IOVA allocator of drivers/iommu/iova.c, in page-frame units of the granule (4 KiB).
 *
 * - allocIova: a size-aligned range below a limit, found top-down (the highest gap that
 *   fits). The kernel starts its search at a cached node (the last allocation below 4 GiB,
 *   or above), which gives the same answer while allocations go down and frees come in
 *   LIFO order; this model always searches from the limit.
 * - The range caches ("rcaches") are what makes IOVAs come back: a freed range of 1..32
 *   pages (log2 size < IOVA_RANGE_CACHE_MAX_SIZE) goes to a per-CPU magazine of
 *   IOVA_MAG_SIZE pfns (loaded, then prev, then the depot of full magazines) instead of the
 *   tree, and the next allocation of that size takes the most recently freed pfn that fits
 *   below its limit. The same IOVA is handed out again at once: why lazy mode must not free
 *   an IOVA before the IOTLB has been flushed.
 * - allocIovaFast(flush = true) empties every cache into the tree and retries when the
 *   tree has no room, as alloc_iova_fast does.
 * @module
 */

export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
export const IOVA_MAG_SIZE = 127;
export const MAX_GLOBAL_MAGS = 32;

interface Rcache {
  loaded: number[];
  prev: number[];
  depot: number[][];
}

/** order_base_2(n): the smallest k with 2^k >= n. */
export function orderBase2(n: number): number {
  let k = 0;
  while (2 ** k < n) k++;
  return k;
}

export class IovaDomain {
  /** Lowest pfn handed out (start_pfn; the kernel keeps IOVA 0 unused). */
  readonly startPfn: number;
  /** Allocated ranges [lo, hi] (inclusive), sorted by lo. */
  readonly #ranges: [number, number][] = [];
  readonly #rcaches: Rcache[] = Array.from({ length: IOVA_RANGE_CACHE_MAX_SIZE }, () => ({ loaded: [], prev: [], depot: [] }));
  readonly stats = { allocs: 0, rcacheHits: 0, frees: 0, rcacheFrees: 0, flushes: 0 };

  constructor(startPfn = 1) {
    this.startPfn = startPfn;
  }

  /** Allocated ranges (tree and caches), for inspection. */
  get allocated(): readonly (readonly [number, number])[] {
    return this.#ranges;
  }

  #find(pfn: number): number {
    let lo = 0;
    let hi = this.#ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.#ranges[mid]!;
      if (pfn < r[0]) hi = mid - 1;
      else if (pfn > r[1]) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** findIova - the allocated range holding @pfn, or null. */
  findIova(pfn: number): [number, number] | null {
    const i = this.#find(pfn);
    return i < 0 ? null : [...this.#ranges[i]!];
  }

  /**
   * allocIova - @size pages at or below @limitPfn, aligned to @size rounded up to a power
   * of two (size_aligned); the first pfn, or 0 when no gap fits.
   */
  allocIova(size: number, limitPfn: number): number {
    const align = 2 ** orderBase2(size);
    let high = limitPfn + 1; // exclusive
    for (let i = this.#ranges.length - 1; i >= -1; i--) {
      const r = this.#ranges[i];
      const floor = r ? r[1] + 1 : this.startPfn;
      if (r && r[0] >= high) continue;
      const pfn = Math.floor((high - size) / align) * align;
      if (pfn >= floor && pfn >= this.startPfn) {
        this.#ranges.splice(i + 1, 0, [pfn, pfn + size - 1]);
        this.stats.allocs++;
        return pfn;
      }
      if (!r) break;
      high = Math.min(high, r[0]);
    }
    return 0;
  }

  /**
   * reserveIova - reserve_iova: keep pages [@lo, @hi] (inclusive) from ever being handed
   * out; the parts already allocated or reserved stay as they are.
   */
  reserveIova(lo: number, hi: number): void {
    let at = Math.max(lo, this.startPfn);
    for (const r of [...this.#ranges]) {
      if (r[1] < at) continue;
      if (r[0] > hi) break;
      if (r[0] > at) this.#insert([at, r[0] - 1]);
      at = r[1] + 1;
    }
    if (at <= hi) this.#insert([at, hi]);
  }

  #insert(r: [number, number]): void {
    let i = this.#ranges.length;
    while (i > 0 && this.#ranges[i - 1]![0] > r[0]) i--;
    this.#ranges.splice(i, 0, r);
  }

  /** freeIova - give the range starting at @pfn back to the tree. */
  freeIova(pfn: number): boolean {
    const i = this.#find(pfn);
    if (i < 0 || this.#ranges[i]![0] !== pfn) return false;
    this.#ranges.splice(i, 1);
    this.stats.frees++;
    return true;
  }

  /** allocIovaFast - the rcache's most recent fit, else the tree (flushing the caches and retrying if @flush). */
  allocIovaFast(size: number, limitPfn: number, flush: boolean): number {
    const order = orderBase2(size);
    if (order < IOVA_RANGE_CACHE_MAX_SIZE) {
      const pfn = this.#rcacheGet(this.#rcaches[order]!, limitPfn + 1 - size);
      if (pfn) {
        this.stats.rcacheHits++;
        return pfn;
      }
    }
    const pfn = this.allocIova(size, limitPfn);
    if (pfn || !flush) return pfn;
    this.flushRcaches();
    return this.allocIova(size, limitPfn);
  }

  /** freeIovaFast - into the rcache of its size when it takes it, else back to the tree. */
  freeIovaFast(pfn: number, size: number): void {
    const order = orderBase2(size);
    if (order < IOVA_RANGE_CACHE_MAX_SIZE && this.findIova(pfn)?.[0] === pfn) {
      const c = this.#rcaches[order]!;
      if (c.loaded.length === IOVA_MAG_SIZE) {
        if (c.prev.length < IOVA_MAG_SIZE) [c.loaded, c.prev] = [c.prev, c.loaded];
        else if (c.depot.length < MAX_GLOBAL_MAGS) {
          c.depot.push(c.loaded);
          c.loaded = [];
        } else {
          for (const p of c.loaded) this.freeIova(p);
          c.loaded = [];
        }
      }
      c.loaded.push(pfn);
      this.stats.rcacheFrees++;
      return;
    }
    this.freeIova(pfn);
  }

  /** flushRcaches - every cached range back to the tree (free_cpu_cached_iovas + free_global_cached_iovas). */
  flushRcaches(): void {
    this.stats.flushes++;
    for (const c of this.#rcaches) {
      for (const p of [...c.loaded, ...c.prev, ...c.depot.flat()]) this.freeIova(p);
      c.loaded = [];
      c.prev = [];
      c.depot = [];
    }
  }

  /** iova_magazine_pop: the most recent pfn <= @limit, from loaded, prev, then a depot magazine. */
  #rcacheGet(c: Rcache, limit: number): number {
    if (!c.loaded.length) {
      if (c.prev.length) [c.loaded, c.prev] = [c.prev, c.loaded];
      else if (c.depot.length) c.loaded = c.depot.pop()!;
      else return 0;
    }
    const m = c.loaded;
    let i = m.length - 1;
    while (i >= 0 && m[i]! > limit) i--;
    if (i < 0) return 0;
    const pfn = m[i]!;
    m[i] = m[m.length - 1]!;
    m.pop();
    return pfn;
  }
}
