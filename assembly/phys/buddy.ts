/**
 * The buddy allocator (mm/page_alloc.c): per zone, one free list per order 0..MAX_ORDER.
 *
 * - A free block is 2^order frames aligned to its size; its first frame carries PG_buddy and
 *   the order, and links the list through `mapping` (next) and `index` (prev). Every other
 *   record of a free block is zero.
 * - Allocation takes the head of the smallest non-empty list of order >= the request and
 *   splits it, keeping the low half and putting each upper half back (expand()).
 * - Freeing merges with the buddy (pfn ^ 1 << order) while it is free, of the same order and
 *   in the same zone (__free_one_page()), then pushes the block on its list's head.
 * - An allocation's first frame gets refcount 1 and its order in the flags' order field, so
 *   freePages() can check the caller's order; ALLOC_COMPOUND makes a folio (PG_head, tails
 *   with PG_tail and mapping = head pfn).
 * - Frames below RESERVED_LOW_PFNS are PG_reserved and never enter the lists.
 *
 * Every list operation runs under HDR_PHYS_LOCK (zone->lock).
 */
import {
  FRAME_REFCOUNT, PG_buddy, PG_head, PG_tail, PG_reserved, PG_pgtable, FLAGS_ORDER_SHIFT, FLAGS_ORDER_MASK,
  MAX_ORDER, PFN_NONE, RESERVED_LOW_PFNS, ZONELIST_END, ZONE_NORMAL,
} from "../../src/abi/frame";
import {
  HDR_ADDR, HDR_PHYS_LOCK, ZONE_START, ZONE_END, ZONE_KIND, ZONE_NR_FREE, ZONE_FREE_HEAD,
  ZONE_NR_BLOCKS, HDR_ZONE_CFG, ZCFG_SIZE, ZCFG_START, ZCFG_PAGES, ZCFG_KIND, ALLOC_COMPOUND,
} from "../../src/abi/header";
import { EINVAL, ENOMEM } from "../../src/abi/errno";
import {
  R_ORDER, R_ZONE, R_NOT_ALLOCATED, R_NO_FRAMES, R_PFN_NOT_RAM, R_FLAGS,
} from "../../src/abi/reason";
import { NR_ZONES, NR_FRAMES, hdr } from "../layout";
import { fail } from "../errno";
import { spinLock, spinUnlock } from "./lock";
import {
  frame, frameFlags, frameSetFlags, frameOrder, frameClear, frameMapping, frameSetMapping,
  frameIndex, frameSetIndex, zone, pfnToZone,
} from "./frame";
import { frameDropBytes } from "./pool";

const NONE: u32 = <u32>PFN_NONE;

// @ts-ignore: decorator
@inline function headAddr(z: usize, order: u32): usize {
  return z + ZONE_FREE_HEAD + (order << 2);
}

function listAdd(z: usize, order: u32, pfn: u32): void {
  const head = load<u32>(headAddr(z, order));
  frameSetMapping(pfn, head);
  frameSetIndex(pfn, NONE);
  if (head != NONE) frameSetIndex(head, pfn);
  store<u32>(headAddr(z, order), pfn);
  const nb = z + ZONE_NR_BLOCKS + (order << 2);
  store<u32>(nb, load<u32>(nb) + 1);
  frameSetFlags(pfn, PG_buddy | (order << FLAGS_ORDER_SHIFT));
}

function listDel(z: usize, order: u32, pfn: u32): void {
  const next = frameMapping(pfn);
  const prev = frameIndex(pfn);
  if (prev != NONE) frameSetMapping(prev, next);
  else store<u32>(headAddr(z, order), next);
  if (next != NONE) frameSetIndex(next, prev);
  const nb = z + ZONE_NR_BLOCKS + (order << 2);
  store<u32>(nb, load<u32>(nb) - 1);
  frameClear(pfn);
}

