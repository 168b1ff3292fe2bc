/**
 * Writeback of file pages (mm/page-writeback.c, mm/rmap.c folio_mkclean): before a dirty
 * page's bytes go to disk, every mapping of it is write-protected and cleaned
 * (page_mkclean) and the TLBs flushed, so the next CPU write faults and dirties the page
 * again; PG_dirty gives way to PG_writeback while the bytes are written, then that clears.
 *
 * A page that may be DMA-pinned is written back all the same (the kernel does): a device
 * can keep writing into it with no fault, so the file system never hears of those writes.
 * That is the hazard [O1] of the put_user_page() discussion; writebackPage reports whether
 * the page looked pinned, for the checkers.
 * @module
 */
import * as F from "../abi/frame.js";
import * as X from "../abi/x86.js";
import type { Inode } from "../fs/inode.js";
import type { Kernel } from "./kernel.js";
import { rmapWalk } from "./rmap.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { framePageBytes } from "./filemap.js";

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
    k.check(k.core.x.ptepSet(hit.mm.pgd.pfn, hit.vpn, hit.level, Number(pte & 0xffffffffn), Number(pte >> 32n)), "page_mkclean");
    const span = hit.level === 2 ? 512 : 1;
    flushTlbMmRange(hit.mm, hit.vpn, hit.vpn + span);
  }
  return dirty;
}

/** folio_maybe_dma_pinned: a large folio's pincount, or a small one's refcount >= 1024. */
export function folioMaybeDmaPinned(k: Kernel, pfn: number): boolean {
  const head = k.folioOf(pfn);
  if (k.flagsOf(head) & F.PG_head) return k.pincountOf(head) > 0;
  return k.refcountOf(head) >= F.GUP_PIN_COUNTING_BIAS;
}

export interface WritebackResult {
  /** The page was dirty (in its flags or a mapping) and was written. */
  written: boolean;
  /** It may have been DMA-pinned while written back (hazard [O1]). */
  pinned: boolean;
}

/**
 * writebackPage - write page @index of @inode (frame @pfn) to disk if it is dirty:
 * page_mkclean, PG_dirty -> PG_writeback, copy the bytes, end writeback.
 */
export function writebackPage(k: Kernel, inode: Inode, index: number, pfn: number): WritebackResult {
  if (inode.kind === "dax") return { written: false, pinned: false }; // the page is the block
  const mappedDirty = folioMkclean(k, pfn);
  const flags = k.flagsOf(pfn);
  if (!(flags & F.PG_dirty) && !mappedDirty) return { written: false, pinned: false };
  const pinned = folioMaybeDmaPinned(k, pfn);
  k.pageFlags(pfn, F.PG_writeback, F.PG_dirty);
  if (inode.kind === "file") inode.disk.set(index, framePageBytes(k, pfn));
  k.pageFlags(pfn, 0, F.PG_writeback);
  k.trace.count("mm.writeback_pages");
  if (pinned) k.trace.count("mm.writeback_pinned_pages");
  return { written: true, pinned };
}
