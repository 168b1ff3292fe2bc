/**
 * The core's exports, all of them. The host's loader (src/core/loader.ts) checks that each
 * one exists. Page and frame numbers cross as f64 (exact below 2^53, and every 52-bit page
 * number is), never as i64, so no BigInt is needed on any path.
 */
import { HDR_ADDR, HDR_INIT_DONE, HDR_MEM_PAGES } from "../src/abi/header";
import "./env";
import { ENOMEM, EINVAL } from "../src/abi/errno";
import { R_CONFIG, R_PFN_NOT_RAM, R_NO_POOL } from "../src/abi/reason";
import { lastReason, lastArg, fail } from "./errno";
import { coreLayout, layoutLoad, hdr, NR_FRAMES } from "./layout";
import { zonesInit, allocPagesZonelist, freePagesChecked, splitPageChecked, nrFreePages as nrFree } from "./phys/buddy";
import { frameBytesAddr, poolAvailable as poolAvail } from "./phys/pool";
import { pfnToZone } from "./phys/frame";
import { cpusInit } from "./mmu/cpu";
import { swapInit } from "./mm/swap";
import { pgdAlloc as pgdAllocCore } from "./mmu/pgtable";

export { coreLayout } from "./layout";
export { coreAttach, coreDetach } from "./ring";
export { pgdFree } from "./mmu/pgtable";
export { ptMap } from "./mmu/map";
export { ptUnmap, zapRange } from "./mmu/unmap";
export { copyPageRange } from "./mm/copy";
export { swapOut, swapIn, swapPut, swapCount } from "./mm/swap";
export { gupRange, gupMaxPages } from "./mm/gup";
export { unpinPages } from "./mm/unpin";
export {
  folioRef, pageMapcount, folioEntireMapcount, folioPincount, pageFlags, pageSetMapping,
  copyHighpage, splitHugePmd,
} from "./mm/exports";
export { ptProtect } from "./mmu/protect";
export { ptepGet, ptepSet, ptepRange, ptepRangeMax } from "./mmu/ptep";
export { pcieRoute, pcieRouteMax } from "./pcie/route";
export { iommuSetDevice, iommuSetPasid } from "./iommu/devtab";
export { iommuTranslate, iommuTranslateMax, iommuTranslateIovas, iommuTranslateIovasMax } from "./iommu/translate";
export { iotlbInvalidate } from "./iommu/iotlb";
export { atcInvalidate } from "./iommu/atc";
export { iommuDma } from "./iommu/dma";
export {
  cpuWriteCr3, cpuSetCtrl, cpuWrpkru, tlbFlushRange, tlbFlushPcidRange, tlbInvpcid, translateBatch,
} from "./mmu/cpu";

/**
 * coreInit - build zones, free lists and CPUs in a memory grown to HDR_MEM_PAGES.
 * Called once, by the instance that created the machine, after coreLayout().
 */
export function coreInit(): i32 {
  layoutLoad();
  if (<u32>memory.size() < hdr(HDR_MEM_PAGES)) return fail(ENOMEM, R_CONFIG, HDR_MEM_PAGES);
  if (atomic.load<u32>(HDR_ADDR + HDR_INIT_DONE) != 0) return fail(EINVAL, R_CONFIG, HDR_INIT_DONE);
  zonesInit();
  cpusInit();
  swapInit();
  atomic.store<u32>(HDR_ADDR + HDR_INIT_DONE, 1);
  return 0;
}

/** Why the last failing call of this instance failed: a REASON_* code and a detail word. */
export function coreReason(): u32 {
  return lastReason;
}

export function coreReasonArg(): u32 {
  return lastArg;
}

/** allocPages - see allocPagesZonelist(); returns the pfn or -errno, as an f64. */
export function allocPages(zonelist: u32, order: u32, flags: u32): f64 {
  return <f64>allocPagesZonelist(zonelist, order, flags);
}

/** freePages - __free_pages(); 1 if the block was freed, 0 if still referenced, or -errno. */
export function freePages(pfn: f64, order: u32): i32 {
  if (!(pfn >= 0) || pfn != Math.floor(pfn)) return fail(EINVAL, R_PFN_NOT_RAM, 0);
  return freePagesChecked(<u64>pfn, order);
}

/** splitPage - split_page(); 0 or -errno. */
export function splitPage(pfn: f64, order: u32): i32 {
  if (!(pfn >= 0) || pfn != Math.floor(pfn)) return fail(EINVAL, R_PFN_NOT_RAM, 0);
  return splitPageChecked(<u64>pfn, order);
}

/** nrFreePages - free frames of zone @idx, or of every zone when @idx < 0. */
export function nrFreePages(idx: i32): f64 {
  return <f64>nrFree(idx);
}

/** poolAvailable - backing slots still available (free list plus room to grow). */
export function poolAvailable(): f64 {
  return <f64>poolAvail();
}

/**
 * frameBytes - the address of a frame's 4 KiB of bytes, for the host to read or write.
 * @alloc: give the frame bytes if it has none (a first write).
 * Returns the address, 0 if the frame has no bytes (reads as zeros), or -errno.
 */
export function frameBytes(pfn: f64, alloc: i32): f64 {
  if (!(pfn >= 0 && pfn < <f64>NR_FRAMES) || pfn != Math.floor(pfn) || pfnToZone(<u64>pfn) < 0) {
    return fail(EINVAL, R_PFN_NOT_RAM, 0);
  }
  const a = frameBytesAddr(<u32>pfn, alloc != 0);
  if (a == 0 && alloc != 0) return fail(ENOMEM, R_NO_POOL, 0);
  return <f64>a;
}

/** pgdAlloc - a new root table; its pfn or -errno. */
export function pgdAlloc(): f64 {
  return <f64>pgdAllocCore();
}
