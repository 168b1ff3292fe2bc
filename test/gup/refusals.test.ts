/**
 * What GUP refuses, with the kernel's errno (mm/gup.c is_valid_gup_args, gup_fast_fallback,
 * check_vma_flags, __get_user_pages; KERNEL-SPEC 3.2-3.3), and the short counts: a call
 * that took some pages returns how many; one that took none throws. A refused release
 * changes nothing.
 */
import { describe, expect, it } from "vitest";
import {
  createMachine, DmaError, FOLL, getUserPages, getUserPagesFast, getUserPagesFastOnly, pinUserPages, pinUserPagesFast,
  pinUserPagesFastOnly, releasePages, unpinUserPages, unpinUserPagesDirtyLock,
} from "../../src/index.js";
import { buffer, caught, code, counts, framesOf, gupMachine, leaf, mmap, PAGE, str, text } from "./gup-helpers.js";

describe("argument rules (is_valid_gup_args, gup_fast_fallback)", () => {
  it("the fast entry points refuse bad flag combinations with EINVAL; pin_user_pages returns 0", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 4);
    const pages = new Float64Array(4);
    expect(code(() => getUserPagesFast(p, a, 4, { longterm: true }, pages))).toBe("EINVAL:gupFlags"); // LONGTERM without PIN
    expect(code(() => pinUserPagesFast(p, a, 4, FOLL.PIN, pages))).toBe("EINVAL:gupFlags"); // an internal flag
    expect(code(() => pinUserPagesFast(p, a, 4, FOLL.GET, pages))).toBe("EINVAL:gupFlags"); // GET with PIN
    expect(code(() => pinUserPagesFast(p, a, 4, { longterm: true, pciP2pdma: true }, pages))).toBe("EINVAL:gupFlags");
    expect(code(() => pinUserPagesFast(p, a, 4, { anon: true }, pages))).toBe("EINVAL:gupFlags"); // not a fast flag
    expect(code(() => pinUserPagesFast(p, a, 4, { bogus: true } as never, pages))).toBe("EINVAL:gupFlags");
    expect(code(() => pinUserPagesFast(p, a, 4, 1 << 30, pages))).toBe("EINVAL:gupFlags");
    expect(pinUserPages(p, a, 4, FOLL.TOUCH, pages)).toBe(0);
    expect(pinUserPages(p, a, 4, { longterm: true, pciP2pdma: true }, pages)).toBe(0);
    expect(code(() => pinUserPagesFast(p, a, 4, {}, undefined as never))).toBe("EINVAL:gupFlags"); // no pages array
    expect(code(() => pinUserPagesFast(p, a, 4, {}, new Float64Array(3)))).toBe("EINVAL:pages");
    expect(code(() => pinUserPagesFast(p, a, -1, {}, pages))).toBe("EINVAL:nrPages");
    expect(framesOf(p, a, 4).every((f) => counts(m, f).ref === 1)).toBe(true);
  });

  it("a range that overflows is EOVERFLOW; one above the user address space is EFAULT; start is rounded down", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 2);
    const pages = new Float64Array(2);
    expect(code(() => pinUserPagesFast(p, a, 2 ** 52, {}, new Float64Array(0) as never))).toBe("EINVAL:pages");
    expect(caught(() => getUserPagesFast(p, 2 ** 47 - PAGE, 2, {}, pages)).code).toBe("EFAULT");
    expect(caught(() => getUserPagesFast(p, (1n << 64n) - 4096n, 2, {}, pages)).code).toBe("EOVERFLOW");
    expect(getUserPagesFast(p, a + 123, 2, {}, pages)).toBe(2); // untagged_addr(start) & PAGE_MASK
    expect([...pages]).toEqual(framesOf(p, a, 2));
    releasePages(m, pages, 2);
  });

  it("a process that has exited is ESRCH", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 1);
    p.exit();
    expect(code(() => pinUserPagesFast(p, a, 1, {}, new Float64Array(1)))).toBe("ESRCH:process");
  });
});

