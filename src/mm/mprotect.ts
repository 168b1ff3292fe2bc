/**
 * mprotect and madvise (mm/mprotect.c, mm/madvise.c).
 *
 * mprotect changes the VMAs' rights (splitting and merging them) and the present entries:
 * losing write or exec clears RW or sets NX at once (and shoots down the TLBs); gaining
 * write sets nothing: the next write faults and do_wp_page decides (reuse or copy), as
 * Linux does for private mappings. PROT_NONE clears US, so every user access faults with
 * a protection fault (Linux marks such entries PROTNONE instead; the faults are the same).
 *
 * madvise(MADV_DONTNEED) zaps the range: anonymous pages are gone (zeros on the next read),
 * file pages are re-read from the page cache.
 * @module
 */
import * as X from "../abi/x86.js";
import type { MmStruct } from "./mm.js";
import { zapVmaRange } from "./mmap.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { mergeAround, splitVma } from "./vma-ops.js";
import { VM_EXEC, VM_MAYEXEC, VM_MAYWRITE, VM_READ, VM_WRITE } from "./vma.js";
import { DmaError } from "../errors.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";

export interface Prot {
  read: boolean;
  write: boolean;
  exec: boolean;
}

/** The VM_* flags @old becomes under @prot. */
function newFlags(old: number, prot: Prot): number {
  let f = old & ~(VM_READ | VM_WRITE | VM_EXEC);
  if (prot.read) f |= VM_READ;
  if (prot.write) f |= VM_WRITE;
  if (prot.exec) f |= VM_EXEC;
  return f;
}

/**
 * doMprotect - give pages [start, start + pages) @prot (mprotect_fixup on each VMA).
 * ENOMEM if part of the range is not mapped, EPERM if a mapping may not get the rights
 * (VM_MAYWRITE / VM_MAYEXEC); nothing changes then. A VMA whose rights do not change is
 * left whole; the others are split at the range's ends, changed, and merged again.
 */
export function doMprotect(mm: MmStruct, start: number, pages: number, prot: Prot, local = -1): void {
  const k = mm.kernel;
  const end = start + pages;
  // The whole range must be mapped (else ENOMEM, before any change).
  let at = start;
  for (const v of mm.vmas.overlapping(start, end)) {
    if (v.start > at) break;
    at = v.end;
  }
  if (at < end) throw new DmaError("ENOMEM", "mprotect: part of the range is not mapped", { arg: "addr" });
  for (const v of mm.vmas.overlapping(start, end)) {
    if (prot.write && !(v.flags & VM_MAYWRITE)) throw new DmaError("EPERM", "mprotect: mapping may not be writable", { arg: "prot" });
    if (prot.exec && !(v.flags & VM_MAYEXEC)) throw new DmaError("EPERM", "mprotect: mapping may not be executable", { arg: "prot" });
  }
  let tighter = false;
  for (const v0 of mm.vmas.overlapping(start, end)) {
    const old = v0.flags;
    const f = newFlags(old, prot);
    if (f === old) continue; // mprotect_fixup: nothing to do, no split
    let v = v0;
    if (v.start < start) v = splitVma(mm, v, start)[1];
    if (v.end > end) splitVma(mm, v, end);
    v.flags = f;
    const none = !(f & (VM_READ | VM_WRITE | VM_EXEC));
    const wasNone = !(old & (VM_READ | VM_WRITE | VM_EXEC));
    let setLo = 0;
    let clrLo = 0;
    let setHi = 0;
    let clrHi = 0;
    if (!(f & VM_WRITE) && old & VM_WRITE) clrLo |= X.PTE_RW;
    if (!(f & VM_EXEC) && old & VM_EXEC) setHi |= 1 << (X.PTE_BIT_NX - 32);
    if (f & VM_EXEC && !(old & VM_EXEC)) clrHi |= 1 << (X.PTE_BIT_NX - 32);
    if (none && !wasNone) clrLo |= X.PTE_US | X.PTE_RW;
    if (!none && wasNone) setLo |= X.PTE_US;
    // Gaining write sets no RW: the next write faults and do_wp_page decides.
    if (setLo | clrLo | setHi | clrHi) {
      // change_protection: a PROTECTION_VMA invalidation of the VMA. (The kernel opens it at
      // the first populated PMD, so a VMA with no page tables sends none; this one always does.)
      const vv = v;
      withInvalidation(mm, "protection_vma", vv.start, vv.end, () =>
        k.check(k.core.x.ptProtect(mm.pgd.pfn, vv.start, vv.pages, setLo, setHi >>> 0, clrLo, clrHi >>> 0), "mprotect"),
      );
    }
    if (clrLo || setHi) tighter = true;
  }
  if (tighter) flushTlbMmRange(mm, start, end, local);
  for (let at2 = start; at2 <= end; ) {
    const v = mm.vmas.find(at2);
    if (!v) break;
    at2 = mergeAround(mm, v).end;
  }
}

/** doMadviseDontneed - zap pages [start, start + pages) and keep the VMAs. */
export function doMadviseDontneed(mm: MmStruct, start: number, pages: number, local = -1): void {
  const k = mm.kernel;
  const end = start + pages;
  for (const at of [start, end]) {
    if (at % 512 !== 0 && mm.vmas.find(at)) k.check(k.core.x.splitHugePmd(mm.pgd.pfn, at), "splitHugePmd");
  }
  for (const v of mm.vmas.overlapping(start, end)) {
    // zap_page_range_single: a CLEAR invalidation of the part of each VMA.
    const [s, e] = [Math.max(start, v.start), Math.min(end, v.end)];
    withInvalidation(mm, "clear", s, e, () => zapVmaRange(mm, v, s, e));
  }
  flushTlbMmRange(mm, start, end, local);
}


