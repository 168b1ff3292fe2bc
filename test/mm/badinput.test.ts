/**
 * Bad input to the address-space calls: each fails with the errno Linux gives (or, for the
 * emulator's stricter edge — lengths must be whole pages — EINVAL), names the argument,
 * and changes nothing: zones, backing, TLBs, page-table entries, maps, RSS (the snapshot).
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { Machine, Process } from "../../src/index.js";
import { code, mmap, mmMachine, PAGE, procSnapshot, text } from "./mm-helpers.js";

const BASE = 0x4000_0000;
const RANGES: [number, number][] = [[BASE - 4 * PAGE, BASE + 24 * PAGE]];
const TOP = 0x7fff_ffff_f000; // the last user page (TASK_SIZE_MAX - 4 KiB)

let m: Machine;
let p: Process;

beforeEach(async () => {
  m = await mmMachine();
  m.fs.create("/f", { size: 2 * PAGE });
  p = m.spawn(0);
  mmap(p, { addr: BASE, length: 4 * PAGE, fixed: true });
  p.write(BASE, text("anon"));
  mmap(p, { addr: BASE + 8 * PAGE, length: 2 * PAGE, prot: "r", fixed: true });
  p.read(BASE + 8 * PAGE, 1);
  mmap(p, { addr: BASE + 16 * PAGE, length: 3 * PAGE, file: "/f", shared: true, fixed: true }); // a page past EOF
  p.write(BASE + 16 * PAGE, text("file"));
});

/** Each case: the call and "ERRNO:arg". Every one must leave the snapshot as it was. */
function expectRefused(cases: [string, () => unknown, string][], opts: { tlb?: boolean } = {}): void {
  for (const [name, fn, want] of cases) {
    const before = procSnapshot(m, [p], RANGES, opts);
    expect(code(fn), name).toBe(want);
    expect(procSnapshot(m, [p], RANGES, opts), `${name}: state changed`).toBe(before);
  }
}

describe("mmap refuses bad input and changes nothing", () => {
  it("zero, unaligned, non-integer and overflowing lengths (EINVAL length; ENOMEM when no room)", () => {
    expectRefused([
      ["length 0", () => mmap(p, { length: 0 }), "EINVAL:length"],
      ["length 4095", () => mmap(p, { length: 4095 }), "EINVAL:length"],
      ["length 4097", () => mmap(p, { length: PAGE + 1 }), "EINVAL:length"],
      ["length -4096", () => mmap(p, { length: -PAGE }), "EINVAL:length"],
      ["length 1.5 pages", () => mmap(p, { length: 1.5 * PAGE }), "EINVAL:length"],
      ["length NaN", () => mmap(p, { length: NaN }), "EINVAL:length"],
      ["length 2^64", () => mmap(p, { length: 2n ** 64n }), "EINVAL:length"],
      ["length larger than user space", () => mmap(p, { length: 2 ** 50 }), "ENOMEM:length"],
    ]);
  });

  it("addresses: unaligned, MAP_FIXED without one, ranges past the top of user space, a kernel-half address", () => {
    expectRefused([
      ["unaligned fixed address", () => mmap(p, { addr: BASE + 100, length: PAGE, fixed: true }), "EINVAL:addr"],
      ["unaligned hint", () => mmap(p, { addr: BASE + 32 * PAGE + 1, length: PAGE }), "EINVAL:addr"],
      ["MAP_FIXED without an address", () => mmap(p, { length: PAGE, fixed: true }), "EINVAL:addr"],
      ["fixed range past TASK_SIZE", () => mmap(p, { addr: TOP, length: 2 * PAGE, fixed: true }), "EINVAL:addr"],
      ["fixed kernel-half address", () => mmap(p, { addr: 0xffff_8000_0000_0000n, length: PAGE, fixed: true }), "EINVAL:addr"],
      ["negative address", () => mmap(p, { addr: -PAGE, length: PAGE, fixed: true }), "EINVAL:addr"],
      ["MAP_FIXED_NOREPLACE over a mapping", () => mmap(p, { addr: BASE + 2 * PAGE, length: 4 * PAGE, fixedNoReplace: true }), "EEXIST:addr"],
    ]);
  });

  it("MAP_FIXED below mmap_min_addr (page 0 included) is EPERM (security_mmap_addr)", () => {
    expectRefused([
      ["fixed at 0", () => mmap(p, { addr: 0, length: PAGE, fixed: true }), "EPERM:addr"],
      ["MAP_FIXED_NOREPLACE at 0", () => mmap(p, { addr: 0, length: 2 * PAGE, fixedNoReplace: true }), "EPERM:addr"],
    ]);
  });

  it("unknown protection letters, unaligned or negative file offsets, a missing file", () => {
    expectRefused([
      ["prot rwz", () => mmap(p, { length: PAGE, prot: "rwz" }), "EINVAL:prot"],
      ["prot read", () => mmap(p, { length: PAGE, prot: "read" }), "EINVAL:prot"],
      ["offset 100", () => mmap(p, { length: PAGE, file: "/f", offset: 100 }), "EINVAL:offset"],
      ["offset -4096", () => mmap(p, { length: PAGE, file: "/f", offset: -PAGE }), "EINVAL:offset"],
      ["offset 0.5", () => mmap(p, { length: PAGE, file: "/f", offset: 0.5 }), "EINVAL:offset"],
      ["no such file", () => mmap(p, { length: PAGE, file: "/nope" }), "ENOENT:path"],
    ]);
  });
});

