/**
 * mmu notifiers (mm/mmu_notifier.c): a driver that mirrors, caches or pins a process's
 * memory subscribes to its mm and is told before and after the kernel changes or removes
 * the CPU's page-table entries, so it can drop its own copies first.
 *
 * - mmuNotifierRegister(mm, ops) / mmuNotifierUnregister(sub).
 * - Every mm path that changes or removes PTEs brackets the change with
 *   mmuNotifierInvalidateRangeStart(range) and mmuNotifierInvalidateRangeEnd(range):
 *   interval notifiers first (interval.ts), then the list, newest first.
 * - A non-blockable invalidation (the OOM reaper) uses ..StartNonblock: a callback that
 *   would have to sleep answers -EAGAIN; every other notifier's start still runs, the ones
 *   with an end op get their end at once, and the caller skips the range and does not call
 *   range_end, as the kernel does.
 * - exit calls mmuNotifierRelease(mm) before it unmaps: interval notifiers get a RELEASE
 *   invalidation over everything, the list notifiers their release op, and leave the list.
 *
 * The kernel WARNs where a callback breaks the protocol (an error from a blockable start, an
 * error other than -EAGAIN, an end op on a notifier that can fail); each such WARN is kept in
 * kernel.notifierWarnings and counted in the trace as mm.notifier_warn.
 * @module
 */
import { EAGAIN } from "../abi/errno.js";
import { type Address, addressOf } from "../core/addr.js";
import { DmaError } from "../errors.js";
import type { MmStruct } from "../mm/mm.js";
import { mnItreeInvEnd, mnItreeInvalidate, mnItreeRelease } from "./interval.js";
import { type MmuNotifierEvent, type MmuNotifierRange, mmuNotifierRangeInit, rangePages } from "./range.js";
import { type MmuNotifierSubscriptions, subscriptionsFor, subscriptionsOf } from "./subscriptions.js";
import { FS_RECLAIM, MMU_NOTIFIER_MAP } from "../check/lockdep.js";

/** struct mmu_notifier_ops. Every op is optional. */
export interface MmuNotifierOps {
  /** The mm is going away (exit) or the notifier is unregistered: drop every secondary mapping. */
  release?(sub: MmuNotifier, mm: MmStruct): void;
  /** Test and clear the accessed bit of the secondary mappings of [start, end) (bytes): was any set? */
  clearFlushYoung?(sub: MmuNotifier, mm: MmStruct, start: Address, end: Address): boolean;
  /** Before the PTEs of the range change: 0, or -EAGAIN on a non-blockable range only. */
  invalidateRangeStart?(sub: MmuNotifier, range: MmuNotifierRange): number;
  /** After the PTEs changed and the TLBs were flushed. */
  invalidateRangeEnd?(sub: MmuNotifier, range: MmuNotifierRange): void;
  /** arch_invalidate_secondary_tlbs: called under the page-table lock, must not sleep (IOMMU SVA). */
  invalidateSecondaryTlbs?(sub: MmuNotifier, mm: MmStruct, start: Address, end: Address): void;
}

/** struct mmu_notifier: one subscription. */
export class MmuNotifier {
  readonly mm: MmStruct;
  readonly ops: MmuNotifierOps;
  /** Still on the mm's list (hlist_unhashed false). */
  registered = true;

  constructor(mm: MmStruct, ops: MmuNotifierOps) {
    this.mm = mm;
    this.ops = ops;
  }
}

/**
 * mmuNotifierRegister - mmu_notifier_register: subscribe @ops to @mm. EINVAL for an mm that
 * has exited, or for ops with invalidateSecondaryTlbs and start/end both (the kernel refuses
 * the mix).
 */
export function mmuNotifierRegister(mm: MmStruct, ops: MmuNotifierOps): MmuNotifier {
  if (mm.dead) throw new DmaError("EINVAL", `mmuNotifierRegister: the mm of pid ${mm.pid} has exited`, { arg: "mm" });
  if (typeof ops !== "object" || ops === null) throw new DmaError("EINVAL", "mmuNotifierRegister: ops must be an object", { arg: "ops" });
  if (ops.invalidateSecondaryTlbs && (ops.invalidateRangeStart || ops.invalidateRangeEnd)) {
    throw new DmaError("EINVAL", "mmuNotifierRegister: invalidateSecondaryTlbs together with invalidateRangeStart/End", { arg: "ops" });
  }
  const sub = new MmuNotifier(mm, ops);
  primeLockdep(mm);
  subscriptionsFor(mm).list.unshift(sub);
  mm.kernel.trace.count("mm.notifier_registered");
  return sub;
}

