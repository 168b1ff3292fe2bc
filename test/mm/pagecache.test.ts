/**
 * The page cache: shared and private file mappings, per-page dirty and writeback state,
 * writeback with page_mkclean, the clean-page set_page_dirty path, truncate, and fsdax.
 * Each test names the kernel rule it checks.
 */
import { describe, expect, it } from "vitest";
import { DmaError, type Machine, type Process } from "../../src/index.js";
import { smallMachine } from "../helpers.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const PIN = 1024; // GUP_PIN_COUNTING_BIAS: what one FOLL_PIN adds to a small folio

/** A machine with 16 MiB of pmem for fsdax files. */
function pcMachine(): Promise<Machine> {
  return smallMachine({ memory: { normal: "64MiB", movable: "16MiB", cma: 0, pmem: "16MiB" } });
}

/** The present entry mapping @va in @p (its decoded bits). */
function pte(p: Process, va: number) {
  return p.mm.pgd.ptepGet(va).info;
}

/** The error a call throws (failing the test if it throws none). */
function errorOf(fn: () => unknown): DmaError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return e;
    throw e;
  }
  throw new Error("expected a DmaError");
}

/** Two processes on different CPUs, each mapping all of @path MAP_SHARED. */
function twoSharers(m: Machine, path: string, length: number) {
  const a = m.spawn(0);
  const b = m.spawn(1);
  const va = Number(a.mmap({ length, file: path, shared: true }));
  const vb = Number(b.mmap({ length, file: path, shared: true }));
  return { a, b, va, vb };
}

describe("file mappings and the page cache", () => {
  it("MAP_SHARED: a write by one process is seen by another mapping the file and by read(2), through one cached page", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 2 * 4096 });
    const { a, b, va, vb } = twoSharers(m, "/f", 2 * 4096);
    a.write(va + 4096 + 7, enc("shared"));
    expect(dec(b.read(vb + 4096 + 7, 6))).toBe("shared");
    expect(dec(m.fs.read("/f", 4096 + 7, 6))).toBe("shared");
    const pfn = pte(a, va + 4096).pfn;
    expect(pte(b, vb + 4096).pfn).toBe(pfn);
    expect(m.fs.lookup("/f").pages.get(1)).toBe(pfn);
    // One reference for the cache and one per mapping; two page-table mappings.
    expect(m.page(pfn)).toMatchObject({ refcount: 3, mapcount: 2 });
    expect(m.page(pfn).flags).toContain("dirty");
  });

  it("write(2) into the page cache is seen at once through existing shared mappings (same frame)", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4096 });
    const { a, va } = twoSharers(m, "/f", 4096);
    expect(a.read(va, 4)).toEqual(new Uint8Array(4)); // faulted in: the cached page is mapped
    m.fs.write("/f", 0, enc("data"));
    expect(dec(a.read(va, 4))).toBe("data");
  });

  it("MAP_PRIVATE: a write copies the page (COW); the file, read(2) and other mappings never see it", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4096 });
    m.fs.write("/f", 0, enc("original"));
    m.fs.writeback("/f");
    const { b, vb } = twoSharers(m, "/f", 4096);
    const c = m.spawn(0);
    const vc = Number(c.mmap({ length: 4096, file: "/f" })); // private
    expect(dec(c.read(vc, 8))).toBe("original");
    const cached = m.fs.lookup("/f").pages.get(0)!;
    expect(pte(c, vc).pfn).toBe(cached); // a read maps the cached page itself
    c.write(vc, enc("PRIVATE!"));
    expect(pte(c, vc).pfn).not.toBe(cached);
    expect(m.page(pte(c, vc).pfn).flags).toContain("anon");
    expect(dec(c.read(vc, 8))).toBe("PRIVATE!");
    expect(dec(m.fs.read("/f", 0, 8))).toBe("original");
    expect(dec(b.read(vb, 8))).toBe("original");
    expect(m.page(cached).flags).not.toContain("dirty");
    expect(m.fs.writeback().pages).toBe(0);
  });

  it("MAP_PRIVATE: pages not yet written are the cache's, so later write(2)s show through them until COW", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4096 });
    const c = m.spawn(0);
    const vc = Number(c.mmap({ length: 4096, file: "/f", prot: "r" }));
    expect(c.read(vc, 3)).toEqual(new Uint8Array(3));
    m.fs.write("/f", 0, enc("new"));
    expect(dec(c.read(vc, 3))).toBe("new");
  });
});

