/**
 * Page reclaim (mm/vmscan.c shrink_node, shrink_folio_list; mm/rmap.c folio_referenced and
 * try_to_unmap): free pages by evicting them from the LRU lists, oldest first.
 *
 * - The lists are kernel.lru.file (page cache) and kernel.lru.anon (swap-backed pages),
 *   scanned as a CLOCK: a page referenced since the last scan (PG_referenced, or the A bit
 *   of any entry mapping it) loses those bits and goes to the back (a second chance);
 *   otherwise it is evicted. Linux's active/inactive split and its refault distances are
 *   not modeled. Clearing A needs no TLB flush on x86 (ptep_clear_flush_young), so a page
 *   used only through a translation the TLB still caches looks unreferenced, as it does
 *   to Linux.
 * - Entries whose frame lost PG_lru (freed pages lose their flags) are dropped lazily.
 * - Never evicted: a page mapped in a VM_LOCKED VMA, found through the reverse map as
 *   folio_referenced finds it (mlock sets no PG_mlocked here, and there is no unevictable
 *   list: such pages are met and put back); a PG_mlocked / PG_unevictable page; a locked
 *   page or one under writeback; a page that may be DMA-pinned (folio_maybe_dma_pinned), or
 *   whose refcount holds any reference beyond its mappings and the page cache (GUP's
 *   FOLL_GET: __remove_mapping's refcount freeze would fail).
 * - File pages: written back first if dirty, then unmapped from every mapping (the entries
 *   are zapped), removed from the page cache and freed. The next access reads the disk.
 * - Anonymous pages: try_to_unmap turns every mapping into a swap entry for a slot holding
 *   the page's bytes, and the page is freed. Swap full: anonymous reclaim stops.
 * - TLB flushes are batched per SWAP_CLUSTER_MAX pages (TTU_BATCH_FLUSH): entries change,
 *   each mm is flushed once, and only then are the pages freed.
 *
 * Not modeled: splitting a large folio (THP) for swap-out; such folios are skipped and
 * counted. shmem pages (swap-backed page cache) are skipped and counted too: Linux swaps
 * them out and keeps the swap entry in the page cache (shmem_writeout), which the page
 * cache lookup (filemapGetFolio) would have to read back; until it does, evicting them
 * would lose their bytes. kswapd and watermarks: the caller says how much to reclaim.
 * @module
 */
import * as F from "../abi/frame.js";
import * as X from "../abi/x86.js";
import { einval } from "../errors.js";
import type { Inode } from "../fs/inode.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct } from "./mm.js";
import { zapVmaRange } from "./mmap.js";
import { pageMappingIndex, rmapWalk, type RmapHit } from "./rmap.js";
import { mkSwapEntry, swapInfo, swapOutFolio } from "./swap.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { VM_LOCKED } from "./vma.js";
import { folioMaybeDmaPinned, writebackPage } from "./writeback.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";
import { mmuNotifierClearFlushYoung } from "../notifier/mmu-notifier.js";

/** Pages isolated and shrunk per batch (SWAP_CLUSTER_MAX). */
export const SWAP_CLUSTER_MAX = 32;

const A = BigInt(X.PTE_A);

export interface ShrinkOptions {
  /** Scan the anonymous (swap-backed) list. Default true. */
  anon?: boolean;
  /** Scan the file (page cache) list. Default true. */
  file?: boolean;
}

/** Why a page was met and kept. */
export interface ReclaimSkips {
  /** Mapped in a VM_LOCKED VMA, or PG_mlocked / PG_unevictable. */
  mlocked: number;
  /** folio_maybe_dma_pinned. */
  pinned: number;
  /** Other references beyond mappings and cache, or mappings the reverse map cannot reach. */
  busy: number;
  /** PG_locked or PG_writeback. */
  locked: number;
  /** Large folios (splitting them for reclaim is not modeled). */
  large: number;
  /** shmem pages (their swap-out is not modeled). */
  shmem: number;
  /** Anonymous pages met once swap was full. */
  noSwap: number;
}

