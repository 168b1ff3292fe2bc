/**
 * iommu_domain: an IO address space. A paging domain owns an x86-64-format IO page table
 * (a PageTable, so its tables are frames like any other); identity passes addresses
 * through; blocked faults everything. Mapping follows drivers/iommu/iommu.c: iova, paddr and
 * size aligned to the smallest page size, split into the largest pages alignment allows,
 * all or nothing; unmap returns the bytes unmapped and, unlike iommuUnmapFast, syncs the
 * IOTLB and the ATCs (in that order) before returning.
 * @module
 */
import * as H from "../abi/header.js";
import { hex } from "../core/addr.js";
import { DmaError, einval } from "../errors.js";
import type { PageSize, PageTable } from "../mmu/pgtable.js";
import type { Prot } from "../mmu/prot.js";
import type { Iommu, IommuDevice } from "./iommu.js";
import type { QiDesc } from "./qi.js";

export type IommuDomainType = "blocked" | "identity" | "unmanaged" | "dma" | "dma-fq" | "sva";

/* iommu_map prot bits (include/linux/iommu.h). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;
const PROT_ALL = 0x3f;

/** The IOVA width a 4-level table translates: the lower canonical half, 47 bits (56 with 5 levels). */
export function ioAddressBits(levels: number): number {
  return levels === 5 ? 56 : 47;
}

const SIZES: [PageSize, number][] = [["1G", 2 ** 30], ["2M", 2 ** 21], ["4K", 4096]];

export class IommuDomain {
  readonly iommu: Iommu;
  readonly type: IommuDomainType;
  /** Domain id (tags the IOTLB); 0 for identity and blocked. */
  readonly id: number;
  readonly pgtable: PageTable | null;
  readonly devices = new Set<IommuDevice>();
  /** pgsize_bitmap: 4 KiB, 2 MiB and 1 GiB. */
  readonly pgsizeBitmap = 4096 | 2 ** 21 | 2 ** 30;
  /** [start, end] of the IOVAs it translates. */
  readonly aperture: [number, number];
  /** The DMA API's state on a DMA domain (its IOVA allocator and flush queue). */
  dmaCookie: unknown = null;
  freed = false;

  constructor(iommu: Iommu, type: IommuDomainType, id: number, pgtable: PageTable | null) {
    this.iommu = iommu;
    this.type = type;
    this.id = id;
    this.pgtable = pgtable;
    this.aperture = [0, 2 ** ioAddressBits(iommu.k.core.hdr(H.HDR_LEVELS)) - 1];
  }

  get paging(): boolean {
    return this.pgtable !== null;
  }
}

/** iommuDomainAlloc - a new domain of @type ("sva" domains come from iommuSvaBindDevice). */
export function iommuDomainAlloc(iommu: Iommu, type: IommuDomainType): IommuDomain {
  if (type === "blocked") return iommu.blocked;
  if (type === "identity") return new IommuDomain(iommu, "identity", 0, null);
  if (!["unmanaged", "dma", "dma-fq", "sva"].includes(type)) throw einval("type", `${String(type)} is not a domain type`);
  const id = iommu.allocDomainId();
  const d = new IommuDomain(iommu, type, id, type === "sva" ? null : iommu.k.pgdAlloc());
  iommu.domains.set(id, d);
  iommu.k.trace.emit("iommu.domain_alloc", { id, type, pgd: d.pgtable?.pfn ?? null }, iommu.k.clock.now);
  return d;
}

/**
 * iommuDomainFree - free @d: EBUSY while a device is attached. Unmaps what is left (a DMA
 * domain's driver should have) and frees its page table.
 */
export function iommuDomainFree(d: IommuDomain): void {
  if (d.freed || d.type === "blocked") return;
  if (d.devices.size) throw new DmaError("EBUSY", `iommuDomainFree: ${[...d.devices][0]!.name} is still attached`, { arg: "domain" });
  const pt = d.pgtable;
  if (pt) {
    const [lo, hi] = d.aperture;
    pt.unmapPageRange(lo, hi + 1 - lo);
    d.iommu.qi.qiSubmitSync([{ type: "iotlb", domain: d.id, pasid: 0, gran: "domain" }, { type: "wait" }]);
    pt.free();
  }
  if (d.id) d.iommu.domains.delete(d.id);
  d.freed = true;
}

