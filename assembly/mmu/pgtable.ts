/**
 * Page-table pages and the arguments every range operation shares.
 *
 * A page-table page is an order-0 NORMAL frame with PG_pgtable, a backing slot, its level in
 * `mapping` and its number of non-zero entries in `index`. Range operations keep one
 * invariant: every table but the root has at least one non-zero entry (unmap frees a table
 * when its last entry goes), so "mapped" never hides behind an empty table.
 *
 * Linear page numbers (lvpn) are the VA's low VA_BITS bits >> 12: the canonical upper half
 * lands at the top of [0, 2^(VA_BITS-12)), the way the PML4/PML5 index sees it.
 */
import { devtabUser } from "../iommu/devtab";
import { FRAME_REFCOUNT, FRAME_BACKING, PG_pgtable, PFN_NONE } from "../../src/abi/frame";
import { EINVAL, ENOMEM, EBUSY } from "../../src/abi/errno";
import {
  R_VA_ALIGN, R_SIZE_ZERO, R_SIZE_ALIGN, R_NONCANONICAL, R_CROSS_HALF, R_ROOT, R_NO_FRAMES,
  R_NO_POOL, R_BUSY_TABLES, R_ROOT_IN_USE, R_ROOT_DEVICE,
} from "../../src/abi/reason";
import { LEVELS, VA_BITS, NR_FRAMES, NR_CPUS, CPUS, THREADS } from "../layout";
import { THREAD } from "../ring";
import { CPU_SIZE, CPU_CR3_PFN, HDR_ADDR, HDR_GUP_WALKERS } from "../../src/abi/header";
import { fail } from "../errno";
import {
  frame, frameFlags, frameSetFlags, frameMapping, frameSetMapping, frameIndex, frameSetIndex, frameBacking,
} from "../phys/frame";
import { allocTablePage, freeBlock, tablePagesAvailable } from "../phys/buddy";
import { poolAlloc, poolAvailable, slotAddr } from "../phys/pool";
import { levelPages } from "./pte";

/* The range of the operation in progress, set by rangeCheck(). */
export let rangeLo: u64 = 0;
export let rangeHi: u64 = 0;
/** Add to an lvpn to get the full 52-bit page number back (non-zero in the upper half). */
export let rangeVpnHigh: u64 = 0;
export let rangeKernel: bool = false;
/** Tables allocated or freed by the operation in progress. */
export let opTables: u32 = 0;

// @ts-ignore: decorator
@inline export function tableCount(pfn: u32): u32 {
  return frameIndex(pfn);
}

// @ts-ignore: decorator
@inline export function tableCountAdd(pfn: u32, d: i32): void {
  frameSetIndex(pfn, <u32>(<i32>frameIndex(pfn) + d));
}

/** opTablesReset - start counting the tables an operation allocates or frees. */
export function opTablesReset(): void {
  opTables = 0;
}

/** tableNew - a zeroed page-table page at @level. Callers have checked tablesAvailable(). */
export function tableNew(level: u32): u32 {
  const pfn = allocTablePage();
  assert(pfn != <u32>PFN_NONE, "tableNew: no frame though tablesAvailable() said so");
  // A free frame may hold bytes a device wrote into it (a DMA into memory nobody held):
  // the table takes that slot, zeroed, rather than orphaning it.
  let slot = frameBacking(pfn);
  if (slot != 0) memory.fill(slotAddr(slot), 0, 4096);
  else slot = poolAlloc();
  assert(slot != 0, "tableNew: no backing slot though tablesAvailable() said so");
  store<u32>(frame(pfn) + FRAME_BACKING, slot);
  atomic.store<i32>(frame(pfn) + FRAME_REFCOUNT, 1);
  frameSetFlags(pfn, PG_pgtable);
  frameSetMapping(pfn, level);
  frameSetIndex(pfn, 0);
  opTables++;
  return pfn;
}

/** This thread's GUP-fast walker word (odd while inside a lockless walk). */
// @ts-ignore: decorator
@inline export function walkerWord(t: u32): usize {
  return <usize>(HDR_ADDR + HDR_GUP_WALKERS) + (<usize>t << 2);
}

/**
 * gupFastSync - wait until every other thread that is inside a GUP-fast walk now has left
 * it: what the kernel's TLB-shootdown IPI (or RCU table freeing) waits for on a CPU that
 * walks with interrupts off. Called after a page-table page is unlinked and before it is
 * freed; a walker that enters later cannot reach the table, its entry is already zero.
 */