export interface ReclaimResult {
  /** Pages examined. */
  scanned: number;
  /** Pages freed. */
  reclaimed: number;
  /** Anonymous pages written to swap. */
  swapped: number;
  /** Dirty file pages written back before eviction. */
  written: number;
  /** Referenced pages given a second chance. */
  rotated: number;
  skipped: ReclaimSkips;
  /** Swap ran out (or there is none): anonymous pages could not be reclaimed. */
  swapFull: boolean;
  /** Modeled time the call took, ns. */
  ns: number;
}

interface LruScan {
  anon: boolean;
  set: Set<number>;
  /** Pages this call may still examine on this list. */
  budget: number;
}

/** A page whose entries are gone, to free once its mms' TLBs are flushed. */
interface Evicted {
  pfn: number;
  /** References to drop (anon: one per replaced mapping; file: the cache's). */
  refs: number;
  inode: Inode | null;
  index: number;
}

/** The TLB flushes a batch owes, per mm: the span of pages whose entries changed. */
type FlushBatch = Map<MmStruct, { lo: number; hi: number }>;

function noteFlush(batch: FlushBatch, mm: MmStruct, vpn: number): void {
  const r = batch.get(mm);
  if (!r) batch.set(mm, { lo: vpn, hi: vpn + 1 });
  else {
    r.lo = Math.min(r.lo, vpn);
    r.hi = Math.max(r.hi, vpn + 1);
  }
}

/** Whether LRU entry @pfn still names a page of its list (PG_lru, and swap-backed iff anon). */
function onList(k: Kernel, pfn: number, anon: boolean): boolean {
  const f = k.flagsOf(pfn);
  if (!(f & F.PG_lru) || f & F.PG_tail) return false;
  return ((f & F.PG_swapbacked) !== 0) === anon;
}

/**
 * folioReferenced - whether page @pfn was used since the last scan: PG_referenced, or the A
 * bit of any of @hits, or a secondary MMU's (mmu notifiers' clearFlushYoung). Clears them
 * all, without a TLB flush (x86 ptep_clear_flush_young).
 */
export function folioReferenced(k: Kernel, pfn: number, hits: RmapHit[]): boolean {
  let referenced = (k.pageFlags(pfn, 0, F.PG_referenced) & F.PG_referenced) !== 0;
  for (const hit of hits) {
    // ptep_clear_flush_young_notify: the secondary MMUs' accessed bits count too.
    const span = hit.level === 2 ? 512 : 1;
    if (mmuNotifierClearFlushYoung(hit.mm, hit.vpn, hit.vpn + span)) referenced = true;
    if (!(hit.pte & A)) continue;
    const pte = hit.pte & ~A;
    k.check(k.core.x.ptepSet(hit.mm.pgd.pfn, hit.vpn, hit.level, Number(pte & 0xffffffffn), Number(pte >> 32n)), "folio_referenced");
    hit.pte = pte;
    referenced = true;
  }
  return referenced;
}

/**
 * tryToUnmap - replace every mapping @hits of anonymous page @pfn with a swap entry for
 * @slot (exclusive if the page was), dropping a mapcount each and moving RSS to swap.
 * The mappings' folio references stay until the TLBs are flushed (the caller drops them).
 */
export function tryToUnmap(k: Kernel, pfn: number, hits: RmapHit[], slot: number, flush: FlushBatch): void {
  const exclusive = (k.flagsOf(pfn) & F.PG_anon_exclusive) !== 0;
  const swp = mkSwapEntry(slot, exclusive);
  for (const hit of hits) {
    // try_to_unmap_one: a CLEAR invalidation of the page in each mapping.
    withInvalidation(hit.mm, "clear", hit.vpn, hit.vpn + 1, () =>
      k.check(k.core.x.ptepSet(hit.mm.pgd.pfn, hit.vpn, 1, Number(swp & 0xffffffffn), Number(swp >> 32n)), "try_to_unmap"),
    );
    k.mapcount(pfn, -1);
    hit.mm.rss.anon--;
    hit.mm.rss.swap++;
    noteFlush(flush, hit.mm, hit.vpn);
  }
}