describe("munmap, mprotect, madvise refuse bad input and change nothing", () => {
  it("munmap: unaligned address, zero or unaligned length, a range past the top of user space", () => {
    expectRefused([
      ["unaligned address", () => p.munmap(BASE + 1, PAGE), "EINVAL:addr"],
      ["length 0", () => p.munmap(BASE, 0), "EINVAL:length"],
      ["length 100", () => p.munmap(BASE, 100), "EINVAL:length"],
      ["past TASK_SIZE", () => p.munmap(TOP, 2 * PAGE), "EINVAL:length"],
      ["length 2^64", () => p.munmap(BASE, 2n ** 64n), "EINVAL:length"],
    ]);
  });

  it("mprotect: bad address, length or letters (EINVAL); unmapped or partly unmapped ranges (ENOMEM, the mapped part untouched)", () => {
    expectRefused([
      ["unaligned address", () => p.mprotect(BASE + 8, PAGE, "r"), "EINVAL:addr"],
      ["length 0", () => p.mprotect(BASE, 0, "r"), "EINVAL:length"],
      ["unaligned length", () => p.mprotect(BASE, PAGE + 8, "r"), "EINVAL:length"],
      ["unknown letter", () => p.mprotect(BASE, PAGE, "rq"), "EINVAL:prot"],
      ["unmapped", () => p.mprotect(BASE + 4 * PAGE, 4 * PAGE, "r"), "ENOMEM:addr"],
      ["mapped then a hole", () => p.mprotect(BASE, 6 * PAGE, "r"), "ENOMEM:addr"],
      ["a hole then mapped", () => p.mprotect(BASE + 6 * PAGE, 4 * PAGE, ""), "ENOMEM:addr"],
      ["past TASK_SIZE", () => p.mprotect(TOP, 2 * PAGE, "r"), "ENOMEM:addr"],
    ]);
  });

  it("madvise: unknown advice, unaligned address, zero length (EINVAL)", () => {
    expectRefused([
      ["unknown advice", () => p.madvise(BASE, PAGE, "free" as "dontneed"), "EINVAL:advice"],
      ["unaligned address", () => p.madvise(BASE + 1, PAGE, "dontneed"), "EINVAL:addr"],
      ["length 0", () => p.madvise(BASE, 0, "dontneed"), "EINVAL:length"],
    ]);
  });

  it("madvise over a range with no mapping fails with ENOMEM (madvise_walk_vmas) and changes nothing", () => {
    expectRefused([
      ["dontneed of a hole", () => p.madvise(BASE + 4 * PAGE, 4 * PAGE, "dontneed"), "ENOMEM:addr"],
      ["hugepage of a hole", () => p.madvise(BASE + 4 * PAGE, 4 * PAGE, "hugepage"), "ENOMEM:addr"],
    ]);
  });
});

describe("read, write and touch refuse bad input and change nothing", () => {
  it("bad addresses and lengths (EINVAL)", () => {
    expectRefused([
      ["read length -1", () => p.read(BASE, -1), "EINVAL:length"],
      ["read length 1.5", () => p.read(BASE, 1.5), "EINVAL:length"],
      ["read negative address", () => p.read(-1, 1), "EINVAL:va"],
      ["read address past 2^64", () => p.read(2n ** 64n, 1), "EINVAL:va"],
      ["write negative address", () => p.write(-4096, text("x")), "EINVAL:va"],
      ["touch length 0", () => p.touch(BASE, 0, "r"), "EINVAL:length"],
      ["touch length 100", () => p.touch(BASE, 100, "r"), "EINVAL:length"],
    ]);
  });

  it("faults that signal (EFAULT) leave memory, mappings and counts alone (the CPU may drop the faulting TLB entry)", () => {
    expectRefused([
      ["read unmapped", () => p.read(BASE + 5 * PAGE, 4), "EFAULT:va"],
      ["write read-only", () => p.write(BASE + 8 * PAGE, text("x")), "EFAULT:va"],
      ["write unmapped", () => p.write(BASE + 12 * PAGE, text("x")), "EFAULT:va"],
      ["touch non-canonical", () => p.touch(0x8000_0000_0000, PAGE, "r"), "EFAULT:va"],
      ["read beyond EOF", () => p.read(BASE + 18 * PAGE, 1), "EFAULT:va"],
      ["write beyond EOF", () => p.write(BASE + 18 * PAGE + 9, text("x")), "EFAULT:va"],
    ], { tlb: false });
  });
});

describe("an exited process (ESRCH)", () => {
  it("refuses every call after exit and changes nothing", () => {
    p.exit();
    expectRefused([
      ["mmap", () => mmap(p, { length: PAGE }), "ESRCH:process"],
      ["munmap", () => p.munmap(BASE, PAGE), "ESRCH:process"],
      ["mprotect", () => p.mprotect(BASE, PAGE, "r"), "ESRCH:process"],
      ["madvise", () => p.madvise(BASE, PAGE, "dontneed"), "ESRCH:process"],
      ["read", () => p.read(BASE, 1), "ESRCH:process"],
      ["write", () => p.write(BASE, text("x")), "ESRCH:process"],
      ["touch", () => p.touch(BASE, PAGE, "w"), "ESRCH:process"],
      ["fork", () => p.fork(), "ESRCH:process"],
    ]);
    expect(p.maps()).toEqual([]);
  });
});
