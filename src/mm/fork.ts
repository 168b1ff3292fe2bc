/**
 * fork's address-space copy (kernel/fork.c dup_mmap): every VMA is copied, anonymous ones
 * chained to a new anon_vma of the child's (anon_vma_fork), file ones added to the file's
 * i_mmap, and the page tables copied by the core (copy_page_range): COW mappings
 * write-protected on both sides, PageAnonExclusive cleared, and, when the parent has
 * MMF_HAS_PINNED, every maybe-pinned anonymous page copied for the child at once: a pinned
 * page must stay the page its process sees (the 2020-2022 GUP/COW fixes, KERNEL-SPEC 3.5).
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import * as X from "../abi/x86.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct } from "./mm.js";
import { flushTlbMm } from "./tlbflush.js";
import { vmaLink } from "./vma-ops.js";
import { VM_LOCKED, type Vma } from "./vma.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";
import { devicePageGet, hasDevicePrivate, pagemapOf } from "../hmm/memremap.js";
import { restoreExclusivePtes } from "../hmm/device-exclusive.js";

export interface ForkStats {
  anon: number;
  file: number;
  /** Folios copied for the child at fork (maybe-pinned anonymous pages). */
  copied: number;
  swap: number;
}

/** dupMmap - copy @parent's VMAs and page tables into the empty @child. */
export function dupMmap(parent: MmStruct, child: MmStruct, local = -1): ForkStats {
  const k = parent.kernel;
  const c = k.core;
  const stats: ForkStats = { anon: 0, file: 0, copied: 0, swap: 0 };
  parent.writeProtectSeqStep(); // odd: GUP-fast backs off while the tables are copied
  try {
    for (const v of parent.vmas.all()) {
      const cv = v.clone(v.start, v.end);
      cv.mm = child;
      cv.flags &= ~VM_LOCKED; // mlock is not inherited (dup_mmap clears VM_LOCKED)
      if (v.anonVma) cv.anonVma = k.newAnonVma(v.anonVma);
      vmaLink(child, cv);
      if (v.kind === "device") {
        // VM_PFNMAP: the frames are copied as entries; nothing to account.
      }
      // vma_needs_copy: a fault fills in what a VMA without anon_vma maps; only PFNMAP,
      // MIXEDMAP (p2pmem) and anonymous pages must be copied now.
      if (!v.anonVma && v.kind !== "device" && v.kind !== "mixedmap") continue;
      let flags = 0;
      if (v.isCow) flags |= H.COPY_COW;
      if (parent.hasPinned) flags |= H.COPY_HAS_PINNED;
      // copy_page_range write-protects a COW mapping in the parent: PROTECTION_PAGE.
      const copy = () => {
        if (v.isCow) restoreExclusivePtes(k, parent, v); // copy_nonpresent_pte: device-exclusive entries come back first
        return k.check(c.x.copyPageRange(parent.pgd.pfn, child.pgd.pfn, v.start, v.pages, flags, cv.anonVma?.id ?? 0, k.userZones), "fork");
      };
      if (v.isCow) withInvalidation(parent, "protection_page", v.start, v.end, copy);
      else copy();
      if (hasDevicePrivate(k)) dupDevicePrivate(k, parent, child, v);
      const anon = c.reg32(H.REG_ANON);
      const file = c.reg32(H.REG_FILE);
      stats.anon += anon;
      stats.file += file;
      const copies = c.reg32(H.REG_COPIED);
      // copy_pte_range: a store per entry copied, and a page copy per early-copied page.
      k.clock.advance((anon + file) * k.costs.pteWrite.ns);
      stats.copied += copies;
      // The copies' pfns are the ring's first words: they join the LRU, and each 4 KiB
      // page of them was copied.
      for (let i = 0; i < copies; i++) {
        const pfn = c.u32[(c.ring + H.RING_ENTRY0 + 4 * i) >>> 2]!;
        const order = (k.flagsOf(pfn) >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK;
        k.clock.advance(2 ** order * k.costs.pageCopy.ns);
        k.lruAdd(pfn, true);
      }
      stats.swap += c.reg32(H.REG_SWAP);
      child.rss.anon += anon;
      if (v.file?.kind === "shmem") child.rss.shmem += file;
      else child.rss.file += file;
      child.rss.swap += c.reg32(H.REG_SWAP);
    }
  } finally {
    parent.writeProtectSeqStep();
  }
  // The parent's writable COW entries are now read-only: flush its TLBs.
  flushTlbMm(parent, local);
  k.trace.count("mm.fork_pages_copied", stats.copied);
  return stats;
}

/**
 * copy_nonpresent_pte for device-private entries (the core copies them as they are): the
 * child's entry takes a reference and a mapping of the device page, which is no longer
 * exclusive; in a COW mapping a writable entry becomes read-only in both, so the first write
 * on either side migrates the page back and breaks COW there.
 */
function dupDevicePrivate(k: Kernel, parent: MmStruct, child: MmStruct, v: Vma): void {
  const c = k.core;
  const max = c.x.ptepRangeMax();
  for (let at = v.start; at < v.end; at += max) {
    const n = Math.min(max, v.end - at);
    k.check(c.x.ptepRange(child.pgd.pfn, at, n), "fork");
    const hits: [number, number, number][] = [];
    const base = (c.ring + H.RING_ENTRY0) >>> 2;
    for (let i = 0; i < n; i++) {
      const lo = c.u32[base + 3 * i]!;
      if (lo & X.PTE_P || c.u32[base + 3 * i + 2] !== 1 || ((lo >>> X.SWP_KIND_SHIFT) & X.SWP_KIND_MASK) !== X.SWP_DEVICE_PRIVATE) continue;
      hits.push([at + i, lo, c.u32[base + 3 * i + 1]!]);
    }
    for (const [vpn, lo, hi] of hits) {
      const page = (hi & 0xfffff) * 2 ** 20 + (lo >>> 12);
      if (!pagemapOf(k, page)) continue;
      devicePageGet(k, page);
      k.mapcount(page, 1);
      k.pageFlags(page, 0, F.PG_anon_exclusive);
      child.rss.anon++;
      if (v.isCow && lo & X.SWP_WRITE) {
        const ro = (lo & ~X.SWP_WRITE) >>> 0;
        for (const mm of [parent, child]) k.check(c.x.ptepSet(mm.pgd.pfn, vpn, 1, ro, hi), "fork");
      }
    }
  }
}