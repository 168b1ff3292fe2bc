/**
 * The IOMMU of a machine (one instance, as intel_iommu / arm-smmu-v3 drive one unit): the
 * devices behind it with their capabilities, domain ids, the device table it programs in the
 * core, batched translation, and the invalidation queue. Domains are in iommu-domain.ts, the
 * DMA API in dma-iommu.ts, SVA in sva.ts, the DMA engine in dma-engine.ts.
 * @module
 */
import * as IO from "../abi/iommu.js";
import * as H from "../abi/header.js";
import { DmaError, einval } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import type { MmStruct } from "../mm/mm.js";
import { InvalidationQueue } from "./qi.js";
import { IommuDomain, type IommuDomainType, iommuAttachDevice, iommuDomainAlloc } from "./iommu-domain.js";
import type { SvaHandle } from "./sva.js";
import { PciDev } from "../pci/topology.js";

export interface IommuDeviceOptions {
  /** Address Translation Services: the endpoint caches translations in its own ATC. */
  ats?: boolean;
  /** Page Request Interface: the endpoint may ask for a fault to be served (with PASID: SVA). */
  pri?: boolean;
  /** PASID-tagged requests. */
  pasid?: boolean;
  /** Bits of DMA address the device can drive (dma_set_mask); default 64. */
  dmaMaskBits?: number;
  /** The default domain's type: "dma" (strict), "dma-fq" (lazy) or "identity" (passthrough). */
  defaultDomain?: "dma" | "dma-fq" | "identity";
  /** The PCIe endpoint it is: its DMA is routed through that fabric (P2P), and P2P mappings use it. */
  pci?: PciDev;
}

export class IommuDevice {
  readonly name: string;
  /** Its requester id: the device-table index. */
  readonly rid: number;
  readonly ats: boolean;
  readonly pri: boolean;
  readonly pasid: boolean;
  dmaMaskBits: number;
  /** Its PCIe function, or null for a device off the fabric (a platform device). */
  readonly pci: PciDev | null;
  /** The domain its requests without PASID translate through. */
  domain!: IommuDomain;
  defaultDomain!: IommuDomain;
  /** SVA bindings by mm. */
  readonly sva = new Map<MmStruct, SvaHandle>();

  constructor(name: string, rid: number, o: IommuDeviceOptions) {
    this.name = name;
    this.rid = rid;
    this.ats = o.ats ?? false;
    this.pri = o.pri ?? false;
    this.pasid = o.pasid ?? false;
    this.dmaMaskBits = o.dmaMaskBits ?? 64;
    this.pci = o.pci ?? null;
  }

  /** The device-table flags that describe it. */
  get dteFlags(): number {
    return IO.DTE_VALID | (this.ats ? IO.DTE_ATS : 0) | (this.pri ? IO.DTE_PRI : 0) | (this.pasid ? IO.DTE_PASID : 0);
  }
}

export type IoAccess = "read" | "write" | "exec";

export interface IoRequest {
  dev: IommuDevice;
  iova: number;
  /** 0 (default): a request without PASID. */
  pasid?: number;
  access?: IoAccess;
  priv?: boolean;
}

/** Why a request failed: the IOMMU's fault reasons, and the fabric's Unsupported Request. */
export type IoFaultReason = "blocked" | "pasid" | "not-present" | "permission" | "reserved" | "range" | "unsupported-request";
const FAULTS: Record<number, IoFaultReason> = {
  [IO.IOF_BLOCKED]: "blocked", [IO.IOF_PASID]: "pasid", [IO.IOF_NOT_PRESENT]: "not-present",
  [IO.IOF_PERM]: "permission", [IO.IOF_RSVD]: "reserved", [IO.IOF_RANGE]: "range",
};
const SOURCES = ["direct", "atc", "iotlb", "walk"] as const;

export interface IoTranslation {
  /** The physical address, or null on a fault. */
  pa: number | null;
  fault: IoFaultReason | null;
  source: (typeof SOURCES)[number] | null;
  /** 0 4 KiB, 1 2 MiB, 2 1 GiB. */
  size: number;
  /** A cached translation the tables no longer give (only with check). */
  stale: boolean;
}

