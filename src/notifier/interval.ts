/**
 * Interval notifiers (mm/mmu_notifier.c): a subscription to one range of an mm, found in an
 * interval tree (O(log n + hits) per invalidation), with the sequence protocol a driver uses
 * to know whether what it read from the CPU page table is still valid:
 *
 *   seq = mmuIntervalReadBegin(sub)          // before reading the CPU page table
 *   ... hmmRangeFault / read the PTEs ...
 *   take the driver lock
 *   if (mmuIntervalReadRetry(sub, seq)) { unlock; start again }
 *   program the device, unlock
 *
 * and in the invalidate callback, under the same driver lock: mmuIntervalSetSeq(sub, curSeq).
 *
 * - invalidate(sub, range, curSeq) returns true, or false when the range is non-blockable and
 *   the callback would have to sleep: the invalidation then stops with -EAGAIN.
 * - A subscription inserted while an invalidation that hit some subscription is running joins
 *   the tree when it ends (deferred), and its first read_begin waits for that end; a removal
 *   during one waits for its end, so no callback runs after remove returns.
 * - mmuIntervalReadBegin waits while an invalidation that already called this subscription
 *   runs. Called from inside a callback (the only way to reach that in one thread), it would
 *   wait forever: EDEADLK.
 * @module
 */
import { type Address, splitAddress } from "../core/addr.js";
import { DmaError } from "../errors.js";
import type { MmStruct } from "../mm/mm.js";
import { MMU_NOTIFIER_MAP } from "../check/lockdep.js";
import { call, notifierWarn, primeLockdep } from "./mmu-notifier.js";
import { type MmuNotifierRange, mmuNotifierRangeInit, rangePages } from "./range.js";
import { type MmuNotifierSubscriptions, subscriptionsFor, subscriptionsOf } from "./subscriptions.js";

/** struct mmu_interval_notifier_ops. */
export interface MmuIntervalNotifierOps {
  invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean;
}

/** struct mmu_interval_notifier. */
export class MmuIntervalNotifier {
  readonly mm: MmStruct;
  readonly ops: MmuIntervalNotifierOps;
  /** First and last page covered. */
  readonly first: number;
  readonly last: number;
  /** interval_sub->invalidate_seq. */
  invalidateSeq = 0;
  /** In the tree (RB_EMPTY_NODE false). */
  inTree = false;
  /** Inserted and not removed. */
  live = true;

  constructor(mm: MmStruct, ops: MmuIntervalNotifierOps, first: number, last: number) {
    this.mm = mm;
    this.ops = ops;
    this.first = first;
    this.last = last;
  }

  /** The range covered, in bytes: [start, start + length). */
  get start(): number {
    return this.first * 4096;
  }
}

function treeInsert(s: MmuNotifierSubscriptions, sub: MmuIntervalNotifier): void {
  s.itree.insert([sub.first, sub.last], sub);
  sub.inTree = true;
  s.inTree++;
}

function treeRemove(s: MmuNotifierSubscriptions, sub: MmuIntervalNotifier): void {
  s.itree.remove([sub.first, sub.last], sub);
  sub.inTree = false;
  s.inTree--;
}

/**
 * mmuIntervalNotifierInsert - mmu_interval_notifier_insert: watch [@start, @start + @length)
 * of @mm (bytes; page-granular: the pages the range touches). EOVERFLOW for an empty or
 * wrapping range, EINVAL for an mm that has exited.
 */
export function mmuIntervalNotifierInsert(mm: MmStruct, start: Address, length: Address, ops: MmuIntervalNotifierOps): MmuIntervalNotifier {
  if (mm.dead) throw new DmaError("EINVAL", `mmuIntervalNotifierInsert: the mm of pid ${mm.pid} has exited`, { arg: "mm" });
  if (typeof ops?.invalidate !== "function") throw new DmaError("EINVAL", "mmuIntervalNotifierInsert: ops.invalidate must be a function", { arg: "ops" });
  const [first, off] = splitAddress(start, "start");
  const len = BigInt(length);
  const lastByte = BigInt(first) * 4096n + BigInt(off) + len - 1n;
  if (len <= 0n || lastByte >= 1n << 64n) {
    throw new DmaError("EOVERFLOW", `mmuIntervalNotifierInsert: length ${length} from ${start} is empty or wraps`, { arg: "length" });
  }
  const sub = new MmuIntervalNotifier(mm, ops, first, Number(lastByte >> 12n));
  const s = subscriptionsFor(mm);
  if (!s.hasItree) primeLockdep(mm);
  s.hasItree = true;
  if (s.activeInvalidateRanges) {
    if (s.isInvalidating()) s.deferred.push(sub);
    else {
      s.invalidateSeq |= 1;
      treeInsert(s, sub);
    }
    sub.invalidateSeq = s.invalidateSeq;
  } else {
    sub.invalidateSeq = s.invalidateSeq - 1;
    treeInsert(s, sub);
  }
  mm.kernel.trace.count("mm.interval_notifier_inserted");
  return sub;
}

