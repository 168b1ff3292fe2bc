/**
 * Page migration (mm/migrate.c): move a folio to another frame, keeping its bytes, flags,
 * place in the page cache or anon_vma, and every mapping. migratePage, for one folio:
 * 1. it must be movable: anonymous or page cache, on an LRU, unlocked, not under writeback,
 *    with no reference beyond one per mapping (PTE or PMD) and one for the page cache. A GUP
 *    pin or any extra get is EBUSY (Linux: -EAGAIN, retried, then given up);
 * 2. the destination is allocated in the target (same order, compound when large);
 * 3. the folio is locked and isolated (a reference), and try_to_migrate turns each mapping
 *    into a migration entry (SWP_MIGRATION, offset the old pfn, write / exclusive / young /
 *    dirty kept), dropping a mapcount and a reference per mapping (a dirty PTE dirties a
 *    file folio); the TLBs are flushed;
 * 4. move_to_new_folio copies the bytes (copy_highpage per page), then moves the page-cache
 *    slot and its reference, mapping and index, and the flags;
 * 5. remove_migration_ptes maps the new folio where each entry is, with the entry's bits;
 * 6. the new folio goes on the LRU; the old one, left with its isolation reference, is freed.
 * If step 4 fails, every entry maps the old folio again (remove_migration_ptes(src, src)),
 * it goes back on its LRU, and the new folio is freed.
 *
 * The core cannot hold a non-present PMD (ptepSet refuses one; zapRange would take it for a
 * table), so a PMD-mapped THP's "migration entry" is its PMD write-protected and flushed: no
 * write reaches the old frames during the copy, and the PMD then switches to the new folio
 * in one store, flushed again. The kernel is single-threaded: no fault meets an entry of a
 * migration in progress.
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import * as X from "../abi/x86.js";
import { addressOf } from "../core/addr.js";
import { DmaError, einval } from "../errors.js";
import type { Inode } from "../fs/inode.js";
import { mkPte, pteBits } from "./fault.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct } from "./mm.js";
import type { Gfp } from "./phys.js";
import { pageMappingIndex, rmapWalk } from "./rmap.js";
import { swpOffset } from "./swap.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { VM_EXEC, VM_READ, VM_WRITE, type Vma } from "./vma.js";
import { folioMaybeDmaPinned } from "./writeback.js";
import { mmuNotifierInvalidateRangeEnd, mmuNotifierInvalidateRangeStart } from "../notifier/mmu-notifier.js";
import { mmuNotifierRangeInit } from "../notifier/range.js";

/** A migration entry's young and dirty bits (x86 keeps them in the entry: SWP_MIG_*_BIT). */
export const SWP_MIG_YOUNG = 1 << 7;
export const SWP_MIG_DIRTY = 1 << 8;

/** Flags folio_migrate_flags moves (PG_lru by the putback, PG_anon_exclusive by entries). */
const MIGRATE_FLAGS =
  F.PG_referenced | F.PG_uptodate | F.PG_dirty | F.PG_active | F.PG_swapbacked | F.PG_unevictable |
  F.PG_mlocked | F.PG_anon | F.PG_large_rmappable;

const RW = BigInt(X.PTE_RW);
const US = BigInt(X.PTE_US);
const A = BigInt(X.PTE_A);
const D = BigInt(X.PTE_D);
const FRAME_2M = 0x000f_ffff_ffe0_0000n;

export type MigrateZone = "NORMAL" | "MOVABLE" | "CMA";

/** Where the new frame comes from: one zone, or a GFP context's zonelist. Default NORMAL. */
export interface MigrateTarget {
  zone?: MigrateZone;
  gfp?: Gfp;
}

/** A folio that passed step 1: its page cache (or null), and frames holding bytes. */
interface Src { head: number; nr: number; order: number; anon: boolean; cache: Inode | null; index: number; backed: number }

/** One mapping replaced by a migration entry (@entry: what was written in its place). */
interface MigrationPte {
  mm: MmStruct; vma: Vma; vpn: number; level: number; entry: bigint;
  write: boolean; exclusive: boolean; young: boolean; dirty: boolean;
}

function busy(pfn: number, why: string): DmaError {
  return new DmaError("EBUSY", `migrate: frame ${pfn} ${why}`, { arg: "pfn" });
}

