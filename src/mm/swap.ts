/**
 * Swap entries on the host side: do_swap_page (a fault on a swapped-out page) and the
 * swap-entry encoding (src/abi/x86.ts SWP_*). The swap map itself is the core's
 * (assembly/mm/swap.ts): fork duplicates references and zap drops them without the host.
 *
 * Reclaim (vmscan.ts) makes the slots: swapOutFolio moves a page's bytes into a new slot
 * holding one reference per mapping about to become a swap entry (add_to_swap + pageout);
 * swapInfo reports the device's use, as /proc/swaps does.
 *
 * Not modeled: the swap cache. A slot referenced by two entries (after fork) is read into
 * a separate page for each, which the COW that would follow makes private anyway; and a
 * page leaves memory as soon as its bytes are in the slot, where Linux keeps it in the
 * swap cache until the write completes.
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import * as X from "../abi/x86.js";
import { ENOSPC } from "../abi/errno.js";
import type { FaultFlags, FaultResult } from "./fault.js";
import { anonVmaPrepare, handleMmFaultLocked, mkPte, pteBits } from "./fault.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct } from "./mm.js";
import type { Vma } from "./vma.js";
import { pagemapOf } from "../hmm/memremap.js";
import { removeDeviceExclusiveEntry } from "../hmm/device-exclusive.js";

/** The kind (SWP_*) of a non-present entry, 0 if foreign. */
export function swpKind(pte: bigint): number {
  return Number((pte >> BigInt(X.SWP_KIND_SHIFT)) & BigInt(X.SWP_KIND_MASK));
}

/** The offset (swap slot or pfn) of a non-present entry. */
export function swpOffset(pte: bigint): number {
  return Number((pte >> 12n) & 0xffffffffffn);
}

/** A swap entry for @slot, exclusive if the page was an exclusive anonymous page. */
export function mkSwapEntry(slot: number, exclusive: boolean): bigint {
  return (BigInt(slot) << 12n) | BigInt((X.SWP_SWAP << X.SWP_KIND_SHIFT) | (exclusive ? X.SWP_EXCLUSIVE : 0));
}

/**
 * doSwapPage - bring a swapped-out page back: a new page with the slot's bytes, mapped
 * writable only if the entry was exclusive and this is its only reference; the slot loses
 * this entry's reference. A device-private entry goes to its owner's migrateToRam; a
 * migration entry is not swap: SIGBUS here.
 */
export function doSwapPage(k: Kernel, mm: MmStruct, vma: Vma, vpn: number, pte: bigint, f: FaultFlags): FaultResult {
  if (swpKind(pte) === X.SWP_DEVICE_PRIVATE) {
    // The page lives on a device: its owner migrates it back (pgmap->ops->migrate_to_ram).
    const page = swpOffset(pte);
    const pgmap = pagemapOf(k, page);
    if (!pgmap) return "SIGBUS";
    k.trace.count("mm.fault.device_private");
    return pgmap.ops.migrateToRam({ mm, vma, vpn, page, write: !!f.write });
  }
  if (swpKind(pte) === X.SWP_DEVICE_EXCLUSIVE) return removeDeviceExclusiveEntry(k, mm, vma, vpn, pte);
  if (swpKind(pte) !== X.SWP_SWAP) return "SIGBUS";
  const slot = swpOffset(pte);
  const only = k.check(k.core.x.swapCount(slot), "swapCount") === 1;
  const exclusive = (pte & BigInt(X.SWP_EXCLUSIVE)) !== 0n && only;
  const pfn = k.allocUserFolio(0);
  k.check(k.core.x.swapIn(slot, pfn), "swapIn");
  const av = vma.anonVma ?? anonVmaPrepare(k, vma);
  k.pageFlags(pfn, F.PG_anon | F.PG_swapbacked | F.PG_uptodate | (exclusive ? F.PG_anon_exclusive : 0), 0);
  k.setMapping(pfn, av.id, vma.pgoffOf(vpn));
  k.mapcount(pfn, 1);
  k.lruAdd(pfn, true);
  const write = !!f.write && exclusive;
  // The slot must hold the entry until the new one replaces it.
  k.check(
    k.core.x.ptepSet(mm.pgd.pfn, vpn, 1, Number(mkPte(pfn, pteBits(vma, write, write)) & 0xffffffffn), Number(mkPte(pfn, pteBits(vma, write, write)) >> 32n)),
    "doSwapPage",
  );
  k.check(k.core.x.swapPut(slot), "swapPut");
  mm.rss.swap--;
  mm.rss.anon++;
  // A major fault: the page is read from the swap device (swap_read_folio).
  k.clock.advance(k.costs.blockRead.ns);
  k.trace.count("mm.fault.swapin");
  k.trace.count("mm.pswpin");
  if (f.write && !write) return handleMmFaultLocked(mm, vpn, f); // now a COW of a shared page
  return "ok";
}

/** What the swap device holds, in 4 KiB slots (si_swapinfo, /proc/swaps). */
export interface SwapInfo {
  total: number;
  used: number;
  free: number;
}

/** swapInfo - the swap device's size and use. */
export function swapInfo(k: Kernel): SwapInfo {
  const total = k.core.hdr(H.HDR_SWAP_SLOTS);
  const used = k.core.hdr(H.HDR_SWAP_USED);
  return { total, used, free: total - used };
}

/**
 * swapOutFolio - move page @pfn's bytes into a new swap slot holding @count references
 * (one per mapping that is about to become a swap entry): folio_alloc_swap and the write
 * of pageout() in one step. Returns the slot, or null when swap is full (nothing changed).
 * The caller replaces the mappings and drops the page.
 */
export function swapOutFolio(k: Kernel, pfn: number, count: number): number | null {
  const rc = k.core.x.swapOut(pfn, count);
  if (rc === -ENOSPC) return null;
  return k.check(rc, "swapOut");
}
