/**
 * The machine's configuration: the options a user gives createMachine(), validated by a
 * schema (every error names the path of the bad field) and normalised into the layout the
 * core is built from.
 * @module
 */
import * as v from "valibot";
import { ZONE_NORMAL, ZONE_MOVABLE, ZONE_CMA, ZONE_DEVICE, ZONE_DEVICE_PRIVATE, ZONE_P2PDMA, FRAME_SIZE, RESERVED_LOW_PFNS } from "./abi/frame.js";
import { MAX_THREADS, MAX_CPUS } from "./abi/header.js";
import { DmaError } from "./errors.js";
import { DEFAULT_COSTS, type CostName } from "./sim/cost.js";

const UNITS: Record<string, number> = {
  "": 1, b: 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30,
  t: 2 ** 40, tib: 2 ** 40,
};

/** A size: bytes as a number, or a string such as "512MiB", "2 GiB", "64M". */
export type Size = number | string;

/** parseSize - bytes of @s, or NaN if it is not a size. */
export function parseSize(s: Size): number {
  if (typeof s === "number") return Number.isSafeInteger(s) && s >= 0 ? s : NaN;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(s);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return NaN;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : NaN;
}

const size = v.pipe(
  v.union([v.number(), v.string()], "a size: bytes, or a string such as \"512MiB\""),
  v.transform(parseSize),
  v.check((b) => !Number.isNaN(b), "not a size (bytes, or a number with B/KiB/MiB/GiB/TiB)"),
  v.check((b) => b % 4096 === 0, "not a multiple of 4 KiB"),
);

const int = (min: number, max: number) =>
  v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

const powerOfTwo = (max: number) =>
  v.pipe(int(1, max), v.check((n) => (n & (n - 1)) === 0, "must be a power of two"));

const costNames = Object.keys(DEFAULT_COSTS) as [CostName, ...CostName[]];

