/**
 * Pins and copy-on-write (KERNEL-SPEC 3.5, the 2020-2022 fixes): a pinned anonymous page
 * is exclusive to its process, so the page the device reaches stays the page the process
 * sees. A pin of a COW-shared page unshares it first; fork copies a pinned page for the
 * child instead of sharing it; GUP-fast backs off while fork write-protects the tables
 * (write_protect_seq); FOLL_LONGTERM moves pages out of MOVABLE and CMA before it pins.
 */
import { describe, expect, it } from "vitest";
import { pinUserPages, pinUserPagesFast, pinUserPagesFastOnly, unpinUserPages } from "../../src/index.js";
import { buffer, counts, framesOf, gupMachine, leaf, mmap, PAGE, pfnAt, str, text } from "./gup-helpers.js";

describe("a pin makes the page exclusive", () => {
  it("a read-only pin of a page shared with a child after fork unshares it: the parent pins its own copy", async () => {
    const m = await gupMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: 2 * PAGE });
    p.write(a, text("before fork"));
    const c = p.fork();
    const shared = pfnAt(p, a);
    expect(pfnAt(c, a)).toBe(shared);
    expect(m.page(shared).flags).not.toContain("anon_exclusive");
    const pages = new Float64Array(1);
    // GUP-fast must not pin a non-exclusive anonymous page (gup_must_unshare) ...
    expect(pinUserPagesFastOnly(p, a, 1, {}, pages)).toBe(0);
    // ... so the slow path takes an unshare fault (FAULT_FLAG_UNSHARE) and pins the copy.
    expect(pinUserPagesFast(p, a, 1, {}, pages)).toBe(1);
    const mine = pages[0]!;
    expect(mine).not.toBe(shared);
    expect(pfnAt(p, a)).toBe(mine);
    expect(leaf(p, a).write).toBe(false); // unshare leaves the entry read-only
    expect(m.page(mine).flags).toContain("anon_exclusive");
    expect(counts(m, mine)).toEqual({ ref: 1 + 1024, map: 1, pin: 0 });
    expect(pfnAt(c, a)).toBe(shared);
    // The child writes: its page, not the pinned one. The parent writes: the pinned page, in place.
    c.write(a, text("child"));
    p.write(a, text("parent"));
    expect(pfnAt(p, a)).toBe(mine);
    expect(str(m.phys.read(mine * PAGE, 11))).toBe("parent fork");
    // The old page is the child's alone now: its write reused it in place.
    expect(pfnAt(c, a)).toBe(shared);
    expect(str(m.phys.read(shared * PAGE, 11))).toBe("childe fork");
    unpinUserPages(m, pages, 1);
  });

  it("fork after a pin copies the pinned page for the child at once (MMF_HAS_PINNED); the parent keeps it writable", async () => {
    const m = await gupMachine();
    const p = m.spawn(0);
    const a = buffer(p, 2);
    p.write(a, text("pinned bytes"));
    const pages = new Float64Array(1);
    expect(p.mm.hasPinned).toBe(false);
    pinUserPagesFast(p, a, 1, { write: true }, pages);
    expect(p.mm.hasPinned).toBe(true); // set by GUP-fast itself, in the pgd's record
    const pinned = pages[0]!;
    const c = p.fork();
    expect(pfnAt(c, a)).not.toBe(pinned);
    expect(pfnAt(c, a + PAGE)).toBe(pfnAt(p, a + PAGE)); // the unpinned page is shared as usual
    expect(str(c.read(a, 12))).toBe("pinned bytes");
    expect(leaf(p, a)).toMatchObject({ pfn: pinned, write: true });
    // What the device writes through its pin, the parent reads; the child does not.
    m.phys.write(pinned * PAGE, text("DMA!"));
    expect(str(p.read(a, 4))).toBe("DMA!");
    expect(str(c.read(a, 4))).toBe("pinn");
    unpinUserPages(m, pages, 1);
  });
});

