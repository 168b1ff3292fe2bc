/**
 * struct frame, read from the host side: the kernel's view of a physical page
 * (flags, _refcount, _mapcount, _pincount, mapping, index), decoded from the core's record.
 * @module
 */
import * as F from "../abi/frame.js";
import type { Core } from "../core/core.js";

/** PG_* names in bit order (bit i of the flags word is PAGE_FLAG_NAMES[i]). */
export const PAGE_FLAG_NAMES = [
  "locked", "referenced", "uptodate", "dirty", "lru", "active", "writeback", "reclaim",
  "swapbacked", "unevictable", "mlocked", "head", "tail", "buddy", "pgtable", "reserved", "anon",
  "anon_exclusive", "isolated", "large_rmappable", "has_pinned",
] as const;
export type PageFlag = (typeof PAGE_FLAG_NAMES)[number];

export const ZONE_NAMES = ["NORMAL", "MOVABLE", "CMA", "DEVICE", "DEVICE_PRIVATE", "P2PDMA"] as const;
export type ZoneName = (typeof ZONE_NAMES)[number];

export interface PageInfo {
  pfn: number;
  /** The zone holding the frame (null for a frame outside every zone). */
  zone: ZoneName | null;
  flags: PageFlag[];
  /** Order of the allocation or free block this frame heads (0 otherwise). */
  order: number;
  refcount: number;
  /** Page-table mappings of this page (the kernel stores this minus one). */
  mapcount: number;
  /** folio _pincount, for the head of a large folio (small folios count pins in refcount). */
  pincount: number;
  mapping: number;
  index: number;
  /** The head frame, for a tail frame of a compound allocation. */
  head: number | null;
  /** Whether the frame holds bytes (else it reads as zeros). */
  backed: boolean;
}

/** readPage - decode frame @pfn's record (the caller has checked the range). */
export function readPage(core: Core, frames: number, pfn: number, zone: ZoneName | null): PageInfo {
  const w = (frames + pfn * F.FRAME_SIZE) >>> 2;
  const u32 = core.u32;
  const i32 = core.i32;
  const flagsWord = u32[w]!;
  const flags = PAGE_FLAG_NAMES.filter((_, bit) => (flagsWord >>> bit) & 1);
  const isHead = (flagsWord & F.PG_head) !== 0;
  const isTail = (flagsWord & F.PG_tail) !== 0;
  // _pincount lives in the first tail frame, as the kernel keeps it in folio page[1].
  const pincount = isHead ? u32[w + F.FRAME_SIZE / 4 + F.FRAME_INDEX / 4]! : 0;
  return {
    pfn,
    zone,
    flags,
    order: (flagsWord >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK,
    refcount: i32[w + F.FRAME_REFCOUNT / 4]!,
    mapcount: i32[w + F.FRAME_MAPCOUNT / 4]! + entireMapcount(core, frames, pfn, flagsWord),
    pincount,
    mapping: isTail ? 0 : u32[w + F.FRAME_MAPPING / 4]!,
    index: isTail ? 0 : u32[w + F.FRAME_INDEX / 4]!,
    head: isTail ? u32[w + F.FRAME_MAPPING / 4]! : null,
    backed: u32[w + F.FRAME_BACKING / 4]! !== 0,
  };
}

/** A large folio's PMD mappings (its entire mapcount, in the first tail's refcount field). */
function entireMapcount(core: Core, frames: number, pfn: number, flags: number): number {
  const head = flags & F.PG_tail ? core.u32[(frames + pfn * F.FRAME_SIZE + F.FRAME_MAPPING) >>> 2]! : flags & F.PG_head ? pfn : -1;
  if (head < 0) return 0;
  return core.i32[(frames + (head + 1) * F.FRAME_SIZE + F.FRAME_REFCOUNT) >>> 2]!;
}

/**
 * folio_maybe_dma_pinned for frame @pfn (already known to be a frame) in the frame metadata
 * at @frames: a large folio's pincount, or a small one's refcount >= GUP_PIN_COUNTING_BIAS.
 */
export function maybeDmaPinned(core: Core, frames: number, pfn: number): boolean {
  const u32 = core.u32;
  const w = (frames + pfn * F.FRAME_SIZE) >>> 2;
  const hw = u32[w]! & F.PG_tail ? (frames + u32[w + F.FRAME_MAPPING / 4]! * F.FRAME_SIZE) >>> 2 : w;
  if (u32[hw]! & F.PG_head) return u32[hw + F.FRAME_SIZE / 4 + F.FRAME_INDEX / 4]! > 0;
  return core.i32[hw + F.FRAME_REFCOUNT / 4]! >= F.GUP_PIN_COUNTING_BIAS;
}
