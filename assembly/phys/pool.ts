/**
 * The backing pool: 4 KiB slots that hold bytes for the frames that need them (every
 * page-table page, and data pages once written). A frame without a slot reads as zeros, so
 * an emulated machine costs its frame records plus what was actually written.
 *
 * The pool is the last region of the memory and grows with memory.grow() in steps of
 * POOL_GROW_SLOTS, up to POOL_MAX_SLOTS. Free slots form a list linked through their first
 * word. All of it runs under HDR_POOL_LOCK.
 */
import {
  HDR_ADDR, HDR_POOL_LOCK, HDR_POOL_SLOTS, HDR_POOL_FREE, HDR_POOL_NR_FREE, HDR_POOL_USED,
} from "../../src/abi/header";
import { FRAME_BACKING } from "../../src/abi/frame";
import { POOL, POOL_MAX_SLOTS, POOL_GROW_SLOTS } from "../layout";
import { spinLock, spinUnlock } from "./lock";
import { frame } from "./frame";

// @ts-ignore: decorator
@inline export function slotAddr(slot1: u32): usize {
  return POOL + (<usize>(slot1 - 1) << 12);
}

// @ts-ignore: decorator
@inline function word(off: u32): usize {
  return HDR_ADDR + off;
}

/** poolAvailable - slots that can still be handed out (free list + room to grow). */
export function poolAvailable(): u32 {
  return (
    atomic.load<u32>(word(HDR_POOL_NR_FREE)) +
    (POOL_MAX_SLOTS - atomic.load<u32>(word(HDR_POOL_SLOTS)))
  );
}

/** Grow the pool by up to POOL_GROW_SLOTS; false when at its maximum or the memory can't grow. */
function poolGrow(): bool {
  const slots = load<u32>(word(HDR_POOL_SLOTS));
  if (slots >= POOL_MAX_SLOTS) return false;
  let add = POOL_GROW_SLOTS;
  if (add > POOL_MAX_SLOTS - slots) add = POOL_MAX_SLOTS - slots;
  const end = <u64>POOL + (<u64>(slots + add) << 12);
  const have = <u64>memory.size() << 16;
  if (end > have) {
    const pages = <i32>((end - have + 65535) >> 16);
    if (memory.grow(pages) < 0) return false;
  }
  // Thread the new slots onto the free list, lowest slot first.
  let head = load<u32>(word(HDR_POOL_FREE));
  for (let s: u32 = slots + add; s > slots; s--) {
    store<u32>(slotAddr(s), head);
    head = s;
  }
  store<u32>(word(HDR_POOL_FREE), head);
  atomic.add<u32>(word(HDR_POOL_NR_FREE), add);
  atomic.store<u32>(word(HDR_POOL_SLOTS), slots + add);
  return true;
}

/** poolAlloc - a zeroed slot (slot number + 1), or 0 when the pool is exhausted. */
export function poolAlloc(): u32 {
  spinLock(word(HDR_POOL_LOCK));
  let s = load<u32>(word(HDR_POOL_FREE));
  if (s == 0 && poolGrow()) s = load<u32>(word(HDR_POOL_FREE));
  if (s != 0) {
    store<u32>(word(HDR_POOL_FREE), load<u32>(slotAddr(s)));
    atomic.sub<u32>(word(HDR_POOL_NR_FREE), 1);
    atomic.add<u32>(word(HDR_POOL_USED), 1);
  }
  spinUnlock(word(HDR_POOL_LOCK));
  if (s != 0) memory.fill(slotAddr(s), 0, 4096);
  return s;
}

/** poolFree - return a slot (slot number + 1) to the pool. */
export function poolFree(s: u32): void {
  spinLock(word(HDR_POOL_LOCK));
  store<u32>(slotAddr(s), load<u32>(word(HDR_POOL_FREE)));
  store<u32>(word(HDR_POOL_FREE), s);
  atomic.add<u32>(word(HDR_POOL_NR_FREE), 1);
  atomic.sub<u32>(word(HDR_POOL_USED), 1);
  spinUnlock(word(HDR_POOL_LOCK));
}

/**
 * frameBytesAddr - address of a frame's 4 KiB of bytes.
 * @alloc: give the frame a zeroed slot if it has none.
 * Returns 0 if the frame has no bytes (and @alloc is false, or the pool is exhausted).
 */
export function frameBytesAddr(pfn: u32, alloc: bool): usize {
  const f = frame(pfn) + FRAME_BACKING;
  let s = atomic.load<u32>(f);
  if (s == 0) {
    if (!alloc) return 0;
    const n = poolAlloc();
    if (n == 0) return 0;
    s = atomic.cmpxchg<u32>(f, 0, n);
    if (s != 0) poolFree(n); // another thread gave it bytes first
    else s = n;
  }
  return slotAddr(s);
}

/** frameDropBytes - release a frame's slot: its bytes read as zeros again. */
export function frameDropBytes(pfn: u32): void {
  const s = atomic.xchg<u32>(frame(pfn) + FRAME_BACKING, 0);
  if (s != 0) poolFree(s);
}
