/**
 * What GUP adds to a struct page and what the release takes back (include/linux/mm.h,
 * mm/gup.c; KERNEL-SPEC 2.2): FOLL_GET is one reference a page; FOLL_PIN is
 * GUP_PIN_COUNTING_BIAS (1024) on a small folio and one reference plus one _pincount on a
 * large one; the shared zero page is never counted; folio_maybe_dma_pinned is exact for
 * large folios and has false positives for small ones with 1024 references.
 */
import { describe, expect, it } from "vitest";
import {
  folioMaybeDmaPinned, getUserPages, getUserPagesFast, pageMaybeDmaPinned, pinUserPages, pinUserPagesFast,
  putPage, releasePages, unpinUserPage, unpinUserPages,
} from "../../src/index.js";
import { buffer, code, counts, framesOf, gupMachine, mmap, PAGE } from "./gup-helpers.js";

describe("FOLL_GET and FOLL_PIN on small folios", () => {
  it("GET adds 1 per page, PIN adds 1024, and each release takes exactly that back", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 8);
    const pfns = framesOf(p, a, 8);
    const pages = new Float64Array(8);
    expect(getUserPagesFast(p, a, 8, {}, pages)).toBe(8);
    expect([...pages]).toEqual(pfns);
    expect(pfns.map((f) => counts(m, f).ref)).toEqual(Array(8).fill(2));
    expect(pfns.some((f) => folioMaybeDmaPinned(m, f))).toBe(false);
    const pins = new Float64Array(8);
    expect(pinUserPagesFast(p, a, 8, { write: true }, pins)).toBe(8);
    expect(pfns.map((f) => counts(m, f))).toEqual(Array(8).fill({ ref: 2 + 1024, map: 1, pin: 0 }));
    expect(pfns.every((f) => folioMaybeDmaPinned(m, f) && pageMaybeDmaPinned(m, f))).toBe(true);
    expect(m.vmstat()).toEqual({ nr_foll_pin_acquired: 8, nr_foll_pin_released: 0 });
    unpinUserPages(m, pins, 8);
    expect(pfns.map((f) => counts(m, f).ref)).toEqual(Array(8).fill(2));
    releasePages(m, pages, 8);
    expect(pfns.map((f) => counts(m, f).ref)).toEqual(Array(8).fill(1));
    expect(m.vmstat()).toEqual({ nr_foll_pin_acquired: 8, nr_foll_pin_released: 8 });
  });

  it("a page pinned twice holds 2048 until both pins go; unpinUserPage and putPage release one", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 1);
    const [pfn] = framesOf(p, a, 1);
    const x = new Float64Array(1);
    pinUserPagesFast(p, a, 1, {}, x);
    pinUserPages(p, a, 1, {}, x);
    expect(counts(m, pfn!).ref).toBe(1 + 2048);
    unpinUserPage(m, pfn!);
    expect(counts(m, pfn!).ref).toBe(1 + 1024);
    unpinUserPage(m, pfn!);
    getUserPages(p, a, 1, {}, x);
    expect(counts(m, pfn!).ref).toBe(2);
    putPage(m, pfn!);
    expect(counts(m, pfn!).ref).toBe(1);
  });

  it("folio_maybe_dma_pinned has the kernel's false positive: 1024 ordinary references look like a pin", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 1);
    const [pfn] = framesOf(p, a, 1);
    const refs = new Float64Array(1023);
    for (let i = 0; i < 1022; i++) getUserPagesFast(p, a, 1, {}, refs.subarray(i));
    expect(counts(m, pfn!).ref).toBe(1023); // the mapping's + 1022
    expect(folioMaybeDmaPinned(m, pfn!)).toBe(false);
    getUserPagesFast(p, a, 1, {}, refs.subarray(1022));
    expect(counts(m, pfn!).ref).toBe(1024);
    expect(folioMaybeDmaPinned(m, pfn!)).toBe(true); // no pin at all, yet "maybe pinned"
    releasePages(m, refs, 1023);
    expect(folioMaybeDmaPinned(m, pfn!)).toBe(false);
  });
});

