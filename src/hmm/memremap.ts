/**
 * Device-private memory (mm/memremap.c, MEMORY_DEVICE_PRIVATE): memory on a device that the
 * CPU cannot address but that has struct pages, so a process's page can live there. The CPU
 * page table then holds a device-private entry (a non-present swap entry naming the device
 * page); a CPU access to it faults, and the owner's migrateToRam brings the page back.
 *
 * - memremapPages(kernel, {owner, ops, nrPages}) takes frames from the machine's
 *   DEVICE_PRIVATE zone (memory.devicePrivate) for one device: struct dev_pagemap.
 * - A device page idles at refcount 1 (the pagemap's own reference, as before Linux 5.17);
 *   zoneDevicePageInit takes it for a migration (refcount 2); each put that brings it back
 *   to 1 hands it to ops.pageFree, where the driver puts it on its free list.
 * @module
 */
import * as F from "../abi/frame.js";
import * as X from "../abi/x86.js";
import { DmaError } from "../errors.js";
import { mkPte, pteBits } from "../mm/fault.js";
import { framePageBytes, frameWrite } from "../mm/filemap.js";
import { pageMappingIndex, rmapWalkDevice } from "../mm/rmap.js";
import { withInvalidation } from "../notifier/mmu-notifier.js";
import type { FaultResult } from "../mm/fault.js";
import type { Kernel } from "../mm/kernel.js";
import type { MmStruct } from "../mm/mm.js";
import type { Vma } from "../mm/vma.js";

/** struct vm_fault, as migrate_to_ram sees it. */
export interface VmFault {
  mm: MmStruct;
  vma: Vma;
  /** The faulting page (page number). */
  vpn: number;
  /** The device page the entry names. */
  page: number;
  write: boolean;
}

/** struct dev_pagemap_ops. */
export interface DevPagemapOps {
  /** The page's last user let go: back to the driver's free list. */
  pageFree(pfn: number): void;
  /** A CPU fault on a device-private entry: migrate the page back; "ok" or the signal. */
  migrateToRam(vmf: VmFault): FaultResult;
}

/** struct dev_pagemap of type MEMORY_DEVICE_PRIVATE. */
export class DevPagemap {
  readonly kernel: Kernel;
  readonly owner: unknown;
  readonly ops: DevPagemapOps;
  /** The device's frames. */
  readonly pfns: number[];

  constructor(k: Kernel, owner: unknown, ops: DevPagemapOps, pfns: number[]) {
    this.kernel = k;
    this.owner = owner;
    this.ops = ops;
    this.pfns = pfns;
  }
}

const pagemaps = new WeakMap<Kernel, Map<number, DevPagemap>>();

function registry(k: Kernel): Map<number, DevPagemap> {
  let m = pagemaps.get(k);
  if (!m) pagemaps.set(k, (m = new Map()));
  return m;
}

/**
 * memremapPages - memremap_pages for MEMORY_DEVICE_PRIVATE: @nrPages frames of the
 * DEVICE_PRIVATE zone for @owner's device. ENOMEM when the zone has too few free, EINVAL
 * without one.
 */
export function memremapPages(k: Kernel, o: { owner: unknown; ops: DevPagemapOps; nrPages: number }): DevPagemap {
  if (!Number.isSafeInteger(o.nrPages) || o.nrPages <= 0) throw new DmaError("EINVAL", `memremapPages: nrPages ${o.nrPages}`, { arg: "nrPages" });
  if (!k.phys.zones().some((z) => z.name === "DEVICE_PRIVATE")) {
    throw new DmaError("EINVAL", "memremapPages: the machine has no device-private memory (set memory.devicePrivate)", { arg: "kernel" });
  }
  if (k.phys.nrFreePages("DEVICE_PRIVATE") < o.nrPages) {
    throw new DmaError("ENOMEM", `memremapPages: device-private memory has fewer than ${o.nrPages} free pages`, { arg: "nrPages" });
  }
  const pfns: number[] = [];
  for (let i = 0; i < o.nrPages; i++) pfns.push(k.phys.allocPages(0, { zone: "DEVICE_PRIVATE" }));
  const pgmap = new DevPagemap(k, o.owner, o.ops, pfns);
  const reg = registry(k);
  for (const pfn of pfns) reg.set(pfn, pgmap);
  return pgmap;
}

