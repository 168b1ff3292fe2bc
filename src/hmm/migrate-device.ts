/**
 * migrate_vma (mm/migrate_device.c): move a range of a process's anonymous memory to a
 * device's private memory and back, in the three steps a driver calls:
 *
 *   migrateVmaSetup(args)     collect the pages (one MMU_NOTIFY_MIGRATE invalidation with the
 *                             driver as owner), lock them, replace their PTEs by migration
 *                             entries; args.src[i] = migratePfn(pfn) | MIGRATE (| WRITE)
 *   ... the driver allocates destination pages, copies, sets args.dst[i] ...
 *   migrateVmaPages(args)     move each page's mapping to its destination (holes get theirs
 *                             inserted); entries that cannot move lose MIGRATE
 *   migrateVmaFinalize(args)  map the destinations (a device-private entry for a device
 *                             page), or restore the sources; release what is left
 *
 * Selected: holes and the zero page of an anonymous VMA (migrated as empty pages), anonymous
 * pages with SELECT_SYSTEM, the owner's device-private pages with SELECT_DEVICE_PRIVATE.
 * A page that is pinned or otherwise referenced is left where it is, as
 * migrate_vma_check_page does; so is one mapped more than once (the kernel would unmap its
 * other mappings too; dmalab does not yet), and a file or shmem page (a device takes
 * anonymous memory only: migrate_shared's ENOENT).
 * @module
 */
import * as F from "../abi/frame.js";
import * as X from "../abi/x86.js";
import { type Address, pageNumber } from "../core/addr.js";
import { DmaError } from "../errors.js";
import { anonVmaPrepare, mkPte, pteBits } from "../mm/fault.js";
import type { Kernel } from "../mm/kernel.js";
import type { MmStruct } from "../mm/mm.js";
import { pageMappingIndex } from "../mm/rmap.js";
import { swpKind, swpOffset } from "../mm/swap.js";
import { flushTlbMmRange } from "../mm/tlbflush.js";
import { VM_IO, VM_PFNMAP, VM_SHARED, VM_WRITE, type Vma } from "../mm/vma.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";
import { devicePageGet, devicePagePut, pagemapOf } from "./memremap.js";

export const MIGRATE_PFN_VALID = 1 << 0;
export const MIGRATE_PFN_MIGRATE = 1 << 1;
export const MIGRATE_PFN_WRITE = 1 << 3;
export const MIGRATE_PFN_SHIFT = 6;
export const MIGRATE_VMA_SELECT_SYSTEM = 1 << 0;
export const MIGRATE_VMA_SELECT_DEVICE_PRIVATE = 1 << 1;

/** migrate_pfn: an entry naming @pfn (MIGRATE_PFN_VALID). */
export function migratePfn(pfn: number): number {
  return pfn * 2 ** MIGRATE_PFN_SHIFT + MIGRATE_PFN_VALID;
}

/** migrate_pfn_to_page: the pfn of an entry, or null. */
export function migratePfnToPage(e: number): number | null {
  return e & MIGRATE_PFN_VALID ? Math.floor(e / 2 ** MIGRATE_PFN_SHIFT) : null;
}

/** struct migrate_vma. */
export interface MigrateVma {
  vma: Vma;
  start: Address;
  end: Address;
  src: Float64Array;
  dst: Float64Array;
  cpages: number;
  npages: number;
  pgmapOwner: unknown;
  flags: number;
}

/** What setup unmapped, per page, to put back or replace. */
interface Collected {
  mm: MmStruct;
  first: number;
  /** Whether the unmapped entry allowed writes. */
  write: boolean[];
}

const collected = new WeakMap<MigrateVma, Collected>();

const P = BigInt(X.PTE_P);
const RW = BigInt(X.PTE_RW);
const pfnOfPte = (pte: bigint): number => Number((pte >> 12n) & 0xffffffffffn);

function setPte(k: Kernel, mm: MmStruct, vpn: number, pte: bigint): void {
  k.check(k.core.x.ptepSet(mm.pgd.pfn, vpn, 1, Number(pte & 0xffffffffn), Number(pte >> 32n)), "migrate_vma");
}

/** A migration entry for @pfn (the old entry's write permission kept). */
function migrationEntry(pfn: number, write: boolean): bigint {
  return (BigInt(pfn) << 12n) | BigInt((X.SWP_MIGRATION << X.SWP_KIND_SHIFT) | (write ? X.SWP_WRITE : 0));
}

/** A device-private entry for device page @pfn. */
export function devicePrivateEntry(pfn: number, write: boolean): bigint {
  return (BigInt(pfn) << 12n) | BigInt((X.SWP_DEVICE_PRIVATE << X.SWP_KIND_SHIFT) | (write ? X.SWP_WRITE : 0));
}

