/**
 * Page migration (mm/migrate.c): a folio moves to a new frame with its bytes, flags,
 * page-cache slot and every mapping; pinned or unmovable frames refuse and nothing changes.
 */
import { describe, expect, it } from "vitest";
import * as X from "../../src/abi/x86.js";
import { DmaError, type Machine, type Process } from "../../src/index.js";
import { migratePage, migratePages } from "../../src/mm/migrate.js";
import { migrateLongtermUnpinnable } from "../../src/mm/migrate-longterm.js";
import { writebackPage } from "../../src/mm/writeback.js";
import { swpKind } from "../../src/mm/swap.js";
import { smallMachine, snapshot } from "../helpers.js";

const PAGE = 4096;
const HPAGE = 2 * 1024 * 1024;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** The frame mapping @va in @p (the 4 KiB page's, inside a huge leaf too). */
function pfnAt(p: Process, va: number): number {
  const g = p.mm.pgd.ptepGet(va);
  if (!g.info.present) throw new Error(`nothing mapped at 0x${va.toString(16)}`);
  return g.level === 2 ? g.info.pfn - (g.info.pfn % 512) + Math.floor((va % HPAGE) / PAGE) : g.info.pfn;
}

/** The DmaError @fn threw. */
function caught(fn: () => unknown): DmaError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return e;
    throw e;
  }
  throw new Error("expected a DmaError, the call returned");
}

/** Every entry of [va, va + len) of @p: no migration entry may outlive a migration. */
function migrationEntries(p: Process, va: number, len: number): number {
  let n = 0;
  for (let a = va; a < va + len; a += PAGE) {
    const { pte } = p.mm.pgd.ptepGet(a);
    if (pte !== 0n && !(pte & BigInt(X.PTE_P)) && swpKind(pte) === X.SWP_MIGRATION) n++;
  }
  return n;
}

/** struct page state a refused migration must not change, plus the LRU lists. */
function pageState(m: Machine, pfns: number[]): string {
  const k = m.kernel;
  return JSON.stringify({ pages: pfns.map((p) => m.page(p)), lru: [[...k.lru.anon], [...k.lru.file]] });
}

/**
 * A 2 MiB anonymous THP of @p, PMD-mapped at the returned address, and a 4 KiB page right
 * after it (the VMA is 2 MiB + 4 KiB). The small page is touched first, so the page tables
 * exist when the THP faults (see the report on fault.ts thpSuitable).
 */
function thp(p: Process): number {
  const a = Number(p.mmap({ length: HPAGE + PAGE, hugepage: true }));
  p.write(a + HPAGE, text("t"));
  p.write(a, text("h"));
  if (p.mm.pgd.ptepGet(a).level !== 2 || p.mm.pgd.ptepGet(a + HPAGE).level !== 1) throw new Error("no THP");
  return a;
}

const counts = (m: Machine, pfn: number) => ({ refcount: m.page(pfn).refcount, mapcount: m.page(pfn).mapcount });

