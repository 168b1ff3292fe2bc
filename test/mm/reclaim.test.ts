/**
 * Page reclaim (mm/vmscan.c shrink_node, shrink_folio_list; try_to_unmap; swap): what is
 * evicted, what is never evicted, and that nothing is lost on the way: anonymous pages go to
 * swap and come back byte for byte, dirty file pages reach the disk first, frames really go
 * back to the buddy allocator, and the LRU forgets pages that were freed under it.
 */
import { describe, expect, it } from "vitest";
import * as F from "../../src/abi/frame.js";
import * as X from "../../src/abi/x86.js";
import { createMachine, DmaError, type CreateOptions, type Machine, type Process } from "../../src/index.js";
import { shrink } from "../../src/mm/vmscan.js";
import { swapInfo, swpKind, swpOffset } from "../../src/mm/swap.js";

const PAGE = 4096;

function machine(o: CreateOptions = {}): Promise<Machine> {
  return createMachine({
    memory: { normal: "64MiB", movable: "32MiB", cma: 0 },
    cpus: 2,
    swap: "4MiB",
    mm: { thp: "never" },
    ...o,
  });
}

/** 4 KiB of bytes that differ per @seed and per offset. */
function pattern(seed: number): Uint8Array {
  const b = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) b[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff;
  return b;
}

function fill(p: Process, a: number, pages: number, seed: number): void {
  for (let i = 0; i < pages; i++) p.write(a + i * PAGE, pattern(seed + i));
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function holds(p: Process, a: number, i: number, seed: number): boolean {
  return same(p.read(a + i * PAGE, PAGE), pattern(seed + i));
}

const pte = (p: Process, va: number) => p.mm.pgd.ptepGet(va);
const pfnAt = (p: Process, va: number): number => pte(p, va).info.pfn;
const isSwapped = (p: Process, va: number): boolean => {
  const e = pte(p, va).pte;
  return e !== 0n && !(e & BigInt(X.PTE_P)) && swpKind(e) === X.SWP_SWAP;
};
const counter = (m: Machine, name: string): number => m.trace.counters.get(name) ?? 0;

function dmaError(fn: () => unknown): DmaError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return e;
    throw e;
  }
  throw new Error("expected a DmaError");
}