/** decodeIoStatus - an IOQ_STATUS / IOD_STATUS word as a translation's outcome. */
export function ioFault(status: number): IoFaultReason {
  return FAULTS[status >>> 16] ?? "blocked";
}

export class Iommu {
  readonly k: Kernel;
  readonly devices: (IommuDevice | undefined)[];
  readonly domains = new Map<number, IommuDomain>();
  readonly qi: InvalidationQueue;
  /** Counts since boot. */
  readonly stats = { translations: 0, atcHits: 0, iotlbHits: 0, walks: 0, walkLoads: 0, faults: 0, atsRequests: 0, stale: 0, pageRequests: 0 };
  /** The blocking domain every device starts in and returns to. */
  readonly blocked: IommuDomain;
  #nextDomainId = 1;

  constructor(k: Kernel) {
    this.k = k;
    this.devices = new Array(k.core.hdr(H.HDR_IOMMU_DEVS));
    this.qi = new InvalidationQueue({
      core: k.core, clock: k.clock, costs: k.costs, trace: k.trace,
      domainOf: (rid, pasid) => this.#domainOf(rid, pasid),
      orderViolation: (rid, pasid, vpn, n) => k.checkers.dma?.atcBeforeIotlb(this.devices[rid]?.name ?? `rid ${rid}`, pasid, vpn, n),
    });
    this.blocked = new IommuDomain(this, "blocked", 0, null);
  }

