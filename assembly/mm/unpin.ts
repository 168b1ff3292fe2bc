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
import { GUP_PIN_COUNTING_BIAS, FRAME_REFCOUNT, FRAME_SIZE, FRAME_INDEX, PG_head, PG_dirty } from "../../src/abi/frame";
import { FOLL_PIN, UNPIN_DIRTY, UNPIN_PUT, UNPIN_CHECK, REG_GUP_GRABS, REG_GUP_DIRTIED } from "../../src/abi/gup";
import { HDR_ADDR, HDR_ZERO_PFN, HDR_FOLL_PIN_RELEASED, RING_ENTRY0, RENT_SIZE, REG_FREED } from "../../src/abi/header";
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT, R_FLAGS, R_PFN_NOT_RAM, R_NOT_PINNED } from "../../src/abi/reason";
import { fail } from "../errno";
import { NR_FRAMES, RING_ENTRIES } from "../layout";
import { RING, ringCheck } from "../ring";
import { frame, frameFlags, pfnToZone } from "../phys/frame";
import { folioHead, folioOrder, folioPut, folioPincountAdd, pageFlagsUpdate } from "./page";
import { freeBlock } from "../phys/buddy";

let freed: u32 = 0;
const NONE: u32 = 0xffff_ffff;
/** NR_FOLL_PIN_RELEASED not yet added to the shared counter (one atomic per call, not per folio). */
export let pinReleased: i64 = 0;

/** flushPinReleased - add what this call released to /proc/vmstat's nr_foll_pin_released. */
export function flushPinReleased(): void {
  if (pinReleased != 0) atomic.add<i64>(HDR_ADDR + HDR_FOLL_PIN_RELEASED, pinReleased);
  pinReleased = 0;
}

/**
 * gupPutFolio - release @refs pages' worth of what GUP took on the folio @head with @flags
 * (FOLL_PIN or FOLL_GET). Returns whether the folio was freed. The caller flushes pinReleased.
 */
