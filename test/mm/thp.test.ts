/**
 * Transparent huge pages for anonymous memory (mm/huge_memory.c): a write fault in a
 * 2 MiB-aligned range of a THP-enabled VMA maps one 2 MiB folio with one PMD leaf; cutting
 * it (munmap, mprotect, MADV_DONTNEED of part) splits the PMD into 512 PTEs with the folio's
 * accounting moved (__split_huge_pmd_locked); fork shares it COW as a whole.
 */
import { describe, expect, it } from "vitest";
import type { Machine, Process } from "../../src/index.js";
import { counter, HPAGE, leaf, mmap, mmMachine, PAGE, pfnAt, str, text } from "./mm-helpers.js";

/**
 * A process with a 2 MiB-aligned THP-able range at @h (4 MiB mapped) whose page tables down
 * to the PMD already exist (a small page nearby was written), and one write at @h.
 */
async function thpProcess(thp: "always" | "madvise" = "madvise"): Promise<{ m: Machine; p: Process; h: number; head: number }> {
  const m = await mmMachine({ mm: { thp } });
  const p = m.spawn(0);
  const h = mmap(p, { length: 2 * HPAGE, hugepage: thp === "madvise" });
  const near = mmap(p, { length: PAGE });
  p.write(near, text("tables"));
  p.write(h + 5, text("huge"));
  return { m, p, h, head: pfnAt(p, h) };
}

describe("THP faults (do_huge_pmd_anonymous_page)", () => {
  for (const thp of ["madvise", "always"] as const) {
    it(`a write in a 2 MiB-aligned range of a THP VMA (mm.thp ${thp}) maps one PMD leaf of an order-9 folio`, async () => {
      const { m, p, h, head } = await thpProcess(thp);
      expect(h % HPAGE).toBe(0);
      const g = p.mm.pgd.ptepGet(h);
      expect(g.level).toBe(2);
      expect(g.info).toMatchObject({ present: true, write: true, dirty: true });
      expect(p.mm.pgd.ptepGet(h + HPAGE - PAGE).info.pfn).toBe(head);
      expect(m.page(head)).toMatchObject({ order: 9, refcount: 1 });
      expect(m.page(head).flags).toEqual(expect.arrayContaining(["head", "anon", "anon_exclusive"]));
      expect(m.page(head + 1).flags).toContain("tail");
      expect(p.mm.rss.anon).toBe(512 + 1);
      expect(counter(m, "mm.fault.thp")).toBe(1);
      // The other 511 pages are there, zero, with no further fault.
      const faults = counter(m, "mm.faults.ok");
      p.touch(h, HPAGE, "w");
      expect(counter(m, "mm.faults.ok")).toBe(faults);
      expect(str(p.read(h + 5, 4))).toBe("huge");
      expect(p.read(h + HPAGE - 16, 16).every((b) => b === 0)).toBe(true);
    });
  }

  it("a touch of a fresh THP range takes one fault per 2 MiB: the CPU's later accesses find the new PMD leaf (no spurious faults)", async () => {
    const m = await mmMachine({ mm: { thp: "always" } });
    const p = m.spawn(0);
    const h = mmap(p, { length: 2 * HPAGE });
    p.touch(h, 2 * HPAGE, "w");
    expect(counter(m, "mm.fault.thp")).toBe(2);
    expect(counter(m, "mm.faults.ok")).toBe(2);
    expect(counter(m, "mm.fault.spurious")).toBe(0);
  });

  it("the first fault of a fresh address space allocates the page tables on the way down and still maps a PMD leaf", async () => {
    const m = await mmMachine({ mm: { thp: "always" } });
    const p = m.spawn(0);
    const h = mmap(p, { length: HPAGE });
    p.write(h, text("first"));
    expect(p.mm.pgd.ptepGet(h).level).toBe(2);
    expect(counter(m, "mm.fault.thp")).toBe(1);
  });

  it("a PMD-mapped page counts its PMD mapping in page_mapcount (entire mapcount): 1 for every page of the folio", async () => {
    const { m, head } = await thpProcess();
    for (const i of [0, 1, 300, 511]) expect(m.page(head + i).mapcount, `page ${i}`).toBe(1);
  });

  it("no PMD leaf where THP does not apply: mm.thp never, madvise without MADV_HUGEPAGE, a range the VMA does not cover whole", async () => {
    for (const [thp, hugepage] of [["never", true], ["madvise", false]] as const) {
      const m = await mmMachine({ mm: { thp } });
      const p = m.spawn(0);
      const h = mmap(p, { length: 2 * HPAGE, hugepage });
      p.write(h + HPAGE, text("x"));
      p.write(h + HPAGE + PAGE, text("y"));
      expect(p.mm.pgd.ptepGet(h + HPAGE).level, thp).toBe(1);
      expect(m.page(pfnAt(p, h + HPAGE)).order).toBe(0);
      expect(p.mm.rss.anon).toBe(2);
    }
    const m = await mmMachine({ mm: { thp: "always" } });
    const p = m.spawn(0);
    const h = mmap(p, { length: 3 * HPAGE });
    p.mprotect(h + HPAGE + 256 * PAGE, PAGE, "r"); // the middle 2 MiB range is not whole in one VMA
    p.write(h + HPAGE, text("z"));
    expect(p.mm.pgd.ptepGet(h + HPAGE).level).toBe(1);
  });

  it("madvise(MADV_HUGEPAGE) on an existing VMA makes its next faults huge (mm.thp madvise)", async () => {
    const m = await mmMachine({ mm: { thp: "madvise" } });
    const p = m.spawn(0);
    const h = mmap(p, { length: 2 * HPAGE });
    p.write(h + 8 * PAGE, text("small"));
    expect(p.mm.pgd.ptepGet(h).level).toBe(1);
    p.madvise(h, 2 * HPAGE, "hugepage");
    p.write(h + HPAGE, text("huge"));
    expect(p.mm.pgd.ptepGet(h + HPAGE).level).toBe(2);
  });
});