  /** allocDomainId - a free domain id (ENOSPC when all IOMMU_MAX_DOMAIN are taken). */
  allocDomainId(): number {
    for (let i = 0; i < IO.IOMMU_MAX_DOMAIN; i++) {
      const id = ((this.#nextDomainId - 1 + i) % IO.IOMMU_MAX_DOMAIN) + 1;
      if (!this.domains.has(id)) {
        this.#nextDomainId = (id % IO.IOMMU_MAX_DOMAIN) + 1;
        return id;
      }
    }
    throw new DmaError("ENOSPC", `iommuDomainAlloc: all ${IO.IOMMU_MAX_DOMAIN} domain ids in use`, { arg: "domain" });
  }

  #domainOf(rid: number, pasid: number): number | null {
    const dev = this.devices[rid];
    if (!dev) return null;
    if (pasid === 0) return dev.domain.id || null;
    for (const h of dev.sva.values()) if (h.pasid === pasid) return h.domain.id;
    return null;
  }

  /**
   * iommuProbeDevice - put device @name behind this IOMMU (iommu_probe_device): a requester
   * id, and a default domain of the type asked for, attached. ENOSPC when the device table
   * is full; EINVAL for a bad option.
   */
  iommuProbeDevice(name: string, o: IommuDeviceOptions = {}): IommuDevice {
    const bits = o.dmaMaskBits ?? 64;
    if (!Number.isInteger(bits) || bits < 24 || bits > 64) throw einval("dmaMaskBits", `${bits} is not 24..64`);
    const type: IommuDomainType = o.defaultDomain ?? "dma";
    if (!["dma", "dma-fq", "identity"].includes(type)) throw einval("defaultDomain", `${String(type)} is not dma, dma-fq or identity`);
    if (o.pri && !o.ats) throw einval("pri", "PRI needs ATS (the endpoint must translate to ask for pages)");
    if (o.pci !== undefined && (!(o.pci instanceof PciDev) || o.pci.kind !== "endpoint")) throw einval("pci", "not an endpoint of a PCIe topology");
    if (o.pci && this.devices.some((d) => d?.pci === o.pci)) throw einval("pci", `${o.pci.name} is already behind this IOMMU`);
    const rid = this.devices.findIndex((d) => d === undefined);
    if (rid < 0) throw new DmaError("ENOSPC", `iommuProbeDevice: all ${this.devices.length} device-table entries in use`, { arg: "iommu.devices" });
    const dev = new IommuDevice(name, rid, o);
    dev.domain = this.blocked;
    this.devices[rid] = dev;
    dev.defaultDomain = iommuDomainAlloc(this, type);
    iommuAttachDevice(dev.defaultDomain, dev);
    this.k.trace.emit("iommu.probe", { dev: name, rid, ats: dev.ats, pri: dev.pri, pasid: dev.pasid, domain: type }, this.k.clock.now);
    return dev;
  }

  /** program - write @dev's context entry from its current domain. */
  program(dev: IommuDevice): void {
    const d = dev.domain;
    const type = d.type === "blocked" ? IO.IODOM_BLOCKED : d.type === "identity" ? IO.IODOM_IDENTITY : IO.IODOM_PAGING;
    const c = this.k.core;
    c.check(c.x.iommuSetDevice(dev.rid, dev.dteFlags, type, d.id, d.pgtable?.pfn ?? 0), "iommuSetDevice");
  }

  /**
   * iommuTranslate - translate @reqs as their devices' requests would be (ATC, IOTLB, walk),
   * a ring's worth per core call. @check: re-walk cached hits and mark stale ones;
   * @nocache: bypass the ATC and IOTLB. Charges IOTLB hits, ATS round trips and walk levels.
   */
  iommuTranslate(reqs: IoRequest[], opts: { check?: boolean; nocache?: boolean } = {}): IoTranslation[] {
    const c = this.k.core;
    const flags = (opts.check ? IO.IOX_CHECK : 0) | (opts.nocache ? IO.IOX_NOCACHE : 0);
    const max = c.x.iommuTranslateMax();
    const out: IoTranslation[] = new Array(reqs.length);
    const base = c.ring + H.RING_ENTRY0;
    for (let at = 0; at < reqs.length; at += max) {
      const n = Math.min(max, reqs.length - at);
      const u32 = c.u32;
      for (let i = 0; i < n; i++) {
        const r = reqs[at + i]!;
        if (this.devices[r.dev.rid] !== r.dev) throw einval(`reqs[${at + i}].dev`, `${r.dev.name} is not behind this IOMMU`);
        const w = (base + i * IO.IOREQ_SIZE) >>> 2;
        const iova = r.iova;
        if (!Number.isSafeInteger(iova) || iova < 0) throw einval(`reqs[${at + i}].iova`, `${iova} is not an address`);
        u32[w + IO.IOQ_IOVA / 4] = iova % 2 ** 32;
        u32[w + IO.IOQ_IOVA / 4 + 1] = Math.floor(iova / 2 ** 32);
        u32[w + IO.IOQ_DEV / 4] = r.dev.rid;
        u32[w + IO.IOQ_PASID / 4] = r.pasid ?? 0;
        u32[w + IO.IOQ_ACCESS / 4] = accessBits(r.access ?? "read", r.priv ?? false);
      }
      c.check(c.x.iommuTranslate(n, flags), "iommuTranslate");
      const v = c.u32;
      for (let i = 0; i < n; i++) {
        const w = (base + i * IO.IOREQ_SIZE) >>> 2;
        const st = v[w + IO.IOQ_STATUS / 4]! | 0;
        const pa = v[w + IO.IOQ_PA / 4]! + v[w + IO.IOQ_PA / 4 + 1]! * 2 ** 32;
        out[at + i] = st >= 0x10000
          ? { pa: null, fault: ioFault(st), source: null, size: 0, stale: false }
          : { pa, fault: null, source: SOURCES[(st >> 2) & 3]!, size: st & 3, stale: (st & IO.IOST_STALE) !== 0 };
      }
      this.account(n);
    }
    return out;
  }

  /**
   * iommuTranslateIovas - translate @iovas[0..@opts.n) (byte addresses; default all) as
   * @dev's requests with one PASID and access, writing the physical addresses to @pas, as a
   * DMA engine walking a descriptor list does: the context is decoded once, and the first
   * fault stops the list (`translated` entries were, `fault` says why the next was not).
   * Arrays from `kernel.kheap.kvcalloc` are read and written in place; others go through
   * the ring. Charged as iommuTranslate. EINVAL for a device not behind this IOMMU, a short
   * @pas, or an entry that is not an address, with nothing translated.
   */
  iommuTranslateIovas(
    dev: IommuDevice, iovas: Float64Array, pas: Float64Array,
    opts: { n?: number; pasid?: number; access?: IoAccess; priv?: boolean; check?: boolean; nocache?: boolean } = {},
  ): { translated: number; fault: IoFaultReason | null } {
    const c = this.k.core;
    if (this.devices[dev.rid] !== dev) throw einval("dev", `${dev.name} is not behind this IOMMU`);
    if (!(iovas instanceof Float64Array)) throw einval("iovas", "must be a Float64Array");
    if (!(pas instanceof Float64Array)) throw einval("pas", "must be a Float64Array");
    const n = opts.n ?? iovas.length;
    if (!Number.isSafeInteger(n) || n < 0 || n > iovas.length) throw einval("n", `${n} is not a count of iovas' ${iovas.length} entries`);
    if (pas.length < n) throw einval("pas", `holds ${pas.length} entries, fewer than n (${n})`);
    // In place, or apart: a shifted view of the same memory would be overwritten before it is read.
    if (pas.buffer === iovas.buffer && pas.byteOffset !== iovas.byteOffset &&
      pas.byteOffset < iovas.byteOffset + n * 8 && iovas.byteOffset < pas.byteOffset + n * 8) {
      throw einval("pas", "overlaps iovas without being it");
    }
    const flags = (opts.check ? IO.IOX_CHECK : 0) | (opts.nocache ? IO.IOX_NOCACHE : 0);
    const access = accessBits(opts.access ?? "read", opts.priv ?? false);
    const pasid = opts.pasid ?? 0;
    const inAt = c.kheapAddr(iovas, 0, n);
    const outAt = c.kheapAddr(pas, 0, n);
    const max = inAt && outAt ? n : c.x.iommuTranslateIovasMax();
    // More than one call: every entry is checked first, so a bad one changes nothing.
    if (n > max) {
      for (let i = 0; i < n; i++) {
        const v = iovas[i]!;
        if (!(v >= 0 && v < 2 ** 64 && Number.isInteger(v))) throw einval("iovas", `iovas[${i}] is not an address (an integer in [0, 2^64))`);
      }
    }
    const first = (c.ring + H.RING_ENTRY0) >>> 3;
    let done = 0;
    do { // at least one call, so an empty list's PASID and access are checked too
      const m = Math.min(max, n - done);
      if (!inAt) c.f64.set(iovas.subarray(done, done + m), first);
      const got = c.check(c.x.iommuTranslateIovas(dev.rid, pasid, access, flags, m, inAt && inAt + done * 8, outAt && outAt + done * 8), "iommuTranslateIovas");
      if (!outAt) pas.set(c.f64Fresh.subarray(first, first + got), done);
      const stop = c.reg32(IO.REG_IO_STOP);
      this.account(got + (stop ? 1 : 0));
      done += got;
      if (stop) return { translated: done, fault: ioFault(stop) };
    } while (done < n);
    return { translated: done, fault: null };
  }

  /** account - add the last batch's registers (@n requests) to the stats and charge them. */
  account(n: number): void {
    const c = this.k.core;
    const atc = c.reg32(IO.REG_ATC_HITS);
    const iotlb = c.reg32(IO.REG_IOTLB_HITS);
    const walks = c.reg32(IO.REG_IO_WALKS);
    const loads = c.reg32(IO.REG_IO_LOADS);
    const ats = c.reg32(IO.REG_ATS_REQS);
    const s = this.stats;
    s.translations += n;
    s.atcHits += atc;
    s.iotlbHits += iotlb;
    s.walks += walks;
    s.walkLoads += loads;
    s.faults += c.reg32(IO.REG_IO_FAULTS);
    s.atsRequests += ats;
    s.stale += c.reg32(IO.REG_IO_STALE);
    const costs = this.k.costs;
    this.k.clock.advance((iotlb + walks) * costs.iotlbHit.ns + loads * costs.walkLevel.ns + ats * costs.pcieRoundTrip.ns);
  }
}

/** The IOA_* bits of an access. */
export function accessBits(a: IoAccess, priv: boolean): number {
  const bits = a === "write" ? IO.IOA_WRITE : a === "exec" ? IO.IOA_EXEC | IO.IOA_READ : a === "read" ? IO.IOA_READ : -1;
  if (bits < 0) throw einval("access", `${String(a)} is not read, write or exec`);
  return bits | (priv ? IO.IOA_PRIV : 0);
}
