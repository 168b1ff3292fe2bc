/**
 * Copy-on-write after fork (mm/memory.c do_wp_page, copy_present_pte; KERNEL-SPEC 3.5):
 * PageAnonExclusive, reference and map counts, the shared zero page, MAP_SHARED memory,
 * and the early copy at fork of pages that may be DMA-pinned (MMF_HAS_PINNED) — with the
 * reason for it: without it the pinning process's next write moves it away from the page
 * the device writes.
 */
import { describe, expect, it } from "vitest";
import type { Machine, Process } from "../../src/index.js";
import { counter, leaf, mmap, mmMachine, PAGE, pfnAt, str, text } from "./mm-helpers.js";

const BIAS = 1024; // GUP_PIN_COUNTING_BIAS

async function forked(bytes = "parent data"): Promise<{ m: Machine; p: Process; c: Process; a: number; pfn: number }> {
  const m = await mmMachine();
  const p = m.spawn(0);
  const a = mmap(p, { length: 4 * PAGE });
  p.write(a, text(bytes));
  const pfn = pfnAt(p, a);
  const c = p.fork();
  return { m, p, c, a, pfn };
}

describe("COW after fork (copy_present_pte, do_wp_page)", () => {
  it("parent and child each see their own writes after fork", async () => {
    const { p, c, a } = await forked();
    expect(str(c.read(a, 11))).toBe("parent data");
    c.write(a, text("CHILD"));
    p.write(a + 7, text("DATA"));
    expect(str(p.read(a, 11))).toBe("parent DATA");
    expect(str(c.read(a, 11))).toBe("CHILDt data");
    c.write(a + PAGE, text("only the child"));
    expect(p.read(a + PAGE, 14).every((b) => b === 0)).toBe(true);
  });

  it("after fork a private anonymous page is mapped twice: mapcount 2, refcount 2, read-only both sides, not PageAnonExclusive", async () => {
    const { m, p, c, a, pfn } = await forked();
    expect(m.page(pfn).flags).toContain("anon");
    expect(m.page(pfn)).toMatchObject({ mapcount: 2, refcount: 2 });
    expect(m.page(pfn).flags).not.toContain("anon_exclusive");
    expect(pfnAt(c, a)).toBe(pfn);
    expect(leaf(p, a).write).toBe(false);
    expect(leaf(c, a).write).toBe(false);
    expect([p.mm.rss.anon, c.mm.rss.anon]).toEqual([1, 1]);
  });

  it("the first writer gets a new exclusive page; the other's page, now alone, is reused in place and exclusive again", async () => {
    const { m, p, c, a, pfn } = await forked();
    c.write(a, text("C"));
    const cp = pfnAt(c, a);
    expect(cp).not.toBe(pfn);
    expect(m.page(cp)).toMatchObject({ mapcount: 1, refcount: 1 });
    expect(m.page(cp).flags).toEqual(expect.arrayContaining(["anon", "anon_exclusive", "swapbacked", "uptodate", "lru"]));
    expect(leaf(c, a).write).toBe(true);
    expect(m.page(pfn)).toMatchObject({ mapcount: 1, refcount: 1 });
    expect(m.page(pfn).flags).not.toContain("anon_exclusive"); // not until the parent's write fault
    const reused = counter(m, "mm.fault.cow_reuse");
    p.write(a, text("P"));
    expect(pfnAt(p, a)).toBe(pfn); // wp_can_reuse_anon_folio: refcount 1
    expect(counter(m, "mm.fault.cow_reuse")).toBe(reused + 1);
    expect(m.page(pfn).flags).toContain("anon_exclusive");
    expect(leaf(p, a).write).toBe(true);
    expect(str(p.read(a, 11))).toBe("Parent data");
    expect(str(c.read(a, 11))).toBe("Carent data");
  });

  it("the parent writing first copies too; a third process keeps the page shared until each writes", async () => {
    const { m, p, c, a, pfn } = await forked();
    const g = c.fork();
    expect(m.page(pfn)).toMatchObject({ mapcount: 3, refcount: 3 });
    p.write(a, text("1"));
    expect(pfnAt(p, a)).not.toBe(pfn);
    expect(m.page(pfn)).toMatchObject({ mapcount: 2, refcount: 2 });
    g.write(a, text("3"));
    expect(pfnAt(g, a)).not.toBe(pfn);
    c.write(a, text("2")); // alone now: reused
    expect(pfnAt(c, a)).toBe(pfn);
    expect([p, c, g].map((x) => str(x.read(a, 2)))).toEqual(["1a", "2a", "3a"]);
  });

  it("exit of one side leaves the other alone with the page: its write reuses it", async () => {
    const { m, p, c, a, pfn } = await forked();
    c.exit();
    expect(m.page(pfn)).toMatchObject({ mapcount: 1, refcount: 1 });
    p.write(a, text("X"));
    expect(pfnAt(p, a)).toBe(pfn);
  });

  it("a never-written anonymous page maps the shared zero page read-only; a write replaces it with a new zeroed page", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: 2 * PAGE });
    const zero = m.kernel.zeroPfn;
    const zref = m.page(zero).refcount;
    expect(p.read(a + 10, 4)).toEqual(new Uint8Array(4));
    const l = leaf(p, a);
    expect([l.pfn, l.write, l.special]).toEqual([zero, false, true]);
    expect(m.page(zero).refcount).toBe(zref); // the zero page is not refcounted per mapping
    expect(p.mm.rss.anon).toBe(0);
    const c = p.fork();
    expect(c.read(a + 10, 4)).toEqual(new Uint8Array(4)); // the zero page in the child too
    expect(pfnAt(c, a)).toBe(zero);
    p.write(a + 10, text("ab"));
    const n = pfnAt(p, a);
    expect(n).not.toBe(zero);
    expect(m.page(n).flags).toEqual(expect.arrayContaining(["anon", "anon_exclusive"]));
    expect(Array.from(p.read(a + 8, 6))).toEqual([0, 0, 97, 98, 0, 0]);
    expect(p.mm.rss.anon).toBe(1);
    expect(pfnAt(c, a)).toBe(zero);
    expect(c.read(a + 10, 2)).toEqual(new Uint8Array(2));
    expect(m.page(zero).refcount).toBe(zref);
    expect(m.phys.read(zero * PAGE, PAGE).every((b) => b === 0)).toBe(true);
  });

  it("MAP_SHARED|MAP_ANONYMOUS memory is shared with the child: the same frame, writes visible both ways", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    const s = mmap(p, { length: 2 * PAGE, shared: true });
    p.write(s, text("before fork"));
    const c = p.fork();
    expect(str(c.read(s, 11))).toBe("before fork");
    expect(pfnAt(c, s)).toBe(pfnAt(p, s));
    c.write(s, text("CHILD"));
    expect(str(p.read(s, 11))).toBe("CHILDe fork");
    p.write(s + PAGE, text("parent, second page"));
    expect(str(c.read(s + PAGE, 19))).toBe("parent, second page");
    expect(pfnAt(c, s + PAGE)).toBe(pfnAt(p, s + PAGE));
    expect(m.page(pfnAt(p, s)).flags).not.toContain("anon");
    expect(leaf(p, s).write && leaf(c, s).write).toBe(true);
  });

  it("fork write-protects the parent's writable private entries and shoots down its TLB: no stale writable entry", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: PAGE });
    p.write(a, text("x"));
    expect(p.cpu.translate(a, { write: true, user: true }).ok).toBe(true); // cached writable
    const shootdowns = counter(m, "mm.shootdowns");
    const c = p.fork();
    expect(counter(m, "mm.shootdowns")).toBeGreaterThan(shootdowns);
    const t = p.cpu.translate(a, { write: true, user: true });
    expect(t.ok).toBe(false); // a write must fault and copy
    p.write(a, text("y"));
    expect(str(c.read(a, 1))).toBe("x");
  });

  it("fork does not copy the entries of a VMA without an anon_vma (vma_needs_copy): shared file pages are faulted in by the child", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    m.fs.create("/f", { size: PAGE });
    const f = mmap(p, { length: PAGE, file: "/f", shared: true });
    p.write(f, text("file"));
    const pfn = pfnAt(p, f);
    expect(m.page(pfn)).toMatchObject({ mapcount: 1, refcount: 2 }); // the cache's and the mapping's
    const c = p.fork();
    expect(leaf(c, f).present).toBe(false);
    expect(c.mm.rss.file).toBe(0);
    expect(m.page(pfn)).toMatchObject({ mapcount: 1, refcount: 2 });
    expect(str(c.read(f, 4))).toBe("file"); // faulted in from the page cache
    expect(pfnAt(c, f)).toBe(pfn);
    expect(m.page(pfn)).toMatchObject({ mapcount: 2, refcount: 3 });
  });

  it("a file page mapped privately is copied on the first write (do_cow_fault / wp_page_copy); the page cache keeps the file's bytes", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    m.fs.create("/f", { size: PAGE });
    m.fs.write("/f", 0, text("on disk"));
    const f = mmap(p, { length: PAGE, file: "/f" });
    expect(str(p.read(f, 7))).toBe("on disk");
    const cache = m.fs.lookup("/f").pages.get(0)!;
    expect(pfnAt(p, f)).toBe(cache);
    expect([p.mm.rss.file, p.mm.rss.anon]).toEqual([1, 0]);
    p.write(f, text("ON"));
    expect(pfnAt(p, f)).not.toBe(cache);
    expect(m.page(pfnAt(p, f)).flags).toEqual(expect.arrayContaining(["anon", "anon_exclusive"]));
    expect([p.mm.rss.file, p.mm.rss.anon]).toEqual([0, 1]);
    expect(m.page(cache)).toMatchObject({ mapcount: 0, refcount: 1 });
    expect(str(m.fs.read("/f", 0, 7))).toBe("on disk");
    expect(str(p.read(f, 7))).toBe("ON disk");
    // A private page not yet written follows the file (it is the page-cache page).
    const g = mmap(p, { length: PAGE, file: "/f" });
    expect(str(p.read(g, 7))).toBe("on disk");
    m.fs.write("/f", 0, text("ch"));
    expect(str(p.read(g, 7))).toBe("ch disk");
    expect(str(p.read(f, 7))).toBe("ON disk");
  });
});

