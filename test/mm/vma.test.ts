/**
 * VMAs of a process (mm/vma.c, mm/mmap.c, mm/mprotect.c, mm/madvise.c): splits and merges
 * as /proc/pid/maps shows them, MAP_FIXED and MAP_FIXED_NOREPLACE, address hints, THP
 * alignment of large anonymous mappings, the signals of accesses the VMAs do not allow, and
 * MADV_DONTNEED.
 */
import { describe, expect, it } from "vitest";
import type { Machine, Process } from "../../src/index.js";
import {
  caught, code, counter, fillPages, holdsPattern, HPAGE, leaf, mmap, mmMachine, PAGE, pfnAt, procSnapshot, str, text,
} from "./mm-helpers.js";

async function setup(thp: "always" | "madvise" | "never" = "madvise"): Promise<{ m: Machine; p: Process }> {
  const m = await mmMachine({ mm: { thp } });
  return { m, p: m.spawn(0) };
}

describe("split_vma and vma_merge, as /proc/pid/maps shows them", () => {
  it("munmap of the middle of a VMA splits it in two; the outer pages keep their data, the hole faults", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 8 * PAGE });
    fillPages(p, a, 8, 0x10);
    p.munmap(a + 3 * PAGE, 2 * PAGE);
    const maps = p.maps();
    expect(maps.map((e) => [e.start, e.end, e.perms])).toEqual([
      [a, a + 3 * PAGE, "rw-p"],
      [a + 5 * PAGE, a + 8 * PAGE, "rw-p"],
    ]);
    for (const i of [0, 1, 2, 5, 6, 7]) expect(holdsPattern(p, a, i, 0x10)).toBe(true);
    expect(caught(() => p.read(a + 3 * PAGE, 1)).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(caught(() => p.read(a + 4 * PAGE + 4095, 1)).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(p.mm.rss.anon).toBe(6);
  });

  it("munmap of a VMA's head or tail shrinks it; munmap over holes and several VMAs is fine (no error for holes)", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 6 * PAGE });
    p.munmap(a, PAGE);
    p.munmap(a + 5 * PAGE, PAGE);
    expect(p.maps().map((e) => [e.start, e.end])).toEqual([[a + PAGE, a + 5 * PAGE]]);
    p.munmap(a - 16 * PAGE, 64 * PAGE); // holes on both sides
    expect(p.maps()).toEqual([]);
  });

  it("mprotect of the middle splits the VMA in three with the new rights there; mprotect back merges them into one", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 6 * PAGE });
    fillPages(p, a, 6, 0x20); // the VMA has an anon_vma: the pieces share it and can merge again
    p.mprotect(a + 2 * PAGE, 2 * PAGE, "r");
    expect(p.maps().map((e) => [e.start, e.end, e.perms])).toEqual([
      [a, a + 2 * PAGE, "rw-p"],
      [a + 2 * PAGE, a + 4 * PAGE, "r--p"],
      [a + 4 * PAGE, a + 6 * PAGE, "rw-p"],
    ]);
    expect(leaf(p, a + 2 * PAGE).write).toBe(false);
    expect(leaf(p, a + PAGE).write).toBe(true);
    expect(code(() => p.write(a + 2 * PAGE, text("x")))).toBe("EFAULT:va");
    p.mprotect(a + 2 * PAGE, 2 * PAGE, "rw");
    expect(p.maps().map((e) => [e.start, e.end, e.perms])).toEqual([[a, a + 6 * PAGE, "rw-p"]]);
    // Write again: an exclusive page is reused in place (no copy), data kept.
    const pfn = pfnAt(p, a + 2 * PAGE);
    p.write(a + 2 * PAGE, text("y"));
    expect(pfnAt(p, a + 2 * PAGE)).toBe(pfn);
    for (let i = 0; i < 6; i++) expect(holdsPattern(p, a, i, 0x20) || i === 2).toBe(true);
  });

  it("mprotect over several VMAs gives them one set of rights and merges what then continues each other", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 6 * PAGE });
    p.mprotect(a + PAGE, PAGE, "r");
    p.mprotect(a + 3 * PAGE, PAGE, "");
    expect(p.maps().length).toBe(5);
    p.mprotect(a, 6 * PAGE, "rw");
    expect(p.maps().map((e) => [e.start, e.end, e.perms])).toEqual([[a, a + 6 * PAGE, "rw-p"]]);
  });

  it("mprotect leaves a VMA whose rights do not change uncut (mprotect_fixup: newflags == oldflags)", async () => {
    const { p } = await setup();
    const a = mmap(p, { addr: 0x3000_0000, length: 8 * PAGE, prot: "rx", fixed: true });
    mmap(p, { addr: a + 8 * PAGE, length: 8 * PAGE, prot: "rw", fixed: true });
    // [a+4, a+12): the r-x half changes and joins the rw VMA, which the range only partly covers.
    p.mprotect(a + 4 * PAGE, 8 * PAGE, "rw");
    expect(p.maps().map((e) => [e.start, e.end, e.perms])).toEqual([
      [a, a + 4 * PAGE, "r-xp"],
      [a + 4 * PAGE, a + 16 * PAGE, "rw-p"],
    ]);
  });

  it("an anonymous mmap right next to an anonymous VMA with the same rights merges with it (anon vm_pgoff is the address)", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 4 * PAGE });
    const b = mmap(p, { length: 2 * PAGE }); // top-down: directly below a
    expect(b).toBe(a - 2 * PAGE);
    expect(p.maps().map((e) => [e.start, e.end])).toEqual([[b, a + 4 * PAGE]]);
  });

  it("a new anonymous VMA merges with a neighbour that already has an anon_vma (is_mergeable_anon_vma: one side has none)", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 4 * PAGE });
    p.write(a, text("anon_vma now")); // a has an anon_vma; the new VMA has none yet
    const b = mmap(p, { addr: a + 4 * PAGE, length: 2 * PAGE, fixedNoReplace: true });
    expect(b).toBe(a + 4 * PAGE);
    expect(p.maps().map((e) => [e.start, e.end])).toEqual([[a, a + 6 * PAGE]]);
    p.write(b, text("b"));
    expect(str(p.read(a, 12))).toBe("anon_vma now");
    expect(str(p.read(b, 1))).toBe("b");
  });

  it("VMAs that differ in rights, sharing or backing stay apart", async () => {
    const { m, p } = await setup();
    const a = mmap(p, { length: 2 * PAGE, prot: "rw" });
    mmap(p, { addr: a - 2 * PAGE, length: 2 * PAGE, prot: "r", fixedNoReplace: true });
    mmap(p, { addr: a + 2 * PAGE, length: 2 * PAGE, shared: true, fixedNoReplace: true });
    m.fs.create("/f", { size: 8 * PAGE });
    mmap(p, { addr: a + 4 * PAGE, length: 2 * PAGE, file: "/f", fixedNoReplace: true });
    expect(p.maps().map((e) => [e.perms, e.kind])).toEqual([
      ["r--p", "anon"], ["rw-p", "anon"], ["rw-s", "shmem"], ["rw-p", "file"],
    ]);
  });

  it("file mappings merge only where the file offsets continue each other", async () => {
    const { m, p } = await setup();
    m.fs.create("/f", { size: 16 * PAGE });
    const base = 0x3000_0000;
    mmap(p, { addr: base, length: PAGE, file: "/f", offset: 0, fixed: true });
    mmap(p, { addr: base + PAGE, length: PAGE, file: "/f", offset: PAGE, fixed: true });
    expect(p.maps().map((e) => [e.start, e.end, e.offset, e.path])).toEqual([[base, base + 2 * PAGE, 0, "/f"]]);
    mmap(p, { addr: base + 2 * PAGE, length: PAGE, file: "/f", offset: 5 * PAGE, fixed: true });
    expect(p.maps().map((e) => [e.start, e.offset])).toEqual([[base, 0], [base + 2 * PAGE, 5 * PAGE]]);
    p.munmap(base, PAGE); // the remaining piece keeps its file offset
    expect(p.maps().map((e) => [e.start, e.offset])).toEqual([[base + PAGE, PAGE], [base + 2 * PAGE, 5 * PAGE]]);
  });
});