describe("MADV_HUGEPAGE (madvise_update_vma)", () => {
  it("applies to the advised range only: the VMA is split there, and only that part's faults are huge", async () => {
    const m = await mmMachine({ mm: { thp: "madvise" } });
    const p = m.spawn(0);
    const h = mmap(p, { length: 4 * HPAGE });
    p.write(h + 4 * HPAGE - PAGE, text("tables")); // the page tables exist
    p.madvise(h + HPAGE, HPAGE, "hugepage");
    expect(p.maps().map((e) => [e.start, e.end])).toEqual([
      [h, h + HPAGE], [h + HPAGE, h + 2 * HPAGE], [h + 2 * HPAGE, h + 4 * HPAGE],
    ]);
    p.write(h + HPAGE, text("advised"));
    p.write(h + 2 * HPAGE, text("not advised"));
    expect(p.mm.pgd.ptepGet(h + HPAGE).level).toBe(2);
    expect(p.mm.pgd.ptepGet(h + 2 * HPAGE).level).toBe(1);
    // Advising the rest makes the pieces one VMA again.
    p.madvise(h, 4 * HPAGE, "hugepage");
    expect(p.maps().map((e) => [e.start, e.end])).toEqual([[h, h + 4 * HPAGE]]);
  });
});

describe("splitting a PMD-mapped THP (__split_huge_pmd_locked)", () => {
  it("munmap of one page splits the PMD into PTEs: the other 511 pages keep their data; folio refcount 511, each page mapcount 1", async () => {
    const { m, p, h, head } = await thpProcess();
    for (const i of [0, 1, 2, 510, 511]) p.write(h + i * PAGE + 100, new Uint8Array([i & 0xff, 0xaa]));
    p.munmap(h + PAGE, PAGE);
    expect(p.mm.pgd.ptepGet(h).level).toBe(1);
    expect(leaf(p, h + PAGE).present).toBe(false);
    for (const i of [0, 2, 510, 511]) {
      expect(pfnAt(p, h + i * PAGE)).toBe(head + i);
      expect(Array.from(p.read(h + i * PAGE + 100, 2))).toEqual([i & 0xff, 0xaa]);
    }
    expect(str(p.read(h + 5, 4))).toBe("huge");
    expect(m.page(head).refcount).toBe(511);
    expect(m.page(head + 1).mapcount).toBe(0);
    for (const i of [0, 2, 3, 100, 511]) expect(m.page(head + i).mapcount, `page ${i}`).toBe(1);
    expect(m.page(head).flags).toContain("head");
    expect(m.page(head + 7).flags).toContain("anon_exclusive"); // PageAnonExclusive went to every page
    expect(p.mm.rss.anon).toBe(511 + 1);
    expect(counter(m, "mm.faults.SIGSEGV")).toBe(0);
  });

  it("unmapping the rest frees the folio: every frame back to the buddy allocator", async () => {
    const { m, p, h, head } = await thpProcess();
    const free = m.phys.nrFreePages();
    p.munmap(h + 3 * PAGE, 10 * PAGE);
    expect(m.page(head).refcount).toBe(502);
    p.munmap(h, HPAGE);
    expect(m.page(head).refcount).toBe(0);
    expect(m.phys.nrFreePages()).toBeGreaterThanOrEqual(free + 512);
    expect(p.mm.rss.anon).toBe(1);
  });

  it("mprotect of part of a THP splits the PMD with the accounting moved (split_vma splits huge PMDs it cuts)", async () => {
    const { m, p, h, head } = await thpProcess();
    p.mprotect(h + PAGE, PAGE, "r");
    expect(p.mm.pgd.ptepGet(h).level).toBe(1);
    expect(leaf(p, h + PAGE).write).toBe(false);
    expect(leaf(p, h + 2 * PAGE).write).toBe(true);
    expect(m.page(head).refcount).toBe(512);
    for (const i of [0, 1, 2, 511]) expect(m.page(head + i).mapcount, `page ${i}`).toBe(1);
    p.munmap(h, HPAGE); // every page's mapping given back once
    expect(m.page(head).refcount).toBe(0);
    p.exit();
  });

  it("madvise(MADV_DONTNEED) of part of a THP zeroes only that part; the rest keeps data and accounting", async () => {
    const { m, p, h, head } = await thpProcess();
    p.write(h + 3 * PAGE, text("three"));
    p.write(h + 4 * PAGE, text("four"));
    p.madvise(h + 3 * PAGE, PAGE, "dontneed");
    expect(p.read(h + 3 * PAGE, 5).every((b) => b === 0)).toBe(true);
    expect(str(p.read(h + 4 * PAGE, 4))).toBe("four");
    expect(str(p.read(h + 5, 4))).toBe("huge");
    expect(m.page(head).refcount).toBe(511);
    expect(m.page(head + 3).mapcount).toBe(0);
  });
});