/** The references the kernel can account for: mappings (PTE and PMD) plus the page cache. */
function expectedRefs(k: Kernel, head: number, nr: number, cached: boolean): number {
  let refs = cached ? 1 : 0;
  for (let i = 0; i < nr; i++) refs += k.mapcountOf(head + i);
  // A large folio's PMD mappings (_entire_mapcount) sit in its first tail's refcount field.
  if (nr > 1) refs += k.refcountOf(head + 1);
  return refs;
}

/** Step 1: the folio holding @pfn, if it may move now; else EINVAL or EBUSY. */
/** @internal (migrate-longterm.ts) */
export function migratableFolio(k: Kernel, pfn: number): Src {
  const nrFrames = k.core.hdr(H.HDR_NR_FRAMES);
  if (!Number.isSafeInteger(pfn) || pfn < 0 || pfn >= nrFrames) {
    throw einval("pfn", `${pfn} is not a frame of this machine (0..${nrFrames - 1})`);
  }
  const zone = k.phys.zoneOf(pfn);
  if (zone === null || zone === "DEVICE" || zone === "DEVICE_PRIVATE" || zone === "P2PDMA") {
    throw einval("pfn", `frame ${pfn} is ${zone ? "ZONE_DEVICE memory" : "not RAM"}: no page the kernel moves`);
  }
  const head = k.folioOf(pfn);
  const flags = k.flagsOf(head);
  if (head === k.zeroPfn) throw einval("pfn", `frame ${pfn} is the shared zero page, which never moves`);
  if (flags & F.PG_buddy || k.refcountOf(head) <= 0) throw einval("pfn", `frame ${pfn} is not in use (refcount 0)`);
  if (flags & F.PG_reserved) throw einval("pfn", `frame ${pfn} is reserved`);
  if (flags & F.PG_pgtable) throw einval("pfn", `frame ${pfn} is a page table`);
  const { mapping, index, anon } = pageMappingIndex(k, head);
  const inode = anon ? null : (k.inodes.get(mapping) ?? null);
  const cached = inode !== null && inode.kind !== "dax" && inode.pages.get(index) === head;
  if (!anon && !cached) throw busy(pfn, "is neither anonymous nor in the page cache (a kernel or driver page): it cannot be isolated");
  if (!(flags & F.PG_lru)) throw busy(pfn, "is not on an LRU list (isolated by someone else)");
  if (flags & F.PG_locked) throw busy(pfn, "is locked");
  if (flags & F.PG_writeback) throw busy(pfn, "is under writeback");
  const nr = folioPages(k, head);
  const order = Math.log2(nr);
  const want = expectedRefs(k, head, nr, cached);
  const ref = k.refcountOf(head);
  if (ref !== want) {
    k.trace.count("mm.pgmigrate_fail", nr); // Linux meets this after isolation: a failure
    const pinned = folioMaybeDmaPinned(k, head);
    throw busy(pfn, pinned
      ? `may be DMA-pinned (refcount ${ref}${nr > 1 ? `, pincount ${k.pincountOf(head)}` : ""}): it cannot move`
      : `holds ${ref} references where its mappings and cache account for ${want}: it cannot move`);
  }
  let backed = 0;
  const base = k.core.hdr(H.HDR_FRAMES_BASE);
  for (let i = 0; i < nr; i++) if (k.core.u32[(base + (head + i) * F.FRAME_SIZE + F.FRAME_BACKING) >>> 2]) backed++;
  return { head, nr, order, anon, cache: cached ? inode : null, index, backed };
}

function checkTarget(k: Kernel, target: MigrateTarget): void {
  if (typeof target !== "object" || target === null) throw einval("target", "must be an object {zone?, gfp?}");
  const { zone, gfp } = target;
  if (zone !== undefined) {
    if (zone !== "NORMAL" && zone !== "MOVABLE" && zone !== "CMA") throw einval("target.zone", `${String(zone)} is not NORMAL, MOVABLE or CMA`);
    if (!k.phys.zones().some((z) => z.name === zone)) throw einval("target.zone", `this machine has no ${zone} zone`);
  }
  if (gfp !== undefined && gfp !== "KERNEL" && gfp !== "HIGHUSER_MOVABLE") throw einval("target.gfp", `unknown GFP context ${String(gfp)}`);
}