/** Whether any device-private memory was handed out on @k's machine. */
export function hasDevicePrivate(k: Kernel): boolean {
  return (pagemaps.get(k)?.size ?? 0) > 0;
}

/** The pagemap of device page @pfn, or null (page->pgmap for is_device_private_page). */
export function pagemapOf(k: Kernel, pfn: number): DevPagemap | null {
  return pagemaps.get(k)?.get(pfn) ?? null;
}

/** isDevicePrivatePage - is_device_private_page. */
export function isDevicePrivatePage(k: Kernel, pfn: number): boolean {
  return pagemapOf(k, pfn) !== null;
}

/** zoneDevicePageInit - take a free device page for use (refcount 1 -> 2). */
export function zoneDevicePageInit(k: Kernel, pfn: number): void {
  if (!isDevicePrivatePage(k, pfn)) throw new DmaError("EINVAL", `zoneDevicePageInit: frame ${pfn} is not device-private`, { arg: "pfn" });
  if (k.refcountOf(pfn) !== 1) throw new DmaError("EBUSY", `zoneDevicePageInit: device page ${pfn} is in use`, { arg: "pfn" });
  k.folioRef(pfn, 1);
}

/** Get a reference on device page @pfn (a mapping takes one). */
export function devicePageGet(k: Kernel, pfn: number): void {
  k.folioRef(pfn, 1);
}

/** put_page of a device page: when only the pagemap's reference is left, ops.pageFree. */
export function devicePagePut(k: Kernel, pfn: number): void {
  const pgmap = pagemapOf(k, pfn);
  if (!pgmap) throw new DmaError("EINVAL", `devicePagePut: frame ${pfn} is not device-private`, { arg: "pfn" });
  if (k.folioRef(pfn, -1) === 1) {
    // A free device page carries no state.
    k.pageFlags(pfn, 0, F.PG_anon | F.PG_anon_exclusive | F.PG_swapbacked | F.PG_dirty | F.PG_referenced | F.PG_uptodate);
    k.setMapping(pfn, 0, 0);
    pgmap.ops.pageFree(pfn);
  }
}

/**
 * memunmapPages - memunmap_pages: the device's memory goes away. Every page still in use is
 * first evicted to system memory (migrate_device_range: its mappings, each with a CLEAR
 * invalidation, map a new page holding its bytes), then the frames go back to the zone.
 * Returns the pages evicted.
 */
export function memunmapPages(pgmap: DevPagemap): number {
  const k = pgmap.kernel;
  let evicted = 0;
  for (const pfn of pgmap.pfns) {
    if (k.refcountOf(pfn) > 1) {
      evictDevicePage(k, pfn);
      evicted++;
    }
  }
  const reg = registry(k);
  for (const pfn of pgmap.pfns) {
    reg.delete(pfn);
    k.folioRef(pfn, -1); // the pagemap's own reference: the frame returns to its zone
  }
  return evicted;
}

/** Move device page @pfn's bytes to a new system page that all its mappings then map. */
function evictDevicePage(k: Kernel, pfn: number): void {
  const maps = rmapWalkDevice(k, pfn);
  const page = k.allocUserFolio(0);
  frameWrite(k, page, 0, framePageBytes(k, pfn));
  k.clock.advance(k.costs.pageCopy.ns);
  const { mapping, index } = pageMappingIndex(k, pfn);
  k.setMapping(page, mapping, index);
  k.pageFlags(page, k.flagsOf(pfn) & (F.PG_anon | F.PG_anon_exclusive | F.PG_swapbacked | F.PG_uptodate | F.PG_dirty), 0);
  maps.forEach((m, i) => {
    const write = (m.pte & BigInt(X.SWP_WRITE)) !== 0n;
    withInvalidation(m.mm, "clear", m.vpn, m.vpn + 1, () => {
      const pte = mkPte(page, pteBits(m.vma, write, write));
      k.check(k.core.x.ptepSet(m.mm.pgd.pfn, m.vpn, 1, Number(pte & 0xffffffffn), Number(pte >> 32n)), "migrate_device_range");
    });
    k.mapcount(page, 1);
    if (i > 0) k.folioRef(page, 1); // the allocation's reference serves the first mapping
    k.mapcount(pfn, -1);
    devicePagePut(k, pfn);
  });
  if (!maps.length) k.folioRef(page, -1); // in use but mapped nowhere (a driver's own reference)
  else k.lruAdd(page, true);
}
