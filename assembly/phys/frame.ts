/**
 * struct frame accessors (layout in src/abi/frame.ts) and pfn -> zone lookup.
 *
 * refcount, mapcount and the large-folio pincount change with atomics: GUP-fast takes
 * references from other threads without any lock.
 */
import {
  FRAME_SIZE, FRAME_FLAGS, FRAME_REFCOUNT, FRAME_MAPCOUNT, FRAME_MAPPING, FRAME_INDEX,
  FRAME_BACKING, FLAGS_ORDER_SHIFT, FLAGS_ORDER_MASK,
} from "../../src/abi/frame";
import { ZONE_SIZE, ZONE_START, ZONE_END } from "../../src/abi/header";
import { FRAMES, ZONES, NR_ZONES } from "../layout";

// @ts-ignore: decorator
@inline export function frame(pfn: u32): usize {
  return FRAMES + <usize>pfn * FRAME_SIZE;
}

// @ts-ignore: decorator
@inline export function frameFlags(pfn: u32): u32 {
  return atomic.load<u32>(frame(pfn) + FRAME_FLAGS);
}

// @ts-ignore: decorator
@inline export function frameSetFlags(pfn: u32, flags: u32): void {
  atomic.store<u32>(frame(pfn) + FRAME_FLAGS, flags);
}

// @ts-ignore: decorator
@inline export function frameOrder(flags: u32): u32 {
  return (flags >> FLAGS_ORDER_SHIFT) & FLAGS_ORDER_MASK;
}

// @ts-ignore: decorator
@inline export function frameRefcount(pfn: u32): i32 {
  return atomic.load<i32>(frame(pfn) + FRAME_REFCOUNT);
}

// @ts-ignore: decorator
@inline export function frameMapping(pfn: u32): u32 {
  return load<u32>(frame(pfn) + FRAME_MAPPING);
}

// @ts-ignore: decorator
@inline export function frameSetMapping(pfn: u32, v: u32): void {
  store<u32>(frame(pfn) + FRAME_MAPPING, v);
}

// @ts-ignore: decorator
@inline export function frameIndex(pfn: u32): u32 {
  return load<u32>(frame(pfn) + FRAME_INDEX);
}

// @ts-ignore: decorator
@inline export function frameSetIndex(pfn: u32, v: u32): void {
  store<u32>(frame(pfn) + FRAME_INDEX, v);
}

// @ts-ignore: decorator
@inline export function frameBacking(pfn: u32): u32 {
  return load<u32>(frame(pfn) + FRAME_BACKING);
}

/** frameClear - zero a record's counters and links (not its backing slot). */
// @ts-ignore: decorator
@inline export function frameClear(pfn: u32): void {
  const f = frame(pfn);
  atomic.store<u32>(f + FRAME_FLAGS, 0);
  atomic.store<i32>(f + FRAME_REFCOUNT, 0);
  atomic.store<i32>(f + FRAME_MAPCOUNT, 0);
  store<u32>(f + FRAME_MAPPING, 0);
  store<u32>(f + FRAME_INDEX, 0);
}

// @ts-ignore: decorator
@inline export function zone(idx: u32): usize {
  return ZONES + <usize>idx * ZONE_SIZE;
}

/** pfnToZone - index of the zone holding pfn, or -1 if no zone does (a hole, MMIO). */
export function pfnToZone(pfn: u64): i32 {
  for (let z: u32 = 0; z < NR_ZONES; z++) {
    const zp = zone(z);
    if (pfn >= <u64>load<u32>(zp + ZONE_START) && pfn < <u64>load<u32>(zp + ZONE_END)) return z;
  }
  return -1;
}