describe("writeback (filemap_write_and_wait, page_mkclean)", () => {
  it("clears PG_dirty and puts the bytes on disk: after drop_caches the file reads them back from disk", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 3 * 4096 });
    const { a, va } = twoSharers(m, "/f", 3 * 4096);
    a.write(va + 2 * 4096 + 100, enc("persist"));
    const pfn = pte(a, va + 2 * 4096).pfn;
    expect(m.fs.lookup("/f").disk.has(2)).toBe(false);
    expect(m.fs.writeback("/f")).toEqual({ pages: 1, pinned: 0 });
    expect(m.page(pfn).flags).not.toContain("dirty");
    expect(m.page(pfn).flags).not.toContain("writeback");
    a.munmap(va, 3 * 4096);
    expect(m.fs.dropCaches()).toBe(1);
    expect(m.fs.lookup("/f").pages.size).toBe(0);
    expect(m.page(pfn).refcount).toBe(0); // freed
    expect(dec(m.fs.read("/f", 2 * 4096 + 100, 7))).toBe("persist");
  });

  it("write-protects and cleans every mapping and flushes the TLBs: the next CPU write faults (wp_page_shared) and re-dirties the page", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4096 });
    const { a, b, va, vb } = twoSharers(m, "/f", 4096);
    a.write(va, enc("a"));
    b.write(vb + 1, enc("b"));
    expect(pte(a, va)).toMatchObject({ write: true, dirty: true });
    expect(pte(b, vb)).toMatchObject({ write: true, dirty: true });
    // Both CPUs hold writable translations in their TLBs now.
    expect(a.cpu.translate(va, { write: true, user: true }).ok).toBe(true);
    expect(m.fs.writeback("/f").pages).toBe(1);
    const pfn = pte(a, va).pfn;
    expect(m.page(pfn).flags).not.toContain("dirty");
    for (const [p, v] of [[a, va], [b, vb]] as const) {
      expect(pte(p, v)).toMatchObject({ present: true, write: false, dirty: false });
      // No stale writable TLB entry survives: a user write through the CPU faults
      // (#PF, error code P|W|U = 7).
      const t = p.cpu.translate(v, { write: true, user: true });
      expect(t.ok).toBe(false);
      if (!t.ok) expect(t.fault).toMatchObject({ vector: "#PF", errorCode: 7 });
    }
    const wp = m.trace.counters.get("mm.fault.wp_shared") ?? 0;
    b.write(vb + 2, enc("c"));
    expect(m.trace.counters.get("mm.fault.wp_shared")).toBe(wp + 1);
    expect(m.page(pfn).flags).toContain("dirty");
    expect(pte(b, vb)).toMatchObject({ write: true, dirty: true });
    expect(pte(a, va).write).toBe(false); // only the writer's entry is made writable
    expect(m.fs.writeback("/f").pages).toBe(1);
    expect(m.fs.lookup("/f").disk.get(0)!.subarray(0, 3)).toEqual(enc("abc"));
  });

  it("writes only dirty pages: a second writeback with no new writes writes nothing", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4 * 4096 });
    m.fs.write("/f", 4096, enc("x"));
    m.fs.write("/f", 3 * 4096, enc("y"));
    expect(m.fs.read("/f", 0, 1)).toEqual(new Uint8Array(1)); // page 0 cached, clean
    expect(m.fs.writeback("/f")).toEqual({ pages: 2, pinned: 0 });
    expect(m.fs.writeback("/f")).toEqual({ pages: 0, pinned: 0 });
    expect([...m.fs.lookup("/f").disk.keys()].sort()).toEqual([1, 3]);
  });

  it("emits mm.writeback with the file, pages written and pinned count; sync emits one per file written", async () => {
    const m = await pcMachine();
    m.fs.create("/a", { size: 8192 });
    m.fs.create("/b", { size: 8192 });
    m.fs.create("/c", { size: 8192 });
    m.fs.write("/a", 0, new Uint8Array(8192).fill(1));
    m.fs.write("/b", 100, enc("b"));
    m.trace.clear();
    expect(m.fs.writeback()).toEqual({ pages: 3, pinned: 0 });
    const evs = m.trace.events().filter((e) => e.name === "mm.writeback").map((e) => e.args);
    expect(evs).toEqual([
      { path: "/a", pages: 2, pinned: 0 },
      { path: "/b", pages: 1, pinned: 0 },
    ]);
    expect(m.trace.counters.get("mm.writeback_pages")).toBe(3);
    m.trace.clear();
    expect(m.fs.fsync("/c")).toEqual({ pages: 0, pinned: 0 });
    expect(m.trace.events().filter((e) => e.name === "mm.writeback").map((e) => e.args)).toEqual([
      { path: "/c", pages: 0, pinned: 0 },
    ]);
  });

  it("[O1] writes back a page that looks DMA-pinned, reports it, and never learns of the device's later writes", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4096 });
    const { a, va } = twoSharers(m, "/f", 4096);
    a.write(va, enc("cpu"));
    const pfn = pte(a, va).pfn;
    m.kernel.folioRef(pfn, PIN); // emulated FOLL_PIN: refcount += GUP_PIN_COUNTING_BIAS
    m.trace.clear();
    expect(m.fs.writeback("/f")).toEqual({ pages: 1, pinned: 1 });
    expect(m.trace.events().find((e) => e.name === "mm.writeback")?.args).toEqual({ path: "/f", pages: 1, pinned: 1 });
    expect(m.trace.counters.get("mm.writeback_pinned_pages")).toBe(1);
    expect(dec(m.fs.lookup("/f").disk.get(0)!.subarray(0, 3))).toBe("cpu");
    // The device writes through its pin: no page table, no fault, no PG_dirty.
    m.phys.write(pfn * 4096, enc("dma"));
    expect(m.page(pfn).flags).not.toContain("dirty");
    expect(m.fs.writeback("/f").pages).toBe(0);
    expect(dec(m.fs.lookup("/f").disk.get(0)!.subarray(0, 3))).toBe("cpu"); // the device's data is lost
    expect(dec(a.read(va, 3))).toBe("dma");
  });

  it("a pinned page is not dropped by drop_caches (held beyond the cache), a clean unpinned one is", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 2 * 4096 });
    m.fs.write("/f", 0, enc("p"));
    m.fs.write("/f", 4096, enc("q"));
    m.fs.writeback();
    const pinned = m.fs.lookup("/f").pages.get(0)!;
    m.kernel.folioRef(pinned, PIN);
    expect(m.fs.dropCaches()).toBe(1);
    expect([...m.fs.lookup("/f").pages.keys()]).toEqual([0]);
  });

  it("block_write_full_page: the page straddling end of file is zeroed past it at writeback, in memory and on disk", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 100 });
    const a = m.spawn(0);
    const va = Number(a.mmap({ length: 4096, file: "/f", shared: true }));
    a.write(va + 98, enc("ABCD")); // two bytes inside the file, two past its end
    expect(dec(a.read(va + 98, 4))).toBe("ABCD"); // the mapping covers the whole page
    m.fs.writeback("/f");
    const disk = m.fs.lookup("/f").disk.get(0)!;
    expect([...disk.subarray(98, 102)]).toEqual([65, 66, 0, 0]);
    expect([...a.read(va + 98, 4)]).toEqual([65, 66, 0, 0]);
  });
});

