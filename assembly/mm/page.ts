/**
 * struct page / folio accounting (include/linux/mm.h, mm/swap.c): references, mapcounts,
 * flags, with the kernel's layout of large folios.
 *
 * - A folio is an order-0 page or a compound allocation (PG_head + PG_tail frames whose
 *   `mapping` is the head pfn). Its reference count lives in the head.
 * - Per-page mapcount counts PTE mappings of that page; a large folio's PMD mappings are its
 *   entire mapcount, kept in the first tail's `refcount` field (folio page[1], as the kernel
 *   keeps _entire_mapcount there). page_mapcount = own + entire.
 * - A large folio's _pincount lives in the first tail's `index` field.
 * - The last reference frees the folio to the buddy allocator (its bytes and flags go too).
 *
 * Every count changes with an atomic: GUP-fast takes references from other threads.
 */
import {
  FRAME_REFCOUNT, FRAME_MAPCOUNT, FRAME_INDEX, FRAME_SIZE, PG_head, PG_tail,
} from "../../src/abi/frame";
import { frame, frameFlags, frameOrder, frameMapping } from "../phys/frame";
import { freeBlock } from "../phys/buddy";

/** folioHead - the head pfn of the folio holding @pfn. */
// @ts-ignore: decorator
@inline export function folioHead(pfn: u32): u32 {
  return frameFlags(pfn) & PG_tail ? frameMapping(pfn) : pfn;
}

/** folioOrder - 0 for a small folio, else the compound order. */
// @ts-ignore: decorator
@inline export function folioOrder(head: u32): u32 {
  const f = frameFlags(head);
  return f & PG_head ? frameOrder(f) : 0;
}

/** folioRefAdd - add @d to a folio's reference count; returns the new count. */
// @ts-ignore: decorator
@inline export function folioRefAdd(head: u32, d: i32): i32 {
  return atomic.add<i32>(frame(head) + FRAME_REFCOUNT, d) + d;
}

/** folioPut - drop @n references; free the folio when they were the last. True if freed. */
export function folioPut(head: u32, n: i32): bool {
  const left = folioRefAdd(head, -n);
  assert(left >= 0, "folioPut: reference count below zero");
  if (left != 0) return false;
  freeBlock(head, folioOrder(head));
  return true;
}

/** pageMapcountAdd - add @d to page @pfn's own (PTE) mapcount; returns the new count. */
// @ts-ignore: decorator
@inline export function pageMapcountAdd(pfn: u32, d: i32): i32 {
  return atomic.add<i32>(frame(pfn) + FRAME_MAPCOUNT, d) + d;
}

/** folioEntireMapcountAdd - add @d to a large folio's PMD mapcount; returns the new count. */
// @ts-ignore: decorator
@inline export function folioEntireMapcountAdd(head: u32, d: i32): i32 {
  return atomic.add<i32>(frame(head) + FRAME_SIZE + FRAME_REFCOUNT, d) + d;
}

/** folioPincountAdd - add @d to a large folio's _pincount; returns the new count. */
// @ts-ignore: decorator
@inline export function folioPincountAdd(head: u32, d: i32): i32 {
  return atomic.add<i32>(frame(head) + FRAME_SIZE + FRAME_INDEX, d) + d;
}

/** pageFlagsUpdate - set then clear flag bits atomically; returns the old flags. */
export function pageFlagsUpdate(pfn: u32, set: u32, clear: u32): u32 {
  const a = frame(pfn);
  while (true) {
    const old = atomic.load<u32>(a);
    const n = (old | set) & ~clear;
    if (n == old || atomic.cmpxchg<u32>(a, old, n) == old) return old;
  }
}
