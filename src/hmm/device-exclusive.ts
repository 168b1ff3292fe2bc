/**
 * Device-exclusive entries (mm/rmap.c make_device_exclusive, mm/memory.c
 * remove_device_exclusive_entry; the swap-entry form of Linux 5.14-6.14): a device that
 * wants atomic access to a page the CPU maps takes it away from the CPU. The PTE becomes a
 * non-present device-exclusive entry naming the page (which stays mapped and referenced);
 * the next CPU access faults and restores the PTE, with an MMU_NOTIFY_EXCLUSIVE invalidation
 * (owner none) that tells the device its exclusive access ended.
 *
 * Fork restores the parent's entries before copying (copy_nonpresent_pte's
 * try_restore_exclusive_pte); a zap releases the page as for a present entry.
 * @module
 */
import * as X from "../abi/x86.js";
import { type Address, pageNumber } from "../core/addr.js";
import { DmaError } from "../errors.js";
import { getUserPages } from "../gup/gup.js";
import { putPage } from "../gup/unpin.js";
import { type FaultResult, mkPte, pteBits } from "../mm/fault.js";
import type { Kernel } from "../mm/kernel.js";
import type { MmStruct } from "../mm/mm.js";
import type { Process } from "../mm/process.js";
import { swpKind, swpOffset } from "../mm/swap.js";
import { flushTlbMmRange } from "../mm/tlbflush.js";
import type { Vma } from "../mm/vma.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";

const P = BigInt(X.PTE_P);

function entryOf(pfn: number, write: boolean): bigint {
  return (BigInt(pfn) << 12n) | BigInt((X.SWP_DEVICE_EXCLUSIVE << X.SWP_KIND_SHIFT) | (write ? X.SWP_WRITE : 0));
}

function setPte(k: Kernel, mm: MmStruct, vpn: number, pte: bigint): void {
  k.check(k.core.x.ptepSet(mm.pgd.pfn, vpn, 1, Number(pte & 0xffffffffn), Number(pte >> 32n)), "device_exclusive");
}

/**
 * makeDeviceExclusive - make_device_exclusive: fault the page at @addr of @p in writable,
 * then replace its PTE by a device-exclusive entry under an MMU_NOTIFY_EXCLUSIVE
 * invalidation carrying @owner. Returns the page. EFAULT if it cannot be faulted in
 * writable; EINVAL for a mapping that is not private and anonymous (COW).
 */
export function makeDeviceExclusive(p: Process, addr: Address, owner: unknown): number {
  const k = p.kernel;
  const mm = p.mm;
  const vpn = pageNumber(addr, "addr");
  const vma = mm.vmas.find(vpn);
  if (!vma || !vma.isCow) throw new DmaError("EINVAL", "makeDeviceExclusive: only private anonymous memory", { arg: "addr" });
  const pages = new Float64Array(1);
  // get_user_pages_remote(FOLL_GET | FOLL_WRITE | FOLL_SPLIT_PMD); the caller holds mmap_lock.
  if (getUserPages(p, addr, 1, { write: true }, pages) !== 1) throw new DmaError("EFAULT", "makeDeviceExclusive: no page", { arg: "addr" });
  const pfn = pages[0]!;
  try {
    const g = mm.pgd.ptepGetVpn(vpn);
    if (g.level === 2) k.check(k.core.x.splitHugePmd(mm.pgd.pfn, vpn), "splitHugePmd");
    withInvalidation(mm, "exclusive", vpn, vpn + 1, () => {
      const { pte } = mm.pgd.ptepGetVpn(vpn);
      setPte(k, mm, vpn, entryOf(pfn, (pte & BigInt(X.PTE_RW)) !== 0n));
      flushTlbMmRange(mm, vpn, vpn + 1);
    }, owner);
  } finally {
    putPage(k.machine!, pfn); // folio_put: the mapping keeps its own reference
  }
  k.trace.count("hmm.device_exclusive");
  return pfn;
}

/** remove_device_exclusive_entry: the CPU wants the page back (a fault on the entry). */
export function removeDeviceExclusiveEntry(k: Kernel, mm: MmStruct, vma: Vma, vpn: number, entry: bigint): FaultResult {
  const pfn = swpOffset(entry);
  const write = (entry & BigInt(X.SWP_WRITE)) !== 0n;
  withInvalidation(mm, "exclusive", vpn, vpn + 1, () => {
    // restore_exclusive_pte: mk_pte, dirty and writable if the entry was.
    setPte(k, mm, vpn, mkPte(pfn, pteBits(vma, write, write)));
  });
  k.trace.count("mm.fault.device_exclusive");
  return "ok";
}

/** Fork: restore the device-exclusive entries of @vma in @mm before the copy. */
export function restoreExclusivePtes(k: Kernel, mm: MmStruct, vma: Vma): void {
  const c = k.core;
  const max = c.x.ptepRangeMax();
  for (let at = vma.start; at < vma.end; at += max) {
    const n = Math.min(max, vma.end - at);
    k.check(c.x.ptepRange(mm.pgd.pfn, at, n), "fork");
    const base = (c.ring + 128) >>> 2; // RING_ENTRY0
    const found: [number, bigint][] = [];
    for (let i = 0; i < n; i++) {
      const lo = c.u32[base + 3 * i]!;
      if (lo & X.PTE_P || c.u32[base + 3 * i + 2] !== 1) continue;
      const e = (BigInt(c.u32[base + 3 * i + 1]!) << 32n) | BigInt(lo);
      if (e !== 0n && swpKind(e) === X.SWP_DEVICE_EXCLUSIVE) found.push([at + i, e]);
    }
    for (const [vpn, e] of found) {
      const write = (e & BigInt(X.SWP_WRITE)) !== 0n;
      setPte(k, mm, vpn, mkPte(swpOffset(e), pteBits(vma, write, write)));
    }
  }
}

/** Whether @e is a device-exclusive entry. */
export function isDeviceExclusiveEntry(e: bigint): boolean {
  return (e & P) === 0n && e !== 0n && swpKind(e) === X.SWP_DEVICE_EXCLUSIVE;
}
