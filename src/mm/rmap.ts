/**
 * The reverse map (mm/rmap.c rmap_walk): every page-table entry that maps a page. An
 * anonymous page is found through its anon_vma (mapping id) and index, a file page through
 * its file's i_mmap; each candidate VMA's entry at the page's address is read and kept if
 * it maps the page. Writeback (page_mkclean), reclaim (try_to_unmap) and migration use it.
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import * as X from "../abi/x86.js";
import type { Kernel } from "./kernel.js";
import { swpKind, swpOffset } from "./swap.js";
import type { MmStruct } from "./mm.js";
import type { Vma } from "./vma.js";

export interface RmapHit {
  mm: MmStruct;
  vma: Vma;
  /** The page number the page is mapped at (for a huge leaf: the leaf's first page). */
  vpn: number;
  /** 1 for a PTE, 2 for a PMD leaf mapping the page's folio. */
  level: number;
  pte: bigint;
}

/** The mapping id and index of page @pfn (a tail's index is its head's plus its offset). */
export function pageMappingIndex(k: Kernel, pfn: number): { mapping: number; index: number; anon: boolean } {
  const head = k.folioOf(pfn);
  const base = (k.core.hdr(H.HDR_FRAMES_BASE) + head * F.FRAME_SIZE) >>> 2;
  const u32 = k.core.u32;
  return {
    mapping: u32[base + F.FRAME_MAPPING / 4]!,
    index: u32[base + F.FRAME_INDEX / 4]! + (pfn - head),
    anon: (u32[base]! & F.PG_anon) !== 0,
  };
}

/** The VMAs that may map page @pfn. */
export function candidates(k: Kernel, pfn: number): { vmas: Iterable<Vma>; index: number } {
  const { mapping, index, anon } = pageMappingIndex(k, pfn);
  if (anon) return { vmas: k.anonVmas.get(mapping)?.vmas ?? [], index };
  return { vmas: k.inodes.get(mapping)?.mmaps ?? [], index };
}

/** The entry at page @pfn's address in each live VMA that may map it, present or not. */
function candidateEntries(k: Kernel, pfn: number): RmapHit[] {
  const out: RmapHit[] = [];
  const { vmas, index } = candidates(k, pfn);
  for (const vma of vmas) {
    if (vma.mm.dead) continue;
    const vpn = vma.vpnOf(index);
    if (vpn < 0) continue;
    const g = vma.mm.pgd.ptepGetVpn(vpn);
    out.push({ mm: vma.mm, vma, vpn, level: g.level, pte: g.pte });
  }
  return out;
}

/** rmapWalk - every present entry mapping page @pfn. */
export function rmapWalk(k: Kernel, pfn: number): RmapHit[] {
  const out: RmapHit[] = [];
  for (const e of candidateEntries(k, pfn)) {
    if (!(e.pte & BigInt(X.PTE_P))) continue;
    const mapped = Number((e.pte >> 12n) & 0xffffffffffn);
    if (e.level === 1 && mapped === pfn) out.push(e);
    else if (e.level === 2 && mapped - (mapped % 512) === pfn - (pfn % 512)) {
      e.vpn -= e.vpn % 512;
      out.push(e);
    }
  }
  return out;
}

/**
 * rmapWalkDevice - where device page @pfn is mapped: the non-present PTEs holding a device
 * entry of kind @kind (device-private by default) that names it.
 */
export function rmapWalkDevice(k: Kernel, pfn: number, kind: number = X.SWP_DEVICE_PRIVATE): RmapHit[] {
  return candidateEntries(k, pfn).filter(
    (e) => e.level === 1 && !(e.pte & BigInt(X.PTE_P)) && swpKind(e.pte) === kind && swpOffset(e.pte) === pfn,
  );
}
