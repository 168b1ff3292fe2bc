/**
 * Truncating a file's page cache (mm/truncate.c, mm/memory.c unmap_mapping_range): what
 * truncate(2) does to the memory side of a file whose size changes.
 *
 * - Shrinking (truncate_pagecache): every mapping of the pages past the new end is zapped in
 *   every process (unmap_mapping_range with even_cows: a private mapping's copies of those
 *   pages go too), the TLBs flushed, the pages dropped from the cache, and the tail of the
 *   new last page zeroed; a later access there is past end of file: SIGBUS.
 * - A dropped page loses the cache's reference, its mapping and its dirty bit (dirty data
 *   past the end is discarded, never written). A page someone else still holds (a pin) is
 *   not freed: it leaves the cache and lives on, orphaned, until its last reference goes.
 * - Growing (truncate_setsize then does nothing to the cache with 4 KiB blocks): the file
 *   system first zeroes what a mapping may have written past the old end in the page that
 *   straddles it (iomap_zero_range, as xfs_setattr_size and xfs_file_write_checks do), so
 *   the bytes the file gains read as zeros.
 * - fsdax files: their pages are the blocks. A block held beyond its mappings (DMA) must not
 *   go back to the allocator while the device may write it: the kernel waits for such a
 *   layout to go idle (dax_layout_busy_page, ext4_break_layouts). daxLayoutBusyPage finds it.
 * @module
 */
import * as F from "../abi/frame.js";
import type { Inode } from "../fs/inode.js";
import type { Kernel } from "./kernel.js";
import { zapVmaRange } from "./mmap.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { folioMarkDirty } from "./filemap.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";

/** What truncating the page cache did. */
export interface TruncateStats {
  /** Page-table entries zapped in the processes mapping the cut pages. */
  unmapped: number;
  /** Pages dropped from the page cache (or fsdax blocks given back). */
  dropped: number;
  /** Dropped pages still referenced elsewhere (pinned): not freed. */
  kept: number;
}

/**
 * unmapMappingPages - zap every mapping of the pages [@start, @start + @nr) of @inode, in
 * every VMA of its i_mmap, private copies included (unmap_mapping_pages with even_cows),
 * and shoot down the TLBs of each mm touched. Returns the entries zapped.
 */
export function unmapMappingPages(k: Kernel, inode: Inode, start: number, nr = Infinity): number {
  const last = start + nr;
  let zapped = 0;
  for (const vma of [...inode.mmaps]) {
    if (vma.mm.dead) continue;
    // The VMA maps indices [pgoff, pgoff + pages); keep the part inside [start, last).
    const lo = Math.max(start, vma.pgoff);
    const hi = Math.min(last, vma.pgoff + vma.pages);
    if (lo >= hi) continue;
    const vStart = vma.start + (lo - vma.pgoff);
    const vEnd = vma.start + (hi - vma.pgoff);
    // zap_page_range_single: a CLEAR invalidation.
    const r = withInvalidation(vma.mm, "clear", vStart, vEnd, () => zapVmaRange(vma.mm, vma, vStart, vEnd));
    zapped += r.anon + r.file;
    flushTlbMmRange(vma.mm, vStart, vEnd);
  }
  if (zapped) k.trace.count("mm.unmap_mapping_pages", zapped);
  return zapped;
}

/**
 * unmapMappingRange - unmapMappingPages for the bytes [@holebegin, @holebegin + @holelen)
 * of the file, 0 meaning to the end (unmap_mapping_range with even_cows).
 */
export function unmapMappingRange(k: Kernel, inode: Inode, holebegin: number, holelen = 0): number {
  const first = Math.floor(holebegin / 4096);
  const nr = holelen === 0 ? Infinity : Math.ceil((holebegin + holelen) / 4096) - first;
  return unmapMappingPages(k, inode, first, nr);
}

/**
 * filemapRemoveFolio - take page @pfn at @index out of @inode's cache (filemap_remove_folio
 * after folio_cancel_dirty): no longer dirty, no mapping, off the LRU, and the cache's
 * reference dropped. The caller has unmapped it. Returns whether it was freed (false: held
 * elsewhere, e.g. pinned).
 */
export function filemapRemoveFolio(k: Kernel, inode: Inode, index: number, pfn: number): boolean {
  k.pageFlags(pfn, 0, F.PG_dirty | F.PG_lru | F.PG_active | F.PG_referenced);
  k.lru.file.delete(pfn);
  k.lru.anon.delete(pfn);
  k.setMapping(pfn, 0, 0);
  inode.pages.delete(index);
  return k.folioRef(pfn, -1) === 0;
}

/**
 * folioZeroSegment - zero bytes [@from, @to) of frame @pfn (a frame without bytes already
 * reads as zeros). Returns whether a byte changed.
 */
export function folioZeroSegment(k: Kernel, pfn: number, from: number, to = 4096): boolean {
  const addr = k.check(k.core.x.frameBytes(pfn, 0), "folio_zero_segment");
  if (!addr) return false;
  const bytes = k.core.u8.subarray(addr + from, addr + to);
  if (bytes.every((b) => b === 0)) return false;
  bytes.fill(0);
  return true;
}

