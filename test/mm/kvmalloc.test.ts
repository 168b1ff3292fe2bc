/**
 * The kernel heap (src/mm/kvmalloc.ts): kvcalloc'd arrays in the core's memory, which GUP
 * fills in place; the core refuses an output outside it; and the pinned-writeback checker's
 * log of a THP pin (one entry per 2 MiB block) still names the call for any of its pages.
 */
import { describe, expect, it } from "vitest";
import * as F from "../../src/abi/frame.js";
import * as G from "../../src/abi/gup.js";
import * as H from "../../src/abi/header.js";
import type { Inode } from "../../src/fs/inode.js";
import { getUserPagesFast, pinUserPagesFast, releasePages, unpinUserPages } from "../../src/index.js";
import { HPAGE, PAGE, buffer, caught, counts, framesOf, gupMachine } from "../gup/gup-helpers.js";

describe("kvcalloc / kvfree", () => {
  it("hands out zeroed arrays in the heap, first fit, and merges what is freed with its neighbours", async () => {
    const m = await gupMachine({ kheap: "64KiB" });
    const h = m.kernel.kheap;
    expect(h.end - h.base).toBe(65536);
    const a = h.kvcalloc(1024); // 8 KiB
    const b = h.kvcalloc(1000); // 8000 bytes: a whole number of 64-byte granules
    const c = h.kvcalloc(10);
    expect([h.holds(a), h.holds(b), h.holds(c)]).toEqual([true, true, true]);
    expect(a.byteOffset).toBe(h.base);
    expect(b.byteOffset).toBe(h.base + 8192);
    expect(c.byteOffset).toBe(h.base + 8192 + 8000);
    a.fill(7);
    h.kvfree(a);
    const a2 = h.kvcalloc(512); // first fit: where a was, zeroed again
    expect(a2.byteOffset).toBe(h.base);
    expect(a2.every((x) => x === 0)).toBe(true);
    h.kvfree(a2);
    h.kvfree(b); // merges with the extent a and a2 left
    expect(h.kvcalloc(2024).byteOffset).toBe(h.base); // 16192 bytes fit only in the merged extent
    expect(h.available).toBe(65536 - 16192 - 128); // c: 80 bytes in two 64-byte granules
  });

  it("gives an ordinary array when the heap cannot hold the request, and refuses to free what it did not hand out", async () => {
    const m = await gupMachine({ kheap: "16KiB" });
    const h = m.kernel.kheap;
    const big = h.kvcalloc(4096); // 32 KiB
    expect(h.holds(big)).toBe(false);
    expect(big.length).toBe(4096);
    h.kvfree(big); // not the heap's: left to the GC
    const a = h.kvcalloc(8);
    expect(caught(() => h.kvfree(a.subarray(1))).code).toBe("EINVAL");
    h.kvfree(a);
    expect(caught(() => h.kvfree(a))).toMatchObject({ code: "EINVAL", arg: "a" });
    expect(h.available).toBe(16384);
    expect(caught(() => h.kvcalloc(-1))).toMatchObject({ code: "EINVAL", arg: "n" });
  });

  it("is sized by the configuration, a multiple of 4 KiB up to 1 GiB", async () => {
    await expect(gupMachine({ kheap: 1000 })).rejects.toMatchObject({ code: "EINVAL" });
    await expect(gupMachine({ kheap: "2GiB" })).rejects.toMatchObject({ code: "EINVAL" });
    const m = await gupMachine({ kheap: 0 });
    expect(m.kernel.kheap.holds(m.kernel.kheap.kvcalloc(1))).toBe(false);
  });
});

describe("GUP into a kernel-heap array", () => {
  it("writes the frames in place, the same frames and counts as through an ordinary array", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 1024);
    const want = framesOf(p, a, 1024);
    const k = m.kernel;
    const inHeap = k.kheap.kvcalloc(1024);
    // The ring is not the way the frames come: mark its first entries and see them untouched.
    const ring = (k.core.ring + H.RING_ENTRY0) >>> 3;
    k.core.f64.fill(-1, ring, ring + 16);
    expect(pinUserPagesFast(p, a, 1024, { write: true }, inHeap)).toBe(1024);
    expect(Array.from(k.core.f64.subarray(ring, ring + 16))).toEqual(new Array(16).fill(-1));
    expect(Array.from(inHeap)).toEqual(want);
    expect(counts(m, want[0]!).ref).toBe(1 + F.GUP_PIN_COUNTING_BIAS);
    // A subarray lands at its own offset.
    const other = k.kheap.kvcalloc(400);
    const plain = new Float64Array(50);
    expect(getUserPagesFast(p, a + 100 * PAGE, 50, {}, other.subarray(300))).toBe(50);
    expect(getUserPagesFast(p, a + 100 * PAGE, 50, {}, plain)).toBe(50);
    expect(Array.from(other.subarray(300, 350))).toEqual(Array.from(plain));
    expect(Array.from(plain)).toEqual(want.slice(100, 150));
    expect(other.subarray(0, 300).every((x) => x === 0)).toBe(true);
    releasePages(m, other.subarray(300), 50);
    releasePages(m, plain, 50);
    unpinUserPages(m, inHeap, 1024);
    expect(want.map((pfn) => counts(m, pfn).ref)).toEqual(new Array(1024).fill(1));
    k.kheap.kvfree(other);
    k.kheap.kvfree(inHeap);
  });

  it("the core refuses an output that is misaligned or outside the heap, with EINVAL naming pages and nothing taken", async () => {
    const m = await gupMachine({ kheap: "64KiB" });
    const p = m.spawn();
    const a = buffer(p, 4);
    const k = m.kernel;
    const pfn = framesOf(p, a, 1)[0]!;
    const base = k.core.hdr(H.HDR_KHEAP_BASE);
    for (const out of [base + 4, base - 8, base + 65536 - 16, k.core.ring]) {
      const rc = k.core.x.gupRange(p.mm.pgd.pfn, a / PAGE, 4, G.FOLL_GET, 0, out);
      expect(caught(() => k.core.check(rc, "gupRange"))).toMatchObject({ code: "EINVAL", arg: "pages" });
      expect(counts(m, pfn).ref).toBe(1);
    }
  });
});

describe("the pinned-writeback checker's log of a THP pin", () => {
  it("names the pin call for any subpage of the blocks it took, and no call for a page it did not take", async () => {
    const m = await gupMachine({ mm: { thp: "madvise" } });
    const p = m.spawn();
    const a = buffer(p, 2048, { huge: true }); // four THPs
    const frames = framesOf(p, a, 2048);
    // 700 pages from the middle of the first THP: two blocks, the second one partly.
    const pages = new Float64Array(700);
    expect(pinUserPagesFast(p, a + 300 * PAGE, 700, {}, pages)).toBe(700);
    const k = m.kernel;
    const inode = { path: "/thp" } as Inode;
    const named = (pfn: number): string | undefined => {
      const before = k.checkers.reports.length;
      k.checkers.writebackPinned(inode, 0, pfn, "test");
      return k.checkers.reports[before]!.sites.pin?.fn;
    };
    for (const i of [300, 511, 512, 999]) expect(named(frames[i]!)).toBe("pinUserPagesFast");
    for (const i of [299, 1000, 1500]) expect(named(frames[i]!)).toBeUndefined();
    expect(a % HPAGE).toBe(0);
    unpinUserPages(m, pages, 700);
  });
});
