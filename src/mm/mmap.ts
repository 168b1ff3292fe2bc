/**
 * mmap and munmap (mm/mmap.c, mm/vma.c): creating a VMA where the caller asked or where
 * there is room, and tearing down a range: splitting the VMAs its ends cut, splitting huge
 * leaves there, zapping the pages (the core does the per-page accounting and frees the page
 * tables that empty), shooting down the TLBs.
 * @module
 */
import * as H from "../abi/header.js";
import * as X from "../abi/x86.js";
import { DmaError, einval } from "../errors.js";
import type { Inode } from "../fs/inode.js";
import type { MmStruct } from "./mm.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { mergeAround, splitAround, vmaLink, vmaUnlink } from "./vma-ops.js";
import {
  VM_DONTEXPAND, VM_EXEC, VM_HUGEPAGE, VM_IO, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE,
  VM_MIXEDMAP, VM_PFNMAP, VM_READ, VM_SHARED, VM_WRITE, Vma, type VmaKind, type VmOperations,
} from "./vma.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";
import { devicePagePut, pagemapOf } from "../hmm/memremap.js";
import { swpKind, swpOffset } from "./swap.js";

export interface MmapRequest {
  /** Hint or fixed address, in pages. */
  addr: number | null;
  pages: number;
  prot: { read: boolean; write: boolean; exec: boolean };
  shared: boolean;
  fixed: boolean;
  /** MAP_FIXED_NOREPLACE: fail with EEXIST instead of replacing. */
  noreplace: boolean;
  hugepage: boolean;
  kind: VmaKind;
  file: Inode | null;
  pgoff: number;
  /** Device frames for a VM_PFNMAP mapping. */
  pfn: number | null;
  /** The driver's vm_ops (set before the VMA can merge). */
  ops?: VmOperations | null;
}

/** The VM_* flags of a new mapping (calc_vm_prot_bits + calc_vm_flag_bits + may-bits). */
export function vmFlagsOf(r: MmapRequest): number {
  let f = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  if (r.prot.read) f |= VM_READ;
  if (r.prot.write) f |= VM_WRITE;
  if (r.prot.exec) f |= VM_EXEC;
  if (r.shared) f |= VM_SHARED | VM_MAYSHARE;
  if (r.hugepage) f |= VM_HUGEPAGE;
  if (r.kind === "device") f |= VM_IO | VM_PFNMAP | VM_DONTEXPAND;
  if (r.kind === "mixedmap") f |= VM_MIXEDMAP; // vm_insert_page sets it
  return f;
}


/** get_unmapped_area: a free range of @pages below mmap_base (top down), aligned to @align. */
export function getUnmappedArea(mm: MmStruct, pages: number, align: number): number | null {
  let top = mm.mmapBase;
  const all = mm.vmas.all();
  for (let i = all.length; i >= 0; i--) {
    const below = i > 0 ? all[i - 1]!.end : 256; // leave the low 1 MiB unmapped
    const above = i < all.length ? Math.min(all[i]!.start, top) : top;
    if (above > top) continue;
    let start = above - pages;
    start -= start % align;
    if (start >= below && start + pages <= above) return start;
    top = Math.min(top, below);
  }
  return null;
}

function isFree(mm: MmStruct, start: number, pages: number): boolean {
  return start >= 1 && start + pages <= mm.kernel.taskSizePages() && mm.vmas.overlapping(start, start + pages).length === 0;
}

/** doMmap - map @r; returns the first page. The caller holds mmap_lock for write. */
export function doMmap(mm: MmStruct, r: MmapRequest, local = -1): number {
  const k = mm.kernel;
  const limit = mm.kernel.taskSizePages();
  let start: number;
  if (r.fixed) {
    start = r.addr!;
    if (start < 16) throw new DmaError("EPERM", "mmap: below mmap_min_addr", { arg: "addr" });
    if (start + r.pages > limit) throw einval("addr", "the range ends above the user address space");
    if (mm.vmas.overlapping(start, start + r.pages).length) {
      if (r.noreplace) throw new DmaError("EEXIST", "mmap: MAP_FIXED_NOREPLACE over a mapping", { arg: "addr" });
      doMunmap(mm, start, r.pages, local);
    }
  } else {
    // THP: an anonymous mapping of at least 2 MiB starts on a 2 MiB boundary.
    const align = r.kind === "anon" && !r.shared && r.pages >= 512 && k.thp !== "never" ? 512 : 1;
    const hint = r.addr;
    const found = hint !== null && isFree(mm, hint, r.pages) ? hint : getUnmappedArea(mm, r.pages, align);
    if (found === null) throw new DmaError("ENOMEM", `mmap: no room for ${r.pages} pages`, { arg: "length" });
    start = found;
  }
  const v = new Vma(mm, start, start + r.pages, vmFlagsOf(r), r.kind, r.kind === "anon" ? start % 2 ** 32 : r.pgoff);
  v.file = r.file;
  v.pfn = r.pfn;
  v.ops = r.ops ?? null;
  if (r.kind === "device" && r.pfn !== null) {
    // remap_pfn_range: the frames are mapped now, special (no struct page), no faults later.
    // (Without r.pfn the driver maps its own frames: remapPfnPagesMmap.)
    let lo = X.PTE_US | X.PTE_A | X.PTE_SOFTW1 | (r.prot.write ? X.PTE_RW | X.PTE_D : 0) | X.PTE_PCD;
    const hi = r.prot.exec ? 0 : 1 << (X.PTE_BIT_NX - 32);
    lo >>>= 0;
    k.check(k.core.x.ptMap(mm.pgd.pfn, start, r.pages, r.pfn!, lo, hi, 1), "mmap");
  }
  vmaLink(mm, v);
  mergeAround(mm, v);
  return start;
}

