/**
 * struct mmu_notifier_subscriptions (mm/mmu_notifier.c): what hangs off an mm once anyone
 * subscribes. The list of mmu_notifiers, and the interval tree of mmu_interval_notifiers
 * with its sequence protocol:
 *
 * - invalidate_seq starts at 2 and is even while no invalidation that hit a subscription is
 *   running; the first such invalidation makes it odd (seq |= 1), the last one to end makes
 *   it even again (seq++), applies the inserts and removals deferred meanwhile, and wakes
 *   the readers waiting in mmu_interval_read_begin;
 * - active_invalidate_ranges counts the invalidations running.
 * @module
 */
import IntervalTree from "@flatten-js/interval-tree";
import type { MmStruct } from "../mm/mm.js";
import type { MmuIntervalNotifier } from "./interval.js";
import type { MmuNotifier } from "./mmu-notifier.js";

export class MmuNotifierSubscriptions {
  /** The mmu_notifiers (hlist), in the order they run: the newest first, as hlist_add_head_rcu puts them. */
  readonly list: MmuNotifier[] = [];
  hasItree = false;
  invalidateSeq = 2;
  activeInvalidateRanges = 0;
  /** Interval notifiers by [first page, last page]. */
  readonly itree = new IntervalTree<MmuIntervalNotifier>();
  /** Inserts and removals waiting for the running invalidations to end. */
  readonly deferred: MmuIntervalNotifier[] = [];
  /** Interval notifiers in the tree (itree.size counts keys, not entries with the same key). */
  inTree = 0;
  /** Callbacks running now (a reader waiting here from inside one would wait forever). */
  callbackDepth = 0;

  /** mn_itree_is_invalidating: an invalidation that hit a subscription is running. */
  isInvalidating(): boolean {
    return (this.invalidateSeq & 1) !== 0;
  }
}

const subs = new WeakMap<MmStruct, MmuNotifierSubscriptions>();

/** mm->notifier_subscriptions, or null when nobody ever subscribed (mm_has_notifiers false). */
export function subscriptionsOf(mm: MmStruct): MmuNotifierSubscriptions | null {
  return subs.get(mm) ?? null;
}

/** The mm's subscriptions, made on first use (__mmu_notifier_register with no notifier). */
export function subscriptionsFor(mm: MmStruct): MmuNotifierSubscriptions {
  let s = subs.get(mm);
  if (!s) subs.set(mm, (s = new MmuNotifierSubscriptions()));
  return s;
}
