/**
 * The layout of every region, computed once from the configuration in the header.
 *
 * coreLayout() validates the configuration the host wrote at HDR_ADDR and writes the region
 * bases back into the header; every instance (main thread or Worker) then loads them into
 * its own globals with layoutLoad(). No offset here is written twice: record layouts come
 * from src/abi/, which the host compiles too.
 */
import {
  HDR_ADDR, HDR_MAGIC, HDR_MAGIC_VALUE, HDR_ABI, ABI_VERSION, HDR_NR_ZONES, HDR_NR_CPUS,
  HDR_LEVELS, HDR_TLB_SETS, HDR_TLB_WAYS, HDR_THREADS, HDR_RING_ENTRIES, HDR_PHYS_BITS,
  HDR_POOL_MAX_SLOTS, HDR_NR_FRAMES, HDR_POOL_GROW_SLOTS, HDR_ZONE_CFG, ZCFG_SIZE, ZCFG_START,
  ZCFG_PAGES, ZCFG_KIND, HDR_FRAMES_BASE, HDR_ZONES_BASE, HDR_CPUS_BASE, HDR_TLB_BASE,
  HDR_RINGS_BASE, HDR_POOL_BASE, HDR_TLB_STRIDE, HDR_RING_STRIDE, HDR_MEM_PAGES,
  HDR_MEM_PAGES_MAX, MAX_THREADS, MAX_CPUS, ZONE_SIZE, CPU_SIZE, TLBE_SIZE, RING_ENTRY0,
  RENT_SIZE, HDR_SWAP_SLOTS, HDR_SWAP_BASE, SWPE_SIZE, HDR_IOMMU_DEVS, HDR_IOTLB_SETS, HDR_IOTLB_WAYS,
  HDR_ATC_SETS, HDR_ATC_WAYS, HDR_DEVTAB_BASE, HDR_IOTLB_BASE, HDR_ATC_BASE, HDR_ATC_STRIDE,
  HDR_KHEAP_BYTES, HDR_KHEAP_BASE,
} from "../src/abi/header";
import { DTE_SIZE, IOTE_SIZE } from "../src/abi/iommu";
import { FRAME_SIZE, MAX_ZONES, ZONE_P2PDMA } from "../src/abi/frame";
import { EINVAL } from "../src/abi/errno";
import { R_CONFIG } from "../src/abi/reason";
import { fail } from "./errno";

export let FRAMES: usize = 0;
export let ZONES: usize = 0;
export let CPUS: usize = 0;
export let TLBS: usize = 0;
export let RINGS: usize = 0;
export let POOL: usize = 0;
export let SWAP: usize = 0;
/** The kernel heap [KHEAP, KHEAP_END): host arrays the core may write into. */
export let KHEAP: usize = 0;
export let KHEAP_END: usize = 0;

/** Whether [@at, @at + @n f64s) is 8-byte aligned inside the kernel heap (an array the host passed in place). */
// @ts-ignore: decorator
@inline export function inKheap(at: usize, n: u32): bool {
  return (at & 7) == 0 && at >= KHEAP && <u64>at + (<u64>n << 3) <= <u64>KHEAP_END;
}
export let NR_FRAMES: u32 = 0;
export let NR_ZONES: u32 = 0;
export let NR_CPUS: u32 = 0;
export let LEVELS: u32 = 4;
export let TLB_SETS: u32 = 0;
export let TLB_WAYS: u32 = 0;
export let TLB_STRIDE: u32 = 0;
export let RING_STRIDE: u32 = 0;
export let RING_ENTRIES: u32 = 0;
export let THREADS: u32 = 0;
export let PHYS_BITS: u32 = 46;
export let POOL_MAX_SLOTS: u32 = 0;
export let POOL_GROW_SLOTS: u32 = 0;
export let SWAP_SLOTS: u32 = 0;
export let DEVTAB: usize = 0;
export let IOTLB: usize = 0;
export let ATC: usize = 0;
export let ATC_STRIDE: u32 = 0;
export let IOMMU_DEVS: u32 = 0;
export let IOTLB_SETS: u32 = 0;
export let IOTLB_WAYS: u32 = 0;
export let ATC_SETS: u32 = 0;
export let ATC_WAYS: u32 = 0;
/** Bits of a linear address the paging mode translates: 48 or 57. */
export let VA_BITS: u32 = 48;
/** Frames addressable by a page-table entry: 1 << (PHYS_BITS - 12). */
export let MAX_PFN: u64 = 0;

// @ts-ignore: decorator
@inline export function hdr(off: u32): u32 {
  return load<u32>(HDR_ADDR + off);
}

// @ts-ignore: decorator
@inline function hdrSet(off: u32, v: u32): void {
  store<u32>(HDR_ADDR + off, v);
}

// @ts-ignore: decorator
@inline function alignUp(x: u64, a: u64): u64 {
  return (x + a - 1) & ~(a - 1);
}

function bad(off: u32): i32 {
  return fail(EINVAL, R_CONFIG, off);
}