describe("write_protect_seq: GUP-fast against a concurrent fork", () => {
  it("while the sequence is odd (fork copying the tables) GUP-fast pins nothing; FOLL_GET does not look", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 4);
    const pages = new Float64Array(4);
    p.mm.writeProtectSeqStep(); // what dup_mmap does before it write-protects the parent
    expect(p.mm.writeProtectSeq % 2).toBe(1);
    expect(pinUserPagesFastOnly(p, a, 4, {}, pages)).toBe(0);
    expect(framesOf(p, a, 4).every((f) => counts(m, f).ref === 1)).toBe(true);
    p.mm.writeProtectSeqStep();
    expect(pinUserPagesFastOnly(p, a, 4, {}, pages)).toBe(4);
    unpinUserPages(m, pages, 4);
    // A real fork goes through both steps and leaves the sequence even again.
    const seq = p.mm.writeProtectSeq;
    p.fork();
    expect(p.mm.writeProtectSeq).toBe(seq + 2);
  });
});

describe("FOLL_LONGTERM (check_and_migrate_movable_pages)", () => {
  it("pages in MOVABLE and CMA are migrated to NORMAL before the long-term pin; contents go with them", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 16);
    for (let i = 0; i < 16; i++) p.write(a + i * PAGE, text(`page ${i}`));
    const before = framesOf(p, a, 16);
    expect(before.every((f) => m.page(f).zone === "MOVABLE")).toBe(true);
    // GUP-fast refuses them (try_grab_folio_fast: not long-term pinnable) ...
    const pages = new Float64Array(16);
    expect(pinUserPagesFastOnly(p, a, 16, { longterm: true }, pages)).toBe(0);
    // ... and the slow path pins, finds them movable, unpins, migrates, pins again.
    expect(pinUserPagesFast(p, a, 16, { write: true, longterm: true }, pages)).toBe(16);
    const after = [...pages];
    expect(after.every((f) => m.page(f).zone === "NORMAL")).toBe(true);
    expect(after.some((f) => before.includes(f))).toBe(false);
    expect(framesOf(p, a, 16)).toEqual(after);
    for (let i = 0; i < 16; i++) expect(str(p.read(a + i * PAGE, 8)).replace(/\0+$/, "")).toBe(`page ${i}`);
    for (const f of after) expect(counts(m, f)).toEqual({ ref: 1025, map: 1, pin: 0 });
    for (const f of before) expect(m.page(f).refcount).toBe(0); // the old frames are free
    unpinUserPages(m, pages, 16);
    expect(m.vmstat().nr_foll_pin_acquired - m.vmstat().nr_foll_pin_released).toBe(0);
  });

  it("pages faulted in for a long-term pin come from NORMAL (PF_MEMALLOC_PIN), so none needs moving", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = mmap(p, { length: 8 * PAGE });
    const pages = new Float64Array(8);
    expect(pinUserPages(p, a, 8, { write: true, longterm: true }, pages)).toBe(8);
    expect([...pages].every((f) => m.page(f).zone === "NORMAL")).toBe(true);
    expect(m.trace.counters.get("gup.longterm_migrated_folios") ?? 0).toBe(0);
    unpinUserPages(m, pages, 8);
    // Without FOLL_LONGTERM the same faults take MOVABLE first, as user pages do.
    const b = mmap(p, { length: PAGE });
    pinUserPages(p, b, 1, { write: true }, pages);
    expect(m.page(pages[0]!).zone).toBe("MOVABLE");
  });

  it("a long-term pin of a THP in MOVABLE moves the whole folio", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 512, { huge: true });
    const head = pfnAt(p, a);
    expect(m.page(head).zone).toBe("MOVABLE");
    const pages = new Float64Array(512);
    expect(pinUserPages(p, a, 512, { longterm: true }, pages)).toBe(512);
    const nh = pages[0]!;
    expect(m.page(nh).zone).toBe("NORMAL");
    expect(counts(m, nh)).toMatchObject({ ref: 1 + 512, pin: 512 });
    expect([...pages]).toEqual(Array.from({ length: 512 }, (_, i) => nh + i));
    unpinUserPages(m, pages, 512);
  });
});
