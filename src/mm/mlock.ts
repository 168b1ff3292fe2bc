/**
 * mlock and munlock (mm/mlock.c): VM_LOCKED on the VMAs of a range, split and merged as
 * mprotect does, and the range populated, so every page is resident and stays so: reclaim
 * never evicts a page mapped in a VM_LOCKED VMA (vmscan.ts finds the VMA through the
 * reverse map, as folio_referenced does).
 *
 * - The range is [addr rounded down, addr + length rounded up) (mlock's PAGE_ALIGN); a
 *   length of 0 does nothing.
 * - Any hole in the range: ENOMEM, before any change.
 * - VM_SPECIAL mappings (device frames: VM_IO | VM_PFNMAP) and fsdax are left alone
 *   (mlock_fixup skips them, without an error).
 * - Populating (populate_vma_page_range) faults in every page not yet mapped as needed:
 *   private writable mappings with write faults (so COW is broken now, not later), others
 *   with read faults; PROT_NONE mappings are not populated. As in Linux, a fault that fails
 *   leaves the range locked and reports ENOMEM (SIGSEGV / SIGBUS) or EAGAIN (no memory).
 *
 * Not modeled: RLIMIT_MEMLOCK and mm->locked_vm accounting, MLOCK_ONFAULT, mlockall, the
 * PG_mlocked flag and the unevictable LRU (nothing would clear PG_mlocked when a locked
 * range is unmapped, so the VMA flag is what reclaim checks). fork's child does not
 * inherit VM_LOCKED in Linux (dup_mmap clears VM_LOCKED_MASK).
 * @module
 */
import * as X from "../abi/x86.js";
import { type Address, splitAddress } from "../core/addr.js";
import { DmaError, einval } from "../errors.js";
import { handleMmFault } from "./fault.js";
import type { MmStruct } from "./mm.js";
import { mergeAround, splitAround } from "./vma-ops.js";
import { VM_EXEC, VM_IO, VM_LOCKED, VM_PFNMAP, VM_READ, VM_SHARED, VM_WRITE, type Vma } from "./vma.js";

const P = BigInt(X.PTE_P);
const RW = BigInt(X.PTE_RW);

/** The page range [start, end) mlock(@addr, @length) covers. */
export function mlockRange(addr: Address, length: Address, taskSize: number): [number, number] {
  const [vpn, off] = splitAddress(addr, "addr");
  const len = typeof length === "bigint" ? length : Number.isSafeInteger(length) && length >= 0 ? BigInt(length) : -1n;
  if (len < 0n) throw einval("length", `${length} is not a length`);
  const pages = (BigInt(off) + len + 4095n) / 4096n;
  if (BigInt(vpn) + pages > BigInt(taskSize)) throw new DmaError("ENOMEM", "mlock: the range ends above the user address space", { arg: "length" });
  return [vpn, vpn + Number(pages)];
}

/** Whether mlock leaves @v alone (VM_SPECIAL, fsdax). */
function lockable(v: Vma): boolean {
  return !(v.flags & (VM_IO | VM_PFNMAP)) && v.kind !== "dax" && v.kind !== "device" && v.kind !== "mixedmap";
}

/**
 * applyVmaLockFlags - set (or clear) VM_LOCKED on every VMA of [start, end), splitting the
 * ones its ends cut and merging afterwards. ENOMEM, with nothing changed, if part of the
 * range is not mapped. The caller holds mmap_lock for write.
 */
export function applyVmaLockFlags(mm: MmStruct, start: number, end: number, lock: boolean): void {
  let at = start;
  for (const v of mm.vmas.overlapping(start, end)) {
    if (v.start > at) break;
    at = v.end;
  }
  if (at < end) throw new DmaError("ENOMEM", `${lock ? "mlock" : "munlock"}: part of the range is not mapped`, { arg: "addr" });
  const changes = mm.vmas.overlapping(start, end).filter((v) => lockable(v) && ((v.flags & VM_LOCKED) !== 0) !== lock);
  if (!changes.length) return;
  for (const v of splitAround(mm, start, end)) {
    if (!lockable(v)) continue;
    v.flags = lock ? v.flags | VM_LOCKED : v.flags & ~VM_LOCKED;
  }
  for (const v of mm.vmas.overlapping(start, end)) mergeAround(mm, v);
}

/**
 * populateLocked - fault in the pages of [start, end) in VM_LOCKED VMAs
 * (__mm_populate). Returns the number of faults taken.
 */
export function populateLocked(mm: MmStruct, start: number, end: number, cpu: number, who: string): number {
  let faults = 0;
  const vmas = mm.mmapLock.with("read", who, () => mm.vmas.overlapping(start, end).map((v) => ({ v, s: v.start, e: v.end })));
  for (const { v, s, e } of vmas) {
    if (!(v.flags & VM_LOCKED) || !(v.flags & (VM_READ | VM_WRITE | VM_EXEC))) continue;
    const write = (v.flags & (VM_WRITE | VM_SHARED)) === VM_WRITE;
    for (let vpn = Math.max(start, s); vpn < Math.min(end, e); vpn++) {
      const { pte } = mm.pgd.ptepGet(vpn * 4096);
      if (pte & P && (!write || pte & RW)) continue; // follow_page would find it
      let r: string;
      try {
        r = handleMmFault(mm, vpn, { write, cpu }, who);
      } catch (err) {
        if (err instanceof DmaError && err.code === "ENOMEM") {
          throw new DmaError("EAGAIN", `mlock: no memory to populate page ${vpn}`, { arg: "length", cause: err });
        }
        throw err;
      }
      if (r === "OOM") throw new DmaError("EAGAIN", `mlock: no memory to populate page ${vpn}`, { arg: "length" });
      if (r !== "ok") throw new DmaError("ENOMEM", `mlock: page ${vpn} cannot be populated (${r})`, { arg: "addr" });
      faults++;
    }
  }
  mm.kernel.trace.count("mm.mlock_populated", faults);
  return faults;
}

/**
 * doMlock - mlock(2) / munlock(2) of [@addr, @addr + @length) in @mm: the VMA flags under
 * the mmap_lock for write, then (mlock) the pages populated. @cpu is the calling CPU.
 */
export function doMlock(mm: MmStruct, addr: Address, length: Address, lock: boolean, cpu: number, who: string): void {
  const [start, end] = mlockRange(addr, length, mm.kernel.taskSizePages());
  if (start === end) return;
  mm.mmapLock.with("write", who, () => applyVmaLockFlags(mm, start, end, lock));
  if (lock) populateLocked(mm, start, end, cpu, who);
}