/**
 * coreLayout - validate the configuration and lay out the regions.
 *
 * Returns 0, or -EINVAL with reason R_CONFIG and the header offset of the bad field.
 * Writes nothing outside the header's region-base fields.
 */
export function coreLayout(): i32 {
  if (hdr(HDR_MAGIC) != HDR_MAGIC_VALUE) return bad(HDR_MAGIC);
  if (hdr(HDR_ABI) != ABI_VERSION) return bad(HDR_ABI);
  const nrZones = hdr(HDR_NR_ZONES);
  if (nrZones < 1 || nrZones > <u32>MAX_ZONES) return bad(HDR_NR_ZONES);
  const nrCpus = hdr(HDR_NR_CPUS);
  if (nrCpus < 1 || nrCpus > <u32>MAX_CPUS) return bad(HDR_NR_CPUS);
  const levels = hdr(HDR_LEVELS);
  if (levels != 4 && levels != 5) return bad(HDR_LEVELS);
  const sets = hdr(HDR_TLB_SETS);
  if (sets < 1 || sets > 65536 || (sets & (sets - 1)) != 0) return bad(HDR_TLB_SETS);
  const ways = hdr(HDR_TLB_WAYS);
  if (ways < 1 || ways > 64) return bad(HDR_TLB_WAYS);
  const threads = hdr(HDR_THREADS);
  if (threads < 1 || threads > <u32>MAX_THREADS) return bad(HDR_THREADS);
  const ringEntries = hdr(HDR_RING_ENTRIES);
  if (ringEntries < 1 || ringEntries > 1 << 20) return bad(HDR_RING_ENTRIES);
  const physBits = hdr(HDR_PHYS_BITS);
  if (physBits < 32 || physBits > 52) return bad(HDR_PHYS_BITS);
  const nrFrames = hdr(HDR_NR_FRAMES);
  if (nrFrames < 1 || <u64>nrFrames > (<u64>1 << (physBits - 12))) return bad(HDR_NR_FRAMES);
  const growSlots = hdr(HDR_POOL_GROW_SLOTS);
  if (growSlots < 16 || growSlots > 1 << 20) return bad(HDR_POOL_GROW_SLOTS);
  // Zones: in ascending, non-overlapping pfn order, inside the frame array.
  let next: u64 = 0;
  for (let z: u32 = 0; z < nrZones; z++) {
    const cfg = HDR_ZONE_CFG + z * ZCFG_SIZE;
    const start = <u64>hdr(cfg + ZCFG_START);
    const pages = <u64>hdr(cfg + ZCFG_PAGES);
    if (hdr(cfg + ZCFG_KIND) > <u32>ZONE_P2PDMA) return bad(cfg + ZCFG_KIND);
    if (start < next) return bad(cfg + ZCFG_START);
    if (pages == 0 || start + pages > <u64>nrFrames) return bad(cfg + ZCFG_PAGES);
    next = start + pages;
  }

  let at = alignUp(<u64>__heap_base, 64);
  const frames = at;
  at = alignUp(at + <u64>nrFrames * FRAME_SIZE, 64);
  const zones = at;
  at = alignUp(at + <u64>nrZones * ZONE_SIZE, 64);
  const cpus = at;
  at = alignUp(at + <u64>nrCpus * CPU_SIZE, 64);
  const tlbStride = alignUp(<u64>sets * ways * TLBE_SIZE, 64);
  const tlbs = at;
  at = alignUp(at + <u64>nrCpus * tlbStride, 64);
  const ringStride = alignUp(<u64>RING_ENTRY0 + <u64>ringEntries * RENT_SIZE, 64);
  const rings = at;
  at = alignUp(at + <u64>threads * ringStride, 64);
  const devs = hdr(HDR_IOMMU_DEVS);
  if (devs < 1 || devs > 65536) return bad(HDR_IOMMU_DEVS);
  const ioSets = hdr(HDR_IOTLB_SETS);
  if (ioSets < 1 || ioSets > 65536 || (ioSets & (ioSets - 1)) != 0) return bad(HDR_IOTLB_SETS);
  const ioWays = hdr(HDR_IOTLB_WAYS);
  if (ioWays < 1 || ioWays > 64) return bad(HDR_IOTLB_WAYS);
  const atcSets = hdr(HDR_ATC_SETS);
  if (atcSets < 1 || atcSets > 4096 || (atcSets & (atcSets - 1)) != 0) return bad(HDR_ATC_SETS);
  const atcWays = hdr(HDR_ATC_WAYS);
  if (atcWays < 1 || atcWays > 64) return bad(HDR_ATC_WAYS);
  const devtab = at;
  at = alignUp(at + <u64>devs * DTE_SIZE, 64);
  const iotlb = at;
  at = alignUp(at + <u64>ioSets * ioWays * IOTE_SIZE, 64);
  const atcStride = <u64>atcSets * atcWays * IOTE_SIZE;
  const atc = at;
  at = alignUp(at + <u64>devs * atcStride, 64);
  const swapSlots = <u64>hdr(HDR_SWAP_SLOTS);
  if (swapSlots > <u64>1 << 28) return bad(HDR_SWAP_SLOTS);
  const swap = at;
  at = alignUp(at + swapSlots * SWPE_SIZE, 4096);
  const kheapBytes = <u64>hdr(HDR_KHEAP_BYTES);
  if (kheapBytes > <u64>1 << 30 || (kheapBytes & 4095) != 0) return bad(HDR_KHEAP_BYTES);
  const kheap = at;
  at += kheapBytes;
  const pool = at;
  const limit: u64 = <u64>1 << 32;
  if (pool >= limit) return bad(HDR_NR_FRAMES);
  // The pool may grow up to the configured maximum, within the 4 GiB of a wasm32 memory.
  const room = (limit - pool) >> 12;
  let maxSlots = <u64>hdr(HDR_POOL_MAX_SLOTS);
  if (maxSlots < 1) return bad(HDR_POOL_MAX_SLOTS);
  if (maxSlots > room) maxSlots = room;
  hdrSet(HDR_POOL_MAX_SLOTS, <u32>maxSlots);
  hdrSet(HDR_FRAMES_BASE, <u32>frames);
  hdrSet(HDR_ZONES_BASE, <u32>zones);
  hdrSet(HDR_CPUS_BASE, <u32>cpus);
  hdrSet(HDR_TLB_BASE, <u32>tlbs);
  hdrSet(HDR_RINGS_BASE, <u32>rings);
  hdrSet(HDR_POOL_BASE, <u32>pool);
  hdrSet(HDR_SWAP_BASE, <u32>swap);
  hdrSet(HDR_KHEAP_BASE, <u32>kheap);
  hdrSet(HDR_TLB_STRIDE, <u32>tlbStride);
  hdrSet(HDR_DEVTAB_BASE, <u32>devtab);
  hdrSet(HDR_IOTLB_BASE, <u32>iotlb);
  hdrSet(HDR_ATC_BASE, <u32>atc);
  hdrSet(HDR_ATC_STRIDE, <u32>atcStride);
  hdrSet(HDR_RING_STRIDE, <u32>ringStride);
  hdrSet(HDR_MEM_PAGES, <u32>(alignUp(pool, 65536) >> 16));
  hdrSet(HDR_MEM_PAGES_MAX, <u32>(alignUp(pool + (maxSlots << 12), 65536) >> 16));
  return 0;
}