/**
 * mmuNotifierUnregister - mmu_notifier_unregister: if @sub is still subscribed, its release
 * op runs (the mm is still alive) and it leaves the list. No callback runs after this.
 */
export function mmuNotifierUnregister(sub: MmuNotifier): void {
  if (!sub.registered) return;
  const s = subscriptionsOf(sub.mm)!;
  sub.registered = false;
  s.list.splice(s.list.indexOf(sub), 1);
  call(s, () => sub.ops.release?.(sub, sub.mm));
}

/**
 * Under lockdep, __mmu_notifier_register records the notifier map as taken under fs_reclaim
 * (reclaim runs invalidations), so a lock order against it shows at once.
 */
export function primeLockdep(mm: MmStruct): void {
  mm.kernel.checkers.lockdep?.prime(FS_RECLAIM, MMU_NOTIFIER_MAP, "mmu_notifier_register");
}

/** A WARN the kernel would print: kept on the kernel and counted. */
export function notifierWarn(mm: MmStruct, message: string): void {
  mm.kernel.notifierWarnings.push(message);
  mm.kernel.trace.count("mm.notifier_warn");
}

/**
 * Run a callback, counting it as running (mmuIntervalReadBegin refuses to wait inside one);
 * a callback of a non-blockable range runs in a non-block section (non_block_start/end).
 */
export function call<T>(s: MmuNotifierSubscriptions, fn: () => T, range?: MmuNotifierRange): T {
  const ld = range && !range.blockable ? range.mm.kernel.checkers.lockdep : null;
  s.callbackDepth++;
  ld?.nonBlockStart();
  try {
    return fn();
  } finally {
    ld?.nonBlockEnd();
    s.callbackDepth--;
  }
}

/** The list notifiers' starts: every one runs; 0 or the last error, after the ends of the others. */
function hlistInvalidateRangeStart(s: MmuNotifierSubscriptions, range: MmuNotifierRange): number {
  let ret = 0;
  for (const sub of [...s.list]) {
    const start = sub.ops.invalidateRangeStart;
    if (!start) continue;
    const rc = call(s, () => start.call(sub.ops, sub, range), range);
    if (rc === 0) continue;
    notifierWarn(range.mm, `invalidateRangeStart callback failed with ${rc} in ${range.blockable ? "" : "non-"}blockable context`);
    if (range.blockable || rc !== -EAGAIN) notifierWarn(range.mm, "WARN: a blockable start failed, or failed with other than -EAGAIN");
    if (sub.ops.invalidateRangeEnd) notifierWarn(range.mm, "WARN: a notifier that can fail must not have invalidateRangeEnd");
    ret = rc;
  }
  if (ret) {
    // The caller will not call range_end: every notifier with an end op gets it now.
    for (const sub of [...s.list]) {
      const end = sub.ops.invalidateRangeEnd;
      if (end) call(s, () => end.call(sub.ops, sub, range), range);
    }
  }
  return ret;
}

/**
 * __mmu_notifier_invalidate_range_start: the interval notifiers, then the list. 0, or
 * -EAGAIN (non-blockable ranges only) with every bracket already closed.
 */
function invalidateRangeStart(range: MmuNotifierRange): number {
  const s = subscriptionsOf(range.mm);
  if (!s) return 0;
  const ld = range.mm.kernel.checkers.lockdep;
  ld?.acquire(MMU_NOTIFIER_MAP, `mmu_notifier_invalidate_range_start(${range.event})`);
  let itreeOpen = false;
  try {
    if (s.hasItree) {
      itreeOpen = true;
      const rc = mnItreeInvalidate(s, range);
      itreeOpen = rc === 0;
      if (rc) return rc;
    }
    if (s.list.length) return hlistInvalidateRangeStart(s, range);
    return 0;
  } catch (e) {
    // A callback threw (a bug in the subscriber, or EDEADLK from inside it): close what was
    // opened, as a refused range is closed, and let the caller abort before any PTE changes.
    if (itreeOpen) mnItreeInvEnd(s);
    throw e;
  } finally {
    ld?.release(MMU_NOTIFIER_MAP);
  }
}