describe("FOLL_PIN on large folios (a PMD-mapped THP)", () => {
  it("adds one reference and one _pincount per subpage, with one grab for the whole range of the folio", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 512, { huge: true });
    const head = framesOf(p, a, 1)[0]!;
    expect(counts(m, head)).toEqual({ ref: 1, map: 1, pin: 0 });
    const pages = new Float64Array(100);
    expect(pinUserPagesFast(p, a + 10 * PAGE, 100, { write: true }, pages)).toBe(100);
    expect([...pages]).toEqual(Array.from({ length: 100 }, (_, i) => head + 10 + i));
    expect(counts(m, head)).toEqual({ ref: 101, map: 1, pin: 100 });
    expect(folioMaybeDmaPinned(m, head + 300)).toBe(true); // any page of the folio: exact
    const gets = new Float64Array(512);
    expect(getUserPagesFast(p, a, 512, {}, gets)).toBe(512);
    expect(counts(m, head)).toEqual({ ref: 101 + 512, map: 1, pin: 100 });
    releasePages(m, gets, 512);
    unpinUserPages(m, pages, 60);
    expect(counts(m, head)).toEqual({ ref: 41, map: 1, pin: 40 });
    unpinUserPages(m, pages.subarray(60), 40);
    expect(counts(m, head)).toEqual({ ref: 1, map: 1, pin: 0 });
    expect(folioMaybeDmaPinned(m, head)).toBe(false);
    expect(m.vmstat()).toEqual({ nr_foll_pin_acquired: 100, nr_foll_pin_released: 100 });
  });

  it("1024 ordinary references on a large folio are no false positive: its pincount is exact", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 512, { huge: true });
    const head = framesOf(p, a, 1)[0]!;
    const gets = new Float64Array(512);
    getUserPagesFast(p, a, 512, {}, gets);
    getUserPagesFast(p, a, 512, {}, gets);
    expect(counts(m, head).ref).toBe(1025);
    expect(folioMaybeDmaPinned(m, head)).toBe(false);
  });
});

describe("the shared zero page", () => {
  it("a read pin of never-written anonymous memory returns the zero page and counts nothing on it", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = mmap(p, { length: 4 * PAGE });
    const pages = new Float64Array(4);
    const zero = m.kernel.zeroPfn;
    const before = counts(m, zero);
    // GUP-fast stops at the zero page's special PTE; the slow path faults it in and returns it.
    expect(pinUserPagesFast(p, a, 4, {}, pages)).toBe(4);
    expect([...pages]).toEqual([zero, zero, zero, zero]);
    expect(counts(m, zero)).toEqual(before);
    expect(m.vmstat().nr_foll_pin_acquired).toBe(0);
    unpinUserPages(m, pages, 4); // unpinning it is a no-op too
    expect(counts(m, zero)).toEqual(before);
    // FOLL_GET does take an ordinary reference on it.
    expect(getUserPages(p, a, 1, {}, pages)).toBe(1);
    expect(counts(m, zero).ref).toBe(before.ref + 1);
    putPage(m, zero);
    // A write pin faults a real page in instead (COW away from the zero page).
    expect(pinUserPagesFast(p, a, 1, { write: true }, pages)).toBe(1);
    expect(pages[0]).not.toBe(zero);
    expect(counts(m, pages[0]!)).toEqual({ ref: 1025, map: 1, pin: 0 });
  });
});

describe("mmap_lock: get_user_pages and pin_user_pages are called with it held (mmap_assert_locked)", () => {
  it("the slow path runs under the caller's hold, faulting pages in; without one it is taken for read and dropped, also on failure", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = mmap(p, { length: 8 * PAGE }); // never touched: the slow path faults every page in
    const lock = p.mm.mmapLock;
    const pages = new Float64Array(4);
    const h = lock.lock("write", "a driver's mmap handler"); // held for write, as mmap_assert_locked accepts
    expect(pinUserPages(p, a, 4, { write: true }, pages)).toBe(4);
    expect(lock.holders).toEqual([h]); // the caller's hold is untouched: no second hold, none dropped
    lock.unlock(h);
    expect(Array.from(pages)).toEqual(framesOf(p, a, 4));
    expect(pages.every((f) => folioMaybeDmaPinned(m, f))).toBe(true);
    unpinUserPages(m, pages, 4);
    // No hold: taken for read around the walk and released.
    expect(getUserPages(p, a + 4 * PAGE, 4, {}, pages)).toBe(4);
    expect(lock.held).toBe(false);
    releasePages(m, pages, 4);
    const hole = mmap(p, { length: PAGE });
    p.munmap(hole, PAGE);
    expect(code(() => pinUserPages(p, hole, 1, {}, pages))).toBe("EFAULT:start");
    expect(lock.held).toBe(false);
    expect(framesOf(p, a, 8).every((f) => counts(m, f).ref === 1)).toBe(true);
  });

  it("the fast variants' fallback takes it for read itself (gup_fast_fallback): under a write hold it would deadlock", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 4); // written: GUP-fast takes them all, no lock needed
    const b = mmap(p, { length: 4 * PAGE }); // never touched: the slow path must fault them in
    const pages = new Float64Array(4);
    const h = p.mm.mmapLock.lock("write", "a driver's mmap handler");
    expect(pinUserPagesFast(p, a, 4, {}, pages)).toBe(4);
    unpinUserPages(m, pages, 4);
    expect(code(() => pinUserPagesFast(p, b, 4, {}, pages))).toMatch(/^EDEADLK/);
    expect(p.mm.mmapLock.holders).toEqual([h]);
    p.mm.mmapLock.unlock(h);
    expect(pinUserPagesFast(p, b, 4, {}, pages)).toBe(4);
    unpinUserPages(m, pages, 4);
    expect(framesOf(p, b, 4).every((f) => counts(m, f).pin === 0)).toBe(true);
  });
});
