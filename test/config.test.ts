/**
 * The machine's configuration: every bad option is refused with DmaError(EINVAL) whose
 * `arg` is the dotted path of the bad field; sizes parse with units; zones are laid out
 * NORMAL, CMA, MOVABLE from pfn 0 up; the defaults are the ones src/config.ts documents.
 */
import { describe, expect, it } from "vitest";
import { createMachine, DmaError, parseMachineOptions, parseSize } from "../src/index.js";
import { GiB, KiB, MiB } from "./helpers.js";

/** The DmaError @fn throws (fails the test if it returns or throws something else). */
function einvalOf(fn: () => unknown): DmaError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DmaError);
  const e = err as DmaError;
  expect(e.code).toBe("EINVAL");
  expect(e.errno).toBe(22);
  return e;
}

describe("bad options are refused with EINVAL naming the field's dotted path", () => {
  const cases: [string, unknown, string][] = [
    ["a size that is not one", { memory: { normal: "12 potatoes" } }, "memory.normal"],
    ["a size not a multiple of 4 KiB", { memory: { normal: 4095 } }, "memory.normal"],
    ["a fractional size below a page", { memory: { cma: "0.5KiB" } }, "memory.cma"],
    ["a negative size", { memory: { movable: -4096 } }, "memory.movable"],
    ["a size beyond 2^53 bytes", { memory: { movable: "99999999999TiB" } }, "memory.movable"],
    ["a size of the wrong type", { memory: { normal: true } }, "memory.normal"],
    ["NORMAL below 2 MiB (the low 1 MiB is reserved)", { memory: { normal: "1MiB" } }, "memory.normal"],
    ["an unknown top-level key", { memry: { normal: "1GiB" } }, "memry"],
    ["an unknown nested key", { memory: { normal: "1GiB", hbm: "1GiB" } }, "memory.hbm"],
    ["TLB sets not a power of two", { tlb: { sets: 3 } }, "tlb.sets"],
    ["TLB ways 0", { tlb: { ways: 0 } }, "tlb.ways"],
    ["no CPUs", { cpus: 0 }, "cpus"],
    ["more CPUs than the core holds", { cpus: 257 }, "cpus"],
    ["a fractional CPU count", { cpus: 1.5 }, "cpus"],
    ["3-level paging", { paging: { levels: 3 } }, "paging.levels"],
    ["a physical address width below 36", { paging: { physAddrBits: 35 } }, "paging.physAddrBits"],
    ["more threads than rings", { threads: 33 }, "threads"],
    ["a ring smaller than 64 entries", { ringEntries: 63 }, "ringEntries"],
    ["an unknown cost", { costs: { nope: 1 } }, "costs.nope"],
    ["a negative cost", { costs: { walkLevel: -1 } }, "costs.walkLevel"],
    ["a NaN cost", { costs: { walkLevel: NaN } }, "costs.walkLevel"],
    ["a fractional seed", { seed: 1.5 }, "seed"],
    ["a trace buffer of 0 events", { trace: { maxEvents: 0 } }, "trace.maxEvents"],
    ["a backing pool below 1 MiB", { backing: { max: "512KiB" } }, "backing.max"],
    ["memory beyond paging.physAddrBits", { paging: { physAddrBits: 36 }, memory: { normal: "64GiB" } }, "memory"],
  ];

  for (const [what, options, arg] of cases) {
    it(`${arg}: ${what}`, () => {
      const e = einvalOf(() => parseMachineOptions(options));
      expect(e.arg).toBe(arg);
      expect(e.message.startsWith(`EINVAL: ${arg}: `)).toBe(true);
    });
  }

  it("costs.walkLevel: an infinite cost (modeled time must stay finite)", () => {
    const e = einvalOf(() => parseMachineOptions({ costs: { walkLevel: Infinity } }));
    expect(e.arg).toBe("costs.walkLevel");
  });

  it("options that are not an object: the path is `options`", () => {
    expect(einvalOf(() => parseMachineOptions(null)).arg).toBe("options");
    expect(einvalOf(() => parseMachineOptions(5)).arg).toBe("options");
  });

  it("createMachine refuses the same way, before it builds anything", async () => {
    const bad: [unknown, string][] = [
      [{ tlb: { sets: 3 } }, "tlb.sets"],
      [{ memry: {} }, "memry"],
      [{ paging: { levels: 3 } }, "paging.levels"],
    ];
    for (const [options, arg] of bad) {
      const p = createMachine(options as Parameters<typeof createMachine>[0]);
      await expect(p).rejects.toBeInstanceOf(DmaError);
      await expect(p).rejects.toMatchObject({ code: "EINVAL", arg });
    }
  });

  it("a machine too big for the core's 4 GiB memory of frame records (1 TiB) is refused naming memory", async () => {
    const e = einvalOf(() => parseMachineOptions({ memory: { normal: "1TiB" } }));
    expect(e.arg).toBe("memory");
    expect(e.message).toMatch(/^EINVAL: memory: .*frame records/);
    await expect(createMachine({ memory: { normal: "1TiB" } })).rejects.toMatchObject({
      code: "EINVAL",
      arg: "memory",
    });
  });
});