describe("MAP_FIXED, MAP_FIXED_NOREPLACE and hints", () => {
  it("MAP_FIXED over part of a mapping replaces it: the old pages are gone (freed), the new ones read zero", async () => {
    const { m, p } = await setup();
    const a = mmap(p, { length: 6 * PAGE });
    fillPages(p, a, 6, 0x40);
    const old = [2, 3].map((i) => pfnAt(p, a + i * PAGE));
    const r = mmap(p, { addr: a + 2 * PAGE, length: 2 * PAGE, prot: "r", fixed: true });
    expect(r).toBe(a + 2 * PAGE);
    expect(p.maps().map((e) => [e.start, e.end, e.perms])).toEqual([
      [a, a + 2 * PAGE, "rw-p"],
      [a + 2 * PAGE, a + 4 * PAGE, "r--p"],
      [a + 4 * PAGE, a + 6 * PAGE, "rw-p"],
    ]);
    for (const pfn of old) expect(m.page(pfn).refcount).toBe(0);
    expect(p.read(a + 2 * PAGE, 2 * PAGE).every((b) => b === 0)).toBe(true);
    for (const i of [0, 1, 4, 5]) expect(holdsPattern(p, a, i, 0x40)).toBe(true);
    expect(p.mm.rss.anon).toBe(4);
  });

  it("MAP_FIXED over several mappings and holes replaces all of them with one VMA", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 2 * PAGE, addr: 0x2000_0000 });
    mmap(p, { length: 2 * PAGE, addr: 0x2000_4000, prot: "r" });
    fillPages(p, a, 2, 1);
    mmap(p, { addr: 0x2000_0000 - PAGE, length: 8 * PAGE, prot: "rwx", fixed: true });
    expect(p.maps().map((e) => [e.start, e.end, e.perms])).toEqual([[0x2000_0000 - PAGE, 0x2000_0000 + 7 * PAGE, "rwxp"]]);
    expect(p.read(a, PAGE).every((b) => b === 0)).toBe(true);
  });

  it("MAP_FIXED_NOREPLACE over any mapped page fails with EEXIST and changes nothing; over a free range it maps there", async () => {
    const { m, p } = await setup();
    const a = mmap(p, { length: 4 * PAGE });
    fillPages(p, a, 4, 7);
    const before = procSnapshot(m, [p], [[a - 4 * PAGE, a + 8 * PAGE]]);
    expect(code(() => mmap(p, { addr: a + 3 * PAGE, length: 4 * PAGE, fixedNoReplace: true }))).toBe("EEXIST:addr");
    expect(code(() => mmap(p, { addr: a - PAGE, length: 2 * PAGE, fixedNoReplace: true }))).toBe("EEXIST:addr");
    expect(procSnapshot(m, [p], [[a - 4 * PAGE, a + 8 * PAGE]])).toBe(before);
    expect(mmap(p, { addr: a + 8 * PAGE, length: PAGE, fixedNoReplace: true, prot: "r" })).toBe(a + 8 * PAGE);
  });

  it("a hint is honoured when the range is free; a taken hint is not clobbered", async () => {
    const { p } = await setup();
    expect(mmap(p, { addr: 0x1000_0000, length: 3 * PAGE })).toBe(0x1000_0000);
    p.write(0x1000_0000, text("keep"));
    const b = mmap(p, { addr: 0x1000_0000 + PAGE, length: 3 * PAGE, prot: "r" });
    expect(b).not.toBe(0x1000_0000 + PAGE);
    expect(b + 3 * PAGE <= 0x1000_0000 || b >= 0x1000_0000 + 3 * PAGE).toBe(true);
    expect(str(p.read(0x1000_0000, 4))).toBe("keep");
  });

  it("a free hint is honoured even for a THP-sized anonymous mapping it does not 2 MiB-align (the hint wins)", async () => {
    const { p } = await setup("always");
    const hint = 0x2000_0000 + 16 * PAGE;
    expect(mmap(p, { addr: hint, length: 2 * HPAGE })).toBe(hint);
  });

  it("anonymous mappings of 2 MiB or more are 2 MiB-aligned when THP is always or madvise", async () => {
    for (const thp of ["always", "madvise"] as const) {
      const { p } = await setup(thp);
      const first = mmap(p, { length: 3 * PAGE }); // the top of the free area is off a 2 MiB boundary
      expect(first % HPAGE).not.toBe(0);
      for (const len of [HPAGE, HPAGE + PAGE, 3 * HPAGE]) {
        const a = mmap(p, { length: len });
        expect(a % HPAGE, `${thp} ${len}`).toBe(0);
      }
      // A smaller mapping is not aligned: it takes the highest free gap, the one the
      // alignment left right below the first mapping.
      expect(mmap(p, { length: 5 * PAGE })).toBe(first - 5 * PAGE);
    }
  });

  it("with THP never, large anonymous mappings are packed top-down like any other (no 2 MiB alignment padding)", async () => {
    const { p } = await setup("never");
    const a = mmap(p, { length: 3 * PAGE });
    const b = mmap(p, { length: 2 * HPAGE });
    expect(b).toBe(a - 2 * HPAGE);
  });
});