/** zonesInit - build every zone from the header's zone configuration. */
export function zonesInit(): void {
  for (let i: u32 = 0; i < NR_ZONES; i++) {
    const cfg = HDR_ZONE_CFG + i * ZCFG_SIZE;
    const z = zone(i);
    const start = hdr(cfg + ZCFG_START);
    const end = start + hdr(cfg + ZCFG_PAGES);
    store<u32>(z + ZONE_START, start);
    store<u32>(z + ZONE_END, end);
    store<u32>(z + ZONE_KIND, hdr(cfg + ZCFG_KIND));
    store<u32>(z + ZONE_NR_FREE, 0);
    for (let o: u32 = 0; o <= <u32>MAX_ORDER; o++) {
      store<u32>(headAddr(z, o), NONE);
      store<u32>(z + ZONE_NR_BLOCKS + (o << 2), 0);
    }
    let lo = start;
    while (lo < end && lo < <u32>RESERVED_LOW_PFNS) {
      frameSetFlags(lo, PG_reserved);
      atomic.store<i32>(frame(lo) + FRAME_REFCOUNT, 1);
      lo++;
    }
    // Free [lo, end) as maximal aligned blocks, highest first, so the lowest block of each
    // order ends at its list's head and allocation hands out low frames first.
    let hi = end;
    while (hi > lo) {
      let o: u32 = MAX_ORDER;
      while (o > 0 && ((hi & ((1 << o) - 1)) != 0 || hi - lo < <u32>1 << o)) o--;
      hi -= 1 << o;
      listAdd(z, o, hi);
      store<u32>(z + ZONE_NR_FREE, load<u32>(z + ZONE_NR_FREE) + (1 << o));
    }
  }
}

/** Allocate 2^order frames from one zone; NONE if it has no block big enough. */
function rmqueue(z: usize, order: u32): u32 {
  for (let k = order; k <= <u32>MAX_ORDER; k++) {
    const pfn = load<u32>(headAddr(z, k));
    if (pfn == NONE) continue;
    listDel(z, k, pfn);
    while (k > order) {
      k--;
      listAdd(z, k, pfn + (1 << k));
    }
    store<u32>(z + ZONE_NR_FREE, load<u32>(z + ZONE_NR_FREE) - (1 << order));
    return pfn;
  }
  return NONE;
}

function prepNewPage(pfn: u32, order: u32, flags: u32): void {
  if (flags & ALLOC_COMPOUND && order > 0) {
    frameSetFlags(pfn, PG_head | (order << FLAGS_ORDER_SHIFT));
    const n: u32 = 1 << order;
    for (let i: u32 = 1; i < n; i++) {
      frameSetFlags(pfn + i, PG_tail);
      frameSetMapping(pfn + i, pfn);
    }
  } else {
    frameSetFlags(pfn, order << FLAGS_ORDER_SHIFT);
  }
  atomic.store<i32>(frame(pfn) + FRAME_REFCOUNT, 1);
}

/**
 * allocPagesZonelist - alloc_pages(): 2^order frames from the first zone of the zonelist
 * that has them.
 * @zonelist: zone indices, 4 bits each, lowest nibble first, ended by ZONELIST_END.
 * Returns the first pfn, or -ENOMEM (R_NO_FRAMES) / -EINVAL (R_ORDER, R_ZONE, R_FLAGS).
 */
export function allocPagesZonelist(zonelist: u32, order: u32, flags: u32): i64 {
  if (order > <u32>MAX_ORDER) return fail(EINVAL, R_ORDER, order);
  if (flags & ~ALLOC_COMPOUND) return fail(EINVAL, R_FLAGS, flags);
  if ((zonelist & 0xf) == ZONELIST_END) return fail(EINVAL, R_ZONE, zonelist);
  for (let zl = zonelist; (zl & 0xf) != ZONELIST_END; zl >>= 4) {
    if ((zl & 0xf) >= NR_ZONES) return fail(EINVAL, R_ZONE, zl & 0xf);
  }
  spinLock(HDR_ADDR + HDR_PHYS_LOCK);
  let pfn = NONE;
  for (let zl = zonelist; (zl & 0xf) != ZONELIST_END && pfn == NONE; zl >>= 4) {
    pfn = rmqueue(zone(zl & 0xf), order);
  }
  spinUnlock(HDR_ADDR + HDR_PHYS_LOCK);
  if (pfn == NONE) return fail(ENOMEM, R_NO_FRAMES, <u32>1 << order);
  prepNewPage(pfn, order, flags);
  return pfn;
}

/** __free_one_page: clear the block's records, merge with free buddies, list it. */
export function freeBlock(pfn: u32, order: u32): void {
  const n: u32 = 1 << order;
  for (let i: u32 = 0; i < n; i++) {
    frameDropBytes(pfn + i);
    frameClear(pfn + i);
  }
  const zi = pfnToZone(pfn);
  assert(zi >= 0, "freeBlock: frame outside every zone");
  const z = zone(zi);
  const zs = load<u32>(z + ZONE_START);
  const ze = load<u32>(z + ZONE_END);
  spinLock(HDR_ADDR + HDR_PHYS_LOCK);
  store<u32>(z + ZONE_NR_FREE, load<u32>(z + ZONE_NR_FREE) + n);
  while (order < <u32>MAX_ORDER) {
    const buddy = pfn ^ (1 << order);
    if (buddy < zs || buddy >= ze) break;
    const bf = frameFlags(buddy);
    if ((bf & PG_buddy) == 0 || frameOrder(bf) != order) break;
    listDel(z, order, buddy);
    pfn &= ~(1 << order);
    order++;
  }
  listAdd(z, order, pfn);
  spinUnlock(HDR_ADDR + HDR_PHYS_LOCK);
}