describe("fork of a THP (copy_huge_pmd, do_huge_pmd_wp_page)", () => {
  it("shares the folio COW: both PMD leaves read-only, refcount 2, not exclusive", async () => {
    const { m, p, h, head } = await thpProcess();
    const c = p.fork();
    const pg = p.mm.pgd.ptepGet(h);
    const cg = c.mm.pgd.ptepGet(h);
    expect([pg.level, cg.level]).toEqual([2, 2]);
    expect([pg.info.write, cg.info.write]).toEqual([false, false]);
    expect(cg.info.pfn).toBe(head);
    expect(m.page(head).refcount).toBe(2);
    expect(m.page(head).flags).not.toContain("anon_exclusive");
    expect(c.mm.rss.anon).toBe(513);
    expect(str(c.read(h + 5, 4))).toBe("huge");
  });

  it("a write splits the writer's PMD and copies one page; each side keeps its own data; exits free everything", async () => {
    const { m, p, h, head } = await thpProcess();
    p.write(h + 100 * PAGE, text("shared"));
    const c = p.fork();
    c.write(h + 100 * PAGE, text("CHILD!"));
    expect(c.mm.pgd.ptepGet(h).level).toBe(1);
    expect(p.mm.pgd.ptepGet(h).level).toBe(2); // the parent's PMD is untouched
    const cp = pfnAt(c, h + 100 * PAGE);
    expect(cp).not.toBe(head + 100);
    expect(m.page(cp).order).toBe(0);
    expect(pfnAt(c, h + 101 * PAGE)).toBe(head + 101); // the rest still shared
    // The folio: the parent's PMD (1) + the child's 511 PTEs.
    expect(m.page(head).refcount).toBe(512);
    expect(str(p.read(h + 100 * PAGE, 6))).toBe("shared");
    expect(str(c.read(h + 100 * PAGE, 6))).toBe("CHILD!");
    p.write(h + 200 * PAGE, text("parent"));
    expect(str(c.read(h + 200 * PAGE, 6))).toEqual("\0\0\0\0\0\0");
    expect(str(p.read(h + 200 * PAGE, 6))).toBe("parent");
    expect(str(p.read(h + 5, 4)) + str(c.read(h + 5, 4))).toBe("hugehuge");
    const before = m.phys.nrFreePages();
    c.exit();
    p.exit();
    expect(m.page(head).refcount).toBe(0);
    expect(m.page(cp).refcount).toBe(0);
    expect(m.phys.nrFreePages()).toBeGreaterThanOrEqual(before + 512 + 2);
  });
});
