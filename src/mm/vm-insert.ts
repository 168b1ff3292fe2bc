/**
 * A driver's mmap, filled at once (no fault handler: a page zapped later is SIGBUS), the two
 * ways drivers do it:
 *
 * - vmInsertPagesMmap (vm_insert_page, as p2pmem_alloc_mmap): each page is a normal entry
 *   (GUP and rmap see a struct page) with a reference and a mapcount of its own, counted
 *   in the file RSS, in a VM_SHARED | VM_MIXEDMAP VMA; fork copies the entries and munmap
 *   puts the references back.
 * - remapPfnPagesMmap (remap_pfn_range, as the dma-buf system heap's mmap): special entries
 *   in a VM_IO | VM_PFNMAP VMA, no reference, no mapcount: GUP refuses them (EFAULT).
 * Both take the driver's vm_ops (open/close), set before the VMA could merge.
 * @module
 */
import * as X from "../abi/x86.js";
import { doMmap, doMunmap } from "./mmap.js";
import type { Prot } from "./mprotect.js";
import type { Process } from "./process.js";
import type { VmOperations } from "./vma.js";

/**
 * vmInsertPagesMmap - map @pfns (in order) into a new shared mapping of @proc with @prot;
 * returns its first page. ENOMEM when the address space has no room; nothing stays mapped
 * or referenced on failure.
 */
export function vmInsertPagesMmap(proc: Process, pfns: readonly number[], prot: Prot, who: string, ops: VmOperations | null = null): number {
  return driverMmap(proc, pfns, prot, who, ops, false);
}

/**
 * remapPfnPagesMmap - map @pfns (in order) into a new shared VM_PFNMAP mapping of @proc with
 * @prot, special entries with no struct-page accounting; returns its first page. ENOMEM when
 * the address space has no room; nothing stays mapped on failure.
 */
export function remapPfnPagesMmap(proc: Process, pfns: readonly number[], prot: Prot, who: string, ops: VmOperations | null = null): number {
  return driverMmap(proc, pfns, prot, who, ops, true);
}

/**
 * The mapping, one table call per run of consecutive frames. Inserted pages (@special
 * false) take their references before their entries exist, so a failed run gives back only
 * its own, and the munmap of the mapping puts back those of the runs mapped before it.
 */
function driverMmap(proc: Process, pfns: readonly number[], prot: Prot, who: string, ops: VmOperations | null, special: boolean): number {
  const k = proc.kernel;
  const mm = proc.mm;
  const pages = pfns.length;
  return mm.mmapLock.with("write", `pid ${proc.pid} ${who}`, () => {
    const kind = special ? "device" : "mixedmap";
    const at = doMmap(mm, { addr: null, pages, prot, shared: true, fixed: false, noreplace: false, hugepage: false, kind, file: null, pgoff: 0, pfn: null, ops }, proc.cpu.index);
    const lo = (X.PTE_US | X.PTE_A | (special ? X.PTE_SOFTW1 : 0) | (prot.write ? X.PTE_RW | X.PTE_D : 0)) >>> 0;
    const hi = prot.exec ? 0 : 1 << (X.PTE_BIT_NX - 32);
    for (let i = 0; i < pages; ) {
      let n = 1;
      while (i + n < pages && pfns[i + n] === pfns[i]! + n) n++;
      const run = special ? [] : pfns.slice(i, i + n);
      for (const pfn of run) {
        k.folioRef(pfn, 1);
        k.mapcount(pfn, 1);
      }
      try {
        k.check(k.core.x.ptMap(mm.pgd.pfn, at + i, n, pfns[i]!, lo, hi, 1), who);
      } catch (e) {
        for (const pfn of run) {
          k.mapcount(pfn, -1);
          k.folioRef(pfn, -1);
        }
        doMunmap(mm, at, pages, proc.cpu.index);
        throw e;
      }
      if (!special) mm.rss.file += n;
      i += n;
    }
    return at;
  });
}