/**
 * doMunmap - unmap pages [start, start + pages): split the VMAs and huge leaves its ends
 * cut, zap the pages, remove the VMAs, shoot down the TLBs. The caller holds mmap_lock for
 * write. Returns what was unmapped.
 */
export function doMunmap(mm: MmStruct, start: number, pages: number, local = -1) {
  const k = mm.kernel;
  const end = start + pages;
  const out = { anon: 0, file: 0, freed: 0, swap: 0 };
  const vmas = mm.vmas.overlapping(start, end);
  if (!vmas.length) return out;
  const cut = splitAround(mm, start, end);
  // Huge leaves cut by the range split into PTEs first (split_huge_pmd), keeping the
  // folio's accounting right; the zap below then meets only whole leaves.
  for (const at of [start, end]) {
    if (at % 512 === 0) continue;
    k.check(k.core.x.splitHugePmd(mm.pgd.pfn, at - (at === end ? 1 : 0)), "splitHugePmd");
  }
  // unmap_vmas: one UNMAP invalidation over the range.
  withInvalidation(mm, "unmap", start, end, () => {
    for (const v of cut) zapVmaRange(mm, v, v.start, v.end, out);
  });
  for (const v of cut) vmaUnlink(mm, v);
  flushTlbMmRange(mm, start, end, local);
  return out;
}

/** Zap [start, end) of @v: the core accounts for every page; the host updates RSS. */
export function zapVmaRange(mm: MmStruct, v: Vma, start: number, end: number, out = { anon: 0, file: 0, freed: 0, swap: 0 }) {
  const k = mm.kernel;
  const c = k.core;
  let vpn = start;
  for (;;) {
    const records = k.check(c.x.zapRange(mm.pgd.pfn, vpn, end - vpn, c.hdr(H.HDR_RING_ENTRIES)), "zapRange");
    const anon = c.reg32(H.REG_ANON);
    const file = c.reg32(H.REG_FILE);
    out.anon += anon;
    out.file += file;
    out.freed += c.reg32(H.REG_FREED);
    out.swap += c.reg32(H.REG_SWAP);
    mm.rss.anon -= anon;
    if (v.file?.kind === "shmem") mm.rss.shmem -= file;
    else mm.rss.file -= file;
    mm.rss.swap -= c.reg32(H.REG_SWAP);
    for (let i = 0; i < records; i++) {
      // A non-present entry the core left to the host: a device-private page loses this
      // mapping (its rmap and reference; the anonymous page it stands for leaves the RSS).
      const at = c.ring + H.RING_ENTRY0 + i * H.RENT_SIZE;
      const pte = (BigInt(c.u32[(at + H.LEAF_PTE + 4) >>> 2]!) << 32n) | BigInt(c.u32[(at + H.LEAF_PTE) >>> 2]!);
      if (swpKind(pte) === X.SWP_DEVICE_EXCLUSIVE) {
        // A page a device held exclusively: released as a present entry would be.
        const page = swpOffset(pte);
        k.mapcount(page, -1);
        mm.rss.anon--;
        out.anon++;
        if (k.folioRef(page, -1) === 0) out.freed++;
        continue;
      }
      if (swpKind(pte) !== X.SWP_DEVICE_PRIVATE) {
        k.trace.count("mm.zap_foreign_entries");
        continue;
      }
      const page = swpOffset(pte);
      if (pagemapOf(k, page) === null) continue;
      k.mapcount(page, -1);
      mm.rss.anon--;
      out.anon++;
      devicePagePut(k, page);
    }
    // One store per entry cleared (zap_pte_range); a huge leaf is one entry for 512 pages.
    k.clock.advance(c.regF64(H.REG_PAGES) * k.costs.pteWrite.ns);
    const resume = c.regF64(H.REG_RESUME);
    if (resume < 0) break;
    vpn = resume;
  }
  return out;
}