describe("migratePage: contents and mappings move together", () => {
  it("an anonymous page shared by fork moves: both processes read the same bytes from the new frame", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE }));
    p.write(a + 100, text("hello migration"));
    const c = p.fork();
    const old = pfnAt(p, a);
    expect(m.page(old).zone).toBe("MOVABLE"); // user pages come from MOVABLE first
    const before = { ...counts(m, old), flags: m.page(old).flags, mapping: m.page(old).mapping, index: m.page(old).index };
    const freeMovable = m.phys.nrFreePages("MOVABLE");
    const freeNormal = m.phys.nrFreePages("NORMAL");

    const moved = migratePage(k, old, { zone: "NORMAL" });

    expect(moved).not.toBe(old);
    expect(m.page(moved).zone).toBe("NORMAL");
    expect(pfnAt(p, a)).toBe(moved);
    expect(pfnAt(c, a)).toBe(moved);
    expect(str(p.read(a + 100, 15))).toBe("hello migration");
    expect(str(c.read(a + 100, 15))).toBe("hello migration");
    // The new page is the old one's struct page over again: counts, flags, anon_vma, index.
    const after = m.page(moved);
    expect({ ...counts(m, moved), flags: after.flags, mapping: after.mapping, index: after.index }).toEqual(before);
    expect(before.refcount).toBe(2);
    // The old frame went back to the buddy allocator; the new one came from NORMAL.
    expect(m.page(old).refcount).toBe(0);
    expect(m.page(old).flags).not.toContain("lru");
    expect(m.phys.nrFreePages("MOVABLE")).toBe(freeMovable + 1);
    expect(m.phys.nrFreePages("NORMAL")).toBe(freeNormal - 1);
    expect(k.lru.anon.has(moved) && !k.lru.anon.has(old)).toBe(true);
    expect(migrationEntries(p, a, PAGE) + migrationEntries(c, a, PAGE)).toBe(0);
    // Still COW-shared: the child's write copies, the parent keeps the migrated page.
    c.write(a + 100, text("HELLO"));
    expect(pfnAt(c, a)).not.toBe(moved);
    expect(str(p.read(a + 100, 15))).toBe("hello migration");
    expect(counts(m, moved)).toEqual({ refcount: 1, mapcount: 1 });
    expect(m.trace.counters.get("mm.pgmigrate_success")).toBe(1);
    const ev = m.trace.events().find((e) => e.name === "mm.migrate");
    expect(ev?.args).toEqual({ from: old, to: moved, mappings: 2 });
  });

  it("a migration entry keeps the mapping's rights: writable+dirty stays so, read-only stays read-only", async () => {
    const m = await smallMachine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 2 * PAGE }));
    p.write(a, text("w"));
    p.write(a + PAGE, text("r"));
    p.mprotect(a + PAGE, PAGE, "r");
    const w = migratePage(m.kernel, pfnAt(p, a));
    const r = migratePage(m.kernel, pfnAt(p, a + PAGE));
    const iw = p.mm.pgd.ptepGet(a).info;
    const ir = p.mm.pgd.ptepGet(a + PAGE).info;
    expect([iw.pfn, iw.write, iw.dirty, iw.accessed]).toEqual([w, true, true, true]);
    expect([ir.pfn, ir.write]).toEqual([r, false]);
    // Exclusive stays exclusive: a write reuses the page in place, no COW copy.
    expect(m.page(w).flags).toContain("anon_exclusive");
    p.write(a + 1, text("x"));
    expect(pfnAt(p, a)).toBe(w);
  });

  it("a page-cache page moves in the cache and in every mapping: shared in two processes, private in a third", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const inode = m.fs.create("/data", { size: 2 * PAGE });
    m.fs.write("/data", 0, text("file bytes"));
    const p1 = m.spawn(0);
    const p2 = m.spawn(1);
    const a1 = Number(p1.mmap({ length: 2 * PAGE, shared: true, file: "/data" }));
    const a2 = Number(p2.mmap({ length: 2 * PAGE, shared: true, file: "/data" }));
    p1.write(a1 + 5, text("BYTES"));
    expect(str(p2.read(a2, 10))).toBe("file BYTES");
    // A third process maps the file privately: read-only, the same cache page until written.
    const p3 = m.spawn(0);
    const a3 = Number(p3.mmap({ length: PAGE, file: "/data" }));
    expect(str(p3.read(a3, 10))).toBe("file BYTES");
    const old = inode.pages.get(0)!;
    expect([pfnAt(p1, a1), pfnAt(p3, a3)]).toEqual([old, old]);
    expect(counts(m, old)).toEqual({ refcount: 4, mapcount: 3 }); // the cache + three mappings

    const moved = migratePage(k, old, { zone: "CMA" });

    expect(m.page(moved).zone).toBe("CMA");
    expect(inode.pages.get(0)).toBe(moved);
    expect([pfnAt(p1, a1), pfnAt(p2, a2), pfnAt(p3, a3)]).toEqual([moved, moved, moved]);
    expect(p3.mm.pgd.ptepGet(a3).info.write).toBe(false);
    expect(counts(m, moved)).toEqual({ refcount: 4, mapcount: 3 });
    expect(m.page(moved).mapping).toBe(inode.id);
    expect(k.lru.file.has(moved)).toBe(true);
    expect(m.page(old).refcount).toBe(0);
    // One frame behind both mappings still: a write through one is read through the other.
    p2.write(a2, text("FILE"));
    expect(str(p1.read(a1, 10))).toBe("FILE BYTES");
    expect(str(m.fs.read("/data", 0, 10))).toBe("FILE BYTES");
    // The private mapping's first write copies the (migrated) page into an anonymous one.
    p3.write(a3, text("MINE"));
    expect(str(p3.read(a3, 10))).toBe("MINE BYTES");
    expect(counts(m, moved)).toEqual({ refcount: 3, mapcount: 2 });
  });

  it("a dirty page-cache page stays dirty when it moves, and writeback writes the bytes", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const inode = m.fs.create("/log", { size: PAGE });
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE, shared: true, file: "/log" }));
    p.write(a, text("dirty through a mapping"));
    const old = inode.pages.get(0)!;
    expect(m.page(old).flags).toContain("dirty");
    const moved = migratePage(k, old);
    expect(m.page(moved).flags).toContain("dirty");
    expect(p.mm.pgd.ptepGet(a).info.dirty).toBe(true);
    expect(inode.disk.get(0)).toBeUndefined();
    const r = writebackPage(k, inode, 0, inode.pages.get(0)!);
    expect(r.written).toBe(true);
    expect(str(inode.disk.get(0)!.subarray(0, 23))).toBe("dirty through a mapping");
    expect(m.page(moved).flags).not.toContain("dirty");
  });

  it("a dirty PTE of a clean file page dirties the new page (try_to_migrate: pte_dirty -> folio_mark_dirty)", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const inode = m.fs.create("/f", { size: PAGE });
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE, shared: true, file: "/f" }));
    p.write(a, text("x"));
    const old = inode.pages.get(0)!;
    k.pageFlags(old, 0, 1 << 3); // PG_dirty cleared, as if the flag were lost; the PTE is dirty
    expect(m.page(old).flags).not.toContain("dirty");
    const moved = migratePage(k, old);
    expect(m.page(moved).flags).toContain("dirty");
  });

  it("no TLB keeps the old translation: each CPU of the mm translates to the new frame at once", async () => {
    const m = await smallMachine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE }));
    p.write(a, text("tlb"));
    const c = p.fork(); // runs on CPU 1
    expect(str(c.read(a, 3))).toBe("tlb");
    const old = pfnAt(p, a);
    // Both CPUs cache the translation to the old frame.
    for (const cpu of [0, 1]) {
      m.cpu(cpu).translate(a + 5, { user: true });
      expect(m.cpu(cpu).translate(a + 5, { user: true })).toMatchObject({ ok: true, pa: old * PAGE + 5, tlbHit: true });
    }
    const moved = migratePage(m.kernel, old);
    expect(m.cpus.every((cpu) => cpu.tlbEntries().every((e) => e.pfn !== old))).toBe(true);
    for (const cpu of [0, 1]) {
      expect(m.cpu(cpu).translate(a + 5, { user: true })).toMatchObject({ ok: true, pa: moved * PAGE + 5, tlbHit: false });
    }
  });

  it("shmem (MAP_SHARED anonymous) pages move and stay on the anon LRU", async () => {
    const m = await smallMachine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE, shared: true }));
    p.write(a, text("shm"));
    const c = p.fork();
    // fork does not copy a VMA without an anon_vma (vma_needs_copy): the child maps the
    // shmem page on its first access.
    expect(str(c.read(a, 3))).toBe("shm");
    const old = pfnAt(p, a);
    const moved = migratePage(m.kernel, old);
    expect([pfnAt(p, a), pfnAt(c, a)]).toEqual([moved, moved]);
    expect(m.page(moved).flags).toContain("swapbacked");
    expect(m.kernel.lru.anon.has(moved)).toBe(true);
    c.write(a, text("SHM"));
    expect(str(p.read(a, 3))).toBe("SHM");
  });
});