/** Unmap file page @pfn from every mapping: each entry is zapped (mapcount, reference, RSS). */
function unmapFilePage(hits: RmapHit[], flush: FlushBatch): void {
  for (const hit of hits) {
    withInvalidation(hit.mm, "clear", hit.vpn, hit.vpn + 1, () => zapVmaRange(hit.mm, hit.vma, hit.vpn, hit.vpn + 1));
    noteFlush(flush, hit.mm, hit.vpn);
  }
}

/** The page-cache file of file page @pfn and its index, if the cache still holds it there. */
function cacheOf(k: Kernel, pfn: number): { inode: Inode; index: number } | null {
  const { mapping, index } = pageMappingIndex(k, pfn);
  const inode = k.inodes.get(mapping);
  return inode && inode.pages.get(index) === pfn ? { inode, index } : null;
}

/**
 * shrinkFolio - examine one isolated page of the @anon or file list: keep it (returns
 * false, with the reason counted) or unmap it and queue it in @evicted (returns true).
 */
function shrinkFolio(k: Kernel, pfn: number, anon: boolean, r: ReclaimResult, flush: FlushBatch, evicted: Evicted[]): boolean {
  const flags = k.flagsOf(pfn);
  if (flags & F.PG_head) return skip(r, "large");
  if (flags & (F.PG_locked | F.PG_writeback)) return skip(r, "locked");
  if (flags & (F.PG_mlocked | F.PG_unevictable)) return skip(r, "mlocked");
  const isAnon = (flags & F.PG_anon) !== 0;
  if (anon && !isAnon) return skip(r, "shmem");
  if (anon && r.swapFull) return skip(r, "noSwap");
  const hits = rmapWalk(k, pfn);
  if (hits.some((h) => h.vma.flags & VM_LOCKED)) return skip(r, "mlocked");
  if (folioMaybeDmaPinned(k, pfn)) return skip(r, "pinned");
  const mapcount = k.mapcountOf(pfn);
  const cache = anon ? null : cacheOf(k, pfn);
  const expected = mapcount + (anon ? 0 : 1);
  if ((!anon && !cache) || k.refcountOf(pfn) !== expected || hits.length !== mapcount || hits.some((h) => h.level !== 1)) {
    return skip(r, "busy");
  }
  if (folioReferenced(k, pfn, hits)) {
    r.rotated++;
    return false;
  }
  if (cache) {
    // pageout(): a dirty page (PG_dirty or a dirty mapping) goes to disk first.
    if (writebackPage(k, cache.inode, cache.index, pfn, "pageout").written) r.written++; // charges the write
    unmapFilePage(hits, flush);
    evicted.push({ pfn, refs: 1, inode: cache.inode, index: cache.index });
    return true;
  }
  // add_to_swap + pageout: one slot reference per mapping (mapcount >= 1: a page nobody
  // maps holds a reference of someone else's and was kept as busy above).
  const slot = swapOutFolio(k, pfn, hits.length);
  if (slot === null) {
    r.swapFull = true;
    return skip(r, "noSwap");
  }
  k.clock.advance(k.costs.blockWrite.ns);
  r.swapped++;
  tryToUnmap(k, pfn, hits, slot, flush);
  evicted.push({ pfn, refs: hits.length, inode: null, index: 0 });
  return true;
}

function skip(r: ReclaimResult, why: keyof ReclaimSkips): false {
  r.skipped[why]++;
  return false;
}

/** Take up to @n live pages off the head of @l (dropping stale entries). */
function isolate(k: Kernel, l: LruScan, n: number): number[] {
  const out: number[] = [];
  while (out.length < n && l.budget > 0) {
    const it = l.set.values().next();
    if (it.done) break;
    const pfn = it.value;
    l.set.delete(pfn);
    if (!onList(k, pfn, l.anon)) continue;
    out.push(pfn);
    l.budget--;
  }
  return out;
}