/**
 * iommuAttachDevice - translate @dev's requests without PASID through @d. Its context entry
 * changes, then what it cached under the old domain is flushed (IOTLB, then its ATC).
 */
export function iommuAttachDevice(d: IommuDomain, dev: IommuDevice): void {
  if (d.freed) throw einval("domain", "freed");
  if (d.type === "sva") throw einval("domain", "an SVA domain attaches to a PASID (iommuSvaBindDevice)");
  const old = dev.domain;
  if (old === d) return;
  old.devices.delete(dev);
  dev.domain = d;
  d.devices.add(dev);
  dev.domain.iommu.program(dev);
  const descs: QiDesc[] = [];
  if (old.id) descs.push({ type: "iotlb", domain: old.id, pasid: 0, gran: "domain" }, { type: "wait" });
  if (dev.ats) descs.push({ type: "devtlb", dev: dev.rid, pasid: 0, vpn: 0, npages: 2 ** 40 }, { type: "wait" });
  if (descs.length) d.iommu.qi.qiSubmitSync(descs);
  d.iommu.k.trace.emit("iommu.attach", { dev: dev.name, domain: d.id, type: d.type }, d.iommu.k.clock.now);
}

/** iommuDetachDevice - back to the blocking domain (nothing it issues reaches memory). */
export function iommuDetachDevice(d: IommuDomain, dev: IommuDevice): void {
  if (dev.domain !== d) throw einval("dev", `${dev.name} is not attached to domain ${d.id}`);
  iommuAttachDevice(d.iommu.blocked, dev);
}

function protOf(prot: number): Prot {
  return { write: (prot & IOMMU_WRITE) !== 0, user: (prot & IOMMU_PRIV) === 0, nx: (prot & IOMMU_NOEXEC) !== 0, ...((prot & IOMMU_MMIO) !== 0 ? { cache: "UC" as const } : {}) };
}

/** The runs of one page size that map [iova, iova + size) to paddr: iommu_pgsize() applied repeatedly. */
export function iommuPgsizeRuns(iova: number, paddr: number, size: number): [number, number, number, PageSize][] {
  const runs: [number, number, number, PageSize][] = [];
  while (size > 0) {
    const [name, bytes] = SIZES.find(([, b]) => iova % b === 0 && paddr % b === 0 && size >= b)!;
    const last = runs[runs.length - 1];
    if (last && last[3] === name && last[0] + last[2] === iova) last[2] += bytes;
    else runs.push([iova, paddr, bytes, name]);
    iova += bytes;
    paddr += bytes;
    size -= bytes;
  }
  return runs;
}

function checkRange(d: IommuDomain, fn: string, iova: number, size: number): void {
  if (!d.pgtable) throw new DmaError("ENODEV", `${fn}: domain ${d.id} (${d.type}) has no page table`, { arg: "domain" });
  if (!Number.isSafeInteger(iova) || iova < 0 || iova % 4096) throw einval("iova", `${fn}: ${hex(iova)} is not 4 KiB aligned`);
  if (!Number.isSafeInteger(size) || size <= 0 || size % 4096) throw einval("size", `${fn}: ${size} is not a positive multiple of 4 KiB`);
  if (iova + size - 1 > d.aperture[1]) throw new DmaError("ERANGE", `${fn}: [${hex(iova)}, ${hex(iova + size)}) is beyond the domain's ${Math.log2(d.aperture[1] + 1)}-bit address width`, { arg: "iova" });
}

/**
 * iommuMap - map [@iova, @iova + @size) to physical @paddr with IOMMU_* @prot. EINVAL
 * (alignment, prot without READ or WRITE, unknown bits), ERANGE (beyond the width), EEXIST
 * (something mapped there), ENOMEM (no frames for tables); nothing is mapped on failure.
 */
