/**
 * The swap map (mm/swapfile.c): swap slots with reference counts, holding the bytes of
 * swapped-out pages in backing-pool slots. Swap entries in page tables reference a slot;
 * fork's copy duplicates the reference (swap_duplicate), zap drops it (swap_free), and the
 * last drop frees the slot and its bytes.
 *
 * Free slots are threaded through their `backing` field; everything runs under
 * HDR_SWAP_LOCK.
 */
import {
  HDR_ADDR, HDR_SWAP_LOCK, HDR_SWAP_FREE, HDR_SWAP_USED, SWPE_COUNT, SWPE_BACKING, SWPE_SIZE,
} from "../../src/abi/header";
import { SWP_KIND_SHIFT, SWP_KIND_MASK, SWP_SWAP } from "../../src/abi/x86";
import { SWAP, SWAP_SLOTS } from "../layout";
import { spinLock, spinUnlock } from "../phys/lock";
import { poolFree } from "../phys/pool";
import { FRAME_MASK } from "../mmu/pte";

// @ts-ignore: decorator
@inline function rec(slot: u32): usize {
  return SWAP + <usize>slot * SWPE_SIZE;
}

/** swapInit - every slot free, lowest first on the list. */
export function swapInit(): void {
  let head: u32 = 0;
  for (let s = SWAP_SLOTS; s > 0; s--) {
    store<u32>(rec(s - 1) + SWPE_COUNT, 0);
    store<u32>(rec(s - 1) + SWPE_BACKING, head);
    head = s;
  }
  store<u32>(HDR_ADDR + HDR_SWAP_FREE, head);
  store<u32>(HDR_ADDR + HDR_SWAP_USED, 0);
}

/** swapEntryKind - the kind of a non-present entry (SWP_*), 0 if foreign. */
// @ts-ignore: decorator
@inline export function swapEntryKind(e: u64): u32 {
  return <u32>(e >> SWP_KIND_SHIFT) & SWP_KIND_MASK;
}

/** swapEntrySlot - the slot (offset) of a swap entry. */
// @ts-ignore: decorator
@inline export function swapEntrySlot(e: u64): u32 {
  return <u32>((e & FRAME_MASK) >> 12);
}

/**
 * swapAlloc - a free slot with count 1 holding @backing (1 + pool slot, 0 = zeros).
 * Returns the slot, or -1 when swap is full.
 */
export function swapAlloc(backing: u32): i64 {
  spinLock(HDR_ADDR + HDR_SWAP_LOCK);
  const s = load<u32>(HDR_ADDR + HDR_SWAP_FREE);
  if (s != 0) {
    store<u32>(HDR_ADDR + HDR_SWAP_FREE, load<u32>(rec(s - 1) + SWPE_BACKING));
    store<u32>(rec(s - 1) + SWPE_COUNT, 1);
    store<u32>(rec(s - 1) + SWPE_BACKING, backing);
    store<u32>(HDR_ADDR + HDR_SWAP_USED, load<u32>(HDR_ADDR + HDR_SWAP_USED) + 1);
  }
  spinUnlock(HDR_ADDR + HDR_SWAP_LOCK);
  return s == 0 ? -1 : <i64>(s - 1);
}

/** swapDuplicate - one more reference to a slot in use. */
export function swapDuplicate(slot: u32): void {
  spinLock(HDR_ADDR + HDR_SWAP_LOCK);
  assert(load<u32>(rec(slot) + SWPE_COUNT) != 0, "swapDuplicate: slot is free");
  store<u32>(rec(slot) + SWPE_COUNT, load<u32>(rec(slot) + SWPE_COUNT) + 1);
  spinUnlock(HDR_ADDR + HDR_SWAP_LOCK);
}

/** swapFree - drop a reference; the last frees the slot and its bytes. True if freed. */
export function swapFree(slot: u32): bool {
  spinLock(HDR_ADDR + HDR_SWAP_LOCK);
  const count = load<u32>(rec(slot) + SWPE_COUNT);
  assert(count != 0, "swapFree: slot is free");
  let backing: u32 = 0;
  if (count == 1) {
    backing = load<u32>(rec(slot) + SWPE_BACKING);
    store<u32>(rec(slot) + SWPE_COUNT, 0);
    store<u32>(rec(slot) + SWPE_BACKING, load<u32>(HDR_ADDR + HDR_SWAP_FREE));
    store<u32>(HDR_ADDR + HDR_SWAP_FREE, slot + 1);
    store<u32>(HDR_ADDR + HDR_SWAP_USED, load<u32>(HDR_ADDR + HDR_SWAP_USED) - 1);
  } else {
    store<u32>(rec(slot) + SWPE_COUNT, count - 1);
  }
  spinUnlock(HDR_ADDR + HDR_SWAP_LOCK);
  if (backing != 0) poolFree(backing);
  return count == 1;
}

