/**
 * Page faults (mm/memory.c handle_mm_fault): what the kernel does when the MMU could not
 * translate an access.
 *
 * - Missing entry, anonymous VMA: a read maps the shared zero page read-only; a write gets
 *   a new zeroed page (do_anonymous_page), or a 2 MiB folio when THP applies (the 2 MiB
 *   range lies in the VMA and its PMD is empty).
 * - Missing entry, file or shmem VMA: the page-cache page (filemap_fault); a write to a
 *   private mapping copies it into a new anonymous page (do_cow_fault); a write to a shared
 *   mapping dirties it (do_shared_fault). fsdax maps the file's block.
 * - Present but read-only, write access (do_wp_page): an anonymous page that is exclusive
 *   (PageAnonExclusive), or referenced by no one else, is reused in place; otherwise it is
 *   copied (COW). Shared file pages are dirtied and made writable. The zero page is
 *   replaced by a new zeroed page.
 * - Unshare (FAULT_FLAG_UNSHARE, a pin of a shared anonymous page): like a write fault's
 *   copy, but the new entry stays read-only.
 * - A swap entry: swapped back in (swap.ts).
 * @module
 */
import * as F from "../abi/frame.js";
import * as X from "../abi/x86.js";
import { DmaError } from "../errors.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct } from "./mm.js";
import { filemapGetFolio, folioMarkDirty } from "./filemap.js";
import { VM_EXEC, VM_HUGEPAGE, VM_READ, VM_WRITE, type Vma } from "./vma.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { doSwapPage } from "./swap.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";

export interface FaultFlags {
  write?: boolean;
  exec?: boolean;
  /** FAULT_FLAG_UNSHARE: break COW sharing for a read-only pin. */
  unshare?: boolean;
  /**
   * A fault GUP takes for the kernel (faultin_page), not a CPU's: the VMA's permissions
   * were checked by check_vma_flags, which lets FOLL_FORCE write into a read-only private
   * mapping (ptrace, /proc/pid/mem).
   */
  gup?: boolean;
  /** The CPU the fault happened on (its TLB needs no IPI), or -1. */
  cpu?: number;
}

/** What a fault ended in: handled, or the signal the task would get. */
export type FaultResult = "ok" | "SIGSEGV" | "SIGBUS" | "OOM";

const P = BigInt(X.PTE_P);
const RW = BigInt(X.PTE_RW);
const US = BigInt(X.PTE_US);
const A = BigInt(X.PTE_A);
const D = BigInt(X.PTE_D);
const PS = BigInt(X.PTE_PS);
const SPECIAL = BigInt(X.PTE_SOFTW1);
const NX = 1n << BigInt(X.PTE_BIT_NX);

/**
 * The bits a new user leaf gets in @vma (vm_get_page_prot + young). @write asks for a
 * writable entry, which only a VM_WRITE mapping gets (maybe_mkwrite: a FOLL_FORCE write
 * into a read-only private mapping leaves a dirty, read-only copy).
 */
export function pteBits(vma: Vma, write: boolean, dirty: boolean, special = false): bigint {
  let b = P | US | A;
  if (write && (vma.flags & VM_WRITE) !== 0) b |= RW;
  if (dirty) b |= D;
  if (special) b |= SPECIAL;
  if (!(vma.flags & VM_EXEC)) b |= NX;
  return b;
}

export function mkPte(pfn: number, bits: bigint): bigint {
  return (BigInt(pfn) << 12n) | bits;
}

function pfnOf(pte: bigint): number {
  return Number((pte >> 12n) & 0xffffffffffn);
}

/** Whether the VMA allows the access at all (x86: write or exec imply read). */
export function accessAllowed(vma: Vma, f: FaultFlags): boolean {
  if (f.write) return (vma.flags & VM_WRITE) !== 0;
  if (f.exec) return (vma.flags & VM_EXEC) !== 0;
  return (vma.flags & (VM_READ | VM_WRITE | VM_EXEC)) !== 0;
}

/** Install a new leaf mapping frame @pfn with @bits at page @vpn (the slot must be empty). */
function setPte(k: Kernel, mm: MmStruct, vpn: number, pfn: number, bits: bigint): void {
  const lo = Number(bits & 0xfffn) & ~X.PTE_P;
  const hi = Number(bits >> 32n) & 0xfff00000;
  k.check(k.core.x.ptMap(mm.pgd.pfn, vpn, 1, pfn, lo, hi >>> 0, 1), "handleMmFault");
}