export function iommuMap(d: IommuDomain, iova: number, paddr: number, size: number, prot: number): void {
  checkRange(d, "iommuMap", iova, size);
  if (!Number.isSafeInteger(paddr) || paddr < 0 || paddr % 4096) throw einval("paddr", `iommuMap: ${hex(paddr)} is not 4 KiB aligned`);
  if (prot & ~PROT_ALL) throw einval("prot", `iommuMap: unknown bits 0x${(prot & ~PROT_ALL).toString(16)}`);
  if (!(prot & (IOMMU_READ | IOMMU_WRITE))) throw einval("prot", "iommuMap: neither IOMMU_READ nor IOMMU_WRITE");
  const pt = d.pgtable!;
  const done: [number, number][] = [];
  try {
    for (const [va, pa, bytes, ps] of iommuPgsizeRuns(iova, paddr, size)) {
      pt.remapPfnRange(va, pa / 4096, bytes, protOf(prot), ps);
      done.push([va, bytes]);
    }
  } catch (e) {
    for (const [va, bytes] of done) pt.unmapPageRange(va, bytes); // iommu_map's unwind
    throw e;
  }
}

/** iommuUnmapFast - clear the entries, flush nothing (the caller syncs, or queues a flush). Bytes unmapped. */
export function iommuUnmapFast(d: IommuDomain, iova: number, size: number): number {
  checkRange(d, "iommuUnmap", iova, size);
  const r = d.pgtable!.unmapPageRange(iova, size);
  if (r.pages) d.iommu.qi.changed(d.id, 0, iova / 4096, iova / 4096 + size / 4096);
  return r.pages * 4096;
}

/** iommuIotlbSync - invalidate pages [@vpn, @vpn + @n) of @d in the IOTLB, wait, then in each attached ATC, wait. */
export function iommuIotlbSync(d: IommuDomain, vpn: number, n: number): void {
  const descs: QiDesc[] = [{ type: "iotlb", domain: d.id, pasid: 0, gran: "page", vpn, npages: n }, { type: "wait" }];
  for (const dev of d.devices) if (dev.ats) descs.push({ type: "devtlb", dev: dev.rid, pasid: 0, vpn, npages: n });
  if (descs.length > 2) descs.push({ type: "wait" });
  d.iommu.qi.qiSubmitSync(descs);
}

/** iommuFlushIotlbAll - the whole domain: IOTLB, wait, every attached ATC, wait. */
export function iommuFlushIotlbAll(d: IommuDomain): void {
  const descs: QiDesc[] = [{ type: "iotlb", domain: d.id, pasid: 0, gran: "domain" }, { type: "wait" }];
  for (const dev of d.devices) if (dev.ats) descs.push({ type: "devtlb", dev: dev.rid, pasid: 0, vpn: 0, npages: 2 ** 40 });
  if (descs.length > 2) descs.push({ type: "wait" });
  d.iommu.qi.qiSubmitSync(descs);
}

/**
 * iommuUnmap - unmap [@iova, @iova + @size) and sync: when it returns no IOTLB or ATC entry
 * for the range is left. Returns the bytes unmapped (0 when nothing was mapped there).
 */
export function iommuUnmap(d: IommuDomain, iova: number, size: number): number {
  const bytes = iommuUnmapFast(d, iova, size);
  if (bytes) iommuIotlbSync(d, iova / 4096, size / 4096);
  return bytes;
}

/** iommuIovaToPhys - what @iova maps to in @d's tables, or 0 (as the kernel returns). */
export function iommuIovaToPhys(d: IommuDomain, iova: number): number {
  if (d.type === "identity") return iova;
  if (!d.pgtable) return 0;
  const e = d.pgtable.ptepGet(iova - (iova % 4096));
  if (!e.info.present) return 0;
  const span = 4096 * 512 ** (e.level - 1);
  return e.info.pfn * 4096 + (iova % span);
}