describe("short counts and holes", () => {
  it("a range running into a hole returns the pages before it; one starting in a hole is EFAULT", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 8);
    p.munmap(a + 5 * PAGE, 3 * PAGE);
    const pages = new Float64Array(8);
    expect(pinUserPagesFast(p, a, 8, { write: true }, pages)).toBe(5);
    expect(pinUserPages(p, a, 8, { write: true }, pages.subarray(5 - 5))).toBe(5);
    unpinUserPages(m, pages, 5);
    const e = caught(() => pinUserPagesFast(p, a + 5 * PAGE, 2, {}, pages));
    expect([e.code, e.arg]).toEqual(["EFAULT", "start"]);
    expect(e.message).toMatch(/no VMA at/);
    unpinUserPages(m, framesOf(p, a, 5), 5);
    expect(framesOf(p, a, 5).every((f) => counts(m, f).ref === 1)).toBe(true);
  });

  it("FOLL_NOFAULT takes what is present and stops at the first page that would need a fault", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = mmap(p, { length: 8 * PAGE });
    p.touch(a, 3 * PAGE, "w");
    const pages = new Float64Array(8);
    expect(pinUserPagesFast(p, a, 8, { write: true, nofault: true }, pages)).toBe(3);
    expect(leaf(p, a + 3 * PAGE).present).toBe(false);
    unpinUserPages(m, pages, 3);
    expect(caught(() => pinUserPagesFast(p, a + 3 * PAGE, 1, { nofault: true }, pages)).code).toBe("EFAULT");
  });

  it("the fast-only calls never fault: nothing present, nothing taken (0, not an error)", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = mmap(p, { length: 4 * PAGE });
    const pages = new Float64Array(4);
    expect(pinUserPagesFastOnly(p, a, 4, {}, pages)).toBe(0);
    expect(getUserPagesFastOnly(p, a, 4, {}, pages)).toBe(0);
    expect(leaf(p, a).present).toBe(false);
    expect(pinUserPagesFast(p, a, 4, { write: true }, pages)).toBe(4); // the slow path faults them in
    unpinUserPages(m, pages, 4);
  });
});

