/**
 * The buddy allocator (mm/page_alloc.c): splitting, merging, zones, exhaustion.
 */
import { describe, expect, it } from "vitest";
import { DmaError } from "../../src/index.js";
import { smallMachine, snapshot } from "../helpers.js";

function expectErr(fn: () => unknown, code: string, arg?: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DmaError);
    expect((e as DmaError).code).toBe(code);
    if (arg !== undefined) expect((e as DmaError).arg).toBe(arg);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe("zones at boot", () => {
  it("frees each zone as maximal aligned blocks and keeps the low 1 MiB reserved", async () => {
    const m = await smallMachine();
    const [normal, cma, movable] = m.phys.zones();
    expect([normal!.name, cma!.name, movable!.name]).toEqual(["NORMAL", "CMA", "MOVABLE"]);
    // NORMAL = pfns [0, 16384): [0, 256) reserved; [256, 16384) is blocks of order 8..13.
    expect(normal!.nrFree).toBe(16384 - 256);
    expect(normal!.freeBlocks.slice(8, 14)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(normal!.freeBlocks.reduce((a, b) => a + b)).toBe(6);
    // CMA = [16384, 18432): one order-11 block. MOVABLE = [18432, 22528): two order-11 blocks.
    expect(cma!.freeBlocks[11]).toBe(1);
    expect(movable!.freeBlocks[11]).toBe(2);
    expect(m.page(0).flags).toEqual(["reserved"]);
    expect(m.page(255).refcount).toBe(1);
    expect(m.page(256).flags).toEqual(["buddy"]);
    expect(m.page(256).order).toBe(8);
  });
});

describe("alloc_pages", () => {
  it("splits the smallest block that fits, keeping the low half (expand())", async () => {
    const m = await smallMachine();
    const pfn = m.phys.allocPages(0);
    expect(pfn).toBe(256); // lowest frame of the order-8 block
    const z = m.phys.zones()[0]!;
    // The order-8 block became one free block of each order 0..7 (its upper halves).
    expect(z.freeBlocks.slice(0, 8)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(z.freeBlocks[8]).toBe(0);
    expect(m.page(257).flags).toEqual(["buddy"]);
    expect(m.page(384).order).toBe(7);
    const p = m.page(pfn);
    expect(p.refcount).toBe(1);
    expect(p.flags).toEqual([]);
    expect(m.phys.allocPages(0)).toBe(257); // the order-0 buddy left by the split
  });

  it("merges freed buddies back into the blocks the zone booted with", async () => {
    const m = await smallMachine();
    const before = snapshot(m);
    const pfns = [m.phys.allocPages(0), m.phys.allocPages(3), m.phys.allocPages(0), m.phys.allocPages(9)];
    expect(snapshot(m)).not.toBe(before);
    // Free in an order that exercises merges across different orders.
    expect(m.phys.freePages(pfns[2]!, 0)).toBe(true);
    expect(m.phys.freePages(pfns[0]!, 0)).toBe(true);
    expect(m.phys.freePages(pfns[3]!, 9)).toBe(true);
    expect(m.phys.freePages(pfns[1]!, 3)).toBe(true);
    expect(snapshot(m)).toBe(before);
  });

  it("makes a compound page (folio): PG_head with the order, PG_tail frames pointing at it", async () => {
    const m = await smallMachine();
    const pfn = m.phys.allocPages(2, { compound: true });
    expect(pfn % 4).toBe(0);
    expect(m.page(pfn)).toMatchObject({ flags: ["head"], order: 2, refcount: 1, pincount: 0 });
    for (let i = 1; i < 4; i++) {
      expect(m.page(pfn + i)).toMatchObject({ flags: ["tail"], head: pfn, refcount: 0 });
    }
    expect(m.phys.freePages(pfn, 2)).toBe(true);
    expect(m.page(pfn + 1).flags).not.toContain("tail");
  });

  it("HIGHUSER_MOVABLE prefers MOVABLE, then NORMAL; KERNEL uses NORMAL only", async () => {
    const m = await smallMachine();
    const movable = m.phys.zones().find((z) => z.name === "MOVABLE")!;
    const first = m.phys.allocPages(0, { gfp: "HIGHUSER_MOVABLE" });
    expect(first).toBe(movable.startPfn);
    expect(m.phys.allocPages(0, { gfp: "KERNEL" })).toBeLessThan(movable.startPfn);
    // Exhaust MOVABLE: the next movable allocation falls back to NORMAL.
    const blocks = [m.phys.allocPages(11, { zone: "MOVABLE" })];
    while (m.phys.nrFreePages("MOVABLE") >= 2048) blocks.push(m.phys.allocPages(11, { zone: "MOVABLE" }));
    while (m.phys.nrFreePages("MOVABLE") > 0) blocks.push(m.phys.allocPages(0, { zone: "MOVABLE" }));
    const next = m.phys.allocPages(0, { gfp: "HIGHUSER_MOVABLE" });
    expect(m.phys.zoneOf(next)).toBe("NORMAL");
  });
});

describe("exhaustion and bad calls", () => {
  it("fails with ENOMEM when no block is big enough, changing nothing", async () => {
    const m = await smallMachine();
    const before = snapshot(m);
    expectErr(() => m.phys.allocPages(14), "ENOMEM"); // NORMAL's largest block is order 13
    expect(snapshot(m)).toBe(before);
  });

  it("hands out every frame of a zone exactly once, then ENOMEM; freeing restores it", async () => {
    const m = await smallMachine();
    const before = snapshot(m);
    const seen = new Set<number>();
    for (;;) {
      let pfn: number;
      try {
        pfn = m.phys.allocPages(0, { zone: "CMA" });
      } catch (e) {
        expect((e as DmaError).code).toBe("ENOMEM");
        break;
      }
      expect(seen.has(pfn)).toBe(false);
      seen.add(pfn);
    }
    expect(seen.size).toBe(2048);
    expect(m.phys.nrFreePages("CMA")).toBe(0);
    for (const pfn of seen) m.phys.freePages(pfn);
    expect(snapshot(m)).toBe(before);
  });

  it("rejects a double free, a wrong order, a tail, a reserved frame and a page table", async () => {
    const m = await smallMachine();
    const a = m.phys.allocPages(1, { compound: true });
    const pt = m.pgdAlloc();
    const before = snapshot(m);
    expectErr(() => m.phys.freePages(a, 0), "EINVAL", "order");
    expectErr(() => m.phys.freePages(a + 1, 0), "EINVAL", "pfn");
    expectErr(() => m.phys.freePages(3, 0), "EINVAL", "pfn");
    expectErr(() => m.phys.freePages(pt.pfn, 0), "EINVAL", "pfn");
    expectErr(() => m.phys.freePages(10 ** 9, 0), "EINVAL", "pfn");
    expect(snapshot(m)).toBe(before);
    m.phys.freePages(a, 1);
    const freed = snapshot(m);
    expectErr(() => m.phys.freePages(a, 1), "EINVAL", "pfn");
    expect(snapshot(m)).toBe(freed);
  });

  it("rejects orders above MAX_PAGE_ORDER (18) and unknown zones", async () => {
    const m = await smallMachine();
    expectErr(() => m.phys.allocPages(19), "EINVAL", "order");
    expectErr(() => m.phys.allocPages(-1), "EINVAL", "order");
    const noCma = await smallMachine({ memory: { normal: "8MiB", movable: 0, cma: 0 } });
    expectErr(() => noCma.phys.allocPages(0, { zone: "CMA" }), "EINVAL", "zone");
  });
});

describe("1 GiB blocks", () => {
  it("boots a zone holding order-18 blocks and allocates and frees one", async () => {
    const m = await smallMachine({ memory: { normal: "3GiB", movable: 0, cma: 0 } });
    const z = m.phys.zones()[0]!;
    expect(z.freeBlocks[18]).toBe(2); // [1 GiB, 2 GiB) and [2 GiB, 3 GiB)
    const pfn = m.phys.allocPages(18);
    expect(pfn).toBe(262144);
    expect(m.phys.zones()[0]!.freeBlocks[18]).toBe(1);
    m.phys.freePages(pfn, 18);
    expect(m.phys.zones()[0]!.freeBlocks[18]).toBe(2);
  });
});