export const MachineOptionsSchema = v.strictObject({
  /** Memory by zone. NORMAL holds the kernel's own allocations (page tables). */
  memory: v.optional(
    v.strictObject({
      normal: v.optional(size, "4GiB"),
      movable: v.optional(size, "1GiB"),
      cma: v.optional(size, "256MiB"),
      /** Persistent memory (ZONE_DEVICE): the blocks of fsdax files. */
      pmem: v.optional(size, 0),
      /** Device-private memory (ZONE_DEVICE, MEMORY_DEVICE_PRIVATE): what memremapPages hands to devices. */
      devicePrivate: v.optional(size, 0),
      /**
       * PCI P2PDMA memory (ZONE_DEVICE, MEMORY_DEVICE_PCI_P2PDMA): struct pages that stand for
       * BAR memory, handed to providers by pciP2pdmaAddResource.
       */
      p2pdma: v.optional(size, 0),
    }),
    {},
  ),
  /** Swap space for reclaimed anonymous pages. */
  swap: v.optional(size, "1GiB"),
  /**
   * The kernel heap: kvcalloc'd arrays in the core's memory, which the core fills in place
   * (gup_test's pages[]: 2 MiB per GiB tested). Address space only until written.
   */
  kheap: v.optional(v.pipe(size, v.maxValue(1 << 30, "at most 1 GiB")), "8MiB"),
  /** Memory management policy. */
  mm: v.optional(
    v.strictObject({
      /** /sys/kernel/mm/transparent_hugepage/enabled. */
      thp: v.optional(v.picklist(["always", "madvise", "never"]), "madvise"),
    }),
    {},
  ),
  cpus: v.optional(int(1, MAX_CPUS), 4),
  paging: v.optional(
    v.strictObject({
      levels: v.optional(v.picklist([4, 5]), 4),
      physAddrBits: v.optional(int(36, 52), 46),
    }),
    {},
  ),
  /** TLB geometry per CPU; the default is a second-level TLB of 1536 entries, 12 ways. */
  tlb: v.optional(
    v.strictObject({ sets: v.optional(powerOfTwo(65536), 128), ways: v.optional(int(1, 64), 12) }),
    {},
  ),
  /**
   * The IOMMU: device-table entries (requester ids), the IOTLB's geometry (default 512
   * entries, 8 ways) and each ATS device's ATC (default 64 entries, 4 ways).
   */
  iommu: v.optional(
    v.strictObject({
      devices: v.optional(int(1, 65536), 64),
      iotlb: v.optional(v.strictObject({ sets: v.optional(powerOfTwo(65536), 64), ways: v.optional(int(1, 64), 8) }), {}),
      atc: v.optional(v.strictObject({ sets: v.optional(powerOfTwo(4096), 16), ways: v.optional(int(1, 64), 4) }), {}),
    }),
    {},
  ),
  /** Threads (main + Workers) that may attach at once. */
  threads: v.optional(int(1, MAX_THREADS), 8),
  /** Entries of each thread's request ring: the largest batch one core call takes. */
  ringEntries: v.optional(int(64, 1 << 20), 4096),
  /** Bytes of page contents the machine may hold (page tables and written frames). */
  backing: v.optional(v.strictObject({ max: v.optional(size) }), {}),
  /** Seed of every random choice (32 bits: the generator takes no more). */
  seed: v.optional(int(0, 0xffffffff), 1),
  costs: v.optional(v.record(v.picklist(costNames), v.pipe(v.number(), v.finite(), v.minValue(0))), {}),
  trace: v.optional(
    v.union([
      v.boolean(),
      v.strictObject({ enabled: v.optional(v.boolean()), maxEvents: v.optional(int(1, 1e8)) }),
    ]),
    true,
  ),
  /** The rule checkers (src/check): which run, and whether they record call sites. */
  check: v.optional(
    v.strictObject({
      /** Writeback of DMA-pinned pages and re-dirtying at unpin ([O1], [O2]). */
      pinnedWriteback: v.optional(v.boolean(), true),
      /** Record the caller's stack at each pin (about 1 us a call) so reports name call sites. */
      callSites: v.optional(v.boolean(), true),
      /** lockdep-lite: lock-order inversions ([L1]) and sleeping in non-block sections ([L2]). */
      lockdep: v.optional(v.boolean(), true),
      /** Device mappings left stale after the CPU's changed under them ([C1]). */
      coherency: v.optional(v.boolean(), true),
      /** dma-buf ownership of streaming buffers ([D1]-[D3]). */
      ownership: v.optional(v.boolean(), true),
      /** DMA into unheld frames ([M1]), stale IOTLB/ATC use ([M2]), ATC-before-IOTLB invalidation ([I1]). */
      dma: v.optional(v.boolean(), true),
    }),
    {},
  ),
});

export type MachineOptions = v.InferInput<typeof MachineOptionsSchema>;

export interface ZoneConfig {
  name: "NORMAL" | "MOVABLE" | "CMA" | "DEVICE" | "DEVICE_PRIVATE" | "P2PDMA";
  kind: number;
  startPfn: number;
  pages: number;
}

/** The normalised configuration a machine is built from (plain data: it crosses to Workers). */
export interface MachineConfig {
  zones: ZoneConfig[];
  nrFrames: number;
  cpus: number;
  levels: 4 | 5;
  physAddrBits: number;
  tlb: { sets: number; ways: number };
  iommu: { devices: number; iotlb: { sets: number; ways: number }; atc: { sets: number; ways: number } };
  threads: number;
  ringEntries: number;
  backingMaxSlots: number;
  swapSlots: number;
  kheapBytes: number;
  thp: "always" | "madvise" | "never";
  seed: number;
  costs: Partial<Record<CostName, number>>;
  trace: { enabled: boolean; maxEvents: number };
  check: { pinnedWriteback: boolean; callSites: boolean; lockdep: boolean; coherency: boolean; ownership: boolean; dma: boolean };
}