describe("truncate (truncate_setsize, truncate_pagecache, unmap_mapping_range)", () => {
  it("shrinking unmaps the cut pages from every process, frees them, and makes later accesses SIGBUS", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4 * 4096 });
    const { a, b, va, vb } = twoSharers(m, "/f", 4 * 4096);
    a.write(va, enc("keep"));
    a.write(va + 2 * 4096, enc("cut2"));
    b.write(vb + 3 * 4096, enc("cut3"));
    const cut = [pte(a, va + 2 * 4096).pfn, pte(b, vb + 3 * 4096).pfn];
    b.read(vb + 2 * 4096, 1);
    const rssA = a.mm.rss.file;
    const free = m.phys.nrFreePages();
    const r = m.fs.truncate("/f", 2 * 4096);
    expect(r).toEqual({ unmapped: 3, dropped: 2, kept: 0 }); // a maps page 2, b pages 2 and 3
    for (const [p, v] of [[a, va], [b, vb]] as const) {
      expect(p.mm.pgd.ptepGet(v + 2 * 4096).pte).toBe(0n);
      expect(p.mm.pgd.ptepGet(v + 3 * 4096).pte).toBe(0n);
      expect(p.cpu.translate(v + 2 * 4096, { user: true }).ok).toBe(false); // TLBs flushed
    }
    expect(a.mm.rss.file).toBe(rssA - 1);
    for (const pfn of cut) expect(m.page(pfn).refcount).toBe(0);
    expect(m.phys.nrFreePages()).toBeGreaterThanOrEqual(free + 2);
    expect([...m.fs.lookup("/f").pages.keys()].sort()).toEqual([0]);
    expect(errorOf(() => a.read(va + 2 * 4096, 1)).message).toMatch(/^EFAULT: SIGBUS/);
    expect(errorOf(() => b.write(vb + 3 * 4096, enc("x"))).message).toMatch(/^EFAULT: SIGBUS/);
    expect(dec(a.read(va, 4))).toBe("keep");
    expect(dec(b.read(vb, 4))).toBe("keep");
    expect(m.fs.lookup("/f").size).toBe(2 * 4096);
    expect(m.fs.read("/f", 0, 5 * 4096).length).toBe(2 * 4096);
  });

  it("keeps the bytes before the cut and zeroes the rest of the new last page, in memory and on disk", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 8192 });
    const { a, va } = twoSharers(m, "/f", 8192);
    a.write(va + 4000, enc("0123456789"));
    m.fs.writeback("/f");
    m.fs.truncate("/f", 4005);
    expect(dec(m.fs.read("/f", 4000, 100))).toBe("01234");
    expect(dec(a.read(va + 4000, 5))).toBe("01234");
    expect(a.read(va + 4005, 5)).toEqual(new Uint8Array(5)); // the last page stays mapped
    expect(m.fs.lookup("/f").disk.get(0)!.subarray(4005, 4010)).toEqual(new Uint8Array(5));
    expect(m.fs.lookup("/f").disk.has(1)).toBe(false);
  });

  it("discards data past the cut: dirty pages are never written, and growing again reads zeros", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 3 * 4096 });
    m.fs.write("/f", 4096, enc("written back"));
    m.fs.writeback("/f");
    m.fs.write("/f", 2 * 4096, enc("dirty"));
    const dirtyPfn = m.fs.lookup("/f").pages.get(2)!;
    m.fs.truncate("/f", 4096);
    expect(m.page(dirtyPfn).refcount).toBe(0);
    expect(m.fs.writeback("/f").pages).toBe(0);
    m.fs.truncate("/f", 3 * 4096);
    expect(m.fs.read("/f", 4096, 12)).toEqual(new Uint8Array(12));
    expect(m.fs.read("/f", 2 * 4096, 5)).toEqual(new Uint8Array(5));
  });

  it("unmaps private copies too (even_cows): a MAP_PRIVATE writer's COWed page past the cut goes and the access SIGBUSes", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 2 * 4096 });
    const c = m.spawn(0);
    const vc = Number(c.mmap({ length: 2 * 4096, file: "/f" }));
    c.write(vc + 4096, enc("mine"));
    const copy = pte(c, vc + 4096).pfn;
    expect(m.page(copy).flags).toContain("anon");
    const r = m.fs.truncate("/f", 4096);
    expect(r.unmapped).toBe(1);
    expect(m.page(copy).refcount).toBe(0);
    expect(c.mm.rss.anon).toBe(0);
    expect(errorOf(() => c.read(vc + 4096, 1)).message).toMatch(/^EFAULT: SIGBUS/);
  });

  it("a pinned page leaves the cache but stays allocated (still the device's), clean and with no mapping", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 2 * 4096 });
    const { a, va } = twoSharers(m, "/f", 2 * 4096);
    a.write(va + 4096, enc("dma target"));
    const pfn = pte(a, va + 4096).pfn;
    m.kernel.folioRef(pfn, PIN);
    const r = m.fs.truncate("/f", 4096);
    expect(r).toEqual({ unmapped: 1, dropped: 1, kept: 1 });
    expect(m.fs.lookup("/f").pages.has(1)).toBe(false);
    expect(m.page(pfn)).toMatchObject({ refcount: PIN, mapcount: 0, mapping: 0 });
    expect(m.page(pfn).flags).not.toContain("dirty");
    expect(m.trace.counters.get("mm.truncate_kept_pages")).toBe(1);
    // Growing the file again gives a new page: the pinned one is nobody's file page now.
    m.fs.truncate("/f", 2 * 4096);
    expect(m.fs.read("/f", 4096, 10)).toEqual(new Uint8Array(10));
    expect(m.fs.lookup("/f").pages.get(1)).not.toBe(pfn);
    m.kernel.folioRef(pfn, -PIN); // the unpin frees it
    expect(m.page(pfn).refcount).toBe(0);
  });

  it("growing exposes zeros, not what a mapping wrote past the old end (the file system's iomap_zero_range)", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 10 });
    const a = m.spawn(0);
    const va = Number(a.mmap({ length: 4096, file: "/f", shared: true }));
    a.write(va + 8, enc("WXYZ")); // bytes 10 and 11 lie past the end
    const pfn = pte(a, va).pfn;
    expect(m.fs.truncate("/f", 4096)).toEqual({ unmapped: 0, dropped: 0, kept: 0 });
    expect(dec(m.fs.read("/f", 8, 2))).toBe("WX");
    expect(m.fs.read("/f", 10, 2)).toEqual(new Uint8Array(2));
    expect([...a.read(va + 8, 4)]).toEqual([87, 88, 0, 0]); // the mapping sees the same page
    expect(pte(a, va).pfn).toBe(pfn);
    expect(m.page(pfn).flags).toContain("dirty");
    m.fs.writeback("/f");
    expect([...m.fs.lookup("/f").disk.get(0)!.subarray(8, 12)]).toEqual([87, 88, 0, 0]);
  });

  it("emits mm.truncate with the sizes and what was unmapped, dropped and kept", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 3 * 4096 });
    m.fs.write("/f", 0, new Uint8Array(3 * 4096).fill(7));
    m.trace.clear();
    m.fs.truncate("/f", 1);
    expect(m.trace.events().find((e) => e.name === "mm.truncate")?.args).toEqual({
      path: "/f", from: 3 * 4096, to: 1, unmapped: 0, dropped: 2, kept: 0,
    });
    expect(m.fs.read("/f", 0, 10)).toEqual(new Uint8Array([7]));
  });
});