describe("anonymous pages go to swap and come back", () => {
  it("keeps the data byte for byte: the PTE becomes a SWP_SWAP entry, rss.swap goes up then down, the frames are freed", async () => {
    const m = await machine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 8 * PAGE }));
    fill(p, a, 8, 1);
    const pfns = Array.from({ length: 8 }, (_, i) => pfnAt(p, a + i * PAGE));
    const free0 = m.phys.nrFreePages();
    const r = shrink(k, 8, { file: false });
    expect(r).toMatchObject({ reclaimed: 8, swapped: 8, written: 0, swapFull: false });
    // Every page was just faulted in (A set): each is met, rotated, and met again.
    expect(r.rotated).toBe(8);
    expect(r.scanned).toBe(16);
    for (let i = 0; i < 8; i++) {
      const e = pte(p, a + i * PAGE);
      expect(e.info.present).toBe(false);
      expect(swpKind(e.pte)).toBe(X.SWP_SWAP);
      // The page was exclusive to this process: pte_swp_mkexclusive.
      expect((e.pte & BigInt(X.SWP_EXCLUSIVE)) !== 0n).toBe(true);
    }
    expect(p.mm.rss).toMatchObject({ anon: 0, swap: 8 });
    expect(swapInfo(k).used).toBe(8);
    // The frames went back to the buddy allocator.
    expect(m.phys.nrFreePages()).toBe(free0 + 8);
    for (const pfn of pfns) expect(m.page(pfn).refcount).toBe(0);
    for (let i = 0; i < 8; i++) expect(holds(p, a, i, 1)).toBe(true);
    expect(p.mm.rss).toMatchObject({ anon: 8, swap: 0 });
    expect(swapInfo(k).used).toBe(0);
    expect(counter(m, "mm.pswpout")).toBe(8);
    expect(counter(m, "mm.pswpin")).toBe(8);
    expect(counter(m, "mm.pages_reclaimed")).toBe(8);
    // Swapped back in exclusive and alone: a write reuses the page in place.
    const before = pfnAt(p, a);
    p.write(a, new Uint8Array([0xee]));
    expect(pfnAt(p, a)).toBe(before);
  });

  it("a swapped page shared by fork is read correctly by both processes, and a later write stays private", async () => {
    const m = await machine();
    const k = m.kernel;
    const parent = m.spawn(0);
    const a = Number(parent.mmap({ length: 2 * PAGE }));
    fill(parent, a, 2, 40);
    const child = parent.fork();
    const pfn = pfnAt(parent, a);
    expect(m.page(pfn).mapcount).toBe(2);
    const r = shrink(k, 2, { file: false });
    expect(r.swapped).toBe(2);
    expect(isSwapped(parent, a) && isSwapped(child, a)).toBe(true);
    // One slot, one reference per mapping; neither entry is exclusive.
    const slot = swpOffset(pte(parent, a).pte);
    expect(swpOffset(pte(child, a).pte)).toBe(slot);
    expect(k.core.x.swapCount(slot)).toBe(2);
    expect(pte(parent, a).pte & BigInt(X.SWP_EXCLUSIVE)).toBe(0n);
    expect(parent.mm.rss.swap).toBe(2);
    expect(child.mm.rss.swap).toBe(2);
    expect(swapInfo(k).used).toBe(2);
    expect(holds(parent, a, 0, 40)).toBe(true);
    expect(k.core.x.swapCount(slot)).toBe(1);
    expect(holds(child, a, 0, 40)).toBe(true);
    child.write(a + 10, new Uint8Array([1, 2, 3]));
    expect(holds(parent, a, 0, 40)).toBe(true);
    expect([...child.read(a + 10, 3)]).toEqual([1, 2, 3]);
    // The second page is still in swap for both; exit drops the child's reference.
    child.exit();
    expect(swapInfo(k).used).toBe(1);
    expect(holds(parent, a, 1, 40)).toBe(true);
    expect(swapInfo(k).used).toBe(0);
  });

  it("swap exhaustion stops anonymous reclaim without losing data", async () => {
    const m = await machine({ swap: "16KiB" }); // 4 slots
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 8 * PAGE }));
    fill(p, a, 8, 7);
    const r = shrink(k, 8, { file: false });
    expect(r.swapped).toBe(4);
    expect(r.reclaimed).toBe(4);
    expect(r.swapFull).toBe(true);
    expect(r.skipped.noSwap).toBeGreaterThan(0);
    expect(counter(m, "mm.swap_full")).toBe(1);
    expect(swapInfo(k)).toEqual({ total: 4, used: 4, free: 0 });
    expect(p.mm.rss).toMatchObject({ anon: 4, swap: 4 });
    // With swap full from the start, the anonymous list is not even scanned.
    const again = shrink(k, 8, { file: false });
    expect(again).toMatchObject({ scanned: 0, reclaimed: 0, swapFull: true });
    for (let i = 0; i < 8; i++) expect(holds(p, a, i, 7)).toBe(true);
    expect(swapInfo(k).used).toBe(0);
  });

  it("a machine without swap reclaims no anonymous page", async () => {
    const m = await machine({ swap: 0 });
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 2 * PAGE }));
    fill(p, a, 2, 3);
    expect(shrink(m.kernel, 2)).toMatchObject({ reclaimed: 0, swapFull: true });
    expect(holds(p, a, 0, 3) && holds(p, a, 1, 3)).toBe(true);
  });
});