/**
 * migrateVmaSetup - migrate_vma_setup. EINVAL for a range outside the VMA, a VM_IO/VM_PFNMAP
 * VMA, or arrays too short.
 */
export function migrateVmaSetup(args: MigrateVma): void {
  const vma = args.vma;
  const mm = vma?.mm;
  if (!vma || mm.dead) throw new DmaError("EINVAL", "migrateVmaSetup: no VMA", { arg: "args.vma" });
  const first = pageNumber(args.start, "args.start");
  const end = pageNumber(args.end, "args.end");
  const n = end - first;
  if (n <= 0) throw new DmaError("EINVAL", "migrateVmaSetup: empty range", { arg: "args.end" });
  if (first < vma.start || end > vma.end) throw new DmaError("EINVAL", "migrateVmaSetup: the range is not inside the VMA", { arg: "args.start" });
  if (vma.flags & (VM_IO | VM_PFNMAP)) throw new DmaError("EINVAL", "migrateVmaSetup: VM_IO / VM_PFNMAP", { arg: "args.vma" });
  if (!(args.src instanceof Float64Array) || !(args.dst instanceof Float64Array) || args.src.length < n || args.dst.length < n) {
    throw new DmaError("EINVAL", `migrateVmaSetup: src and dst must be Float64Arrays of ${n} entries`, { arg: "args.src" });
  }
  const k = mm.kernel;
  args.src.fill(0, 0, n);
  args.cpages = 0;
  args.npages = n;
  const c: Collected = { mm, first, write: new Array<boolean>(n).fill(false) };
  const anonVma = vma.kind === "anon" && !(vma.flags & VM_SHARED);
  withInvalidation(mm, "migrate", first, end, () => {
    for (let i = 0; i < n; i++) {
      const v = first + i;
      let got = mm.pgd.ptepGetVpn(v);
      if (got.level === 2 && got.pte & P) {
        k.check(k.core.x.splitHugePmd(mm.pgd.pfn, v), "splitHugePmd"); // a THP is migrated page by page
        got = mm.pgd.ptepGetVpn(v);
      }
      const pte = got.level === 1 ? got.pte : 0n;
      if (pte === 0n || (pte & P && pfnOfPte(pte) === k.zeroPfn)) {
        // A hole or the zero page: an empty page to allocate (anonymous VMAs only).
        if (anonVma && args.flags & MIGRATE_VMA_SELECT_SYSTEM) {
          args.src[i] = MIGRATE_PFN_MIGRATE;
          args.cpages++;
        }
        continue;
      }
      if (pte & P) {
        if (!(args.flags & MIGRATE_VMA_SELECT_SYSTEM)) continue;
        const pfn = pfnOfPte(pte);
        // migrate_vma_check_page: only the mapping's reference, mapped once, not locked.
        if (k.refcountOf(pfn) !== 1 || k.mapcountOf(pfn) !== 1 || k.flagsOf(pfn) & (F.PG_head | F.PG_tail | F.PG_locked)) continue;
        const write = (pte & RW) !== 0n;
        c.write[i] = write;
        setPte(k, mm, v, migrationEntry(pfn, write));
        k.mapcount(pfn, -1); // the mapping's reference stays as the isolation's
        k.pageFlags(pfn, F.PG_locked, F.PG_lru);
        k.lru.anon.delete(pfn);
        k.lru.file.delete(pfn);
        args.src[i] = migratePfn(pfn) + MIGRATE_PFN_MIGRATE + (write ? MIGRATE_PFN_WRITE : 0);
        args.cpages++;
        continue;
      }
      if (swpKind(pte) === X.SWP_DEVICE_PRIVATE && args.flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE) {
        const page = swpOffset(pte);
        if (pagemapOf(k, page)?.owner !== args.pgmapOwner) continue;
        const write = (pte & BigInt(X.SWP_WRITE)) !== 0n;
        c.write[i] = write;
        setPte(k, mm, v, migrationEntry(page, write));
        k.mapcount(page, -1);
        k.pageFlags(page, F.PG_locked, 0);
        args.src[i] = migratePfn(page) + MIGRATE_PFN_MIGRATE + (write ? MIGRATE_PFN_WRITE : 0);
        args.cpages++;
      }
    }
    flushTlbMmRange(mm, first, end);
  }, args.pgmapOwner);
  collected.set(args, c);
  k.trace.count("hmm.migrate_collected", args.cpages);
}

/**
 * migrateVmaPages - migrate_vma_pages: each selected entry with a destination takes its
 * source's mapping (holes get the destination inserted now); an entry whose move is not
 * allowed loses MIGRATE.
 */