/**
 * freePagesChecked - __free_pages(): drop the allocation's reference and free the block when
 * it was the last one.
 * Returns 1 if freed, 0 if other references remain, -EINVAL if pfn is not the first frame of
 * an allocation of that order (a double free, a tail, a reserved or page-table frame).
 */
export function freePagesChecked(pfn: u64, order: u32): i32 {
  if (pfn >= <u64>NR_FRAMES || pfnToZone(pfn) < 0) return fail(EINVAL, R_PFN_NOT_RAM, 0);
  const p = <u32>pfn;
  const f = frameFlags(p);
  if (f & (PG_buddy | PG_tail | PG_reserved | PG_pgtable)) {
    return fail(EINVAL, R_NOT_ALLOCATED, f);
  }
  const ref = atomic.load<i32>(frame(p) + FRAME_REFCOUNT);
  if (ref <= 0) return fail(EINVAL, R_NOT_ALLOCATED, f);
  if (order > <u32>MAX_ORDER || frameOrder(f) != order) return fail(EINVAL, R_ORDER, frameOrder(f));
  if (atomic.sub<i32>(frame(p) + FRAME_REFCOUNT, 1) != 1) return 0;
  freeBlock(p, order);
  return 1;
}

/**
 * splitPage - split_page(): make the non-compound allocation of 2^order frames at pfn that
 * many order-0 allocations, each with its own reference. Returns 0, or -EINVAL if pfn is not
 * the first frame of such an allocation (compound, free, or another order).
 */
export function splitPageChecked(pfn: u64, order: u32): i32 {
  if (pfn >= <u64>NR_FRAMES || pfnToZone(pfn) < 0) return fail(EINVAL, R_PFN_NOT_RAM, 0);
  const p = <u32>pfn;
  const f = frameFlags(p);
  if (f & (PG_buddy | PG_head | PG_tail | PG_reserved | PG_pgtable) || atomic.load<i32>(frame(p) + FRAME_REFCOUNT) <= 0) {
    return fail(EINVAL, R_NOT_ALLOCATED, f);
  }
  if (order > <u32>MAX_ORDER || frameOrder(f) != order) return fail(EINVAL, R_ORDER, frameOrder(f));
  frameSetFlags(p, f & ~(FLAGS_ORDER_MASK << FLAGS_ORDER_SHIFT));
  const n: u32 = 1 << order;
  for (let i: u32 = 1; i < n; i++) atomic.store<i32>(frame(p + i) + FRAME_REFCOUNT, 1);
  return 0;
}

/** nrFreePages - free frames in one zone, or in all of them when idx < 0. */
export function nrFreePages(idx: i32): u64 {
  let sum: u64 = 0;
  for (let z: u32 = 0; z < NR_ZONES; z++) {
    if (idx < 0 || <u32>idx == z) sum += load<u32>(zone(z) + ZONE_NR_FREE);
  }
  return sum;
}

/** allocTablePage - one frame for a page table (NORMAL zone only: page tables are unmovable). */
export function allocTablePage(): u32 {
  spinLock(HDR_ADDR + HDR_PHYS_LOCK);
  let pfn = NONE;
  for (let z: u32 = 0; z < NR_ZONES && pfn == NONE; z++) {
    if (load<u32>(zone(z) + ZONE_KIND) == ZONE_NORMAL) pfn = rmqueue(zone(z), 0);
  }
  spinUnlock(HDR_ADDR + HDR_PHYS_LOCK);
  return pfn;
}

/** tablePagesAvailable - frames allocTablePage() can still hand out. */
export function tablePagesAvailable(): u64 {
  let sum: u64 = 0;
  for (let z: u32 = 0; z < NR_ZONES; z++) {
    if (load<u32>(zone(z) + ZONE_KIND) == ZONE_NORMAL) sum += load<u32>(zone(z) + ZONE_NR_FREE);
  }
  return sum;
}