describe("sizes", () => {
  it("parse bytes, binary units with or without 'iB', any case, with spaces", () => {
    expect(parseSize("512MiB")).toBe(512 * MiB);
    expect(parseSize("2 GiB")).toBe(2 * GiB);
    expect(parseSize("64M")).toBe(64 * MiB);
    expect(parseSize("64m")).toBe(64 * MiB);
    expect(parseSize("4k")).toBe(4 * KiB);
    expect(parseSize("1TiB")).toBe(1024 * GiB);
    expect(parseSize("1.5KiB")).toBe(1536);
    expect(parseSize("4096")).toBe(4096);
    expect(parseSize("4096B")).toBe(4096);
    expect(parseSize(8192)).toBe(8192);
  });

  it("give NaN for what is not a size", () => {
    for (const s of ["12 potatoes", "", "MiB", "-4KiB", "1e3", "0x1000", "4 KB"]) {
      expect(parseSize(s), s).toBeNaN();
    }
    for (const n of [-1, 1.5, NaN, Infinity, 2 ** 53]) expect(parseSize(n), String(n)).toBeNaN();
  });

  it("are accepted in options in every spelling parseSize knows", () => {
    const c = parseMachineOptions({ memory: { normal: "2 GiB", movable: "64M", cma: 8 * MiB } });
    expect(c.zones.map((z) => z.pages * 4096)).toEqual([2 * GiB, 8 * MiB, 64 * MiB]);
  });
});

describe("zones", () => {
  it("are laid out NORMAL, CMA, MOVABLE in that physical order, back to back from pfn 0", () => {
    const c = parseMachineOptions({ memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB" } });
    expect(c.zones).toEqual([
      { name: "NORMAL", kind: 0, startPfn: 0, pages: 16384 },
      { name: "CMA", kind: 2, startPfn: 16384, pages: 2048 },
      { name: "MOVABLE", kind: 1, startPfn: 18432, pages: 4096 },
    ]);
    expect(c.nrFrames).toBe(16384 + 2048 + 4096);
  });

  it("leave out a zone of size 0 without a hole", () => {
    const c = parseMachineOptions({ memory: { normal: "8MiB", movable: "4MiB", cma: 0 } });
    expect(c.zones.map((z) => [z.name, z.startPfn, z.pages])).toEqual([
      ["NORMAL", 0, 2048],
      ["MOVABLE", 2048, 1024],
    ]);
  });

  it("are what the booted machine reports", async () => {
    const m = await createMachine({ memory: { normal: "8MiB", movable: "4MiB", cma: "2MiB" }, cpus: 1 });
    expect(m.phys.zones().map((z) => [z.name, z.startPfn, z.endPfn])).toEqual([
      ["NORMAL", 0, 2048],
      ["CMA", 2048, 2560],
      ["MOVABLE", 2560, 3584],
    ]);
  });
});

describe("defaults", () => {
  it("are the documented ones: 4 GiB NORMAL, 1 GiB MOVABLE, 256 MiB CMA, 1 GiB swap, an 8 MiB kernel heap, THP on madvise, 4 CPUs, 4-level paging, 46-bit PAs, a 128x12 TLB, an IOMMU of 64 devices with a 64x8 IOTLB and 16x4 ATCs, 8 threads, 4096-entry rings, seed 1, tracing on with 100,000 events, the pinned-writeback, lockdep, coherency, dma-buf ownership and DMA checkers on with call sites", () => {
    const c = parseMachineOptions({});
    expect(c).toEqual({
      zones: [
        { name: "NORMAL", kind: 0, startPfn: 0, pages: (4 * GiB) / 4096 },
        { name: "CMA", kind: 2, startPfn: (4 * GiB) / 4096, pages: (256 * MiB) / 4096 },
        { name: "MOVABLE", kind: 1, startPfn: (4 * GiB + 256 * MiB) / 4096, pages: GiB / 4096 },
      ],
      nrFrames: (4 * GiB + 256 * MiB + GiB) / 4096,
      cpus: 4,
      levels: 4,
      physAddrBits: 46,
      tlb: { sets: 128, ways: 12 },
      iommu: { devices: 64, iotlb: { sets: 64, ways: 8 }, atc: { sets: 16, ways: 4 } },
      threads: 8,
      ringEntries: 4096,
      backingMaxSlots: GiB / 4096,
      swapSlots: GiB / 4096,
      kheapBytes: 8 * 1024 * 1024,
      thp: "madvise",
      seed: 1,
      costs: {},
      trace: { enabled: true, maxEvents: 100_000 },
      check: { pinnedWriteback: true, callSites: true, lockdep: true, coherency: true, ownership: true, dma: true },
    });
    expect(parseMachineOptions()).toEqual(c);
  });

  it("cap the backing pool at the machine's RAM when that is below 1 GiB", () => {
    const c = parseMachineOptions({ memory: { normal: "64MiB", movable: 0, cma: 0 } });
    expect(c.backingMaxSlots).toBe((64 * MiB) / 4096);
    expect(parseMachineOptions({ memory: { normal: "64MiB" }, backing: { max: "2MiB" } }).backingMaxSlots).toBe(512);
  });

  it("fill in a partly given group: trace: false disables, { maxEvents } keeps it enabled", () => {
    expect(parseMachineOptions({ trace: false }).trace).toEqual({ enabled: false, maxEvents: 100_000 });
    expect(parseMachineOptions({ trace: { maxEvents: 5 } }).trace).toEqual({ enabled: true, maxEvents: 5 });
    expect(parseMachineOptions({ tlb: { ways: 4 } }).tlb).toEqual({ sets: 128, ways: 4 });
    expect(parseMachineOptions({ paging: { levels: 5 } })).toMatchObject({ levels: 5, physAddrBits: 46 });
  });

  it("give the booted machine the documented CPU count and thread slot 0", async () => {
    const m = await createMachine({ memory: { normal: "16MiB", movable: 0, cma: 0 } });
    expect(m.cpus.length).toBe(4);
    expect(m.thread).toBe(0);
    expect(m.rng.seed).toBe(1);
    expect(m.trace.enabled).toBe(true);
    expect(m.trace.maxEvents).toBe(100_000);
  });
});
