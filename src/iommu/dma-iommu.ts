/**
 * The DMA API over the IOMMU (drivers/iommu/dma-iommu.c, with dma-direct for identity
 * domains): map a page or a scatterlist for a device and get the address the device must
 * use; unmap it when the DMA is done.
 *
 * - IOVAs come from the domain's IovaDomain: below 4 GiB first for a device whose mask is
 *   wider (the "SAC" trick), then up to the mask; sizes under 32 pages rounded up to a
 *   power of two so the range caches can hand them back. The windows of a PCIe device's
 *   host bridge are reserved first (iova_reserve_pci_windows): a switch would route an IOVA
 *   inside one to a peer instead of the IOMMU.
 * - Strict domains ("dma") unmap and sync the IOTLB and the ATCs before returning, then free
 *   the IOVA. Lazy domains ("dma-fq") clear the entries and queue the IOVA on the flush
 *   queue; the queue is flushed (one domain-wide IOTLB + ATC invalidation) when it holds
 *   IOVA_DEFAULT_FQ_SIZE entries or IOVA_FQ_TIMEOUT has passed, and only then are its IOVAs
 *   freed. Until then the device may still use a stale translation: the lazy-mode window.
 * - Unmapping an address that is not mapped (or with another size) is EINVAL and changes
 *   nothing, as CONFIG_DMA_API_DEBUG reports it.
 * - PCI P2PDMA pages in a scatterlist are mapped by their map type to the device
 *   (pci_p2pdma_map_segment): BUS_ADDR gives the bus address (phys + the pagemap's bus
 *   offset), a segment of its own marked `bus`, with no IOVA (unmap skips it);
 *   THRU_HOST_BRIDGE maps it through the IOMMU like any page, with IOMMU_MMIO;
 *   NOT_SUPPORTED (or a device off the PCIe fabric) fails the whole map with EREMOTEIO.
 *   dmaMapPage refuses them (EREMOTEIO): P2P memory is mapped with dma_map_sgtable.
 * @module
 */
import { hex } from "../core/addr.js";
import type { DmaDataDirection } from "../dma-buf/dma-buf.js";
import { DmaError, einval } from "../errors.js";
import type { IommuDevice } from "./iommu.js";
import type { PciDev } from "../pci/topology.js";
import { p2pdmaPagemapOf, type PciP2pdmaPagemap } from "../pci/p2pmem.js";
import { pciP2pdmaMapType, type PciP2pdmaMapType } from "../pci/p2pdma.js";
import { IOMMU_MMIO, IOMMU_READ, IOMMU_WRITE, type IommuDomain, iommuFlushIotlbAll, iommuMap, iommuUnmap, iommuUnmapFast } from "./iommu-domain.js";
import { IOVA_RANGE_CACHE_MAX_SIZE, IovaDomain, orderBase2 } from "./iova.js";


export const IOVA_DEFAULT_FQ_SIZE = 256;
/** IOVA_FQ_TIMEOUT: 10 ms, in modeled ns. */
export const IOVA_FQ_TIMEOUT_NS = 10_000_000;

/** A mapping the device was given. */
interface DmaMapping {
  /** First IOVA pfn of the allocation, and its pages. */
  pfn: number;
  pages: number;
  /** The bytes the caller asked for (what unmap must be given). */
  size: number;
  dir: DmaDataDirection;
}

interface FqEntry {
  pfn: number;
  pages: number;
}

/** The DMA API's state of a DMA domain (iommu_dma_cookie). */
export class DmaCookie {
  readonly iovad = new IovaDomain(1);
  /** Host bridges whose windows the IOVA space keeps clear (iova_reserve_pci_windows). */
  readonly reservedBridges = new Set<PciDev>();
  readonly mappings = new Map<number, DmaMapping>();
  fq: FqEntry[] = [];
  fqStart = 0;
  readonly stats = { maps: 0, unmaps: 0, fqFlushes: 0 };
}

function cookie(d: IommuDomain): DmaCookie {
  if (!d.dmaCookie) d.dmaCookie = new DmaCookie();
  return d.dmaCookie as DmaCookie;
}

function protOf(dir: DmaDataDirection): number {
  if (dir === "TO_DEVICE") return IOMMU_READ;
  if (dir === "FROM_DEVICE") return IOMMU_WRITE;
  if (dir === "BIDIRECTIONAL") return IOMMU_READ | IOMMU_WRITE;
  throw einval("dir", `${String(dir)} is not TO_DEVICE, FROM_DEVICE or BIDIRECTIONAL (DMA_NONE cannot be mapped)`);
}