export function gupFastSync(): void {
  for (let t: u32 = 0; t < THREADS; t++) {
    if (<i32>t == THREAD) continue;
    const w = walkerWord(t);
    const s = atomic.load<u32>(w);
    if ((s & 1) == 0) continue;
    while (atomic.load<u32>(w) == s) {
      /* the walker has interrupts off: it finishes before it answers */
    }
  }
}

/** tableFree - give a page-table page (and its bytes) back, once no GUP-fast walker can be reading it. */
export function tableFree(pfn: u32): void {
  assert(tableCount(pfn) == 0, "tableFree: table still has entries");
  gupFastSync();
  atomic.store<i32>(frame(pfn) + FRAME_REFCOUNT, 0);
  freeBlock(pfn, 0);
  opTables++;
}

/** tablesAvailable - 0 if @n new tables can be made, else -ENOMEM with the reason. */
export function tablesAvailable(n: u64): i32 {
  if (n == 0) return 0;
  if (tablePagesAvailable() < n) return fail(ENOMEM, R_NO_FRAMES, <u32>n);
  if (<u64>poolAvailable() < n) return fail(ENOMEM, R_NO_POOL, <u32>n);
  return 0;
}

/** rootCheck - the pfn of a root table, or -EINVAL. */
export function rootCheck(root: f64): i64 {
  if (!(root >= 0 && root < <f64>NR_FRAMES) || root != Math.floor(root)) {
    return fail(EINVAL, R_ROOT, 0);
  }
  const pfn = <u32>root;
  if ((frameFlags(pfn) & PG_pgtable) == 0 || frameMapping(pfn) != LEVELS) {
    return fail(EINVAL, R_ROOT, 0);
  }
  return pfn;
}

/**
 * rangeCheck - validate [vpn, vpn + npages) for an operation whose leaves cover
 * levelPages(@level) pages, and set rangeLo/rangeHi (linear page numbers).
 * Returns 0 or -EINVAL with the reason.
 */
export function rangeCheck(vpn: f64, npages: f64, level: u32): i32 {
  if (!(vpn >= 0 && vpn < 4503599627370496.0) || vpn != Math.floor(vpn)) {
    return fail(EINVAL, R_NONCANONICAL, 0);
  }
  if (!(npages >= 1)) return fail(EINVAL, R_SIZE_ZERO, 0);
  if (npages > 4503599627370496.0 || npages != Math.floor(npages)) {
    return fail(EINVAL, R_SIZE_ALIGN, 0);
  }
  const v = <u64>vpn;
  const n = <u64>npages;
  const align = levelPages(level);
  if (v & (align - 1)) return fail(EINVAL, R_VA_ALIGN, level);
  if (n & (align - 1)) return fail(EINVAL, R_SIZE_ALIGN, level);
  const half: u64 = <u64>1 << (VA_BITS - 13);
  const top: u64 = <u64>1 << 52;
  const upper: u64 = top - half;
  if (v < half) {
    if (n > half - v) return fail(EINVAL, R_CROSS_HALF, 0);
    rangeVpnHigh = 0;
    rangeKernel = false;
  } else if (v >= upper) {
    if (n > top - v) return fail(EINVAL, R_CROSS_HALF, 0);
    rangeVpnHigh = upper - half;
    rangeKernel = true;
  } else {
    return fail(EINVAL, R_NONCANONICAL, 0);
  }
  rangeLo = v - rangeVpnHigh;
  rangeHi = rangeLo + n;
  return 0;
}

/** pgdAlloc - a new, empty root table. Returns its pfn or -ENOMEM. */
export function pgdAlloc(): i64 {
  const r = tablesAvailable(1);
  if (r < 0) return r;
  opTables = 0;
  return tableNew(LEVELS);
}

/**
 * pgdFree - free an empty root table. -EBUSY while it still maps something, or while a CPU
 * runs on it (its CR3 points there: switch the CPU away first, as Linux does before
 * pgd_free()), or while an IOMMU device or PASID entry walks it.
 */
export function pgdFree(root: f64): i32 {
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  const pfn = <u32>r;
  if (tableCount(pfn) != 0) return fail(EBUSY, R_BUSY_TABLES, tableCount(pfn));
  for (let cpu: u32 = 0; cpu < NR_CPUS; cpu++) {
    if (load<u32>(CPUS + <usize>cpu * CPU_SIZE + CPU_CR3_PFN) == pfn) return fail(EBUSY, R_ROOT_IN_USE, cpu);
  }
  const dev = devtabUser(pfn);
  if (dev >= 0) return fail(EBUSY, R_ROOT_DEVICE, dev);
  opTables = 0;
  tableFree(pfn);
  return 0;
}