describe("migratePage: transparent huge pages", () => {
  it("a PMD-mapped THP moves as a 2 MiB folio and stays mapped by one PMD", async () => {
    const m = await smallMachine();
    const p = m.spawn(0);
    const a = thp(p);
    for (const i of [0, 1, 300, 511]) p.write(a + i * PAGE + 7, text(`page ${i}`));
    expect(p.mm.pgd.ptepGet(a).level).toBe(2);
    const old = pfnAt(p, a);
    const oldCounts = counts(m, old);
    const freeNormal = m.phys.nrFreePages("NORMAL");

    const moved = migratePage(m.kernel, old + 300); // any page of the folio moves it all

    const head = moved - 300;
    expect(head % 512).toBe(0);
    expect(m.page(head)).toMatchObject({ zone: "NORMAL", order: 9 });
    expect(m.page(head).flags).toEqual(expect.arrayContaining(["head", "anon", "anon_exclusive", "lru"]));
    expect(m.page(head + 1).head).toBe(head);
    const g = p.mm.pgd.ptepGet(a);
    expect([g.level, g.info.pfn, g.info.write]).toEqual([2, head, true]);
    expect(counts(m, head)).toEqual(oldCounts);
    expect(m.page(head + 1).refcount).toBe(1); // _entire_mapcount: one PMD mapping
    for (const i of [0, 1, 300, 511]) expect(str(p.read(a + i * PAGE + 7, `page ${i}`.length))).toBe(`page ${i}`);
    expect(m.page(old).refcount).toBe(0);
    expect(m.phys.nrFreePages("NORMAL")).toBe(freeNormal - 512);
    expect(m.cpu(0).translate(a + 300 * PAGE, { user: true })).toMatchObject({ ok: true, pa: moved * PAGE });
    expect(m.trace.counters.get("mm.thp_migration_success")).toBe(1);
    // Exclusive: a write reuses the new folio in place.
    p.write(a + 9 * PAGE, text("w"));
    expect(pfnAt(p, a)).toBe(head);
  });

  it("a THP mapped by PTEs (after a partial munmap) moves with each page's mapping", async () => {
    const m = await smallMachine();
    const p = m.spawn(0);
    const a = thp(p);
    p.write(a + 5 * PAGE, text("five"));
    p.munmap(a + 511 * PAGE, PAGE); // splits the PMD; page 511 is unmapped
    expect(p.mm.pgd.ptepGet(a).level).toBe(1);
    const old = pfnAt(p, a);
    const before = [0, 5, 510, 511].map((i) => counts(m, old + i));
    const moved = migratePage(m.kernel, old);
    expect(m.page(moved).order).toBe(9);
    expect([0, 5, 510, 511].map((i) => counts(m, moved + i))).toEqual(before);
    expect(counts(m, moved)).toEqual({ refcount: 511, mapcount: 1 });
    expect(pfnAt(p, a + 510 * PAGE)).toBe(moved + 510);
    expect(str(p.read(a + 5 * PAGE, 4))).toBe("five");
    expect(migrationEntries(p, a, HPAGE)).toBe(0);
  });
});

