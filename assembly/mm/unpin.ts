/**
 * Giving back what GUP took (mm/gup.c gup_put_folio, unpin_user_pages,
 * unpin_user_pages_dirty_lock; put_page for FOLL_GET).
 *
 * - A run of consecutive entries in the same folio is released with one operation
 *   (gup_folio_next).
 * - FOLL_PIN: a small folio gives back GUP_PIN_COUNTING_BIAS per page, a large one 1 per page
 *   from its refcount and its _pincount; the zero page was never counted and is skipped.
 * - With UNPIN_DIRTY, a folio not already dirty is marked dirty first (under the folio lock
 *   in the kernel, which is why the call is "_lock").
 * - Unlike the kernel, which trusts the caller, a release of pins or references that are not
 *   there is refused before anything changes: -EINVAL, the reason and the entry's index.
 */
import { GUP_PIN_COUNTING_BIAS, FRAME_REFCOUNT, PG_head, PG_dirty } from "../../src/abi/frame";
import { FOLL_PIN, UNPIN_DIRTY, UNPIN_PUT, UNPIN_CHECK, REG_GUP_GRABS, REG_GUP_DIRTIED } from "../../src/abi/gup";
import { HDR_ADDR, HDR_ZERO_PFN, HDR_FOLL_PIN_RELEASED, RING_ENTRY0, RENT_SIZE, REG_FREED } from "../../src/abi/header";
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT, R_FLAGS, R_PFN_NOT_RAM, R_NOT_PINNED } from "../../src/abi/reason";
import { fail } from "../errno";
import { NR_FRAMES, RING_ENTRIES } from "../layout";
import { RING, ringCheck } from "../ring";
import { frame, frameFlags, pfnToZone } from "../phys/frame";
import { folioHead, folioPut, folioPincountAdd, pageFlagsUpdate } from "./page";

let freed: u32 = 0;

/**
 * gupPutFolio - release @refs pages' worth of what GUP took on the folio @head with @flags
 * (FOLL_PIN or FOLL_GET). Returns whether the folio was freed.
 */
export function gupPutFolio(head: u32, refs: i32, flags: u32): bool {
  if (flags & FOLL_PIN) {
    if (head == load<u32>(HDR_ADDR + HDR_ZERO_PFN)) return false;
    atomic.add<i64>(HDR_ADDR + HDR_FOLL_PIN_RELEASED, refs);
    if (frameFlags(head) & PG_head) {
      folioPincountAdd(head, -refs);
    } else {
      refs *= GUP_PIN_COUNTING_BIAS;
    }
  }
  return folioPut(head, refs);
}

// @ts-ignore: decorator
@inline function entry(i: u32): u32 {
  return load<u32>(RING + RING_ENTRY0 + (<usize>i << 2));
}

/** The length of the run of entries from @i in the same folio as entry @i (gup_folio_next). */
function run(i: u32, n: u32, head: u32): u32 {
  let k: u32 = 1;
  while (i + k < n) {
    const p = entry(i + k);
    if (<u64>p >= <u64>NR_FRAMES || folioHead(p) != head) break;
    k++;
  }
  return k;
}

/**
 * unpinPages - release the @n pages whose pfns are in the ring (u32 each from the first
 * entry): unpin them (FOLL_PIN references), or with UNPIN_PUT put them (FOLL_GET ones);
 * UNPIN_DIRTY marks each folio dirty first; UNPIN_CHECK only checks. Returns 0 (REG_FREED: folios freed; REG_GUP_GRABS:
 * folio operations; REG_GUP_DIRTIED: folios newly dirtied), or -EINVAL with nothing changed
 * when an entry is not a page of this machine or holds fewer pins (references) than its
 * entries release (REG arg: the entry's index).
 */
export function unpinPages(n: u32, flags: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  if (flags & ~(UNPIN_DIRTY | UNPIN_PUT | UNPIN_CHECK)) return fail(EINVAL, R_FLAGS, flags);
  if (n > <u32>((RING_ENTRIES * RENT_SIZE) >> 2)) return fail(EINVAL, R_COUNT, n);
  const pin = (flags & UNPIN_PUT) == 0;
  const zero = load<u32>(HDR_ADDR + HDR_ZERO_PFN);
  // Check every run first: a failed call changes nothing. Runs of ascending folios (the
  // usual array, in address order) are checked one at a time; otherwise a folio's runs are
  // added up first.
  let i: u32 = 0;
  let prev: i64 = -1;
  let ascending = true;
  while (i < n) {
    const p = entry(i);
    if (<u64>p >= <u64>NR_FRAMES || pfnToZone(p) < 0) return fail(EINVAL, R_PFN_NOT_RAM, i);
    const head = folioHead(p);
    const k = run(i, n, head);
    if (<i64>head <= prev) ascending = false;
    prev = head;
    if (!holds(head, <i32>k, pin, zero)) return fail(EINVAL, R_NOT_PINNED, i);
    i += k;
  }
  if (!ascending) {
    i = 0;
    while (i < n) {
      const head = folioHead(entry(i));
      const k = run(i, n, head);
      let total = k;
      let j = i + k;
      while (j < n) {
        const h = folioHead(entry(j));
        const m = run(j, n, h);
        if (h == head) total += m;
        j += m;
      }
      if (!holds(head, <i32>total, pin, zero)) return fail(EINVAL, R_NOT_PINNED, i);
      i += k;
    }
  }
  if (flags & UNPIN_CHECK) return 0;
  freed = 0;
  let ops: u32 = 0;
  let dirtied: u32 = 0;
  i = 0;
  while (i < n) {
    const head = folioHead(entry(i));
    const k = run(i, n, head);
    if ((flags & UNPIN_DIRTY) != 0 && (frameFlags(head) & PG_dirty) == 0 && !(pin && head == zero)) {
      pageFlagsUpdate(head, PG_dirty, 0);
      dirtied++;
    }
    if (gupPutFolio(head, <i32>k, pin ? FOLL_PIN : 0)) freed++;
    ops++;
    i += k;
  }
  store<u32>(RING + REG_FREED, freed);
  store<u32>(RING + REG_GUP_GRABS, ops);
  store<u32>(RING + REG_GUP_DIRTIED, dirtied);
  return 0;
}

/** holds - does folio @head hold @k pages' worth of pins (@pin) or references? */
function holds(head: u32, k: i32, pin: bool, zero: u32): bool {
  if (pin && head == zero) return true;
  const ref = atomic.load<i32>(frame(head) + FRAME_REFCOUNT);
  if (!pin) return ref >= k;
  if (frameFlags(head) & PG_head) return folioPincount(head) >= k && ref >= k;
  return ref >= k * GUP_PIN_COUNTING_BIAS;
}

/** A large folio's _pincount (first tail's index field). */
// @ts-ignore: decorator
@inline function folioPincount(head: u32): i32 {
  return folioPincountAdd(head, 0);
}
