/**
 * Writeback of file pages (mm/page-writeback.c, mm/filemap.c, mm/rmap.c folio_mkclean):
 * before a dirty page's bytes go to disk, every mapping of it is write-protected and cleaned
 * (page_mkclean) and the TLBs flushed, so the next CPU write faults and dirties the page
 * again; PG_dirty gives way to PG_writeback while the bytes are written, then that clears.
 *
 * - writebackPage: one page (writepage).
 * - writeCachePages: every dirty page of a file, in index order (write_cache_pages).
 * - filemapWriteAndWaitRange: the same for a range, as fsync and sync reach it; emits the
 *   "mm.writeback" event with the pages written and how many looked pinned.
 * - The page straddling end of file is zeroed past it before it goes to disk, since a
 *   mapping may have written there (block_write_full_page); a page wholly beyond end of
 *   file is cleaned and not written.
 * - fsdax files have no page cache: their pages are the blocks, nothing to write.
 *
 * A page that may be DMA-pinned is written back all the same (the kernel does): a device
 * can keep writing into it with no fault, so the file system never hears of those writes.
 * That is the hazard [O1] of the put_user_page() discussion; writebackPage reports whether
 * the page looked pinned, for the checkers.
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import { maybeDmaPinned } from "./page.js";
import * as X from "../abi/x86.js";
import type { Inode } from "../fs/inode.js";
import type { Kernel } from "./kernel.js";
import { rmapWalk } from "./rmap.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { framePageBytes } from "./filemap.js";
import { folioZeroSegment } from "./truncate.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";

const RW = BigInt(X.PTE_RW);
const D = BigInt(X.PTE_D);

/**
 * folioMkclean - write-protect and clean every mapping of page @pfn; returns whether any
 * mapping had it dirty (so the page must be treated as dirty).
 */
export function folioMkclean(k: Kernel, pfn: number): boolean {
  let dirty = false;
  for (const hit of rmapWalk(k, pfn)) {
    if (!(hit.pte & (RW | D))) continue;
    if (hit.pte & D) dirty = true;
    const pte = hit.pte & ~(RW | D);
    const span = hit.level === 2 ? 512 : 1;
    // page_mkclean_one: a PROTECTION_PAGE invalidation of the entry's pages.
    withInvalidation(hit.mm, "protection_page", hit.vpn, hit.vpn + span, () => {
      k.check(k.core.x.ptepSet(hit.mm.pgd.pfn, hit.vpn, hit.level, Number(pte & 0xffffffffn), Number(pte >> 32n)), "page_mkclean");
      flushTlbMmRange(hit.mm, hit.vpn, hit.vpn + span);
    });
  }
  return dirty;
}

/** folio_maybe_dma_pinned: a large folio's pincount, or a small one's refcount >= 1024. */
export function folioMaybeDmaPinned(k: Kernel, pfn: number): boolean {
  return maybeDmaPinned(k.core, k.core.hdr(H.HDR_FRAMES_BASE), pfn);
}

export interface WritebackResult {
  /** The page was dirty (in its flags or a mapping) and was written. */
  written: boolean;
  /** It may have been DMA-pinned while written back (hazard [O1]). */
  pinned: boolean;
}

/** What a file's writeback did: pages written, and how many of them looked DMA-pinned. */
export interface WritebackStats {
  pages: number;
  pinned: number;
}

/**
 * The bytes of page @index that reach the disk, or null for a page wholly past end of file.
 * The page straddling end of file is zeroed past it first, in memory, "on each and every
 * writepage invocation because it may be mmapped" (block_write_full_page).
 */
function diskImage(k: Kernel, inode: Inode, index: number, pfn: number): Uint8Array | null {
  if (index >= inode.pagesInFile) return null;
  const tail = inode.size - index * 4096;
  if (tail < 4096) folioZeroSegment(k, pfn, tail);
  return framePageBytes(k, pfn);
}

/**
 * writebackPage - write page @index of @inode (frame @pfn) to disk if it is dirty:
 * page_mkclean, PG_dirty -> PG_writeback, copy the bytes (charging a block write), end
 * writeback. `written` says whether bytes reached the disk.
 */
export function writebackPage(k: Kernel, inode: Inode, index: number, pfn: number, fn = "fs.writeback"): WritebackResult {
  if (inode.kind === "dax") return { written: false, pinned: false }; // the page is the block
  const mappedDirty = folioMkclean(k, pfn);
  const flags = k.flagsOf(pfn);
  if (!(flags & F.PG_dirty) && !mappedDirty) return { written: false, pinned: false };
  const pinned = folioMaybeDmaPinned(k, pfn);
  k.pageFlags(pfn, F.PG_writeback, F.PG_dirty);
  // A page wholly past end of file is cleaned with nothing to write (truncate raced it).
  const bytes = inode.kind === "file" ? diskImage(k, inode, index, pfn) : null;
  if (bytes) {
    inode.disk.set(index, bytes);
    k.clock.advance(k.costs.blockWrite.ns);
  }
  k.pageFlags(pfn, 0, F.PG_writeback);
  if (!bytes) return { written: false, pinned };
  k.trace.count("mm.writeback_pages");
  if (pinned) {
    k.trace.count("mm.writeback_pinned_pages");
    k.checkers.writebackPinned(inode, index, pfn, fn);
  }
  return { written: true, pinned };
}

/**
 * writeCachePages - write back every dirty cached page of @inode with an index in
 * [@start, @end), lowest index first (write_cache_pages). fsdax files write nothing.
 */
export function writeCachePages(k: Kernel, inode: Inode, start = 0, end = Infinity): WritebackStats {
  const out: WritebackStats = { pages: 0, pinned: 0 };
  if (inode.kind === "dax") return out;
  const indices = [...inode.pages.keys()].filter((i) => i >= start && i < end).sort((a, b) => a - b);
  for (const index of indices) {
    const r = writebackPage(k, inode, index, inode.pages.get(index)!);
    if (r.written) out.pages++;
    if (r.pinned) out.pinned++;
  }
  return out;
}

/**
 * filemapWriteAndWaitRange - write back the dirty pages of @inode in [@start, @end) (page
 * indices) and wait for them (filemap_write_and_wait_range, what fsync and sync run).
 * Emits "mm.writeback" with the pages written and how many looked pinned.
 */
export function filemapWriteAndWaitRange(k: Kernel, inode: Inode, start = 0, end = Infinity): WritebackStats {
  const ts = k.clock.now;
  const r = writeCachePages(k, inode, start, end);
  k.trace.emit("mm.writeback", { path: inode.path, pages: r.pages, pinned: r.pinned }, ts);
  return r;
}

/**
 * syncInodes - write back every dirty page of @inodes (sync(2): sync_inodes_sb, then
 * waiting on each). One "mm.writeback" event per file that had pages to write; shmem has
 * no backing store to write to and is skipped, fsdax has nothing to write.
 */
export function syncInodes(k: Kernel, inodes: Iterable<Inode>): WritebackStats {
  const out: WritebackStats = { pages: 0, pinned: 0 };
  for (const inode of inodes) {
    if (inode.kind !== "file") continue;
    const ts = k.clock.now;
    const r = writeCachePages(k, inode);
    if (r.pages) k.trace.emit("mm.writeback", { path: inode.path, pages: r.pages, pinned: r.pinned }, ts);
    out.pages += r.pages;
    out.pinned += r.pinned;
  }
  return out;
}