describe("VMA rules (check_vma_flags)", () => {
  it("VM_IO | VM_PFNMAP device memory has no struct pages: EFAULT", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const dev = mmap(p, { length: 4 * PAGE, devicePfn: 0x100, shared: true });
    p.read(dev, 1); // mapped (special PTEs)
    const pages = new Float64Array(4);
    const e = caught(() => pinUserPagesFast(p, dev, 4, {}, pages));
    expect([e.code, e.arg]).toEqual(["EFAULT", "start"]);
    expect(e.message).toMatch(/VM_IO \| VM_PFNMAP/);
    expect(caught(() => getUserPages(p, dev, 1, {}, pages)).code).toBe("EFAULT");
  });

  it("a write to a read-only mapping needs FOLL_FORCE, and then only a private one: it gets a private copy", async () => {
    const m = await gupMachine();
    const f = m.fs.create("/f", { size: 4 * PAGE });
    m.fs.write("/f", 0, text("file data"));
    const p = m.spawn();
    const ro = mmap(p, { length: 4 * PAGE, prot: "r", file: "/f" });
    const shared = mmap(p, { length: 4 * PAGE, prot: "r", file: "/f", shared: true });
    const pages = new Float64Array(1);
    expect(caught(() => pinUserPagesFast(p, ro, 1, { write: true }, pages)).message).toMatch(/without FOLL_FORCE/);
    expect(caught(() => pinUserPagesFast(p, shared, 1, { write: true, force: true }, pages)).message).toMatch(/only private/);
    // ptrace's way in: FOLL_FORCE | FOLL_WRITE on the private mapping breaks COW into an
    // anonymous page that the VMA still maps read-only.
    expect(pinUserPagesFast(p, ro, 1, { write: true, force: true }, pages)).toBe(1);
    const pfn = pages[0]!;
    expect(m.page(pfn).flags).toEqual(expect.arrayContaining(["anon", "anon_exclusive"]));
    expect(f.pages.get(0)).not.toBe(pfn);
    expect(leaf(p, ro)).toMatchObject({ present: true, write: false, pfn });
    m.phys.write(pfn * PAGE, text("poked"));
    expect(str(p.read(ro, 5))).toBe("poked");
    expect(str(m.fs.read("/f", 0, 9))).toBe("file data"); // the file never saw it
    unpinUserPages(m, pages, 1);
  });

  it("a read of PROT_NONE memory needs FOLL_FORCE", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = mmap(p, { length: PAGE, prot: "" });
    expect(caught(() => getUserPagesFast(p, a, 1, {}, new Float64Array(1))).message).toMatch(/unreadable VMA/);
  });

  it("FOLL_LONGTERM | FOLL_WRITE pins of a shared file mapping are EFAULT (dirty tracking); shmem and private mappings pin", async () => {
    const m = await gupMachine();
    m.fs.create("/f", { size: 4 * PAGE });
    const p = m.spawn();
    const shared = mmap(p, { length: 4 * PAGE, file: "/f", shared: true });
    const priv = mmap(p, { length: 4 * PAGE, file: "/f" });
    const shm = mmap(p, { length: 4 * PAGE, shared: true });
    const pages = new Float64Array(4);
    const e = caught(() => pinUserPages(p, shared, 4, { write: true, longterm: true }, pages));
    expect([e.code, e.arg]).toEqual(["EFAULT", "start"]);
    expect(e.message).toMatch(/tracks dirty pages/);
    // GUP-fast refuses it too (gup_fast_folio_allowed), once the pages are in: no pin taken.
    p.touch(shared, 4 * PAGE, "w");
    expect(pinUserPagesFastOnly(p, shared, 4, { write: true, longterm: true }, pages)).toBe(0);
    expect(pinUserPagesFast(p, shared, 4, { write: true }, pages)).toBe(4); // not long-term: allowed
    unpinUserPages(m, pages, 4);
    expect(pinUserPages(p, shm, 4, { write: true, longterm: true }, pages)).toBe(4);
    unpinUserPages(m, pages, 4);
    expect(pinUserPages(p, priv, 4, { write: true, longterm: true }, pages)).toBe(4);
    expect(m.page(pages[0]!).flags).toContain("anon"); // the private copy, not the file's page
    unpinUserPages(m, pages, 4);
  });

  it("FOLL_LONGTERM on fsdax is EOPNOTSUPP (a pin would hold a file's block through truncate); a short pin is fine", async () => {
    const m = await createMachine({ memory: { normal: "64MiB", movable: 0, cma: 0, pmem: "16MiB" }, cpus: 2 });
    m.fs.create("/pmem/f", { size: 8 * PAGE, dax: true });
    const p = m.spawn();
    const a = mmap(p, { length: 8 * PAGE, file: "/pmem/f", shared: true });
    p.touch(a, 8 * PAGE, "w");
    const pages = new Float64Array(8);
    const e = caught(() => pinUserPages(p, a, 8, { write: true, longterm: true }, pages));
    expect([e.code, e.arg]).toEqual(["EOPNOTSUPP", "gupFlags"]);
    expect(pinUserPagesFastOnly(p, a, 8, { longterm: true }, pages)).toBe(0); // devmap: GUP-fast stops
    expect(pinUserPagesFast(p, a, 8, { write: true }, pages)).toBe(8);
    expect(pages.every((pfn) => m.page(pfn).zone === "DEVICE")).toBe(true);
    unpinUserPages(m, pages, 8);
  });
});