/** Step 2: the new folio (ENOMEM, nothing changed, when the target has no such block). */
/** @internal (migrate-longterm.ts) */
export function allocDst(k: Kernel, s: Src, target: MigrateTarget): number {
  const compound = s.order > 0;
  try {
    return target.zone !== undefined
      ? k.phys.allocPages(s.order, { zone: target.zone, compound })
      : k.phys.allocPages(s.order, { gfp: target.gfp ?? "KERNEL", compound });
  } catch (e) {
    if (!(e instanceof DmaError) || e.code !== "ENOMEM") throw e;
    const where = target.zone ?? (target.gfp === "HIGHUSER_MOVABLE" ? "MOVABLE, NORMAL or CMA" : "NORMAL");
    throw new DmaError("ENOMEM", `migrate: no free order-${s.order} block in ${where} for frame ${s.head}`, { arg: "target", cause: e });
  }
}

function setEntry(k: Kernel, mm: MmStruct, vpn: number, level: number, v: bigint): void {
  k.check(k.core.x.ptepSet(mm.pgd.pfn, vpn, level, Number(v & 0xffffffffn), Number(v >> 32n)), "migrate");
}

function flushAll(ptes: MigrationPte[], local: number, only?: (m: MigrationPte) => boolean): void {
  const ranges = new Map<MmStruct, [number, number]>();
  for (const m of ptes) {
    if (only && !only(m)) continue;
    const end = m.vpn + (m.level === 2 ? 512 : 1);
    const r = ranges.get(m.mm);
    ranges.set(m.mm, r ? [Math.min(r[0], m.vpn), Math.max(r[1], end)] : [m.vpn, end]);
  }
  for (const [mm, [start, end]] of ranges) flushTlbMmRange(mm, start, end, local);
}

/** Step 3, try_to_migrate: every mapping of @s becomes a migration entry; TLBs flushed. */
function tryToMigrate(k: Kernel, s: Src, local: number): MigrationPte[] {
  const out: MigrationPte[] = [];
  const seen = new Map<MmStruct, Set<number>>();
  for (let i = 0; i < s.nr; i++) {
    for (const hit of rmapWalk(k, s.head + i)) {
      const keys = seen.get(hit.mm) ?? new Set<number>();
      seen.set(hit.mm, keys);
      if (keys.has(hit.vpn * 4 + hit.level)) continue; // a PMD is met once per page
      keys.add(hit.vpn * 4 + hit.level);
      const pte = hit.pte;
      const m: MigrationPte = {
        mm: hit.mm, vma: hit.vma, vpn: hit.vpn, level: hit.level, entry: 0n, exclusive: false,
        write: (pte & RW) !== 0n, young: (pte & A) !== 0n, dirty: (pte & D) !== 0n,
      };
      const page = hit.level === 1 ? Number((pte >> 12n) & 0xffffffffffn) : s.head;
      if (s.anon && k.flagsOf(page) & F.PG_anon_exclusive) {
        m.exclusive = true;
        k.pageFlags(page, 0, F.PG_anon_exclusive);
      }
      if (m.dirty && !s.anon) k.pageFlags(s.head, F.PG_dirty, 0); // folio_mark_dirty
      // try_to_migrate_one: a CLEAR invalidation of what this entry maps.
      const span = hit.level === 1 ? 1 : 512;
      const range = mmuNotifierRangeInit("clear", true, hit.mm, hit.vpn, hit.vpn + span);
      mmuNotifierInvalidateRangeStart(range);
      if (hit.level === 1) {
        m.entry = (BigInt(page) << 12n) | BigInt((X.SWP_MIGRATION << X.SWP_KIND_SHIFT) |
          (m.write ? X.SWP_WRITE : 0) | (m.exclusive ? X.SWP_EXCLUSIVE : 0) |
          (m.young ? SWP_MIG_YOUNG : 0) | (m.dirty ? SWP_MIG_DIRTY : 0));
        setEntry(k, hit.mm, hit.vpn, 1, m.entry);
        k.mapcount(page, -1);
      } else {
        m.entry = pte & ~RW;
        setEntry(k, hit.mm, hit.vpn, 2, m.entry);
        k.check(k.core.x.folioEntireMapcount(s.head, -1), "folioEntireMapcount");
      }
      k.folioRef(s.head, -1); // the mapping's reference; the isolation keeps the folio
      mmuNotifierInvalidateRangeEnd(range);
      out.push(m);
    }
  }
  flushAll(out, local);
  return out;
}

