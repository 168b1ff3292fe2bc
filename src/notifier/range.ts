/**
 * struct mmu_notifier_range (include/linux/mmu_notifier.h): what an invalidation covers,
 * why it happens (the event), whether its callbacks may sleep, and, for MIGRATE and
 * EXCLUSIVE, which device started it.
 * @module
 */
import { type Address, addressOf, splitAddress } from "../core/addr.js";
import type { MmStruct } from "../mm/mm.js";

/** enum mmu_notifier_event, in the kernel's order (MMU_NOTIFY_EVENTS[i] is value i). */
export const MMU_NOTIFY_EVENTS = [
  "unmap", // MMU_NOTIFY_UNMAP: munmap, exit (the VMA goes away)
  "clear", // MMU_NOTIFY_CLEAR: madvise(DONTNEED), COW, reclaim, migration, truncate
  "protection_vma", // MMU_NOTIFY_PROTECTION_VMA: mprotect
  "protection_page", // MMU_NOTIFY_PROTECTION_PAGE: fork's write-protect, page_mkclean
  "soft_dirty", // MMU_NOTIFY_SOFT_DIRTY: clear_refs
  "release", // MMU_NOTIFY_RELEASE: the mm is torn down (interval notifiers)
  "migrate", // MMU_NOTIFY_MIGRATE: migrate_vma to or from device memory (owner set)
  "exclusive", // MMU_NOTIFY_EXCLUSIVE: a device loses exclusive access (owner set)
] as const;

export type MmuNotifierEvent = (typeof MMU_NOTIFY_EVENTS)[number];

/** MMU_NOTIFIER_RANGE_BLOCKABLE. */
export const MMU_NOTIFIER_RANGE_BLOCKABLE = 1 << 0;

export interface MmuNotifierRange {
  mm: MmStruct;
  /** [start, end) in bytes. */
  start: Address;
  end: Address;
  event: MmuNotifierEvent;
  /** MMU_NOTIFIER_RANGE_BLOCKABLE: callbacks may sleep (false for the OOM reaper). */
  blockable: boolean;
  /** The device that started a MIGRATE or EXCLUSIVE invalidation (range->owner), else null. */
  owner: unknown;
}

/** The range in pages, [first, end), kept alongside the byte addresses the callbacks see. */
const FIRST = Symbol("first page");
const END = Symbol("end page");
interface Paged {
  [FIRST]?: number;
  [END]?: number;
}

/**
 * mmuNotifierRangeInit - mmu_notifier_range_init(_owner): a range over pages [@start, @end)
 * of @mm (page numbers) for @event.
 */
export function mmuNotifierRangeInit(
  event: MmuNotifierEvent, blockable: boolean, mm: MmStruct, start: number, end: number, owner: unknown = null,
): MmuNotifierRange {
  const r: MmuNotifierRange & Paged = { mm, start: bytes(start), end: bytes(end), event, blockable, owner, [FIRST]: start, [END]: end };
  return r;
}

/** mmuNotifierRangeBlockable - mmu_notifier_range_blockable. */
export function mmuNotifierRangeBlockable(range: MmuNotifierRange): boolean {
  return range.blockable;
}

/** The pages [first, end) of @range (a range built by hand is read from its byte addresses). */
export function rangePages(range: MmuNotifierRange): [number, number] {
  const p = range as MmuNotifierRange & Paged;
  if (p[FIRST] !== undefined) return [p[FIRST], p[END]!];
  const [s] = splitAddress(range.start, "range.start");
  const [e, off] = splitAddress(range.end, "range.end");
  return [s, e + (off ? 1 : 0)];
}

/** A page number's byte address. */
function bytes(page: number): Address {
  return addressOf(page);
}
