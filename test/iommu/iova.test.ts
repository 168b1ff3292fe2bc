/**
 * The IOVA allocator (drivers/iommu/iova.c): top-down size-aligned allocation, and the range
 * caches that hand a freed IOVA straight back.
 */
import { describe, expect, it } from "vitest";
import { IovaDomain } from "../../src/index.js";
import { IOVA_MAG_SIZE } from "../../src/iommu/iova.js";

describe("IovaDomain", () => {
  it("allocate top-down below the limit, aligned to the size's power of two, and fail when no gap fits", () => {
    const d = new IovaDomain(1);
    expect(d.allocIova(1, 0xff)).toBe(0xff);
    expect(d.allocIova(4, 0xff)).toBe(0xf8); // 0xfb..0xfe would not be 4-aligned
    expect(d.allocIova(2, 0xff)).toBe(0xfc); // the gap left above
    expect(d.allocIova(3, 0xff)).toBe(0xf4); // 3 pages, aligned to 4
    expect(d.allocIova(0x100, 0xff)).toBe(0);
    expect(d.freeIova(0xf8)).toBe(true);
    expect(d.freeIova(0xf9)).toBe(false); // not the start of a range
    expect(d.allocIova(4, 0xff)).toBe(0xf8);
  });

  it("hand back the most recently freed IOVA of the same size class, within the limit", () => {
    const d = new IovaDomain(1);
    const a = d.allocIovaFast(2, 0xfff, true);
    const b = d.allocIovaFast(2, 0xfff, true);
    expect([a, b]).toEqual([0xffe, 0xffc]);
    d.freeIovaFast(b, 2);
    d.freeIovaFast(a, 2);
    expect(d.allocIovaFast(2, 0xffd, true)).toBe(b); // a, the most recent, ends above this limit
    expect(d.allocIovaFast(2, 0xfff, true)).toBe(a);
    expect(d.stats.rcacheHits).toBe(2);
    expect(d.findIova(a)).toEqual([a, a + 1]); // cached ranges stay reserved in the tree
  });

  it("spill full magazines to the depot, and flush every cache into the tree when the tree is full", () => {
    const d = new IovaDomain(1);
    const pfns = Array.from({ length: 2 * IOVA_MAG_SIZE + 5 }, () => d.allocIovaFast(1, 0x3ff, true));
    for (const p of pfns) d.freeIovaFast(p, 1);
    expect(d.stats.rcacheFrees).toBe(pfns.length);
    // 0x3ff pages below the limit: 259 cached, 764 free. A 512-page range finds no aligned
    // gap until the caches go back to the tree.
    expect(d.allocIovaFast(512, 0x3ff, false)).toBe(0);
    expect(d.allocIovaFast(512, 0x3ff, true)).toBe(0x200);
    expect(d.stats.flushes).toBe(1);
  });
});