/** layoutLoad - copy the header's layout into this instance's globals. */
export function layoutLoad(): void {
  FRAMES = hdr(HDR_FRAMES_BASE);
  ZONES = hdr(HDR_ZONES_BASE);
  CPUS = hdr(HDR_CPUS_BASE);
  TLBS = hdr(HDR_TLB_BASE);
  RINGS = hdr(HDR_RINGS_BASE);
  POOL = hdr(HDR_POOL_BASE);
  NR_FRAMES = hdr(HDR_NR_FRAMES);
  NR_ZONES = hdr(HDR_NR_ZONES);
  NR_CPUS = hdr(HDR_NR_CPUS);
  LEVELS = hdr(HDR_LEVELS);
  TLB_SETS = hdr(HDR_TLB_SETS);
  TLB_WAYS = hdr(HDR_TLB_WAYS);
  TLB_STRIDE = hdr(HDR_TLB_STRIDE);
  RING_STRIDE = hdr(HDR_RING_STRIDE);
  RING_ENTRIES = hdr(HDR_RING_ENTRIES);
  THREADS = hdr(HDR_THREADS);
  PHYS_BITS = hdr(HDR_PHYS_BITS);
  POOL_MAX_SLOTS = hdr(HDR_POOL_MAX_SLOTS);
  POOL_GROW_SLOTS = hdr(HDR_POOL_GROW_SLOTS);
  SWAP = hdr(HDR_SWAP_BASE);
  KHEAP = hdr(HDR_KHEAP_BASE);
  KHEAP_END = KHEAP + hdr(HDR_KHEAP_BYTES);
  SWAP_SLOTS = hdr(HDR_SWAP_SLOTS);
  DEVTAB = hdr(HDR_DEVTAB_BASE);
  IOTLB = hdr(HDR_IOTLB_BASE);
  ATC = hdr(HDR_ATC_BASE);
  ATC_STRIDE = hdr(HDR_ATC_STRIDE);
  IOMMU_DEVS = hdr(HDR_IOMMU_DEVS);
  IOTLB_SETS = hdr(HDR_IOTLB_SETS);
  IOTLB_WAYS = hdr(HDR_IOTLB_WAYS);
  ATC_SETS = hdr(HDR_ATC_SETS);
  ATC_WAYS = hdr(HDR_ATC_WAYS);
  VA_BITS = LEVELS == 5 ? 57 : 48;
  MAX_PFN = <u64>1 << (PHYS_BITS - 12);
}