describe("what reclaim never evicts", () => {
  it("a page mapped in a VM_LOCKED VMA (mlock), until munlock", async () => {
    const m = await machine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE }));
    fill(p, a, 4, 20);
    p.mlock(a + PAGE, 2 * PAGE);
    expect(p.maps().map((e) => (Number(e.end) - Number(e.start)) / PAGE)).toEqual([1, 2, 1]);
    const r = shrink(k, 4, { file: false });
    expect(r.swapped).toBe(2);
    expect(r.skipped.mlocked).toBeGreaterThanOrEqual(2);
    expect(isSwapped(p, a) && isSwapped(p, a + 3 * PAGE)).toBe(true);
    expect(pte(p, a + PAGE).info.present && pte(p, a + 2 * PAGE).info.present).toBe(true);
    p.munlock(a + PAGE, 2 * PAGE);
    expect(p.maps()).toHaveLength(1); // merged back
    expect(shrink(k, 4, { file: false }).swapped).toBe(2);
    for (let i = 0; i < 4; i++) expect(holds(p, a, i, 20)).toBe(true);
  });

  it("mlock refuses a range with a hole with ENOMEM, changing nothing; it rounds the range out and populates it with write faults", async () => {
    const m = await machine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE }));
    p.munmap(a + 3 * PAGE, PAGE);
    const state = (): string => JSON.stringify({ maps: p.maps(), flags: p.mm.vmas.all().map((v) => v.flags), rss: p.mm.rss });
    const before = state();
    const e = dmaError(() => p.mlock(a, 4 * PAGE));
    expect(e.code).toBe("ENOMEM");
    expect(state()).toBe(before);
    expect(p.mm.rss.anon).toBe(0);
    p.mlock(a + 100, 2 * PAGE); // [a + 100, a + 8292) rounds out to three pages
    expect(p.mm.rss.anon).toBe(3);
    // populate_vma_page_range: a private writable mapping is populated with write faults.
    for (let i = 0; i < 3; i++) expect(pte(p, a + i * PAGE).info.write).toBe(true);
    expect(p.mm.vmas.all().every((v) => (v.flags & 0x2000) !== 0)).toBe(true); // VM_LOCKED
    p.mlock(a, 0); // a length of 0 does nothing
  });

  it("a pinned page (FOLL_PIN: refcount + GUP_PIN_COUNTING_BIAS), nor one held by FOLL_GET, until released", async () => {
    const m = await machine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 3 * PAGE }));
    fill(p, a, 3, 60);
    const pinned = pfnAt(p, a);
    const got = pfnAt(p, a + PAGE);
    k.folioRef(pinned, F.GUP_PIN_COUNTING_BIAS);
    k.folioRef(got, 1);
    const r = shrink(k, 3, { file: false });
    expect(r.swapped).toBe(1);
    expect(r.skipped.pinned).toBeGreaterThanOrEqual(1);
    expect(r.skipped.busy).toBeGreaterThanOrEqual(1);
    expect(pfnAt(p, a)).toBe(pinned);
    expect(pfnAt(p, a + PAGE)).toBe(got);
    expect(isSwapped(p, a + 2 * PAGE)).toBe(true);
    // The device's view of the pinned page is the process's: same frame, same bytes.
    expect(holds(p, a, 0, 60)).toBe(true);
    k.folioRef(pinned, -F.GUP_PIN_COUNTING_BIAS);
    k.folioRef(got, -1);
    expect(isSwapped(p, a + 2 * PAGE)).toBe(true);
    expect(shrink(k, 2, { file: false }).swapped).toBe(2);
    expect(isSwapped(p, a) && isSwapped(p, a + PAGE)).toBe(true);
    for (let i = 0; i < 3; i++) expect(holds(p, a, i, 60)).toBe(true);
  });

  it("a locked page (PG_locked), a large folio (THP, splitting not modeled) and shmem pages are kept and counted", async () => {
    const m = await machine({ mm: { thp: "always" } });
    const k = m.kernel;
    const p = m.spawn(0);
    const small = Number(p.mmap({ length: PAGE }));
    fill(p, small, 1, 80);
    k.pageFlags(pfnAt(p, small), F.PG_locked, 0);
    const huge = Number(p.mmap({ length: 2 * 1024 * 1024 }));
    p.write(huge + 5, new Uint8Array([9]));
    expect(pte(p, huge).level).toBe(2);
    const shm = Number(p.mmap({ length: PAGE, shared: true }));
    fill(p, shm, 1, 81);
    const r = shrink(k, 10, { file: false });
    expect(r.reclaimed).toBe(0);
    // Each list is scanned up to twice its length: every kept page is met twice.
    expect(r.skipped).toMatchObject({ locked: 2, large: 2, shmem: 2 });
    expect(r.scanned).toBe(6);
    k.pageFlags(pfnAt(p, small), 0, F.PG_locked);
    expect(holds(p, small, 0, 80) && holds(p, shm, 0, 81)).toBe(true);
    expect([...p.read(huge + 5, 1)]).toEqual([9]);
  });
});