/**
 * mmuIntervalNotifierRemove - mmu_interval_notifier_remove: no callback runs on @sub after
 * this returns. During an invalidation it waits for its end, which a caller inside a
 * callback would wait for forever: EDEADLK.
 */
export function mmuIntervalNotifierRemove(sub: MmuIntervalNotifier): void {
  if (!sub.live) return;
  const s = subscriptionsOf(sub.mm)!;
  sub.mm.kernel.checkers.lockdep?.touch(MMU_NOTIFIER_MAP, "mmu_interval_notifier_remove");
  if (s.isInvalidating()) {
    if (!sub.inTree) {
      // A deferred insert not yet applied: drop it, no wait.
      s.deferred.splice(s.deferred.indexOf(sub), 1);
      sub.live = false;
      return;
    }
    throw new DmaError(
      "EDEADLK",
      "mmuIntervalNotifierRemove: an invalidation is running in this thread (called from a notifier callback?); remove waits for it to end, forever",
      { arg: "sub" },
    );
  }
  treeRemove(s, sub);
  sub.live = false;
}

/**
 * mmuIntervalReadBegin - mmu_interval_read_begin: the sequence number to check with
 * mmuIntervalReadRetry once the device is about to be programmed.
 */
export function mmuIntervalReadBegin(sub: MmuIntervalNotifier): number {
  const s = subscriptionsOf(sub.mm)!;
  const seq = sub.invalidateSeq;
  // lock_map_acquire/release of the notifier map: reading begins as if taking it.
  sub.mm.kernel.checkers.lockdep?.touch(MMU_NOTIFIER_MAP, "mmu_interval_read_begin");
  if (seq === s.invalidateSeq) {
    // The invalidation that called this subscription is still running: the kernel sleeps
    // until it ends. In one thread that is only possible from inside its own callbacks.
    throw new DmaError(
      "EDEADLK",
      `mmuIntervalReadBegin: would wait for the invalidation (seq ${seq}) that this thread is running${s.callbackDepth ? " (called from a notifier callback)" : ""}`,
      { arg: "sub" },
    );
  }
  return seq;
}

/** mmuIntervalReadRetry - mmu_interval_read_retry: an invalidation hit @sub since @seq (call under the driver lock). */
export function mmuIntervalReadRetry(sub: MmuIntervalNotifier, seq: number): boolean {
  return sub.invalidateSeq !== seq;
}

/** mmuIntervalCheckRetry - mmu_interval_check_retry: the same test without the lock, a hint. */
export function mmuIntervalCheckRetry(sub: MmuIntervalNotifier, seq: number): boolean {
  return sub.invalidateSeq !== seq;
}

/** mmuIntervalSetSeq - mmu_interval_set_seq: from invalidate(), under the driver lock, always. */
export function mmuIntervalSetSeq(sub: MmuIntervalNotifier, curSeq: number): void {
  sub.invalidateSeq = curSeq;
}

/* ---- the invalidation side (called by mmu-notifier.ts) ---- */

/** mn_itree_inv_start_range + the walk: call every subscription the range hits. 0 or -EAGAIN. */
export function mnItreeInvalidate(s: MmuNotifierSubscriptions, range: MmuNotifierRange): number {
  s.activeInvalidateRanges++;
  const [start, end] = rangePages(range);
  const hits = s.itree.search([start, end - 1]);
  if (hits.length) s.invalidateSeq |= 1;
  const seq = s.invalidateSeq;
  range.mm.kernel.trace.count("mm.interval_notifier_calls", hits.length);
  for (const sub of hits) {
    const ok = call(s, () => sub.ops.invalidate.call(sub.ops, sub, range, seq), range);
    if (ok) continue;
    if (range.blockable) {
      notifierWarn(range.mm, "WARN: an interval notifier refused a blockable invalidation");
      continue;
    }
    // The non-blocking caller may not call range_end: close this one here.
    mnItreeInvEnd(s);
    return -11; // -EAGAIN
  }
  return 0;
}

/** mn_itree_inv_end: the last invalidation to end makes the sequence even and applies the deferred list. */
export function mnItreeInvEnd(s: MmuNotifierSubscriptions): void {
  s.activeInvalidateRanges--;
  if (s.activeInvalidateRanges || !s.isInvalidating()) return;
  s.invalidateSeq++;
  for (const sub of s.deferred.splice(0)) {
    if (!sub.inTree) treeInsert(s, sub);
    else treeRemove(s, sub);
  }
}

/** mn_itree_release: a RELEASE invalidation of everything, blockable. */
export function mnItreeRelease(s: MmuNotifierSubscriptions, mm: MmStruct): void {
  const range = mmuNotifierRangeInit("release", true, mm, 0, Number.MAX_SAFE_INTEGER);
  try {
    mnItreeInvalidate(s, range);
  } finally {
    mnItreeInvEnd(s);
  }
}