describe("accesses the VMAs do not allow: SIGSEGV and SIGBUS (EFAULT)", () => {
  it("a read of PROT_NONE memory is SIGSEGV, both never touched and after mprotect(PROT_NONE) of populated pages", async () => {
    const { p } = await setup();
    const none = mmap(p, { length: PAGE, prot: "" });
    const e = caught(() => p.read(none, 1));
    expect([e.code, e.arg]).toEqual(["EFAULT", "va"]);
    expect(e.message).toMatch(/^EFAULT: SIGSEGV/);
    const a = mmap(p, { length: 2 * PAGE });
    p.write(a, text("secret"));
    p.mprotect(a, 2 * PAGE, "");
    expect(caught(() => p.read(a, 6)).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(caught(() => p.write(a, text("x"))).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(leaf(p, a).present).toBe(true); // the page is still there, only unreachable
    p.mprotect(a, 2 * PAGE, "r");
    expect(str(p.read(a, 6))).toBe("secret");
  });

  it("a write to read-only memory is SIGSEGV and changes nothing; the read works", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: PAGE });
    p.write(a, text("before"));
    p.mprotect(a, PAGE, "r");
    expect(caught(() => p.write(a, text("after!"))).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(str(p.read(a, 6))).toBe("before");
    const ro = mmap(p, { length: PAGE, prot: "r" });
    expect(caught(() => p.write(ro + 100, text("x"))).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(p.read(ro + 100, 1)).toEqual(new Uint8Array(1));
  });

  it("a write running into PROT_NONE stores the bytes before the faulting page (in order, as a CPU's copy does), not after", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 4 * PAGE }); // never touched: every page faults on the way
    p.mprotect(a + 2 * PAGE, PAGE, "");
    const data = new Uint8Array(3 * PAGE).fill(0xab);
    const e = caught(() => p.write(a + PAGE / 2, data));
    expect([e.code, e.arg]).toEqual(["EFAULT", "va"]);
    expect(e.message).toContain((a + 2 * PAGE).toString(16));
    const first = p.read(a, 2 * PAGE);
    expect(first.subarray(0, PAGE / 2).every((b) => b === 0)).toBe(true);
    expect(first.subarray(PAGE / 2).every((b) => b === 0xab)).toBe(true); // 1.5 pages stored
    expect(p.read(a + 3 * PAGE, PAGE).every((b) => b === 0)).toBe(true); // the page after: untouched
  });

  it("an access of unmapped memory is SIGSEGV: a hole, below every mapping, a non-canonical address", async () => {
    const { p } = await setup();
    const a = mmap(p, { length: 3 * PAGE });
    p.munmap(a + PAGE, PAGE);
    expect(caught(() => p.read(a + PAGE + 8, 1)).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(caught(() => p.write(0x10_0000, text("x"))).message).toMatch(/^EFAULT: SIGSEGV/);
    expect(caught(() => p.touch(0x8000_0000_0000, PAGE, "r")).message).toMatch(/^EFAULT: SIGSEGV/);
    // A read spanning into the hole fails at the hole.
    expect(caught(() => p.read(a + PAGE - 4, 8)).message).toMatch(/^EFAULT: SIGSEGV/);
  });

  it("a file page beyond end of file is SIGBUS; the last, partial page reads the file's bytes then zeros", async () => {
    const { m, p } = await setup();
    m.fs.create("/f", { size: PAGE + 10 });
    m.fs.write("/f", PAGE, text("0123456789"));
    for (const shared of [false, true]) {
      const f = mmap(p, { length: 4 * PAGE, file: "/f", shared });
      expect(str(p.read(f + PAGE, 10))).toBe("0123456789");
      expect(p.read(f + PAGE + 10, 100).every((b) => b === 0)).toBe(true);
      const e = caught(() => p.read(f + 2 * PAGE, 1));
      expect([e.code, e.arg]).toEqual(["EFAULT", "va"]);
      expect(e.message).toMatch(/^EFAULT: SIGBUS/);
      expect(caught(() => p.write(f + 3 * PAGE + 5, text("x"))).message).toMatch(/^EFAULT: SIGBUS/);
    }
    expect(counter(m, "mm.faults.SIGBUS")).toBe(4);
  });
});