/**
 * truncateInodePagesRange - drop the cached pages of @inode wholly inside the bytes
 * [@lstart, @lend] (@lend -1: to the end), and zero the part of the page at @lstart that the
 * range covers (truncate_inode_pages_range). The pages must be unmapped already.
 */
export function truncateInodePagesRange(k: Kernel, inode: Inode, lstart: number, lend = -1): TruncateStats {
  const out: TruncateStats = { unmapped: 0, dropped: 0, kept: 0 };
  const first = Math.ceil(lstart / 4096);
  const last = lend < 0 ? Infinity : Math.floor((lend + 1) / 4096); // one past the last whole page
  const partial = lstart % 4096;
  if (partial) {
    const pfn = inode.pages.get(Math.floor(lstart / 4096));
    if (pfn !== undefined) folioZeroSegment(k, pfn, partial);
  }
  const cut = [...inode.pages.keys()].filter((i) => i >= first && i < last).sort((a, b) => a - b);
  for (const index of cut) {
    const freed = filemapRemoveFolio(k, inode, index, inode.pages.get(index)!);
    out.dropped++;
    if (!freed) out.kept++;
  }
  if (out.dropped) k.trace.count("mm.truncate_pages", out.dropped);
  if (out.kept) k.trace.count("mm.truncate_kept_pages", out.kept);
  return out;
}

/**
 * truncatePagecache - unmap and drop the page cache of @inode past @newsize bytes
 * (truncate_pagecache): the new last page stays mapped; its tail is zeroed.
 */
export function truncatePagecache(k: Kernel, inode: Inode, newsize: number): TruncateStats {
  const holebegin = Math.ceil(newsize / 4096) * 4096;
  const unmapped = unmapMappingRange(k, inode, holebegin);
  const r = truncateInodePagesRange(k, inode, newsize);
  return { ...r, unmapped };
}

/**
 * iomapZeroRange - zero the file bytes [@pos, @pos + @len) (iomap_zero_range): in the cached
 * pages (dirtied when a byte changed) or the fsdax blocks. Pages neither cached nor dax are
 * left to the disk, which holds zeros past end of file. A file system runs this on the
 * part of the page straddling end of file that a size change exposes.
 */
export function iomapZeroRange(k: Kernel, inode: Inode, pos: number, len: number): void {
  const end = pos + len;
  const first = Math.floor(pos / 4096);
  const indices: number[] = [];
  if (inode.kind === "dax") {
    for (let i = first; i < Math.min(Math.ceil(end / 4096), inode.daxPfns.length); i++) indices.push(i);
  } else {
    for (const i of inode.pages.keys()) if (i >= first && i * 4096 < end) indices.push(i);
  }
  for (const index of indices) {
    const pfn = inode.kind === "dax" ? inode.daxPfns[index]! : inode.pages.get(index)!;
    const from = Math.max(pos - index * 4096, 0);
    const to = Math.min(end - index * 4096, 4096);
    if (folioZeroSegment(k, pfn, from, to) && inode.kind !== "dax") folioMarkDirty(k, pfn);
  }
}

/**
 * truncateSetsize - set @inode's size to @newsize and drop what lies past it from the page
 * cache and every mapping (truncate_setsize; with 4 KiB blocks pagecache_isize_extended has
 * nothing to do when the file grows).
 */
export function truncateSetsize(k: Kernel, inode: Inode, newsize: number): TruncateStats {
  inode.size = newsize;
  return truncatePagecache(k, inode, newsize);
}

/**
 * daxLayoutBusyPage - the first fsdax block of @inode from index @start on that something
 * other than the file and its mappings holds (a DMA pin), or -1 (dax_layout_busy_page).
 * Such a block cannot be freed until it is released.
 */
export function daxLayoutBusyPage(k: Kernel, inode: Inode, start: number): number {
  for (let i = start; i < inode.daxPfns.length; i++) {
    const pfn = inode.daxPfns[i]!;
    if (k.refcountOf(pfn) > 1 + k.mapcountOf(pfn)) return pfn;
  }
  return -1;
}

/**
 * invalidateMappingPages - drop the cached pages of @inode with an index in [@start, @end)
 * that nothing needs: clean, unlocked, not under writeback, unmapped and held by the cache alone
 * (invalidate_mapping_pages, what drop_caches runs). The next access reads them from disk.
 * Returns the pages dropped.
 */
export function invalidateMappingPages(k: Kernel, inode: Inode, start = 0, end = Infinity): number {
  if (inode.kind === "shmem") return 0; // the cache is shmem's only copy
  let dropped = 0;
  for (const [index, pfn] of [...inode.pages]) {
    if (index < start || index >= end) continue;
    if (k.flagsOf(pfn) & (F.PG_dirty | F.PG_writeback | F.PG_locked)) continue;
    if (k.mapcountOf(pfn) > 0 || k.refcountOf(pfn) > 1) continue;
    filemapRemoveFolio(k, inode, index, pfn);
    dropped++;
  }
  if (dropped) k.trace.count("mm.invalidate_pages", dropped);
  return dropped;
}