describe("pinned pages at fork (MMF_HAS_PINNED, folio_maybe_dma_pinned; KERNEL-SPEC 3.5)", () => {
  /** A process with a written page pinned as FOLL_PIN would (GUP is the next issue). */
  async function pinned(hasPinned: boolean) {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: 2 * PAGE });
    p.write(a, text("pinned bytes"));
    const pfn = pfnAt(p, a);
    m.kernel.folioRef(pfn, BIAS);
    p.mm.hasPinned = hasPinned;
    return { m, p, a, pfn };
  }

  it("the child gets its own copy at once; the parent keeps the pinned page exclusive and writable", async () => {
    const { m, p, a, pfn } = await pinned(true);
    const copied = counter(m, "mm.fork_pages_copied");
    const c = p.fork();
    expect(counter(m, "mm.fork_pages_copied")).toBe(copied + 1);
    const cp = pfnAt(c, a);
    expect(cp).not.toBe(pfn);
    expect(str(c.read(a, 12))).toBe("pinned bytes");
    expect(m.page(pfn)).toMatchObject({ refcount: 1 + BIAS, mapcount: 1 });
    expect(m.page(pfn).flags).toContain("anon_exclusive");
    expect(leaf(p, a)).toMatchObject({ pfn, write: true });
    expect(m.page(cp)).toMatchObject({ refcount: 1, mapcount: 1 });
    expect(m.page(cp).flags).toContain("anon_exclusive");
    expect(c.mm.hasPinned).toBe(false); // MMF_HAS_PINNED is not inherited
    // A child write stays in the child's copy: no fault needed, the pinned page untouched.
    c.write(a, text("CHILD"));
    expect(pfnAt(c, a)).toBe(cp);
    expect(str(m.phys.read(pfn * PAGE, 12))).toBe("pinned bytes");
    // The parent writes in place: what it reads is what the device's pin reaches.
    p.write(a, text("P"));
    expect(pfnAt(p, a)).toBe(pfn);
    m.phys.write(pfn * PAGE + 7, text("DMA"));
    expect(str(p.read(a, 12))).toBe("Pinned DMAes");
  });

  it("the child's early copy is a full anonymous page (PG_anon, exclusive, swap-backed, uptodate, on the LRU)", async () => {
    const { m, p, a } = await pinned(true);
    const c = p.fork();
    expect(m.page(pfnAt(c, a)).flags).toEqual(expect.arrayContaining(["anon", "anon_exclusive", "swapbacked", "uptodate", "lru"]));
    expect(c.mm.rss.anon).toBe(1);
  });

  it("WHY: without the early copy (no MMF_HAS_PINNED) the parent's next write breaks COW away from the pinned page", async () => {
    const { m, p, a, pfn } = await pinned(false);
    const c = p.fork();
    expect(pfnAt(c, a)).toBe(pfn); // shared COW, both read-only
    expect(m.page(pfn).flags).not.toContain("anon_exclusive");
    p.write(a, text("P"));
    const moved = pfnAt(p, a);
    expect(moved).not.toBe(pfn); // refcount > 1 (the pin, the child): copied, not reused
    expect(str(m.phys.read(pfn * PAGE, 12))).toBe("pinned bytes"); // the pinned frame: the old data
    // DMA through the pin no longer reaches what the parent reads.
    m.phys.write(pfn * PAGE, text("DMA!"));
    expect(str(p.read(a, 12))).toBe("Pinned bytes");
    expect(str(c.read(a, 4))).toBe("DMA!"); // ... the child sees the device's bytes instead
  });
});