/** isSwapEntry - a non-present entry of kind SWP_SWAP naming a slot in use. */
export function isSwapEntry(e: u64): bool {
  if (swapEntryKind(e) != SWP_SWAP) return false;
  const slot = swapEntrySlot(e);
  return slot < SWAP_SLOTS && load<u32>(rec(slot) + SWPE_COUNT) != 0;
}

/* ---- exports for the host's reclaim and swap-in paths ---- */

import { EINVAL, ENOSPC, ENOMEM } from "../../src/abi/errno";
import { R_PFN_NOT_RAM, R_NOT_ALLOCATED, R_NO_POOL } from "../../src/abi/reason";
import { fail } from "../errno";
import { NR_FRAMES } from "../layout";
import { frame } from "../phys/frame";
import { pfnToZone } from "../phys/frame";
import { frameBytesAddr, slotAddr } from "../phys/pool";
import { FRAME_BACKING } from "../../src/abi/frame";

function slotInUse(slot: f64): i64 {
  if (!(slot >= 0 && slot < <f64>SWAP_SLOTS) || slot != Math.floor(slot)) return fail(EINVAL, R_NOT_ALLOCATED, 0);
  if (load<u32>(rec(<u32>slot) + SWPE_COUNT) == 0) return fail(EINVAL, R_NOT_ALLOCATED, 0);
  return <i64>slot;
}

/**
 * swapOut - put frame @pfn's bytes in a new swap slot with @count references (the swap
 * entries about to replace its mappings); the frame keeps no bytes. Returns the slot, or
 * -ENOSPC when swap is full (nothing changed).
 */
export function swapOut(pfn: f64, count: u32): f64 {
  if (!(pfn >= 0 && pfn < <f64>NR_FRAMES) || pfn != Math.floor(pfn) || pfnToZone(<u64>pfn) < 0) {
    return fail(EINVAL, R_PFN_NOT_RAM, 0);
  }
  if (count < 1) return fail(EINVAL, R_NOT_ALLOCATED, count);
  const f = frame(<u32>pfn) + FRAME_BACKING;
  const backing = atomic.load<u32>(f);
  const slot = swapAlloc(backing);
  if (slot < 0) return fail(ENOSPC, R_NO_POOL, 0);
  atomic.store<u32>(f, 0); // the bytes now belong to the swap slot
  store<u32>(rec(<u32>slot) + SWPE_COUNT, count);
  return <f64>slot;
}

/** swapIn - copy swap @slot's bytes into frame @pfn (swap_read_folio). */
export function swapIn(slot: f64, pfn: f64): i32 {
  const s = slotInUse(slot);
  if (s < 0) return <i32>s;
  if (!(pfn >= 0 && pfn < <f64>NR_FRAMES) || pfn != Math.floor(pfn) || pfnToZone(<u64>pfn) < 0) {
    return fail(EINVAL, R_PFN_NOT_RAM, 0);
  }
  const b = load<u32>(rec(<u32>s) + SWPE_BACKING);
  if (b == 0) return 0; // a page of zeros
  const to = frameBytesAddr(<u32>pfn, true);
  if (to == 0) return fail(ENOMEM, R_NO_POOL, 1);
  memory.copy(to, slotAddr(b), 4096);
  return 0;
}

/** swapPut - drop a reference to @slot (swap_free); 1 if that freed it. */
export function swapPut(slot: f64): i32 {
  const s = slotInUse(slot);
  if (s < 0) return <i32>s;
  return swapFree(<u32>s) ? 1 : 0;
}

/** swapCount - references to @slot (0 = free). */
export function swapCount(slot: f64): i32 {
  if (!(slot >= 0 && slot < <f64>SWAP_SLOTS) || slot != Math.floor(slot)) return fail(EINVAL, R_NOT_ALLOCATED, 0);
  return <i32>load<u32>(rec(<u32>slot) + SWPE_COUNT);
}