/** shrinkFolioList - shrink one isolated batch; kept pages go back to the list's tail. */
function shrinkFolioList(k: Kernel, l: LruScan, batch: number[], r: ReclaimResult): void {
  const flush: FlushBatch = new Map();
  const evicted: Evicted[] = [];
  let i = 0;
  try {
    for (; i < batch.length; i++) {
      const pfn = batch[i]!;
      r.scanned++;
      k.clock.advance(k.costs.memAccess.ns); // the struct page and its rmap
      if (!shrinkFolio(k, pfn, l.anon, r, flush, evicted)) l.set.add(pfn);
    }
  } finally {
    for (; i < batch.length; i++) l.set.add(batch[i]!); // a failure leaves the rest listed
    // try_to_unmap_flush: every changed entry leaves every TLB before a page is freed.
    for (const [mm, span] of flush) flushTlbMmRange(mm, span.lo, span.hi);
    for (const e of evicted) {
      if (e.inode && e.inode.pages.get(e.index) === e.pfn) e.inode.pages.delete(e.index);
      if (e.refs > 0 && k.folioRef(e.pfn, -e.refs) === 0) r.reclaimed++;
    }
  }
}

/**
 * shrink - reclaim up to @nrToReclaim pages from the LRU lists (shrink_node), file and
 * anonymous lists in turns of SWAP_CLUSTER_MAX pages. Each list is scanned at most twice
 * its length (every page can use its second chance and be met again). Emits "mm.reclaim"
 * with the modeled time taken. Throws EINVAL naming a bad argument, before any change.
 */
export function shrink(k: Kernel, nrToReclaim: number, opts: ShrinkOptions = {}): ReclaimResult {
  if (!Number.isSafeInteger(nrToReclaim) || nrToReclaim < 0) throw einval("nrToReclaim", `${nrToReclaim} is not a page count`);
  if (typeof opts !== "object" || opts === null) throw einval("opts", "must be an object");
  for (const key of ["anon", "file"] as const) {
    if (opts[key] !== undefined && typeof opts[key] !== "boolean") throw einval(`opts.${key}`, "must be a boolean");
  }
  const r: ReclaimResult = {
    scanned: 0, reclaimed: 0, swapped: 0, written: 0, rotated: 0, swapFull: false, ns: 0,
    skipped: { mlocked: 0, pinned: 0, busy: 0, locked: 0, large: 0, shmem: 0, noSwap: 0 },
  };
  const ts = k.clock.now;
  const lists: LruScan[] = [];
  if (opts.file !== false) lists.push({ anon: false, set: k.lru.file, budget: 2 * k.lru.file.size });
  if (opts.anon !== false) lists.push({ anon: true, set: k.lru.anon, budget: 2 * k.lru.anon.size });
  // get_scan_count: with no free swap, anonymous pages cannot go anywhere; shmem would
  // not either, so the anonymous list is not scanned.
  if (opts.anon !== false && swapInfo(k).free === 0) {
    r.swapFull = true;
    lists.pop();
  }
  while (r.reclaimed < nrToReclaim) {
    let progress = false;
    for (const l of lists) {
      if (r.reclaimed >= nrToReclaim) break;
      if (l.anon && r.swapFull) continue; // nowhere to put anonymous pages
      const batch = isolate(k, l, Math.min(SWAP_CLUSTER_MAX, nrToReclaim - r.reclaimed));
      if (!batch.length) continue;
      progress = true;
      shrinkFolioList(k, l, batch, r);
    }
    if (!progress) break;
  }
  r.ns = k.clock.now - ts;
  const t = k.trace;
  t.count("mm.pages_scanned", r.scanned);
  t.count("mm.pages_reclaimed", r.reclaimed);
  t.count("mm.pages_rotated", r.rotated);
  t.count("mm.pswpout", r.swapped);
  t.count("mm.pages_written", r.written);
  for (const [why, n] of Object.entries(r.skipped)) if (n) t.count(`mm.reclaim_skipped.${why}`, n);
  if (r.swapFull) t.count("mm.swap_full");
  t.emit("mm.reclaim", { scanned: r.scanned, reclaimed: r.reclaimed, swapped: r.swapped, written: r.written }, ts, r.ns);
  return r;
}