describe("migratePage: what cannot move refuses and changes nothing", () => {
  it("a pinned page (refcount + GUP_PIN_COUNTING_BIAS) refuses with EBUSY; unpinned, it moves", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE }));
    p.write(a, text("pinned"));
    const pfn = pfnAt(p, a);
    k.folioRef(pfn, 1024); // pin_user_pages on a small folio
    const snap = snapshot(m, [p.mm.pgd], [[a, a + 4 * PAGE]]);
    const pages = pageState(m, [pfn]);
    const e = caught(() => migratePage(k, pfn));
    expect([e.code, e.arg]).toEqual(["EBUSY", "pfn"]);
    expect(e.message).toMatch(/pinned/);
    expect(snapshot(m, [p.mm.pgd], [[a, a + 4 * PAGE]])).toBe(snap);
    expect(pageState(m, [pfn])).toBe(pages);
    // Any extra reference the kernel cannot account for refuses as well.
    k.folioRef(pfn, -1024);
    k.folioRef(pfn, 1);
    expect(caught(() => migratePage(k, pfn)).code).toBe("EBUSY");
    k.folioRef(pfn, -1);
    expect(migratePage(k, pfn)).not.toBe(pfn);
    expect(str(p.read(a, 6))).toBe("pinned");
  });

  it("a pinned THP (_pincount) refuses with EBUSY and keeps its PMD", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = thp(p);
    const head = pfnAt(p, a);
    k.folioRef(head, 1);
    k.check(k.core.x.folioPincount(head, 1), "pin"); // FOLL_PIN on a large folio
    const snap = snapshot(m, [p.mm.pgd], [[a, a + HPAGE]]);
    const e = caught(() => migratePage(k, head));
    expect(e.code).toBe("EBUSY");
    expect(e.message).toMatch(/pincount 1/);
    expect(snapshot(m, [p.mm.pgd], [[a, a + HPAGE]])).toBe(snap);
  });

  it("the zero page, free, page-table, fsdax and out-of-range frames refuse with EINVAL naming pfn", async () => {
    const m = await smallMachine({ memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB", pmem: "4MiB" } });
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE }));
    expect(p.read(a, 1)[0]).toBe(0);
    const zero = p.mm.pgd.ptepGet(a).info.pfn;
    expect(zero).toBe(k.zeroPfn);
    const dax = m.fs.create("/pmem", { size: PAGE, dax: true });
    const free = m.phys.allocPages(0);
    m.phys.freePages(free);
    const snap = snapshot(m, [p.mm.pgd], [[a, a + PAGE]]);
    for (const pfn of [zero, free, p.mm.pgd.pfn, dax.daxPfns[0]!, m.config.nrFrames, -1, 1.5]) {
      const e = caught(() => migratePage(k, pfn));
      expect([e.code, e.arg]).toEqual(["EINVAL", "pfn"]);
    }
    expect(caught(() => migratePage(k, zero)).message).toMatch(/zero page/);
    expect(snapshot(m, [p.mm.pgd], [[a, a + PAGE]])).toBe(snap);
  });

  it("a driver page mapped with remap_pfn_range cannot be isolated: EBUSY", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const buf = m.phys.allocPages(0, { gfp: "KERNEL" });
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE, devicePfn: buf }));
    expect(p.mm.pgd.ptepGet(a).info.pfn).toBe(buf);
    const snap = snapshot(m, [p.mm.pgd], [[a, a + PAGE]]);
    const e = caught(() => migratePage(k, buf));
    expect([e.code, e.arg]).toEqual(["EBUSY", "pfn"]);
    expect(snapshot(m, [p.mm.pgd], [[a, a + PAGE]])).toBe(snap);
  });

  it("a locked page or a bad target refuses; no room in the target zone is ENOMEM, nothing changed", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE }));
    p.write(a, text("x"));
    const pfn = pfnAt(p, a);
    k.pageFlags(pfn, 1, 0); // PG_locked
    expect(caught(() => migratePage(k, pfn)).code).toBe("EBUSY");
    k.pageFlags(pfn, 0, 1);
    expect(caught(() => migratePage(k, pfn, { zone: "DEVICE" as "CMA" })).arg).toBe("target.zone");
    expect(caught(() => migratePage(k, pfn, { gfp: "ATOMIC" as "KERNEL" })).arg).toBe("target.gfp");
    // Fill CMA, then ask for it.
    const held: number[] = [];
    for (;;) {
      try {
        held.push(m.phys.allocPages(0, { zone: "CMA" }));
      } catch {
        break;
      }
    }
    const snap = snapshot(m, [p.mm.pgd], [[a, a + PAGE]]);
    const pages = pageState(m, [pfn]);
    const e = caught(() => migratePage(k, pfn, { zone: "CMA" }));
    expect([e.code, e.arg]).toEqual(["ENOMEM", "target"]);
    expect(snapshot(m, [p.mm.pgd], [[a, a + PAGE]])).toBe(snap);
    expect(pageState(m, [pfn])).toBe(pages);
    const noCma = await smallMachine({ memory: { normal: "64MiB", movable: "16MiB", cma: 0 } });
    expect(caught(() => migratePage(noCma.kernel, 300, { zone: "CMA" })).arg).toBe("target.zone");
  });

  it("a copy that fails after unmapping restores every mapping and frees the new page", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE }));
    p.write(a, text("keep me"));
    const c = p.fork();
    const pfn = pfnAt(p, a);
    const leaves = () => [p, c].map((q) => q.mm.pgd.ptepGet(a).pte.toString(16));
    const before = { leaves: leaves(), page: m.page(pfn), zones: m.phys.zones(), backing: m.phys.backing() };
    const x = k.core.x;
    const real = x.copyHighpage;
    x.copyHighpage = () => {
      throw new DmaError("ENOMEM", "copyHighpage: injected failure");
    };
    try {
      expect(caught(() => migratePage(k, pfn)).code).toBe("ENOMEM");
    } finally {
      x.copyHighpage = real;
    }
    expect({ leaves: leaves(), page: m.page(pfn), zones: m.phys.zones(), backing: m.phys.backing() }).toEqual(before);
    expect(k.lru.anon.has(pfn)).toBe(true);
    expect(migrationEntries(p, a, PAGE) + migrationEntries(c, a, PAGE)).toBe(0);
    expect(str(c.read(a, 7))).toBe("keep me");
    expect(m.trace.counters.get("mm.pgmigrate_fail")).toBe(1);
  });
});

