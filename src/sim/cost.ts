/**
 * The cost table: modeled nanoseconds per action, each default with where it comes from.
 * Every entry can be overridden per machine (`createMachine({costs: {...}})`). The table is
 * only as good as its sources; later issues calibrate it against published end-to-end
 * figures (gup_test rows in DESIGN.md).
 * @module
 */

export interface CostEntry {
  readonly ns: number;
  readonly source: string;
}

export const DEFAULT_COSTS = {
  memAccess: {
    ns: 90,
    source: "DRAM load latency on current x86 servers (~80-100 ns); DESIGN.md cost table",
  },
  walkLevel: {
    ns: 90,
    source:
      "one paging-structure load that misses the caches = a DRAM access; a 4-level walk is " +
      "up to 4 of them (DESIGN.md). Paging-structure caches are not modeled, so this is the " +
      "cold-walk bound",
  },
  tlbHit: {
    ns: 1,
    source: "an L1 DTLB hit is folded into address generation (~1 cycle); DESIGN.md",
  },
  tlbMiss: {
    ns: 3,
    source:
      "second-level (STLB) lookup before the walker starts: ~9 cycles at 3 GHz (Intel " +
      "optimization reference manual, STLB hit latency); the walk levels are charged apart",
  },
  invlpg: {
    ns: 100,
    source: 'arch/x86/mm/tlb.c, on tlb_single_page_flush_ceiling: "Each single flush is about ' +
      '100 ns"',
  },
  tlbFlushAll: {
    ns: 100,
    source:
      "CR3 write / INVPCID: Documentation/arch/x86/tlb.rst calls the full flush 'a quick " +
      "operation'; its real cost is the refill, which the TLB misses after it are charged for",
  },
  pteWrite: {
    ns: 1,
    source: "a store to a cache-resident page-table line (~1-4 cycles)",
  },
  minorFault: {
    ns: 1000,
    source:
      "a minor page fault (trap, handle_mm_fault, return): ~1 us on current x86 (DESIGN.md); " +
      "a 1-page-per-call GUP at ~1.1 us (distro gup_test figures) is mostly this",
  },
  pageCopy: {
    ns: 400,
    source: "copying 4 KiB at ~10 GB/s memory bandwidth (COW, migration)",
  },
  blockWrite: {
    ns: 16_700,
    source:
      "one 4 KiB write to an NVMe SSD at queue depth 1 (swap-out, reclaim writeback): " +
      "Samsung 970 EVO Plus datasheet, 4 KiB random write QD1 up to 60,000 IOPS = 16.7 us",
  },
  blockRead: {
    ns: 52_600,
    source:
      "one 4 KiB read from an NVMe SSD at queue depth 1 (swap-in, a major fault's I/O): " +
      "Samsung 970 EVO Plus datasheet, 4 KiB random read QD1 up to 19,000 IOPS = 52.6 us",
  },
  gupCall: {
    ns: 1000,
    source:
      "one get_user_pages_fast / pin_user_pages call, entry to return, before its pages: a " +
      "distro CI run of gup_test at 1 page per call measures 36,058 us for 32,768 GUP_FAST calls " +
      "(1.10 us each), of which ~60 ns is the page (KERNEL-SPEC 3.6)",
  },
  gupPage: {
    ns: 58,
    source:
      "one 4 KiB page taken through a PTE (read, grab the folio reference or pin, re-check, " +
      "record): gup_test -LT -m 8192 -n 512 on v6.15 takes ~130 ms for 2,097,152 pages, " +
      "62 ns/page with the per-call cost (KERNEL-SPEC 3.6); published 4K figures span 60-119",
  },
  gupSubpage: {
    ns: 3,
    source:
      "each 4 KiB subpage of a huge leaf after the folio's one grab (record_subpages into " +
      "pages[]): 2 MiB folios measure 1.5-7 ns per subpage (6.5-6.9 before the 2025 large-folio " +
      "work, 1.6-2.3 after; KERNEL-SPEC 3.6)",
  },
  unpinPage: {
    ns: 5,
    source:
      "each pages[] entry unpin_user_pages walks (gup_folio_next): 2 MiB folios release at " +
      "~5 ns per subpage (gup_test -HL put, v6.15)",
  },
  unpinFolio: {
    ns: 10,
    source:
      "one folio's release (atomic pincount / refcount drop): with unpinPage, 15 ns per 4 KiB " +
      "page as gup_test -LT put measures (31,500 us for 2,097,152 pages, v6.15)",
  },
  ipiShootdown: {
    ns: 1500,
    source: "remote TLB shootdown, IPI + INVLPG + ack: published round trips of 1-3 us on " +
      "current Xeons (DESIGN.md); base cost of one shootdown",
  },
  ipiPerCpu: {
    ns: 200,
    source: "each additional target CPU of a shootdown (DESIGN.md: ~0.2 us per target)",
  },
  pcieRoundTrip: {
    ns: 850,
    source:
      "an endpoint's read of host memory, request to completion: ~850 ns measured from an FPGA " +
      "endpoint (2014); pcie-bench (SIGCOMM'18) characterises the same range (DESIGN.md)",
  },
  pcieHop: {
    ns: 150,
    source:
      "one traversal of a PCIe switch, ingress port to egress port, cut-through: the 100-150 ns " +
      "switch vendors (Broadcom/PLX PEX) give; a request and its completion each pay it per switch",
  },
  pcieDataPage: {
    ns: 256,
    source:
      "moving 4 KiB over the link at ~16 GB/s (PCIe 3.0 x16, the bandwidth GPGPU-Sim's UVM " +
      "configuration uses, DESIGN.md); charged per 4 KiB of every DMA, in proportion",
  },
  iotlbHit: {
    ns: 5,
    source:
      "an IOTLB lookup in the IOMMU's pipeline: a few cycles of the IOMMU clock; an estimate, no " +
      "published figure isolates it (the misses, charged as walk levels, dominate)",
  },
  iotlbInv: {
    ns: 1000,
    source:
      "one queued-invalidation IOTLB descriptor plus its wait descriptor, submitted and polled " +
      "to completion (qi_submit_sync): an estimate of ~1 us for the MMIO doorbell, the IOMMU's " +
      "processing and the status write the CPU spins on",
  },
  atsInv: {
    ns: 2000,
    source:
      "an ATS Invalidate Request to an endpoint and its Invalidate Completion: two PCIe " +
      "messages (at least one round trip, 850 ns) plus the device's ATC sweep; an estimate",
  },
  priFault: {
    ns: 4000,
    source:
      "a device page fault through PRI: page request, the IOMMU's fault queue, handle_mm_fault " +
      "and the response; NP-RDMA (2023) measures 3.5-5.7 us for a NIC's minor fault (DESIGN.md)",
  },
} as const satisfies Record<string, CostEntry>;

export type CostName = keyof typeof DEFAULT_COSTS;
export type CostTable = { readonly [K in CostName]: CostEntry };
export type CostOverrides = Partial<Record<CostName, number>>;

/**
 * costTable - the defaults with @overrides (ns) applied; an override's source says so.
 * The machine's configuration schema has already checked the names and values.
 */
export function costTable(overrides: CostOverrides = {}): CostTable {
  const t: Record<string, CostEntry> = { ...DEFAULT_COSTS };
  for (const [name, ns] of Object.entries(overrides)) {
    t[name] = { ns, source: "set by the machine's configuration" };
  }
  return t as CostTable;
}