describe("releases that do not match what was taken", () => {
  it("unpinning a page that is not pinned is EINVAL naming the entry, and nothing is released", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 4);
    const pages = new Float64Array(4);
    pinUserPagesFast(p, a, 3, {}, pages); // pages[3] stays 0... make it a real, unpinned frame:
    pages[3] = framesOf(p, a + 3 * PAGE, 1)[0]!;
    const before = framesOf(p, a, 4).map((f) => counts(m, f));
    const e = caught(() => unpinUserPages(m, pages, 4));
    expect([e.code, e.arg]).toEqual(["EINVAL", "pages"]);
    expect(e.message).toMatch(/pages\[3\] is not pinned/);
    expect(framesOf(p, a, 4).map((f) => counts(m, f))).toEqual(before);
    expect(m.vmstat().nr_foll_pin_released).toBe(0);
    // The same page twice, pinned once: the second entry finds no pin left.
    const twice = [pages[0]!, pages[0]!];
    expect(caught(() => unpinUserPages(m, twice, 2)).message).toMatch(/pages\[0\]/);
    expect(framesOf(p, a, 4).map((f) => counts(m, f))).toEqual(before);
    // A put of a FOLL_GET reference that was never taken: the mapping's own reference stays.
    unpinUserPages(m, pages, 3);
    expect(code(() => releasePages(m, [pages[0]!, pages[0]!], 2))).toBe("EINVAL:pages");
    expect(code(() => unpinUserPages(m, [1.5], 1))).toBe("EINVAL:pages");
    expect(code(() => unpinUserPages(m, new Float64Array([-1]), 1))).toBe("EINVAL:pages");
    expect(framesOf(p, a, 4).every((f) => counts(m, f).ref === 1)).toBe(true);
  });

  it("a dirtying release adds up each folio's entries wherever they are in the array", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 4);
    const f = framesOf(p, a, 4);
    const pages = new Float64Array(4);
    pinUserPagesFast(p, a, 4, {}, pages);
    // pages[2]'s frame listed twice, apart, with one pin: refused at its first entry.
    const before = f.map((x) => counts(m, x));
    const e = caught(() => unpinUserPagesDirtyLock(m, [f[2]!, f[0]!, f[2]!], 3, true));
    expect([e.code, e.arg]).toEqual(["EINVAL", "pages"]);
    expect(e.message).toMatch(/pages\[0\] is not pinned/);
    expect(f.map((x) => counts(m, x))).toEqual(before);
    // With a second pin on it, the same kind of array goes through: every pin comes back.
    pinUserPagesFast(p, a + PAGE, 1, {}, new Float64Array(1));
    unpinUserPagesDirtyLock(m, [f[1]!, f[0]!, f[3]!, f[1]!, f[2]!], 5, true);
    expect(f.map((x) => counts(m, x).ref)).toEqual([1, 1, 1, 1]);
    expect(m.vmstat().nr_foll_pin_released).toBe(5);
  });

  it("a shuffled dirtying release larger than a checked batch releases every pin", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const n = 5000; // more than half a ring (4096 entries): several checked batches
    const a = buffer(p, n);
    const pages = new Float64Array(n);
    expect(pinUserPagesFast(p, a, n, {}, pages)).toBe(n);
    // A fixed shuffle (the same every run).
    for (let i = n - 1, x = 12345; i > 0; i--) {
      x = (x * 1103515245 + 12345) >>> 0;
      const j = x % (i + 1);
      [pages[i], pages[j]] = [pages[j]!, pages[i]!];
    }
    unpinUserPagesDirtyLock(m, pages, n, true);
    expect(m.vmstat().nr_foll_pin_released).toBe(n);
    expect(framesOf(p, a, n).every((x) => counts(m, x).ref === 1 && m.page(x).flags.includes("dirty"))).toBe(true);
  });

  it("a DmaError, never a bare error, for a frame beyond the machine", async () => {
    const m = await gupMachine();
    const e = caught(() => unpinUserPages(m, new Float64Array([2 ** 31]), 1));
    expect(e).toBeInstanceOf(DmaError);
    expect(e.message).toMatch(/no frame of this machine/);
  });
});