describe("madvise(MADV_DONTNEED)", () => {
  it("anonymous pages read zeros afterwards; the VMA stays; the frames are freed", async () => {
    const { m, p } = await setup();
    const a = mmap(p, { length: 4 * PAGE });
    fillPages(p, a, 4, 0x50);
    const pfns = [1, 2].map((i) => pfnAt(p, a + i * PAGE));
    const maps = p.maps();
    p.madvise(a + PAGE, 2 * PAGE, "dontneed");
    expect(p.maps()).toEqual(maps);
    for (const pfn of pfns) expect(m.page(pfn).refcount).toBe(0);
    expect(p.mm.rss.anon).toBe(2);
    expect(p.read(a + PAGE, 2 * PAGE).every((b) => b === 0)).toBe(true);
    expect(holdsPattern(p, a, 0, 0x50) && holdsPattern(p, a, 3, 0x50)).toBe(true);
  });

  it("private file pages are read again from the page cache (the private copy is dropped)", async () => {
    const { m, p } = await setup();
    m.fs.create("/f", { size: 2 * PAGE });
    m.fs.write("/f", 0, text("file bytes"));
    const f = mmap(p, { length: 2 * PAGE, file: "/f" });
    p.write(f, text("PRIVATE"));
    expect(str(p.read(f, 10))).toBe("PRIVATEtes");
    expect(str(m.fs.read("/f", 0, 10))).toBe("file bytes");
    p.madvise(f, 2 * PAGE, "dontneed");
    expect(str(p.read(f, 10))).toBe("file bytes");
    expect(pfnAt(p, f)).toBe(m.fs.lookup("/f").pages.get(0));
  });

  it("shared file and shared anonymous pages keep their contents (only the mapping goes)", async () => {
    const { m, p } = await setup();
    m.fs.create("/f", { size: PAGE });
    const f = mmap(p, { length: PAGE, file: "/f", shared: true });
    const s = mmap(p, { length: PAGE, shared: true });
    p.write(f, text("shared file"));
    p.write(s, text("shmem"));
    p.madvise(f, PAGE, "dontneed");
    p.madvise(s, PAGE, "dontneed");
    expect(leaf(p, f).present || leaf(p, s).present).toBe(false);
    expect(str(p.read(f, 11))).toBe("shared file");
    expect(str(p.read(s, 5))).toBe("shmem");
    expect(str(m.fs.read("/f", 0, 11))).toBe("shared file");
  });
});