/** Replace the leaf of page @vpn at @level (the old translation must go from every TLB). */
function replacePte(k: Kernel, mm: MmStruct, vpn: number, level: number, pte: bigint, cpu: number): void {
  k.check(k.core.x.ptepSet(mm.pgd.pfn, vpn, level, Number(pte & 0xffffffffn), Number(pte >> 32n)), "handleMmFault");
  const span = level === 2 ? 512 : 1;
  flushTlbMmRange(mm, vpn - (vpn % span), vpn - (vpn % span) + span, cpu);
}

/** Make @head a new anonymous folio of @vma at @vpn: exclusive, on the LRU, mapped once. */
function newAnonFolio(k: Kernel, vma: Vma, vpn: number, head: number, pmd: boolean): void {
  const av = vma.anonVma ?? anonVmaPrepare(k, vma);
  k.pageFlags(head, F.PG_anon | F.PG_anon_exclusive | F.PG_swapbacked | F.PG_uptodate, 0);
  k.setMapping(head, av.id, vma.pgoffOf(vpn));
  if (pmd) k.check(k.core.x.folioEntireMapcount(head, 1), "folioEntireMapcount");
  else k.mapcount(head, 1);
  k.lruAdd(head, true);
}

/** anon_vma_prepare: the VMA's anon_vma, made on its first anonymous page. */
export function anonVmaPrepare(k: Kernel, vma: Vma): NonNullable<Vma["anonVma"]> {
  if (!vma.anonVma) {
    vma.anonVma = findMergeableAnonVma(vma) ?? k.newAnonVma(null);
    vma.anonVma.link(vma);
  }
  return vma.anonVma;
}

/** Whether a 2 MiB folio may back page @vpn (THP enabled, PMD range inside the VMA). */
function thpSuitable(k: Kernel, mm: MmStruct, vma: Vma, vpn: number): boolean {
  if (vma.kind !== "anon" || vma.isShared) return false;
  if (k.thp === "never") return false;
  if (k.thp === "madvise" && !(vma.flags & VM_HUGEPAGE)) return false;
  const first = vpn - (vpn % 512);
  if (first < vma.start || first + 512 > vma.end) return false;
  // The PMD slot must be empty: no page table below it yet (the walk may stop higher up,
  // at an empty PDPT or PML4 entry, in a fresh part of the address space).
  const g = mm.pgd.ptepGetVpn(first, 2);
  return g.level >= 2 && g.pte === 0n;
}

/** do_anonymous_page (and do_huge_pmd_anonymous_page). */
function doAnonymousPage(k: Kernel, mm: MmStruct, vma: Vma, vpn: number, f: FaultFlags): FaultResult {
  if (!f.write) {
    setPte(k, mm, vpn, k.zeroPfn, pteBits(vma, false, false, true));
    k.trace.count("mm.fault.zero_page");
    return "ok";
  }
  if (thpSuitable(k, mm, vma, vpn)) {
    let head = -1;
    try {
      head = k.allocUserFolio(9);
    } catch (e) {
      if (!(e instanceof DmaError) || e.code !== "ENOMEM") throw e;
      k.trace.count("mm.thp_fault_fallback");
    }
    if (head >= 0) {
      newAnonFolio(k, vma, vpn, head, true);
      const first = vpn - (vpn % 512);
      const bits = pteBits(vma, true, true);
      const lo = Number(bits & 0xfffn) & ~X.PTE_P;
      k.check(k.core.x.ptMap(mm.pgd.pfn, first, 512, head, lo, (Number(bits >> 32n) & 0xfff00000) >>> 0, 2), "handleMmFault");
      mm.rss.anon += 512;
      k.trace.count("mm.fault.thp");
      return "ok";
    }
  }
  const pfn = k.allocUserFolio(0);
  newAnonFolio(k, vma, vpn, pfn, false);
  setPte(k, mm, vpn, pfn, pteBits(vma, true, true));
  mm.rss.anon++;
  k.trace.count("mm.fault.anon");
  return "ok";
}