function dmaDomain(dev: IommuDevice): IommuDomain | null {
  const d = dev.domain;
  if (d.type === "identity") return null;
  if (d.type !== "dma" && d.type !== "dma-fq") throw new DmaError("EINVAL", `${dev.name} is attached to a ${d.type} domain: the DMA API needs its DMA domain`, { arg: "dev" });
  return d;
}

/** iommu_dma_alloc_iova: pages rounded for the rcache, below 4 GiB first, then up to the mask and aperture. */
function allocIova(d: IommuDomain, dev: IommuDevice, pages: number): [number, number] {
  const c = cookie(d);
  const hb = dev.pci?.hostBridge;
  if (hb && !c.reservedBridges.has(hb)) {
    // iova_reserve_pci_windows: an IOVA inside a bridge window would be claimed on the way
    // up by a switch or port whose window holds it, and never reach the IOMMU.
    for (const [lo, hi] of [hb.window, hb.prefWindow]) if (hi > lo) c.iovad.reserveIova(Math.floor(lo / 4096), Math.floor((hi - 1) / 4096));
    c.reservedBridges.add(hb);
  }
  const len = pages < 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1) ? 2 ** orderBase2(pages) : pages;
  const limit = Math.min(2 ** dev.dmaMaskBits - 1, d.aperture[1]);
  const limitPfn = Math.floor(limit / 4096);
  let pfn = 0;
  if (limit > 2 ** 32 - 1) pfn = c.iovad.allocIovaFast(len, 2 ** 20 - 1, false);
  if (!pfn) pfn = c.iovad.allocIovaFast(len, limitPfn, true);
  if (!pfn) throw new DmaError("ENOMEM", `dma map for ${dev.name}: no ${len}-page IOVA range below ${hex(limit)}`, { arg: "size" });
  return [pfn, len];
}

/** The flush queue: flush and free when full (or when @force) or past its timeout. */
function fqCheck(d: IommuDomain, force: string | null): void {
  const c = cookie(d);
  const now = d.iommu.k.clock.now;
  const reason = force ?? (c.fq.length >= IOVA_DEFAULT_FQ_SIZE ? "full" : c.fq.length && now - c.fqStart >= IOVA_FQ_TIMEOUT_NS ? "timeout" : null);
  if (!reason || !c.fq.length) return;
  iommuFlushIotlbAll(d);
  for (const e of c.fq) c.iovad.freeIovaFast(e.pfn, e.pages);
  d.iommu.k.trace.emit("iommu.fq_flush", { domain: d.id, entries: c.fq.length, reason }, now);
  c.fq = [];
  c.stats.fqFlushes++;
}

/**
 * dmaMapPage - map @size bytes at @offset into frame @pfn for @dev's DMA in direction @dir;
 * the DMA address (the physical address in an identity domain). ENOMEM when no IOVA or
 * table frame is left; EINVAL for bad arguments. Nothing stays allocated on failure.
 */