/** parseMachineOptions - validate @options and lay out the zones; throws DmaError(EINVAL). */
export function parseMachineOptions(options: unknown = {}): MachineConfig {
  const r = v.safeParse(MachineOptionsSchema, options);
  if (!r.success) {
    const issue = r.issues[0];
    const path = v.getDotPath(issue) ?? "options";
    throw new DmaError("EINVAL", `${path}: ${issue.message}`, { arg: path });
  }
  const o = r.output;
  // Physical layout, low to high: NORMAL, CMA, MOVABLE (ZONE_MOVABLE sits at the top of
  // RAM), then persistent memory (ZONE_DEVICE).
  const zones: ZoneConfig[] = [];
  let pfn = 0;
  const order: [ZoneConfig["name"], number, number][] = [
    ["NORMAL", ZONE_NORMAL, o.memory.normal],
    ["CMA", ZONE_CMA, o.memory.cma],
    ["MOVABLE", ZONE_MOVABLE, o.memory.movable],
    ["DEVICE", ZONE_DEVICE, o.memory.pmem],
    ["DEVICE_PRIVATE", ZONE_DEVICE_PRIVATE, o.memory.devicePrivate],
    ["P2PDMA", ZONE_P2PDMA, o.memory.p2pdma],
  ];
  for (const [name, kind, bytes] of order) {
    if (bytes === 0) continue;
    zones.push({ name, kind, startPfn: pfn, pages: bytes / 4096 });
    pfn += bytes / 4096;
  }
  if (o.memory.normal / 4096 < RESERVED_LOW_PFNS + 256) {
    throw new DmaError("EINVAL", "memory.normal: needs at least 2 MiB (1 MiB is reserved at boot)", {
      arg: "memory.normal",
    });
  }
  const metaBytes = pfn * FRAME_SIZE;
  if (metaBytes > 3.5 * 2 ** 30) {
    throw new DmaError(
      "EINVAL",
      `memory: ${pfn} frames need ${(metaBytes / 2 ** 30).toFixed(1)} GiB of frame records; ` +
        "the core's 4 GiB memory holds at most 3.5 GiB of them",
      { arg: "memory" },
    );
  }
  if (pfn > 2 ** (o.paging.physAddrBits - 12)) {
    throw new DmaError("EINVAL", "memory: more than paging.physAddrBits can address", { arg: "memory" });
  }
  const ram = (pfn - o.memory.pmem / 4096 - o.memory.devicePrivate / 4096 - o.memory.p2pdma / 4096) * 4096;
  const backingMax = o.backing.max ?? Math.min(ram, 2 ** 30);
  if (backingMax < 2 ** 20) {
    throw new DmaError("EINVAL", "backing.max: needs at least 1 MiB", { arg: "backing.max" });
  }
  const trace = typeof o.trace === "boolean" ? { enabled: o.trace } : o.trace;
  return {
    zones,
    nrFrames: pfn,
    cpus: o.cpus,
    levels: o.paging.levels,
    physAddrBits: o.paging.physAddrBits,
    tlb: { sets: o.tlb.sets, ways: o.tlb.ways },
    iommu: {
      devices: o.iommu.devices,
      iotlb: { sets: o.iommu.iotlb.sets, ways: o.iommu.iotlb.ways },
      atc: { sets: o.iommu.atc.sets, ways: o.iommu.atc.ways },
    },
    threads: o.threads,
    ringEntries: o.ringEntries,
    backingMaxSlots: backingMax / 4096,
    swapSlots: o.swap / 4096,
    kheapBytes: o.kheap,
    thp: o.mm.thp,
    seed: o.seed,
    costs: o.costs,
    trace: { enabled: trace.enabled ?? true, maxEvents: trace.maxEvents ?? 100_000 },
    check: { pinnedWriteback: o.check.pinnedWriteback, callSites: o.check.callSites, lockdep: o.check.lockdep, coherency: o.check.coherency, ownership: o.check.ownership, dma: o.check.dma },
  };
}