/** do_read_fault / do_cow_fault / do_shared_fault for file, shmem and fsdax VMAs. */
function doFileFault(k: Kernel, mm: MmStruct, vma: Vma, vpn: number, f: FaultFlags): FaultResult {
  const inode = vma.file!;
  const index = vma.pgoffOf(vpn);
  if (index >= inode.pagesInFile) return "SIGBUS"; // beyond end of file
  const pfn = filemapGetFolio(k, inode, index);
  if (f.write && !vma.isShared) {
    // do_cow_fault: a private copy of the file page.
    const copy = k.allocUserFolio(0);
    k.check(k.core.x.copyHighpage(copy, pfn), "copyHighpage");
    k.clock.advance(k.costs.pageCopy.ns);
    newAnonFolio(k, vma, vpn, copy, false);
    setPte(k, mm, vpn, copy, pteBits(vma, true, true));
    mm.rss.anon++;
    k.trace.count("mm.fault.cow_file");
    return "ok";
  }
  k.folioRef(pfn, 1);
  k.mapcount(pfn, 1);
  if (f.write) folioMarkDirty(k, pfn);
  // Shared writable pages map writable only once dirtied: a clean page faults on its first
  // write, so the file system learns of it (dirty tracking, page_mkwrite).
  setPte(k, mm, vpn, pfn, pteBits(vma, !!f.write, !!f.write));
  if (inode.kind === "shmem") mm.rss.shmem++;
  else mm.rss.file++;
  k.trace.count(f.write ? "mm.fault.shared_write" : "mm.fault.file_read");
  return "ok";
}

/** do_wp_page: a write (or unshare) to a present read-only page. */
function doWpPage(k: Kernel, mm: MmStruct, vma: Vma, vpn: number, pte: bigint, f: FaultFlags): FaultResult {
  const pfn = pfnOf(pte);
  const cpu = f.cpu ?? -1;
  if (pfn === k.zeroPfn || (pte & SPECIAL) !== 0n) {
    if (pfn !== k.zeroPfn) return "SIGBUS"; // a special page nobody may copy
    const page = k.allocUserFolio(0);
    // wp_page_copy of the zero page: a CLEAR invalidation of the page.
    withInvalidation(mm, "clear", vpn, vpn + 1, () => {
      newAnonFolio(k, vma, vpn, page, false);
      replacePte(k, mm, vpn, 1, mkPte(page, pteBits(vma, !f.unshare, !f.unshare)), cpu);
    });
    mm.rss.anon++;
    k.trace.count("mm.fault.zero_cow");
    return "ok";
  }
  const head = k.folioOf(pfn);
  const flags = k.flagsOf(head);
  if (!(flags & F.PG_anon)) {
    if (vma.isShared) {
      // wp_page_shared: the first write to a clean shared file page.
      folioMarkDirty(k, head);
      replacePte(k, mm, vpn, 1, pte | RW | D | A, cpu);
      k.trace.count("mm.fault.wp_shared");
      return "ok";
    }
    return cowPage(k, mm, vma, vpn, pfn, f, "mm.fault.cow_file");
  }
  // wp_can_reuse_anon_folio: exclusive, or the only reference (a small folio only).
  const exclusive = (k.flagsOf(pfn) & F.PG_anon_exclusive) !== 0;
  const alone = !(flags & F.PG_head) && k.refcountOf(head) === 1 && k.mapcountOf(pfn) === 1;
  if (exclusive || alone) {
    if (!exclusive) k.pageFlags(pfn, F.PG_anon_exclusive, 0);
    if (!f.unshare) {
      const bits = D | A | ((vma.flags & VM_WRITE) !== 0 ? RW : 0n); // wp_page_reuse: maybe_mkwrite
      k.check(k.core.x.ptepSet(mm.pgd.pfn, vpn, 1, Number((pte | bits) & 0xffffffffn), Number(pte >> 32n)), "handleMmFault");
    }
    k.trace.count("mm.fault.cow_reuse");
    return "ok";
  }
  return cowPage(k, mm, vma, vpn, pfn, f, "mm.fault.cow_copy");
}

/** wp_page_copy: a new exclusive copy for this mm; the old page loses a mapping. */
function cowPage(
  k: Kernel, mm: MmStruct, vma: Vma, vpn: number, pfn: number, f: FaultFlags, counter: string,
): FaultResult {
  const page = k.allocUserFolio(0);
  k.check(k.core.x.copyHighpage(page, pfn), "copyHighpage");
  k.clock.advance(k.costs.pageCopy.ns);
  const write = !f.unshare;
  // wp_page_copy: a CLEAR invalidation of the page around the PTE change.
  withInvalidation(mm, "clear", vpn, vpn + 1, () => {
    newAnonFolio(k, vma, vpn, page, false);
    replacePte(k, mm, vpn, 1, mkPte(page, pteBits(vma, write, write)), f.cpu ?? -1);
  });
  const head = k.folioOf(pfn);
  const wasAnon = (k.flagsOf(head) & F.PG_anon) !== 0;
  k.mapcount(pfn, -1);
  k.folioRef(head, -1);
  if (!wasAnon) {
    if (vma.file?.kind === "shmem") mm.rss.shmem--;
    else mm.rss.file--;
    mm.rss.anon++;
  }
  k.trace.count(counter);
  return "ok";
}