export function dmaMapPage(dev: IommuDevice, pfn: number, offset: number, size: number, dir: DmaDataDirection): number {
  const prot = protOf(dir);
  if (!Number.isSafeInteger(pfn) || pfn < 0) throw einval("pfn", `${pfn} is not a frame number`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw einval("offset", `${offset} is not an offset`);
  if (!Number.isSafeInteger(size) || size <= 0) throw einval("size", `${size} is not a positive size`);
  const phys = pfn * 4096 + offset;
  if (p2pdmaPagemapOf(dev.domain.iommu.k, pfn)) {
    throw new DmaError("EREMOTEIO", `dmaMapPage: frame ${pfn} is PCI P2PDMA memory: map it with dmaMapSg (dma_map_sgtable)`, { arg: "pfn" });
  }
  const d = dmaDomain(dev);
  if (!d) return phys;
  fqCheck(d, null);
  const first = Math.floor(phys / 4096);
  const pages = Math.ceil((phys + size) / 4096) - first;
  const [iovaPfn, len] = allocIova(d, dev, pages);
  const c = cookie(d);
  try {
    iommuMap(d, iovaPfn * 4096, first * 4096, pages * 4096, prot);
  } catch (e) {
    c.iovad.freeIovaFast(iovaPfn, len);
    throw e;
  }
  c.mappings.set(iovaPfn, { pfn: iovaPfn, pages: len, size, dir });
  c.stats.maps++;
  const dma = iovaPfn * 4096 + (phys % 4096);
  d.iommu.k.trace.emit("iommu.map", { dev: dev.name, iova: hex(dma), size, dir }, d.iommu.k.clock.now);
  return dma;
}

/**
 * dmaUnmapPage - end the DMA of the mapping at @addr (@size bytes, direction @dir, as mapped).
 * EINVAL, with nothing changed, when @addr is not a mapping's address or size or direction differ.
 */
export function dmaUnmapPage(dev: IommuDevice, addr: number, size: number, dir: DmaDataDirection): void {
  protOf(dir);
  const d = dmaDomain(dev);
  if (!d) return;
  const c = cookie(d);
  const m = Number.isSafeInteger(addr) && addr >= 0 ? c.mappings.get(Math.floor(addr / 4096)) : undefined;
  if (!m) throw einval("addr", `dmaUnmapPage: ${dev.name} has no DMA mapping at ${hex(addr)}`);
  if (m.size !== size) throw einval("size", `dmaUnmapPage: ${hex(addr)} was mapped with ${m.size} bytes, not ${size}`);
  if (m.dir !== dir) throw einval("dir", `dmaUnmapPage: ${hex(addr)} was mapped ${m.dir}, not ${dir}`);
  unmapRange(d, dev, m);
}

function unmapRange(d: IommuDomain, dev: IommuDevice, m: DmaMapping): void {
  const c = cookie(d);
  c.mappings.delete(m.pfn);
  c.stats.unmaps++;
  const lazy = d.type === "dma-fq";
  if (lazy) {
    iommuUnmapFast(d, m.pfn * 4096, m.pages * 4096);
    if (!c.fq.length) c.fqStart = d.iommu.k.clock.now;
    c.fq.push({ pfn: m.pfn, pages: m.pages });
    fqCheck(d, null);
  } else {
    iommuUnmap(d, m.pfn * 4096, m.pages * 4096);
    c.iovad.freeIovaFast(m.pfn, m.pages);
  }
  d.iommu.k.trace.emit("iommu.unmap", { dev: dev.name, iova: hex(m.pfn * 4096), size: m.size, lazy }, d.iommu.k.clock.now);
}

/** dmaFlushQueue - flush @dev's domain's flush queue now (what the 10 ms timer would do). */
export function dmaFlushQueue(dev: IommuDevice): void {
  const d = dmaDomain(dev);
  if (d) fqCheck(d, "explicit");
}

/** Whether pages [@vpn, @vpn + @n) of @dev's domain are unmapped but still in its flush queue. */
export function dmaInLazyWindow(dev: IommuDevice, vpn: number, n: number): boolean {
  const d = dev.domain;
  if (d.type !== "dma-fq" || !d.dmaCookie) return false;
  return cookie(d).fq.some((e) => e.pfn < vpn + n && vpn < e.pfn + e.pages);
}

/** A scatterlist entry: @length bytes at @offset into frame @pfn (and on, contiguously). */
export interface ScatterEntry {
  pfn: number;
  offset: number;
  length: number;
}

export interface DmaSegment {
  dmaAddress: number;
  dmaLength: number;
  /** A PCI bus address of a peer's memory (sg_dma_is_bus_address): no IOVA behind it. */
  bus?: boolean;
}

/** pci_p2pdma_map_type for P2PDMA frame @pfn's pagemap and @dev (null: not P2PDMA memory). */
export function dmaP2pMapType(dev: IommuDevice, pfn: number): { type: PciP2pdmaMapType; pagemap: PciP2pdmaPagemap } | null {
  const m = p2pdmaPagemapOf(dev.domain.iommu.k, pfn);
  if (!m) return null;
  const client = dev.pci;
  if (!client || client.topology !== m.provider.topology) return { type: "NOT_SUPPORTED", pagemap: m };
  return { type: pciP2pdmaMapType(client.topology, m.provider, client).mapType, pagemap: m };
}

/**
 * dmaMapSg - map a scatterlist into one contiguous IOVA range (iommu_dma_map_sg): each entry
 * keeps its offset in its first page; an entry that starts a page right after one that ended
 * a page joins its DMA segment while the segment stays within @maxSegSize (64 KiB by default,
 * dma_get_max_seg_size). Returns the DMA segments (fewer than the entries when merged).
 */
export function dmaMapSg(dev: IommuDevice, sg: ScatterEntry[], dir: DmaDataDirection, maxSegSize = 65536): DmaSegment[] {
  const prot = protOf(dir);
  if (!sg.length) throw einval("sg", "empty scatterlist");
  sg.forEach((s, i) => {
    if (!Number.isSafeInteger(s.pfn) || s.pfn < 0 || !Number.isSafeInteger(s.offset) || s.offset < 0 || !Number.isSafeInteger(s.length) || s.length <= 0) {
      throw einval(`sg[${i}]`, "needs a frame number, an offset and a positive length");
    }
  });
  const d = dmaDomain(dev);
  const spans = sg.map((s, i) => {
    const phys = s.pfn * 4096 + s.offset;
    const first = Math.floor(phys / 4096);
    const p2p = dmaP2pMapType(dev, s.pfn);
    if (p2p?.type === "NOT_SUPPORTED") {
      throw new DmaError("EREMOTEIO", `dmaMapSg: sg[${i}] is P2PDMA memory of ${p2p.pagemap.provider.name}, which ${dev.name} cannot reach peer to peer`, { arg: `sg[${i}]` });
    }
    const bus = p2p?.type === "BUS_ADDR" ? phys + p2p.pagemap.busOffset : null;
    return { phys, first, pages: Math.ceil((phys + s.length) / 4096) - first, bus, mmio: p2p?.type === "THRU_HOST_BRIDGE" };
  });
  if (!d) return sg.map((s, i) => (spans[i]!.bus !== null ? { dmaAddress: spans[i]!.bus!, dmaLength: s.length, bus: true } : { dmaAddress: spans[i]!.phys, dmaLength: s.length }));
  fqCheck(d, null);
  const total = spans.reduce((n, s) => n + (s.bus === null ? s.pages : 0), 0);
  if (total === 0) return sg.map((s, i) => ({ dmaAddress: spans[i]!.bus!, dmaLength: s.length, bus: true }));
  const [iovaPfn, len] = allocIova(d, dev, total);
  const c = cookie(d);
  // iommu_map_sg: physically contiguous entries go to the IO page table in one map; bus
  // addresses are skipped.
  const runs: { first: number; pages: number; mmio: boolean }[] = [];
  for (const s of spans) {
    if (s.bus !== null) continue;
    const last = runs[runs.length - 1];
    if (last && last.first + last.pages === s.first && last.mmio === s.mmio) last.pages += s.pages;
    else runs.push({ first: s.first, pages: s.pages, mmio: s.mmio });
  }
  let at = iovaPfn;
  try {
    for (const r of runs) {
      iommuMap(d, at * 4096, r.first * 4096, r.pages * 4096, prot | (r.mmio ? IOMMU_MMIO : 0));
      at += r.pages;
    }
  } catch (e) {
    if (at > iovaPfn) iommuUnmap(d, iovaPfn * 4096, (at - iovaPfn) * 4096);
    c.iovad.freeIovaFast(iovaPfn, len);
    throw e;
  }
  const segs: DmaSegment[] = [];
  at = iovaPfn;
  sg.forEach((s, i) => {
    const sp = spans[i]!;
    if (sp.bus !== null) {
      segs.push({ dmaAddress: sp.bus, dmaLength: s.length, bus: true });
      return;
    }
    const addr = at * 4096 + (sp.phys % 4096);
    const last = segs[segs.length - 1];
    if (last && !last.bus && sp.phys % 4096 === 0 && (last.dmaAddress + last.dmaLength) % 4096 === 0 && last.dmaAddress + last.dmaLength === addr && last.dmaLength + s.length <= maxSegSize) {
      last.dmaLength += s.length;
    } else segs.push({ dmaAddress: addr, dmaLength: s.length });
    at += sp.pages;
  });
  const size = sg.reduce((n, s) => n + s.length, 0);
  c.mappings.set(iovaPfn, { pfn: iovaPfn, pages: len, size, dir });
  c.stats.maps++;
  d.iommu.k.trace.emit("iommu.map", { dev: dev.name, iova: hex(iovaPfn * 4096), size, dir }, d.iommu.k.clock.now);
  return segs;
}

/**
 * dmaUnmapSg - unmap what dmaMapSg returned as @segs: its IOVA range, found from its first
 * segment that is not a bus address (none: nothing to unmap). EINVAL when it is not a mapping.
 */
export function dmaUnmapSg(dev: IommuDevice, segs: DmaSegment[], dir: DmaDataDirection): void {
  protOf(dir);
  const d = dmaDomain(dev);
  if (!d) return;
  const c = cookie(d);
  if (segs.length && segs.every((s) => s.bus)) return;
  const addr = segs.find((s) => !s.bus)?.dmaAddress;
  const m = addr !== undefined ? c.mappings.get(Math.floor(addr / 4096)) : undefined;
  if (!m) throw einval("segs", `dmaUnmapSg: ${dev.name} has no DMA mapping at ${addr === undefined ? "(none)" : hex(addr)}`);
  if (m.dir !== dir) throw einval("dir", `dmaUnmapSg: mapped ${m.dir}, not ${dir}`);
  unmapRange(d, dev, m);
}