/**
 * Step 5, remove_migration_ptes: map @dst (or @s itself, to undo) where each entry is,
 * with the entry's rights, young and dirty bits and exclusivity.
 */
function removeMigrationPtes(k: Kernel, s: Src, dst: number, ptes: MigrationPte[], local: number): void {
  for (const m of ptes) {
    const cur = m.mm.pgd.ptepGet(addressOf(m.vpn), m.level).pte;
    // A stand-in PMD is present: a read may have set its A bit since.
    if ((m.level === 2 ? cur & ~A : cur) !== (m.level === 2 ? m.entry & ~A : m.entry)) {
      throw new DmaError("EFAULT", `migrate: the entry at page ${m.vpn} changed during migration (a dmalab bug)`);
    }
    if (m.level === 1) {
      const page = dst + (swpOffset(cur) - s.head);
      let bits = pteBits(m.vma, m.write, m.dirty);
      if (!m.young) bits &= ~A;
      if (!(m.vma.flags & (VM_READ | VM_WRITE | VM_EXEC))) bits &= ~US; // PROT_NONE
      setEntry(k, m.mm, m.vpn, 1, mkPte(page, bits));
      k.mapcount(page, 1);
      if (m.exclusive) k.pageFlags(page, F.PG_anon_exclusive, 0);
    } else {
      setEntry(k, m.mm, m.vpn, 2, (cur & ~FRAME_2M) | (BigInt(dst) << 12n) | (m.write ? RW : 0n));
      k.check(k.core.x.folioEntireMapcount(dst, 1), "folioEntireMapcount");
      if (m.exclusive) k.pageFlags(dst, F.PG_anon_exclusive, 0);
    }
    k.folioRef(dst, 1);
  }
  // A stand-in PMD stayed present: its old translation goes once it maps other frames.
  if (dst !== s.head) flushAll(ptes, local, (m) => m.level === 2);
}

/** Step 4, move_to_new_folio: bytes, then the page-cache entry, mapping and flags. */
function moveToNewFolio(k: Kernel, s: Src, dst: number): void {
  for (let i = 0; i < s.nr; i++) k.check(k.core.x.copyHighpage(dst + i, s.head + i), "copyHighpage");
  k.clock.advance(s.nr * k.costs.pageCopy.ns);
  if (s.cache) {
    // __folio_migrate_mapping: the cache's reference moves with its entry.
    k.folioRef(dst, 1);
    s.cache.pages.set(s.index, dst);
    k.folioRef(s.head, -1);
  }
  const { mapping, index } = pageMappingIndex(k, s.head);
  k.setMapping(dst, mapping, index);
  k.pageFlags(dst, k.flagsOf(s.head) & MIGRATE_FLAGS, 0);
  // Exclusivity of pages no entry carried (unmapped pages of a large folio).
  for (let i = 0; i < s.nr; i++) {
    if (k.flagsOf(s.head + i) & F.PG_anon_exclusive) k.pageFlags(dst + i, F.PG_anon_exclusive, 0);
  }
}