/** mmuNotifierInvalidateRangeStart - mmu_notifier_invalidate_range_start (blockable). */
export function mmuNotifierInvalidateRangeStart(range: MmuNotifierRange): void {
  range.blockable = true;
  invalidateRangeStart(range);
}

/** mmuNotifierInvalidateRangeStartNonblock - 0, or -EAGAIN: skip the range, do not call end. */
export function mmuNotifierInvalidateRangeStartNonblock(range: MmuNotifierRange): number {
  range.blockable = false;
  return invalidateRangeStart(range);
}

/** mmuNotifierInvalidateRangeEnd - mmu_notifier_invalidate_range_end. */
export function mmuNotifierInvalidateRangeEnd(range: MmuNotifierRange): void {
  const s = subscriptionsOf(range.mm);
  if (!s) return checkCoherency(range);
  if (s.hasItree) mnItreeInvEnd(s);
  const ld = range.mm.kernel.checkers.lockdep;
  ld?.acquire(MMU_NOTIFIER_MAP, `mmu_notifier_invalidate_range_end(${range.event})`);
  try {
    for (const sub of [...s.list]) {
      const end = sub.ops.invalidateRangeEnd;
      if (end) call(s, () => end.call(sub.ops, sub, range), range);
    }
  } finally {
    ld?.release(MMU_NOTIFIER_MAP);
  }
  checkCoherency(range);
}

/** The coherency checker looks at the devices mirroring the range once its change is done. */
function checkCoherency(range: MmuNotifierRange): void {
  const cc = range.mm.kernel.checkers.coherency;
  if (!cc) return;
  const [start, end] = rangePages(range);
  cc.changed(range.mm, start, end, range.event);
}

/**
 * withInvalidation - run @body (the PTE change) between start and end of a blockable
 * invalidation of pages [@start, @end) of @mm for @event; nothing extra when nobody
 * subscribed. The end runs even if @body throws.
 */
export function withInvalidation<T>(
  mm: MmStruct, event: MmuNotifierEvent, start: number, end: number, body: () => T, owner: unknown = null,
): T {
  if (start >= end) return body();
  if (!subscriptionsOf(mm)) {
    const r = body();
    mm.kernel.checkers.coherency?.changed(mm, start, end, event);
    return r;
  }
  const range = mmuNotifierRangeInit(event, true, mm, start, end, owner);
  mm.kernel.trace.count(`mm.notifier_invalidate.${event}`);
  mmuNotifierInvalidateRangeStart(range);
  try {
    return body();
  } finally {
    mmuNotifierInvalidateRangeEnd(range);
  }
}

/**
 * mmuNotifierRelease - __mmu_notifier_release (exit_mmap, before the unmap): interval
 * notifiers get a blockable RELEASE invalidation of the whole address space; each list
 * notifier its release op, and leaves the list.
 */
export function mmuNotifierRelease(mm: MmStruct): void {
  const s = subscriptionsOf(mm);
  if (!s) return;
  if (s.hasItree) mnItreeRelease(s, mm);
  const list = [...s.list];
  for (const sub of list) {
    const release = sub.ops.release;
    if (release) call(s, () => release.call(sub.ops, sub, mm));
  }
  for (const sub of list) sub.registered = false;
  s.list.length = 0;
}

/** mmuNotifierClearFlushYoung - mmu_notifier_clear_flush_young: any notifier's answer, ORed. */
export function mmuNotifierClearFlushYoung(mm: MmStruct, start: number, end: number): boolean {
  const s = subscriptionsOf(mm);
  if (!s) return false;
  let young = false;
  for (const sub of [...s.list]) {
    const f = sub.ops.clearFlushYoung;
    if (f) young = call(s, () => f.call(sub.ops, sub, mm, addressOf(start), addressOf(end))) || young;
  }
  return young;
}

/** mmuNotifierArchInvalidateSecondaryTlbs - arch_invalidate_secondary_tlbs over pages [@start, @end). */
export function mmuNotifierArchInvalidateSecondaryTlbs(mm: MmStruct, start: number, end: number): void {
  const s = subscriptionsOf(mm);
  if (!s) return;
  for (const sub of [...s.list]) {
    const f = sub.ops.invalidateSecondaryTlbs;
    if (f) call(s, () => f.call(sub.ops, sub, mm, addressOf(start), addressOf(end)));
  }
}