describe("file pages", () => {
  it("dirty pages are written to disk before eviction and read back from disk on the next access", async () => {
    const m = await machine();
    const k = m.kernel;
    const inode = m.fs.create("/data", { size: 4 * PAGE });
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE, shared: true, file: "/data" }));
    fill(p, a, 4, 100);
    expect(p.mm.rss.file).toBe(4);
    expect(inode.disk.size).toBe(0);
    const pfns = [0, 1, 2, 3].map((i) => pfnAt(p, a + i * PAGE));
    const free0 = m.phys.nrFreePages();
    const r = shrink(k, 4, { anon: false });
    expect(r).toMatchObject({ reclaimed: 4, written: 4, swapped: 0 });
    expect(inode.pages.size).toBe(0);
    for (let i = 0; i < 4; i++) {
      expect(same(inode.disk.get(i)!, pattern(100 + i))).toBe(true);
      expect(pte(p, a + i * PAGE).pte).toBe(0n); // unmapped, not a swap entry
    }
    expect(p.mm.rss.file).toBe(0);
    // The four frames are free (and the page tables that emptied with them).
    expect(m.phys.nrFreePages()).toBeGreaterThanOrEqual(free0 + 4);
    for (const pfn of pfns) expect(m.page(pfn).refcount).toBe(0);
    const reads = counter(m, "mm.pagecache_reads");
    for (let i = 0; i < 4; i++) expect(holds(p, a, i, 100)).toBe(true);
    expect(counter(m, "mm.pagecache_reads")).toBe(reads + 4);
    expect(same(m.fs.read("/data", 2 * PAGE, PAGE), pattern(102))).toBe(true);
  });

  it("clean page-cache pages are dropped without a write; pages dirtied by write() are written first", async () => {
    const m = await machine();
    const k = m.kernel;
    m.fs.create("/clean", { size: 2 * PAGE });
    m.fs.create("/dirty", { size: 0 });
    m.fs.read("/clean", 0, 2 * PAGE);
    m.fs.write("/dirty", 0, pattern(5));
    const r = shrink(k, 3, { anon: false });
    expect(r).toMatchObject({ reclaimed: 3, written: 1 });
    expect(m.fs.lookup("/clean").disk.size).toBe(0);
    expect(same(m.fs.read("/dirty", 0, PAGE), pattern(5))).toBe(true);
  });

  it("a page mapped by two processes is unmapped from both before it is dropped", async () => {
    const m = await machine();
    m.fs.create("/s", { size: PAGE });
    const p1 = m.spawn(0);
    const p2 = m.spawn(1);
    const a1 = Number(p1.mmap({ length: PAGE, shared: true, file: "/s" }));
    const a2 = Number(p2.mmap({ length: PAGE, shared: true, file: "/s" }));
    p1.write(a1, pattern(9));
    expect(same(p2.read(a2, PAGE), pattern(9))).toBe(true);
    expect(m.page(pfnAt(p1, a1)).mapcount).toBe(2);
    expect(shrink(m.kernel, 1, { anon: false })).toMatchObject({ reclaimed: 1, written: 1 });
    expect(pte(p1, a1).pte).toBe(0n);
    expect(pte(p2, a2).pte).toBe(0n);
    expect(same(p2.read(a2, PAGE), pattern(9))).toBe(true);
  });
});