export function migrateVmaPages(args: MigrateVma): void {
  const c = collected.get(args);
  if (!c) throw new DmaError("EINVAL", "migrateVmaPages: migrateVmaSetup was not called", { arg: "args" });
  const { mm, first } = c;
  const k = mm.kernel;
  for (let i = 0; i < args.npages; i++) {
    const s = args.src[i]!;
    if (!(s & MIGRATE_PFN_MIGRATE)) continue;
    const d = migratePfnToPage(args.dst[i]!);
    if (d === null) {
      args.src[i] = s - MIGRATE_PFN_MIGRATE;
      continue;
    }
    const page = migratePfnToPage(s);
    const toDevice = pagemapOf(k, d) !== null;
    if (page === null) {
      if (!insertPage(k, mm, args.vma, first + i, d, toDevice, args.pgmapOwner)) args.src[i] = s - MIGRATE_PFN_MIGRATE;
      continue;
    }
    if (!(k.flagsOf(page) & F.PG_anon)) {
      args.src[i] = s - MIGRATE_PFN_MIGRATE; // only anonymous memory moves to or from a device
      continue;
    }
    // folio_migrate_mapping + folio_migrate_flags.
    const { mapping, index } = pageMappingIndex(k, page);
    k.setMapping(d, mapping, index);
    k.pageFlags(d, k.flagsOf(page) & (F.PG_anon | F.PG_anon_exclusive | F.PG_swapbacked | F.PG_dirty | F.PG_uptodate), 0);
  }
}

/** migrate_vma_insert_page: map new page @d at the hole (or zero page) @v. */
function insertPage(k: Kernel, mm: MmStruct, vma: Vma, v: number, d: number, toDevice: boolean, owner: unknown): boolean {
  if (vma.kind !== "anon" || vma.flags & VM_SHARED) return false;
  return withInvalidation(mm, "migrate", v, v + 1, () => {
    const { pte, level } = mm.pgd.ptepGetVpn(v);
    const zero = level === 1 && (pte & P) !== 0n && pfnOfPte(pte) === k.zeroPfn;
    if (!(pte === 0n || zero)) return false;
    const av = vma.anonVma ?? anonVmaPrepare(k, vma);
    k.setMapping(d, av.id, vma.pgoffOf(v));
    k.pageFlags(d, F.PG_anon | F.PG_anon_exclusive | F.PG_swapbacked | F.PG_uptodate, 0);
    const write = (vma.flags & VM_WRITE) !== 0;
    // An entry with its tables: map something present first where none exist.
    if (level !== 1) k.check(k.core.x.ptMap(mm.pgd.pfn, v, 1, k.zeroPfn, X.PTE_US | X.PTE_SOFTW1, 0, 1), "migrate_vma_insert_page");
    setPte(k, mm, v, toDevice ? devicePrivateEntry(d, write) : mkPte(d, pteBits(vma, write, write)));
    if (zero) flushTlbMmRange(mm, v, v + 1);
    k.mapcount(d, 1);
    if (toDevice) devicePageGet(k, d);
    else {
      k.folioRef(d, 1);
      k.lruAdd(d, true);
    }
    mm.rss.anon++;
    return true;
  }, owner);
}

/**
 * migrateVmaFinalize - migrate_vma_finalize: each migrated entry maps its destination; the
 * others get their source back. Sources that moved and unused destinations are released.
 */
export function migrateVmaFinalize(args: MigrateVma): void {
  const c = collected.get(args);
  if (!c) throw new DmaError("EINVAL", "migrateVmaFinalize: migrateVmaSetup was not called", { arg: "args" });
  collected.delete(args);
  const { mm, first } = c;
  const k = mm.kernel;
  const put = (pfn: number): void => (pagemapOf(k, pfn) ? devicePagePut(k, pfn) : void k.folioRef(pfn, -1));
  for (let i = 0; i < args.npages; i++) {
    const s = args.src[i]!;
    const page = migratePfnToPage(s);
    const d = migratePfnToPage(args.dst[i]!);
    if (page === null) {
      if (d !== null) put(d); // a hole's destination: its mapping holds its own reference
      continue;
    }
    const moved = (s & MIGRATE_PFN_MIGRATE) !== 0 && d !== null;
    const target = moved ? d : page;
    const device = pagemapOf(k, target) !== null;
    const write = c.write[i]!;
    setPte(k, mm, first + i, device ? devicePrivateEntry(target, write) : mkPte(target, pteBits(args.vma, write, write)));
    k.mapcount(target, 1);
    k.pageFlags(page, 0, F.PG_locked);
    if (moved) {
      if (device) devicePageGet(k, target);
      else {
        k.folioRef(target, 1);
        k.lruAdd(target, true);
      }
      put(d); // the allocation's reference: the mapping holds one now
      put(page); // the isolation's: the source goes (a device page back to its driver)
    } else {
      if (!device) k.lruAdd(page, true); // the isolation's reference is the mapping's again
      if (d !== null) put(d);
    }
  }
  flushTlbMmRange(mm, first, first + args.npages);
}