describe("fsdax files (no page cache: the pages are the blocks)", () => {
  it("maps the file's pmem blocks directly, shares them between processes, and has nothing to write back", async () => {
    const m = await pcMachine();
    const inode = m.fs.create("/dax", { size: 2 * 4096, dax: true });
    const { a, b, va, vb } = twoSharers(m, "/dax", 2 * 4096);
    a.write(va + 4096, enc("pmem"));
    expect(dec(b.read(vb + 4096, 4))).toBe("pmem");
    expect(dec(m.fs.read("/dax", 4096, 4))).toBe("pmem");
    const pfn = pte(a, va + 4096).pfn;
    expect(pfn).toBe(inode.daxPfns[1]);
    expect(m.page(pfn).zone).toBe("DEVICE");
    expect(inode.pages.size).toBe(0);
    expect(m.fs.writeback("/dax")).toEqual({ pages: 0, pinned: 0 });
    expect(pte(a, va + 4096).write).toBe(true); // nothing was cleaned
  });

  it("truncate unmaps the cut blocks everywhere, then gives them back to pmem; later accesses SIGBUS", async () => {
    const m = await pcMachine();
    const inode = m.fs.create("/dax", { size: 3 * 4096, dax: true });
    const { a, b, va, vb } = twoSharers(m, "/dax", 3 * 4096);
    a.write(va + 4090, enc("0123456789"));
    b.read(vb + 2 * 4096, 1);
    const cut = inode.daxPfns[2]!;
    const free = m.phys.nrFreePages("DEVICE");
    expect(m.fs.truncate("/dax", 4095)).toEqual({ unmapped: 2, dropped: 2, kept: 0 }); // a's block 1, b's block 2
    expect(m.phys.nrFreePages("DEVICE")).toBe(free + 2);
    expect(m.page(cut).refcount).toBe(0);
    expect(inode.daxPfns.length).toBe(1);
    expect(errorOf(() => b.read(vb + 2 * 4096, 1)).message).toMatch(/^EFAULT: SIGBUS/);
    expect(dec(a.read(va + 4090, 5))).toBe("01234");
    expect(a.read(va + 4095, 1)).toEqual(new Uint8Array(1)); // zeroed past the end
  });

  it("EBUSY: a cut block held beyond its mappings (a DMA pin) is not freed, and nothing changes", async () => {
    const m = await pcMachine();
    const inode = m.fs.create("/dax", { size: 2 * 4096, dax: true });
    const { a, va } = twoSharers(m, "/dax", 2 * 4096);
    a.write(va + 4096, enc("busy"));
    const pfn = inode.daxPfns[1]!;
    m.kernel.folioRef(pfn, PIN);
    const before = { size: inode.size, pfns: [...inode.daxPfns], page: m.page(pfn), free: m.phys.nrFreePages("DEVICE") };
    const e = errorOf(() => m.fs.truncate("/dax", 4096));
    expect(e.code).toBe("EBUSY");
    expect(e.arg).toBe("size");
    expect({ size: inode.size, pfns: [...inode.daxPfns], page: m.page(pfn), free: m.phys.nrFreePages("DEVICE") }).toEqual(before);
    expect(pte(a, va + 4096).present).toBe(true);
    m.kernel.folioRef(pfn, -PIN); // the DMA is done: now the block can go
    expect(m.fs.truncate("/dax", 4096).dropped).toBe(1);
    expect(m.page(pfn).refcount).toBe(0);
  });

  it("growing takes zeroed blocks from pmem; ENOSPC when pmem has too few, with nothing changed", async () => {
    const m = await pcMachine();
    const inode = m.fs.create("/dax", { size: 4096, dax: true });
    m.fs.truncate("/dax", 3 * 4096);
    expect(inode.daxPfns.length).toBe(3);
    expect(m.fs.read("/dax", 4096, 8192)).toEqual(new Uint8Array(8192));
    const free = m.phys.nrFreePages("DEVICE");
    const e = errorOf(() => m.fs.truncate("/dax", (3 + free + 1) * 4096));
    expect(e.code).toBe("ENOSPC");
    expect(inode.size).toBe(3 * 4096);
    expect(inode.daxPfns.length).toBe(3);
    expect(m.phys.nrFreePages("DEVICE")).toBe(free);
  });
});