describe("the LRU", () => {
  it("gives a page referenced since the last scan a second chance; clearing A needs no flush, so a TLB hit leaves no trace", async () => {
    const m = await machine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 3 * PAGE }));
    fill(p, a, 3, 30); // LRU order: a, b, c
    const [va, vb, vc] = [a, a + PAGE, a + 2 * PAGE];
    // All three carry A: each is rotated once, then the oldest goes.
    expect(shrink(k, 1, { file: false })).toMatchObject({ reclaimed: 1, rotated: 3 });
    expect(isSwapped(p, va)).toBe(true);
    expect(pte(p, vb).info.accessed || pte(p, vc).info.accessed).toBe(false);
    // c is read through the translation its CPU still caches: no walk, no A bit.
    p.read(vc, 1);
    expect(pte(p, vc).info.accessed).toBe(false);
    // b's translation is flushed, so its read walks the tables and sets A.
    p.cpu.invlpg(vb);
    p.read(vb, 1);
    expect(pte(p, vb).info.accessed).toBe(true);
    const r = shrink(k, 1, { file: false });
    expect(r).toMatchObject({ reclaimed: 1, rotated: 1 });
    expect(pte(p, vb).info.present).toBe(true);
    expect(isSwapped(p, vc)).toBe(true);
    // PG_referenced counts as a reference too.
    k.pageFlags(pfnAt(p, vb), F.PG_referenced, 0);
    expect(shrink(k, 1, { file: false })).toMatchObject({ reclaimed: 1, rotated: 1 });
    for (let i = 0; i < 3; i++) expect(holds(p, a, i, 30)).toBe(true);
  });

  it("ignores freed pages: their entries are dropped lazily, never scanned", async () => {
    const m = await machine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE }));
    fill(p, a, 4, 50);
    const pfns = [0, 1, 2, 3].map((i) => pfnAt(p, a + i * PAGE));
    p.munmap(a, 4 * PAGE);
    for (const pfn of pfns) {
      expect(k.lru.anon.has(pfn)).toBe(true); // still listed
      expect(m.page(pfn).flags).not.toContain("lru"); // but freed
    }
    const r = shrink(k, 4);
    expect(r).toMatchObject({ scanned: 0, reclaimed: 0 });
    for (const pfn of pfns) expect(k.lru.anon.has(pfn)).toBe(false);
  });

  it("moves a reused frame to the list of its new use, and drops a page the file dropped (as truncate does)", async () => {
    const m = await machine();
    const k = m.kernel;
    // An anonymous page is freed, and its frame is reused by the page cache.
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE }));
    fill(p, a, 1, 1);
    const anonPfn = pfnAt(p, a);
    p.munmap(a, PAGE);
    m.fs.create("/u", { size: PAGE });
    m.fs.read("/u", 0, PAGE);
    const reused = m.fs.lookup("/u").pages.get(0)!;
    expect(reused).toBe(anonPfn); // the buddy allocator hands back the frame just freed
    // lru_cache_add for the page cache takes the frame off the anonymous list it was left on.
    expect(k.lru.anon.has(reused)).toBe(false);
    expect(k.lru.file.has(reused)).toBe(true);
    // A page-cache page is dropped by its file and freed.
    const inode = m.fs.create("/t", { size: 2 * PAGE });
    m.fs.read("/t", 0, 2 * PAGE);
    const dropped = inode.pages.get(0)!;
    inode.pages.delete(0);
    expect(k.folioRef(dropped, -1)).toBe(0); // the cache's reference was the last
    expect(k.lru.file.has(dropped)).toBe(true);
    // The anonymous list must not touch the page cache's page.
    expect(shrink(k, 4, { file: false })).toMatchObject({ scanned: 0, reclaimed: 0 });
    expect(k.lru.anon.has(reused)).toBe(false);
    expect(m.fs.lookup("/u").pages.get(0)).toBe(reused);
    // The file list holds two live pages; the freed one is dropped unseen.
    const r = shrink(k, 4, { anon: false });
    expect(r).toMatchObject({ scanned: 2, reclaimed: 2, skipped: { busy: 0 } });
    expect(k.lru.file.has(dropped)).toBe(false);
  });

  it("reports its work in the mm.reclaim event, with the modeled time of the swap writes", async () => {
    const m = await machine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 2 * PAGE }));
    fill(p, a, 2, 1);
    const r = shrink(m.kernel, 2);
    const ev = m.trace.events().filter((e) => e.name === "mm.reclaim").at(-1)!;
    expect(ev.args).toEqual({ scanned: r.scanned, reclaimed: 2, swapped: 2, written: 0 });
    expect(ev.dur).toBe(r.ns);
    expect(r.ns).toBeGreaterThanOrEqual(2 * m.costs.blockWrite.ns + r.scanned * m.costs.memAccess.ns);
  });

  it("refuses bad arguments with EINVAL naming them, changing nothing", async () => {
    const m = await machine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE }));
    fill(p, a, 1, 2);
    const lru = [...m.kernel.lru.anon];
    expect(dmaError(() => shrink(m.kernel, -1)).arg).toBe("nrToReclaim");
    expect(dmaError(() => shrink(m.kernel, 1.5)).arg).toBe("nrToReclaim");
    expect(dmaError(() => shrink(m.kernel, 1, { anon: "yes" as unknown as boolean })).arg).toBe("opts.anon");
    expect([...m.kernel.lru.anon]).toEqual(lru);
    expect(pte(p, a).info.present).toBe(true);
    expect(m.trace.events().some((e) => e.name === "mm.reclaim")).toBe(false);
  });
});