/** do_huge_pmd_wp_page: a write to a read-only 2 MiB leaf: reuse, or split and copy a page. */
function doHugePmdWp(k: Kernel, mm: MmStruct, vpn: number, pte: bigint, f: FaultFlags): FaultResult {
  const head = pfnOf(pte) - (pfnOf(pte) % 512);
  if ((k.flagsOf(head) & F.PG_anon_exclusive) !== 0 && !f.unshare) {
    k.check(k.core.x.ptepSet(mm.pgd.pfn, vpn - (vpn % 512), 2, Number((pte | RW | D | A) & 0xffffffffn), Number(pte >> 32n)), "handleMmFault");
    k.trace.count("mm.fault.thp_reuse");
    return "ok";
  }
  k.check(k.core.x.splitHugePmd(mm.pgd.pfn, vpn), "splitHugePmd");
  k.trace.count("mm.thp_split_pmd");
  return handleMmFaultLocked(mm, vpn, f);
}

/**
 * handleMmFaultLocked - handle a fault at page @vpn of @mm (mmap_lock held by the caller).
 * Returns "ok" or the signal the task would get.
 */
export function handleMmFaultLocked(mm: MmStruct, vpn: number, f: FaultFlags): FaultResult {
  const k = mm.kernel;
  const vma = mm.vmas.find(vpn);
  if (!vma || (!f.gup && !accessAllowed(vma, f))) return "SIGSEGV";
  if (f.unshare && !vma.isCow) return "ok";
  const got = mm.pgd.ptepGetVpn(vpn);
  const { pte } = got;
  const huge = got.level === 2 && (pte & P) !== 0n && (pte & PS) !== 0n;
  if (pte === 0n) {
    // A PFNMAP device mapping, or p2pmem (kernfs has no fault handler for it): filled at mmap.
    if (vma.kind === "device" || vma.kind === "mixedmap") return "SIGBUS";
    if (vma.kind === "anon") return doAnonymousPage(k, mm, vma, vpn, f);
    return doFileFault(k, mm, vma, vpn, f);
  }
  if (!(pte & P)) return doSwapPage(k, mm, vma, vpn, pte, f);
  if ((f.write || f.unshare) && !(pte & RW)) {
    return huge ? doHugePmdWp(k, mm, vpn, pte, f) : doWpPage(k, mm, vma, vpn, pte, f);
  }
  if (f.unshare && !huge) {
    const head = k.folioOf(pfnOf(pte));
    const anon = (k.flagsOf(head) & F.PG_anon) !== 0;
    if (anon && !(k.flagsOf(pfnOf(pte)) & F.PG_anon_exclusive)) return doWpPage(k, mm, vma, vpn, pte, f);
  }
  // The entry allows the access: the CPU saw a stale, more restrictive TLB entry.
  k.trace.count("mm.fault.spurious");
  return "ok";
}

/** handleMmFault - take the mmap_lock for read and handle the fault. */
export function handleMmFault(mm: MmStruct, vpn: number, f: FaultFlags, who = "fault"): FaultResult {
  const ts = mm.kernel.clock.now;
  const r = mm.mmapLock.with("read", who, () => handleMmFaultLocked(mm, vpn, f));
  // The trap and return; the handler may have charged more (a swap-in's block read).
  mm.kernel.clock.advance(mm.kernel.costs.minorFault.ns);
  const ns = mm.kernel.clock.now - ts;
  mm.kernel.trace.emit("mm.fault", { pcid: mm.pcid, va: vpn * 4096, write: !!f.write, result: r }, ts, ns, f.cpu ?? -1);
  mm.kernel.trace.count(`mm.faults.${r}`);
  return r;
}

/** find_mergeable_anon_vma: an adjacent VMA's anon_vma this one may share (next first). */
function findMergeableAnonVma(vma: Vma): NonNullable<Vma["anonVma"]> | null {
  const mm = vma.mm;
  const next = mm.vmas.next(vma.end);
  const prev = mm.vmas.prev(vma);
  for (const [a, b, old] of [[vma, next, next], [prev, vma, prev]] as const) {
    if (!a || !b || !old || !old.anonVma || old.anonVma.parent !== null) continue;
    const compatible = a.end === b.start && a.file === b.file && a.kind === b.kind &&
      ((a.flags ^ b.flags) & ~(VM_READ | VM_WRITE | VM_EXEC)) === 0 && b.pgoff === (a.pgoff + a.pages) % 2 ** 32;
    if (compatible) return old.anonVma;
  }
  return null;
}
