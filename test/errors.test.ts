/**
 * The one error class: DmaError carries the kernel errno name and number, the argument that
 * was wrong, and a message prefixed by the code. Every public call either returns or throws
 * a DmaError, and a failed call changes no state.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { DmaError, errnoName, type Machine, type PageTable } from "../src/index.js";
import { smallMachine, snapshot } from "./helpers.js";

describe("DmaError", () => {
  it("carries the code, its positive errno, the argument and a message prefixed by the code", () => {
    const cause = new Error("inner");
    const e = new DmaError("EINVAL", "order: 19 is not 0..18", { arg: "order", cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe("DmaError");
    expect(e.code).toBe("EINVAL");
    expect(e.errno).toBe(22);
    expect(e.arg).toBe("order");
    expect(e.message).toBe("EINVAL: order: 19 is not 0..18");
    expect(e.cause).toBe(cause);
    expect(String(e)).toBe("DmaError: EINVAL: order: 19 is not 0..18");
  });

  it("has the x86-64 Linux errno numbers", () => {
    const numbers: [ConstructorParameters<typeof DmaError>[0], number][] = [
      ["EPERM", 1], ["ENOENT", 2], ["ENOMEM", 12], ["EFAULT", 14], ["EBUSY", 16], ["EEXIST", 17],
      ["EINVAL", 22], ["ENOSPC", 28], ["ERANGE", 34], ["EOPNOTSUPP", 95],
    ];
    for (const [code, n] of numbers) {
      const e = new DmaError(code, "x");
      expect(e.errno, code).toBe(n);
      expect(e.arg).toBeUndefined();
      expect("cause" in e).toBe(false);
    }
  });

  it("errnoName maps a positive or negative errno to its name, and refuses an unknown one", () => {
    expect(errnoName(22)).toBe("EINVAL");
    expect(errnoName(-22)).toBe("EINVAL");
    expect(errnoName(-12)).toBe("ENOMEM");
    expect(errnoName(16)).toBe("EBUSY");
    expect(errnoName(-17)).toBe("EEXIST");
    expect(errnoName(14)).toBe("EFAULT");
    expect(() => errnoName(0)).toThrow(RangeError);
    expect(() => errnoName(-9999)).toThrow(RangeError);
  });
});

const VA = 0x7f00_0000_0000;

describe("public calls with bad arguments", () => {
  let m: Machine;
  let pt: PageTable;
  let pfn: number;
  let freed: number;

  beforeEach(async () => {
    m = await smallMachine();
    pt = m.pgdAlloc();
    pfn = m.phys.allocPages(0);
    pt.remapPfnRange(VA, pfn, 4096, { write: true, user: true });
    m.phys.write(pfn * 4096, new Uint8Array([1, 2, 3]));
    m.cpu(0).writeCr3(pt, { pcid: 1 });
    m.cpu(0).translate(VA); // a TLB entry a failed flush must not drop
    freed = m.phys.allocPages(0);
    m.phys.freePages(freed);
  });

  /** Everything a failed call must leave alone, including the clock, trace and statistics. */
  function state(): string {
    return JSON.stringify({
      snap: snapshot(m, [pt], [[VA, VA + 4 * 4096]]),
      now: m.clock.now,
      events: m.trace.events().length,
      counters: [...m.trace.counters],
      stats: m.cpus.map((c) => c.stats),
      bytes: Array.from(m.phys.read(pfn * 4096, 3)),
    });
  }

  const cases: [string, () => unknown, string, string][] = [
    ["Phys.allocPages order 19", () => m.phys.allocPages(19), "EINVAL", "order"],
    ["Phys.allocPages order 18 in a 64 MiB zone", () => m.phys.allocPages(18), "ENOMEM", "memory"],
    ["Phys.allocPages from a zone the machine lacks", () => m.phys.allocPages(0, { zone: "DEVICE" }), "EINVAL", "zone"],
    ["Phys.freePages of a free frame", () => m.phys.freePages(freed), "EINVAL", "pfn"],
    ["Phys.freePages with the wrong order", () => m.phys.freePages(pfn, 1), "EINVAL", "order"],
    ["Phys.freePages of a reserved frame", () => m.phys.freePages(0), "EINVAL", "pfn"],
    ["Phys.freePages of a page table", () => m.phys.freePages(pt.pfn), "EINVAL", "pfn"],
    ["Phys.freePages beyond memory", () => m.phys.freePages(1e9), "EINVAL", "pfn"],
    ["Phys.write past the end of memory", () => m.phys.write(m.config.nrFrames * 4096 - 1, new Uint8Array(2)), "EINVAL", "pa"],
    ["PageTable.remapPfnRange misaligned va", () => pt.remapPfnRange(VA + 1, pfn, 4096), "EINVAL", "va"],
    ["PageTable.remapPfnRange non-integer pfn", () => pt.remapPfnRange(VA + 4096, 1.5, 4096), "EINVAL", "pfn"],
    ["PageTable.remapPfnRange bigint va beyond 64 bits", () => pt.remapPfnRange(1n << 64n, pfn, 4096), "EINVAL", "va"],
    ["PageTable.remapPfnRange bigint size beyond the address space", () => pt.remapPfnRange(VA + 4096, pfn, 1n << 70n), "EINVAL", "size"],
    ["PageTable.remapPfnRange over a mapped page", () => pt.remapPfnRange(VA, pfn, 2 * 4096), "EEXIST", "va"],
    ["PageTable.remapPfnRange 2M with a misaligned pfn", () => pt.remapPfnRange(VA + 2 ** 21, 1, 2 ** 21, {}, "2M"), "EINVAL", "pfn"],
    ["PageTable.remapPfnRange pfn beyond MAXPHYADDR", () => pt.remapPfnRange(VA + 4096, 2 ** 40, 4096), "EINVAL", "pfn"],
    ["PageTable.remapPfnRange pkey 16", () => pt.remapPfnRange(VA + 4096, pfn, 4096, { pkey: 16 }), "EINVAL", "prot.pkey"],
    ["PageTable.ptepGet level 9", () => pt.ptepGet(VA, 9), "EINVAL", "level"],
    ["PageTable.setPteAt a negative value", () => pt.setPteAt(VA, 1, -1n), "EINVAL", "value"],
    ["PageTable.free while it maps something", () => pt.free(), "EBUSY", "pgd"],
    ["Cpu.writeCr3 PCID 4096", () => m.cpu(0).writeCr3(pt, { pcid: 4096 }), "EINVAL", "pcid"],
    ["Cpu.writeCr3 PCID 1.5", () => m.cpu(0).writeCr3(pt, { pcid: 1.5 }), "EINVAL", "pcid"],
    ["Cpu.invpcid type 7", () => m.cpu(0).invpcid(7 as 0), "EINVAL", "type"],
    ["Cpu.flushTlbRange size 0", () => m.cpu(0).flushTlbRange(VA, 0), "EINVAL", "size"],
    ["Cpu.wrpkru 2^33", () => m.cpu(0).wrpkru(2 ** 33), "EINVAL", "value"],
    ["Cpu.translate 2^53 + 2 (not a safe integer)", () => m.cpu(0).translate(2 ** 53 + 2), "EINVAL", "va"],
    ["Cpu.translate 1.5", () => m.cpu(0).translate(1.5), "EINVAL", "va"],
    ["Cpu.translateMany with one bad address", () => m.cpu(0).translateMany([VA, -1]), "EINVAL", "va"],
    ["machine.cpu(99)", () => m.cpu(99), "EINVAL", "cpu"],
    ["machine.page(-1)", () => m.page(-1), "EINVAL", "pfn"],
    ["machine.page(nrFrames)", () => m.page(m.config.nrFrames), "EINVAL", "pfn"],
    ["machine.pageTable of a frame that is not a root", () => m.pageTable(pfn), "EINVAL", "pfn"],
  ];

  for (const [what, call, code, arg] of cases) {
    it(`${what}: ${code} naming ${arg}, and no state changes`, () => {
      const before = state();
      let err: unknown;
      try {
        call();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DmaError);
      const e = err as DmaError;
      expect({ code: e.code, arg: e.arg }).toEqual({ code, arg });
      expect(e.message.startsWith(`${code}: `)).toBe(true);
      expect(e.message).toContain(arg);
      expect(state()).toBe(before);
    });
  }

  it("the state check sees what a successful call changes (so the checks above can fail)", () => {
    const before = state();
    m.cpu(0).invlpg(VA);
    const afterFlush = state();
    expect(afterFlush).not.toBe(before);
    m.phys.allocPages(0);
    expect(state()).not.toBe(afterFlush);
  });

  it("ENOMEM from allocPages says how many frames the order needed (2^order, not the order)", () => {
    let err: unknown;
    try {
      m.phys.allocPages(18);
    } catch (e) {
      err = e;
    }
    expect((err as DmaError).code).toBe("ENOMEM");
    expect((err as DmaError).message).not.toMatch(/\(18 needed\)/);
    expect((err as DmaError).message).toMatch(/262144|order 18/);
  });
});