/** Pages of the folio headed at @head (1 for frames outside every zone). */
function folioPages(k: Kernel, head: number): number {
  if (k.phys.zoneOf(head) === null) return 1;
  const f = k.flagsOf(head);
  return f & F.PG_head ? 2 ** ((f >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK) : 1;
}

function folioMapped(k: Kernel, s: Src): boolean {
  return expectedRefs(k, s.head, s.nr, false) !== 0;
}

/** Steps 3-6 for a checked folio and its allocated destination. Returns the mappings moved. */
/** @internal (migrate-longterm.ts) */
export function migrateFolio(k: Kernel, s: Src, dst: number, local: number): number {
  const ts = k.clock.now;
  const lru = (k.flagsOf(s.head) & F.PG_swapbacked) !== 0 || s.anon;
  // folio_trylock + folio_isolate_lru (the isolation holds a reference).
  k.pageFlags(s.head, F.PG_locked, F.PG_lru);
  k.lru.anon.delete(s.head);
  k.lru.file.delete(s.head);
  k.folioRef(s.head, 1);
  k.pageFlags(dst, F.PG_locked, 0);
  const ptes = tryToMigrate(k, s, local);
  try {
    if (folioMapped(k, s) || k.refcountOf(s.head) !== 1 + (s.cache ? 1 : 0)) {
      throw busy(s.head, "is still mapped or referenced after unmapping: it cannot move");
    }
    moveToNewFolio(k, s, dst);
  } catch (e) {
    removeMigrationPtes(k, s, s.head, ptes, local);
    k.pageFlags(s.head, 0, F.PG_locked);
    k.lruAdd(s.head, lru);
    k.folioRef(s.head, -1);
    k.pageFlags(dst, 0, F.PG_locked);
    k.folioRef(dst, -1); // frees the new folio
    k.trace.count("mm.pgmigrate_fail", s.nr);
    throw e;
  }
  removeMigrationPtes(k, s, dst, ptes, local);
  k.clock.advance(2 * ptes.length * k.costs.pteWrite.ns);
  k.lruAdd(dst, lru);
  k.pageFlags(dst, 0, F.PG_locked);
  k.pageFlags(s.head, 0, F.PG_locked);
  k.folioRef(dst, -1); // the allocation's reference: the mappings and cache hold it now
  k.folioRef(s.head, -1); // the isolation's reference, the last: the old folio is freed
  k.trace.count("mm.pgmigrate_success", s.nr);
  if (s.nr > 1) k.trace.count("mm.thp_migration_success");
  k.trace.emit("mm.migrate", { from: s.head, to: dst, mappings: ptes.length }, ts, k.clock.now - ts);
  return ptes.length;
}

/**
 * migratePage - move the folio holding @pfn to a new frame in @target (default NORMAL);
 * returns @pfn's new frame. EINVAL for frames that never move (the zero page, free,
 * reserved, page-table or ZONE_DEVICE frames), EBUSY for a folio that cannot be isolated
 * or holds references the kernel cannot account for (pins), ENOMEM when the target has
 * no room; nothing changes then. @local is the CPU doing it (no IPI for it), or -1.
 */
export function migratePage(k: Kernel, pfn: number, target: MigrateTarget = {}, local = -1): number {
  checkTarget(k, target);
  const s = migratableFolio(k, pfn);
  if (k.core.x.poolAvailable() < s.backed) {
    throw new DmaError("ENOMEM", `migrate: no backing for the ${s.backed} pages of frame ${pfn}`, { arg: "backing" });
  }
  const dst = allocDst(k, s, target);
  migrateFolio(k, s, dst, local);
  return dst + (pfn - s.head);
}

export interface MigratePagesResult {
  /** 4 KiB pages moved (migrate_pages' nr_succeeded). */
  migrated: number;
  /** 4 KiB pages that stayed, with the folios' errors in `results`. */
  failed: number;
  /** For each pfn given, its new frame or the error that kept it in place. */
  results: ({ pfn: number; to: number } | { pfn: number; error: DmaError })[];
}

/** migratePages - migrate_pages over @pfns: each folio once; failures do not stop the rest. */
export function migratePages(k: Kernel, pfns: readonly number[], target: MigrateTarget = {}): MigratePagesResult {
  if (!Array.isArray(pfns)) throw einval("pfns", "must be an array of frame numbers");
  checkTarget(k, target);
  const out: MigratePagesResult = { migrated: 0, failed: 0, results: [] };
  const done = new Map<number, { to: number } | { error: DmaError }>();
  for (const pfn of pfns) {
    const head = Number.isSafeInteger(pfn) && k.phys.zoneOf(pfn) !== null ? k.folioOf(pfn) : pfn;
    let r = done.get(head);
    if (!r) {
      const nr = head === pfn && !Number.isSafeInteger(pfn) ? 1 : folioPages(k, head);
      try {
        r = { to: migratePage(k, head, target) };
        out.migrated += nr;
      } catch (e) {
        if (!(e instanceof DmaError)) throw e;
        r = { error: e };
        out.failed += nr;
      }
      done.set(head, r);
    }
    out.results.push("to" in r ? { pfn, to: r.to + (pfn - head) } : { pfn, error: r.error });
  }
  return out;
}