describe("migratePages and migrateLongtermUnpinnable", () => {
  it("migratePages moves what it can and counts the rest, each folio once", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 3 * PAGE }));
    for (let i = 0; i < 3; i++) p.write(a + i * PAGE, text(`p${i}`));
    const pfns = [0, 1, 2].map((i) => pfnAt(p, a + i * PAGE));
    k.folioRef(pfns[1]!, 1024);
    const r = migratePages(k, [pfns[0]!, pfns[1]!, pfns[2]!, pfns[0]!, k.zeroPfn], { zone: "NORMAL" });
    expect([r.migrated, r.failed]).toEqual([2, 2]);
    const to = r.results.map((x) => ("to" in x ? x.to : x.error.code));
    expect(to).toEqual([pfnAt(p, a), "EBUSY", pfnAt(p, a + 2 * PAGE), pfnAt(p, a), "EINVAL"]);
    expect(pfnAt(p, a + PAGE)).toBe(pfns[1]);
    for (let i = 0; i < 3; i++) expect(str(p.read(a + i * PAGE, 2))).toBe(`p${i}`);
    expect(caught(() => migratePages(k, 5 as unknown as number[])).arg).toBe("pfns");
  });

  it("FOLL_LONGTERM's migration moves every MOVABLE/CMA page of a range to NORMAL, THPs whole", async () => {
    const m = await smallMachine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 8 * PAGE }));
    for (const i of [0, 1, 2, 3, 5]) p.write(a + i * PAGE, text(`small ${i}`));
    expect(p.read(a + 6 * PAGE, 1)[0]).toBe(0); // the zero page: pinnable as it is
    const h = thp(p);
    p.write(h + 17 * PAGE, text("huge"));
    // A page-cache page of a shared file mapping, moved into CMA first.
    m.fs.create("/f", { size: PAGE });
    const f = Number(p.mmap({ length: PAGE, shared: true, file: "/f" }));
    p.write(f, text("file"));
    const filePfn = migratePage(m.kernel, pfnAt(p, f), { zone: "CMA" });
    expect(m.page(filePfn).zone).toBe("CMA");
    expect(m.page(pfnAt(p, a)).zone).toBe("MOVABLE");

    expect(migrateLongtermUnpinnable(p, a, 8 * PAGE)).toBe(5);
    expect(migrateLongtermUnpinnable(p, h, HPAGE)).toBe(512);
    expect(migrateLongtermUnpinnable(p, f, PAGE)).toBe(1);
    for (const i of [0, 1, 2, 3, 5]) {
      expect(m.page(pfnAt(p, a + i * PAGE)).zone).toBe("NORMAL");
      expect(str(p.read(a + i * PAGE, 7))).toBe(`small ${i}`);
    }
    expect(pfnAt(p, a + 6 * PAGE)).toBe(m.kernel.zeroPfn);
    expect(p.mm.pgd.ptepGet(h).level).toBe(2);
    expect(m.page(pfnAt(p, h)).zone).toBe("NORMAL");
    expect(str(p.read(h + 17 * PAGE, 4))).toBe("huge");
    expect(m.page(pfnAt(p, f)).zone).toBe("NORMAL");
    // Already pinnable: nothing more to move.
    expect(migrateLongtermUnpinnable(p, a, 8 * PAGE)).toBe(0);
  });

  it("FOLL_LONGTERM's migration is all or nothing: one pinned page keeps every page in place", async () => {
    const m = await smallMachine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE }));
    for (let i = 0; i < 4; i++) p.write(a + i * PAGE, text(`${i}`));
    k.folioRef(pfnAt(p, a + 3 * PAGE), 1024);
    const snap = snapshot(m, [p.mm.pgd], [[a, a + 4 * PAGE]]);
    const e = caught(() => migrateLongtermUnpinnable(p, a, 4 * PAGE));
    expect([e.code, e.arg]).toEqual(["EBUSY", "va"]);
    expect(e.message).toMatch(new RegExp(`pinned.*mapped at 0x${(a + 3 * PAGE).toString(16)}`));
    expect(snapshot(m, [p.mm.pgd], [[a, a + 4 * PAGE]])).toBe(snap);
    // GUP's own refusals: a hole is EFAULT, a VM_PFNMAP mapping too.
    expect(caught(() => migrateLongtermUnpinnable(p, a, 64 * PAGE)).code).toBe("EFAULT");
    const d = Number(p.mmap({ length: PAGE, devicePfn: m.phys.allocPages(0, { gfp: "KERNEL" }) }));
    expect(caught(() => migrateLongtermUnpinnable(p, d, PAGE)).code).toBe("EFAULT");
    expect(caught(() => migrateLongtermUnpinnable(p, a + 1, PAGE)).arg).toBe("va");
  });

  it("FOLL_LONGTERM's migration allocates every destination first: NORMAL running out midway moves nothing", async () => {
    const m = await smallMachine();
    const p = m.spawn(0);
    const a = thp(p); // a THP, then a 4 KiB page at a + 2 MiB, both in MOVABLE
    const head = pfnAt(p, a);
    const small = pfnAt(p, a + HPAGE);
    // NORMAL keeps exactly one free block: 2 MiB, room for the THP and nothing after it.
    const held: [number, number][] = [];
    for (let order = 18; order >= 0; order--) {
      for (;;) {
        try {
          held.push([m.phys.allocPages(order, { zone: "NORMAL" }), order]);
        } catch {
          break;
        }
      }
    }
    m.phys.freePages(held.find(([, o]) => o === 9)![0], 9);
    expect(m.phys.nrFreePages("NORMAL")).toBe(512);
    const snap = snapshot(m, [p.mm.pgd], [[a, a + HPAGE + PAGE]]);
    const pages = pageState(m, [head, head + 1, small]);
    const e = caught(() => migrateLongtermUnpinnable(p, a, HPAGE + PAGE));
    expect([e.code, e.arg]).toEqual(["ENOMEM", "target"]);
    expect(snapshot(m, [p.mm.pgd], [[a, a + HPAGE + PAGE]])).toBe(snap);
    expect(pageState(m, [head, head + 1, small])).toBe(pages);
    expect(pfnAt(p, a)).toBe(head);
  });
});