export function gupPutFolio(head: u32, refs: i32, flags: u32): bool {
  if (flags & FOLL_PIN) {
    if (head == load<u32>(HDR_ADDR + HDR_ZERO_PFN)) return false;
    pinReleased += refs;
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
  const v = load<f64>(RING + RING_ENTRY0 + (<usize>i << 3));
  return v >= 0 && v < 4294967296.0 && v == Math.floor(v) ? <u32>v : NONE;
}

/** The folio head of entry @i, or NONE for a frame beyond the machine. */
// @ts-ignore: decorator
@inline function headAt(i: u32): u32 {
  const p = entry(i);
  return p < NR_FRAMES ? folioHead(p) : NONE;
}

/* The run found by nextRun: entries [runStart, runStart + runLen) share the folio runHead. */
let runStart: u32 = 0;
let runLen: u32 = 0;
let runHead: u32 = 0;
let nextHead: u32 = 0;

/** Start iterating the runs of entries [0, @n) (gup_folio_next). */
function runsBegin(n: u32): void {
  runStart = 0;
  runLen = 0;
  nextHead = n > 0 ? headAt(0) : NONE;
}

/** Step to the next run; false at the end. Each entry's head is looked up once. */
function nextRun(n: u32): bool {
  runStart += runLen;
  if (runStart >= n) return false;
  runHead = nextHead;
  let k: u32 = 1;
  nextHead = NONE;
  // Consecutive frames inside a large folio need no look at their records.
  const end: u32 = runHead == NONE ? 0 : runHead + (<u32>1 << folioOrder(runHead));
  let prev = entry(runStart);
  while (runStart + k < n) {
    const e = entry(runStart + k);
    if (e == prev + 1 && e < end && prev != NONE) {
      prev = e;
      k++;
      continue;
    }
    prev = e;
    const h = e < NR_FRAMES ? folioHead(e) : NONE;
    if (h != runHead || h == NONE) {
      nextHead = h;
      break;
    }
    k++;
  }
  runLen = k;
  return true;
}

/**
 * unpinPages - release the @n pages whose pfns are in the ring (f64 each from the first
 * entry): unpin them (FOLL_PIN references), or with UNPIN_PUT put them (FOLL_GET ones);
 * UNPIN_DIRTY marks each folio dirty first; UNPIN_CHECK only checks. Returns 0 (REG_FREED:
 * folios freed; REG_GUP_GRABS: folio operations; REG_GUP_DIRTIED: folios newly dirtied), or
 * -EINVAL with nothing changed when an entry is not a page of this machine or holds fewer
 * pins (references) than its entries release (REG arg: the entry's index).
 */
export function unpinPages(n: u32, flags: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  if (flags & ~(UNPIN_DIRTY | UNPIN_PUT | UNPIN_CHECK)) return fail(EINVAL, R_FLAGS, flags);
  if (n > <u32>((RING_ENTRIES * RENT_SIZE) >> 3)) return fail(EINVAL, R_COUNT, n);
  const pin = (flags & UNPIN_PUT) == 0;
  const zero = load<u32>(HDR_ADDR + HDR_ZERO_PFN);
  if ((flags & (UNPIN_DIRTY | UNPIN_CHECK)) == 0) return releaseRuns(n, pin, zero);
  // Check every run first: a failed call changes nothing. Runs of ascending folios (the
  // usual array, in address order) are checked one at a time; otherwise a folio's runs are
  // added up first.
  let prev: i64 = -1;
  let ascending = true;
  runsBegin(n);
  while (nextRun(n)) {
    const head = runHead;
    if (head == NONE) return fail(EINVAL, R_PFN_NOT_RAM, runStart);
    if (<i64>head <= prev) ascending = false;
    prev = head;
    if (!holds(head, <i32>runLen, pin, zero)) {
      return fail(EINVAL, pfnToZone(head) < 0 ? R_PFN_NOT_RAM : R_NOT_PINNED, runStart);
    }
  }
  if (!ascending) {
    const bad = checkTotals(n, pin, zero);
    if (bad != NONE) return fail(EINVAL, R_NOT_PINNED, bad);
  }
  if (flags & UNPIN_CHECK) {
    store<u32>(RING + REG_FREED, 0);
    store<u32>(RING + REG_GUP_GRABS, 0);
    store<u32>(RING + REG_GUP_DIRTIED, 0);
    return 0;
  }
  freed = 0;
  let ops: u32 = 0;
  let dirtied: u32 = 0;
  runsBegin(n);
  while (nextRun(n)) {
    const head = runHead;
    if ((flags & UNPIN_DIRTY) != 0 && (frameFlags(head) & PG_dirty) == 0 && !(pin && head == zero)) {
      pageFlagsUpdate(head, PG_dirty, 0);
      dirtied++;
    }
    if (gupPutFolio(head, <i32>runLen, pin ? FOLL_PIN : 0)) freed++;
    ops++;
  }
  flushPinReleased();
  store<u32>(RING + REG_FREED, freed);
  store<u32>(RING + REG_GUP_GRABS, ops);
  store<u32>(RING + REG_GUP_DIRTIED, dirtied);
  return 0;
}

/**
 * checkTotals - for entries in no particular order (a folio's runs may be apart), add up each
 * folio's entries and return the start of the first run, in order, whose folio does not hold
 * its total, or NONE. The totals go in a hash table (head, count) in the ring's space past the
 * entries: O(n). A call with too many entries to leave room for the table compares each run
 * with every later entry instead (O(n^2); the host keeps checked batches small enough).
 */
function checkTotals(n: u32, pin: bool, zero: u32): u32 {
  const tab = (RING + RING_ENTRY0 + (<usize>n << 3) + 7) & ~(<usize>7);
  const room = (<usize>RING + RING_ENTRY0 + <usize>RING_ENTRIES * RENT_SIZE - tab) >> 3;
  let slots: usize = 16;
  while (slots < (<usize>n << 1)) slots <<= 1;
  if (slots > room) return checkTotalsSlow(n, pin, zero);
  const mask = slots - 1;
  memory.fill(tab, 0xff, slots << 3);
  // Count: each run adds its length to its folio's slot.
  runsBegin(n);
  while (nextRun(n)) {
    let s = (<usize>runHead * 0x9e3779b1) & mask;
    while (true) {
      const a = tab + (s << 3);
      const h = load<u32>(a);
      if (h == runHead) {
        store<u32>(a + 4, load<u32>(a + 4) + runLen);
        break;
      }
      if (h == NONE) {
        store<u32>(a, runHead);
        store<u32>(a + 4, runLen);
        break;
      }
      s = (s + 1) & mask;
    }
  }
  // Check, in order: the first run of a folio that does not hold its total fails.
  runsBegin(n);
  while (nextRun(n)) {
    let s = (<usize>runHead * 0x9e3779b1) & mask;
    while (load<u32>(tab + (s << 3)) != runHead) s = (s + 1) & mask;
    if (!holds(runHead, <i32>load<u32>(tab + (s << 3) + 4), pin, zero)) return runStart;
  }
  return NONE;
}

/** checkTotals without room for its table: each run against every later entry. */
function checkTotalsSlow(n: u32, pin: bool, zero: u32): u32 {
  let i: u32 = 0;
  while (i < n) {
    const head = headAt(i);
    let k: u32 = 1;
    while (i + k < n && headAt(i + k) == head) k++;
    let total = k;
    for (let j = i + k; j < n; j++) if (headAt(j) == head) total++;
    if (!holds(head, <i32>total, pin, zero)) return i;
    i += k;
  }
  return NONE;
}

/* An entry whose folio lost its last reference is stored as -1 - pfn until the folio is freed. */

/** Subtract @k from the counter at @a unless that takes it below zero; the new value or -1. */
// @ts-ignore: decorator
@inline function subIfHeld(a: usize, k: i32): i32 {
  let old = atomic.load<i32>(a);
  while (old >= k) {
    const seen = atomic.cmpxchg<i32>(a, old, old - k);
    if (seen == old) return old - k;
    old = seen;
  }
  return -1;
}

/**
 * releaseRuns - unpinPages without dirtying or checking first: one pass that takes each
 * run's pins (references) back only if they are there. On the first run that does not hold
 * them, the runs already released get theirs back and the call fails with nothing changed;
 * folios whose last reference went are freed only once every run succeeded (no one else can
 * take a reference on a folio at zero, so giving it back is safe).
 */
function releaseRuns(n: u32, pin: bool, zero: u32): i32 {
  let ops: u32 = 0;
  let pending: u32 = 0;
  runsBegin(n);
  while (nextRun(n)) {
    const head = runHead;
    if (head == NONE) return undoRuns(runStart, pin, zero, R_PFN_NOT_RAM);
    if (pin && head == zero) continue;
    const k = <i32>runLen;
    const ra = frame(head) + FRAME_REFCOUNT;
    let left: i32;
    if (!pin) {
      left = subIfHeld(ra, k);
    } else if (frameFlags(head) & PG_head) {
      const pa = frame(head) + FRAME_SIZE + FRAME_INDEX;
      if (subIfHeld(pa, k) < 0) return undoRuns(runStart, pin, zero, R_NOT_PINNED);
      left = subIfHeld(ra, k);
      if (left < 0) {
        atomic.add<i32>(pa, k);
        return undoRuns(runStart, pin, zero, R_NOT_PINNED);
      }
      pinReleased += k;
    } else {
      left = subIfHeld(ra, k * GUP_PIN_COUNTING_BIAS);
      if (left >= 0) pinReleased += k;
    }
    if (left < 0) return undoRuns(runStart, pin, zero, R_NOT_PINNED);
    if (left == 0) {
      store<f64>(RING + RING_ENTRY0 + (<usize>runStart << 3), -1.0 - <f64>head);
      pending++;
    }
    ops++;
  }
  freed = 0;
  if (pending) {
    for (let i: u32 = 0; i < n; i++) {
      const v = load<f64>(RING + RING_ENTRY0 + (<usize>i << 3));
      if (v < 0) {
        const head = <u32>(-1.0 - v);
        freeBlock(head, folioOrder(head));
        freed++;
      }
    }
  }
  flushPinReleased();
  store<u32>(RING + REG_FREED, freed);
  store<u32>(RING + REG_GUP_GRABS, ops);
  store<u32>(RING + REG_GUP_DIRTIED, 0);
  return 0;
}

/** Give back what releaseRuns took from the runs before entry @upto, and fail with @reason. */
function undoRuns(upto: u32, pin: bool, zero: u32, reason: u32): i32 {
  pinReleased = 0;
  let i: u32 = 0;
  while (i < upto) {
    const head = pendingHead(i);
    let k: u32 = 1;
    while (i + k < upto && pendingHead(i + k) == head) k++;
    if (!(pin && head == zero)) {
      const ra = frame(head) + FRAME_REFCOUNT;
      if (!pin) atomic.add<i32>(ra, <i32>k);
      else if (frameFlags(head) & PG_head) {
        atomic.add<i32>(frame(head) + FRAME_SIZE + FRAME_INDEX, <i32>k);
        atomic.add<i32>(ra, <i32>k);
      } else atomic.add<i32>(ra, <i32>k * GUP_PIN_COUNTING_BIAS);
    }
    i += k;
  }
  const h = headAt(upto);
  return fail(EINVAL, h == NONE || pfnToZone(h) < 0 ? R_PFN_NOT_RAM : reason, upto);
}

/** The folio head of entry @i, which releaseRuns may have marked as freed (-1 - head). */
function pendingHead(i: u32): u32 {
  const v = load<f64>(RING + RING_ENTRY0 + (<usize>i << 3));
  return v < 0 ? <u32>(-1.0 - v) : folioHead(<u32>v);
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
