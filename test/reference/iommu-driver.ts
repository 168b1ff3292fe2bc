/**
 * The Driver pair (test/reference/driver.ts) extended with the IOMMU: CoreIommuDriver over
 * the WASM core's exports, RefIommuDriver over the reference model (test/reference/iommu.ts),
 * with the same return conventions: rc (>= 0, or -errno) and, on failure, the reason and its
 * detail word (as u32 on both sides).
 */
import * as E from "../../src/abi/errno.js";
import * as H from "../../src/abi/header.js";
import * as I from "../../src/abi/iommu.js";
import * as R from "../../src/abi/reason.js";
import type { MachineConfig } from "../../src/config.js";
import { bootCore } from "../../src/machine.js";
import { fail } from "./buddy.js";
import { CoreDriver, type Driver, type Result } from "./driver.js";
import { type DmaReq, type IoCounts, type IoReq, type IommuState, RefIommu, dirWord, ioEntryString } from "./iommu.js";
import { RefDriver } from "./ref-driver.js";

export type { DmaReq, DmaStats, IoReq, IommuState } from "./iommu.js";

export interface IommuDriver extends Driver {
  iommuSetDevice(dev: number, flags: number, type: number, domain: number, root: number): Result;
  /** @root < 0 clears the PASID's entry. */
  iommuSetPasid(dev: number, pasid: number, domain: number, root: number): Result;
  /** rc, out: [status, pa] per request, counts: the batch's registers. */
  iommuTranslate(reqs: IoReq[], flags: number): Result;
  /**
   * rc (entries translated), out: their physical addresses, stop: the fault that stopped the
   * list (0: none), counts. @place: 0 through the ring, 1 the kernel heap (input then output),
   * 2 the kernel heap translated in place.
   */
  iommuTranslateIovas(dev: number, pasid: number, access: number, flags: number, iovas: number[], place: number): Result;
  iotlbInvalidate(domain: number, pasid: number, vpn: number, npages: number, gran: number): Result;
  atcInvalidate(dev: number, pasid: number, vpn: number, npages: number, allPasids: boolean): Result;
  /**
   * rc, out: [status, done, events, first PA, stop PA] per request, counts, unheld. @data is
   * the data area's initial bytes (it follows the last request; shorter: the rest is zeros).
   * No bytes come back: the reference keeps no frame contents to compare them with. Each
   * request's IOD_DIR is dirWord(q) (IODF_BYPASS with q.bypass), and IOD_P2P_LO/HI its window.
   */
  iommuDma(reqs: DmaReq[], data: Uint8Array, flags: number): Result;
  iommuState(): IommuState;
}

/* ---------------- the core ---------------- */

export class CoreIommuDriver extends CoreDriver implements IommuDriver {
  static override async create(cfg: MachineConfig): Promise<CoreIommuDriver> {
    return new CoreIommuDriver((await bootCore(cfg)).core, cfg);
  }

  #fail(rc: number): Result {
    return { rc, reason: this.core.x.coreReason() >>> 0, arg: this.core.x.coreReasonArg() >>> 0 };
  }

  #rc(rc: number): Result {
    return rc < 0 ? this.#fail(rc) : { rc };
  }

  #u64(addr: number): number {
    const u32 = this.core.u32;
    return u32[(addr + 4) >>> 2]! * 2 ** 32 + u32[addr >>> 2]!;
  }

  #counts(): IoCounts {
    const c = this.core;
    return {
      atcHits: c.reg32(I.REG_ATC_HITS), iotlbHits: c.reg32(I.REG_IOTLB_HITS), walks: c.reg32(I.REG_IO_WALKS),
      loads: c.reg32(I.REG_IO_LOADS), faults: c.reg32(I.REG_IO_FAULTS), stale: c.reg32(I.REG_IO_STALE),
      atsReqs: c.reg32(I.REG_ATS_REQS),
    };
  }

  iommuSetDevice(dev: number, flags: number, type: number, domain: number, root: number): Result {
    return this.#rc(this.core.x.iommuSetDevice(dev, flags, type, domain, root));
  }
  iommuSetPasid(dev: number, pasid: number, domain: number, root: number): Result {
    return this.#rc(this.core.x.iommuSetPasid(dev, pasid, domain, root));
  }
  iommuTranslate(reqs: IoReq[], flags: number): Result {
    const c = this.core;
    const base = c.ring + H.RING_ENTRY0;
    const u32 = c.u32;
    reqs.forEach((q, i) => {
      const w = (base + i * I.IOREQ_SIZE) >>> 2;
      u32[w + I.IOQ_IOVA / 4] = q.lo;
      u32[w + I.IOQ_IOVA / 4 + 1] = q.hi;
      u32[w + I.IOQ_DEV / 4] = q.dev;
      u32[w + I.IOQ_PASID / 4] = q.pasid;
      u32[w + I.IOQ_ACCESS / 4] = q.access;
    });
    const rc = c.x.iommuTranslate(reqs.length, flags);
    if (rc < 0) return this.#fail(rc);
    const out = reqs.map((_, i) => {
      const q = base + i * I.IOREQ_SIZE;
      return [c.i32[(q + I.IOQ_STATUS) >>> 2]!, this.#u64(q + I.IOQ_PA)];
    });
    return { rc, out, counts: this.#counts() };
  }
  iommuTranslateIovas(dev: number, pasid: number, access: number, flags: number, iovas: number[], place: number): Result {
    const c = this.core;
    const heap = c.hdr(H.HDR_KHEAP_BASE);
    const inAt = place === 0 ? 0 : heap;
    const outAt = place === 0 ? 0 : place === 1 ? heap + iovas.length * 8 : heap;
    const src = (inAt || c.ring + H.RING_ENTRY0) >>> 3;
    if (place !== 0 || iovas.length <= Math.floor((this.cfg.ringEntries * H.RENT_SIZE) / 8)) c.f64.set(iovas, src);
    const rc = c.x.iommuTranslateIovas(dev, pasid, access, flags, iovas.length, inAt, outAt);
    if (rc < 0) return this.#fail(rc);
    const dst = (outAt || c.ring + H.RING_ENTRY0) >>> 3;
    const out = Array.from(c.f64.subarray(dst, dst + rc));
    return { rc, out, stop: c.i32[(c.ring + I.REG_IO_STOP) >>> 2]!, counts: this.#counts() };
  }
  iotlbInvalidate(domain: number, pasid: number, vpn: number, npages: number, gran: number): Result {
    return this.#rc(this.core.x.iotlbInvalidate(domain, pasid, vpn, npages, gran));
  }
  atcInvalidate(dev: number, pasid: number, vpn: number, npages: number, allPasids: boolean): Result {
    return this.#rc(this.core.x.atcInvalidate(dev, pasid, vpn, npages, allPasids ? 1 : 0));
  }
  iommuDma(reqs: DmaReq[], data: Uint8Array, flags: number): Result {
    const c = this.core;
    const base = c.ring + H.RING_ENTRY0;
    const u32 = c.u32;
    reqs.forEach((q, i) => {
      const w = (base + i * I.IODMA_SIZE) >>> 2;
      u32[w + I.IOD_IOVA / 4] = q.iova % 2 ** 32;
      u32[w + I.IOD_IOVA / 4 + 1] = Math.floor(q.iova / 2 ** 32);
      u32[w + I.IOD_DEV / 4] = q.dev;
      u32[w + I.IOD_PASID / 4] = q.pasid;
      u32[w + I.IOD_LEN / 4] = q.len;
      u32[w + I.IOD_DIR / 4] = dirWord(q);
      u32[w + I.IOD_DATA / 4] = q.data;
      u32[w + I.IOD_P2P_LO / 4] = q.p2pLo;
      u32[w + I.IOD_P2P_HI / 4] = q.p2pHi;
    });
    const area = base + reqs.length * I.IODMA_SIZE;
    const room = Math.max(0, this.cfg.ringEntries * H.RENT_SIZE - reqs.length * I.IODMA_SIZE);
    if (room > 0) {
      c.u8.fill(0, area, area + room);
      c.u8.set(data.subarray(0, room), area);
    }
    const rc = c.x.iommuDma(reqs.length, flags);
    if (rc < 0) return this.#fail(rc);
    const out = reqs.map((_, i) => {
      const q = base + i * I.IODMA_SIZE;
      const i32 = c.i32;
      return [i32[(q + I.IOD_STATUS) >>> 2]!, i32[(q + I.IOD_DONE) >>> 2]! >>> 0, i32[(q + I.IOD_EVENTS) >>> 2]! >>> 0, this.#u64(q + I.IOD_PA), this.#u64(q + I.IOD_STOP_PA)];
    });
    return { rc, out, counts: this.#counts(), unheld: c.reg32(I.REG_IO_UNHELD) };
  }

  /** A cache region's valid entries (IOTE_SIZE each). */
  #entries(base: number, n: number): string[] {
    const u32 = this.core.u32;
    const out: string[] = [];
    for (let e = 0; e < n; e++) {
      const w = (base + e * I.IOTE_SIZE) >>> 2;
      const lo = u32[w]!;
      if (!(lo & I.IOTE_TAG_V)) continue;
      const vpnS = u32[w + 1]! * 2 ** 29 + (lo >>> I.IOTE_TAG_VPN_SHIFT);
      const stamp = u32[w + I.IOTE_STAMP / 4 + 1]! * 2 ** 32 + u32[w + I.IOTE_STAMP / 4]!;
      out.push(ioEntryString(e, vpnS, (lo >>> I.IOTE_TAG_SIZE_SHIFT) & 3, u32[w + I.IOTE_ID / 4]!, u32[w + I.IOTE_DATA / 4]!, u32[w + I.IOTE_DATA / 4 + 1]!, stamp));
    }
    return out;
  }

  iommuState(): IommuState {
    const c = this.core;
    const u32 = c.u32;
    const io = this.cfg.iommu;
    const devtab = c.hdr(H.HDR_DEVTAB_BASE);
    const devs = [];
    const atc = [];
    for (let dev = 0; dev < io.devices; dev++) {
      const d = devtab + dev * I.DTE_SIZE;
      const at = (off: number) => u32[(d + off) >>> 2]!;
      const pasids = [];
      for (let s = 0; s < I.DTE_PASIDS; s++) {
        const p = d + I.DTE_PASID0 + s * I.PSE_SIZE;
        pasids.push([u32[(p + I.PSE_PASID) >>> 2]!, u32[(p + I.PSE_DOMAIN) >>> 2]!, u32[(p + I.PSE_ROOT) >>> 2]!]);
      }
      devs.push({
        flags: at(I.DTE_FLAGS), type: at(I.DTE_TYPE), domain: at(I.DTE_DOMAIN), root: at(I.DTE_ROOT),
        atcTick: this.#u64(d + I.DTE_ATC_TICK), atcLive: [0, 1, 2].map((s) => at(I.DTE_ATC_LIVE + 4 * s)), pasids,
      });
      atc.push(this.#entries(c.hdr(H.HDR_ATC_BASE) + dev * c.hdr(H.HDR_ATC_STRIDE), io.atc.sets * io.atc.ways));
    }
    return {
      devs,
      iotlb: this.#entries(c.hdr(H.HDR_IOTLB_BASE), io.iotlb.sets * io.iotlb.ways),
      iotlbTick: this.#u64(H.HDR_ADDR + H.HDR_IOTLB_TICK),
      iotlbLive: [0, 1, 2].map((s) => c.hdr(H.HDR_IOTLB_LIVE + 4 * s)),
      atc,
    };
  }
}

/* ---------------- the reference ---------------- */

export class RefIommuDriver extends RefDriver implements IommuDriver {
  readonly iommu: RefIommu;

  constructor(cfg: MachineConfig) {
    super(cfg);
    this.iommu = new RefIommu(this.m.mmu, this.m.phys, cfg);
  }

  #r(fn: () => Result | number): Result {
    const v = this.m.call(fn);
    if (typeof v === "number") return v < 0 ? { rc: v, reason: this.m.reason >>> 0, arg: this.m.arg >>> 0 } : { rc: v };
    return v;
  }

  /** pgdFree, with the core's extra check: -EBUSY while a device or PASID entry walks the root. */
  override pgdFree(root: number): Result {
    return this.#r(() => {
      const pts = this.m.pts;
      const cr3s = this.m.mmu.cpus.map((c) => c.cr3);
      pts.rootCheck(root);
      if (pts.phys.index[root] === 0 && !cr3s.includes(root)) {
        const dev = this.iommu.devtabUser(root);
        if (dev >= 0) fail(E.EBUSY, R.R_ROOT_DEVICE, dev);
      }
      pts.pgdFree(root, cr3s);
      return 0;
    });
  }

  iommuSetDevice(dev: number, flags: number, type: number, domain: number, root: number): Result {
    return this.#r(() => this.iommu.setDevice(dev, flags, type, domain, root));
  }
  iommuSetPasid(dev: number, pasid: number, domain: number, root: number): Result {
    return this.#r(() => this.iommu.setPasid(dev, pasid, domain, root));
  }
  iommuTranslate(reqs: IoReq[], flags: number): Result {
    return this.#r(() => {
      const r = this.iommu.translate(reqs, flags);
      return { rc: reqs.length, out: r.out, counts: r.counts };
    });
  }
  iommuTranslateIovas(dev: number, pasid: number, access: number, flags: number, iovas: number[], place: number): Result {
    return this.#r(() => {
      const r = this.iommu.translateIovas(dev, pasid, access, flags, iovas, place === 0);
      return { rc: r.out.length, out: r.out, stop: r.stop, counts: r.counts };
    });
  }
  iotlbInvalidate(domain: number, pasid: number, vpn: number, npages: number, gran: number): Result {
    return this.#r(() => this.iommu.iotlbInvalidate(domain, pasid, vpn, npages, gran));
  }
  atcInvalidate(dev: number, pasid: number, vpn: number, npages: number, allPasids: boolean): Result {
    return this.#r(() => this.iommu.atcInvalidate(dev, pasid, vpn, npages, allPasids));
  }
  iommuDma(reqs: DmaReq[], _data: Uint8Array, flags: number): Result {
    return this.#r(() => {
      const r = this.iommu.dma(reqs, flags);
      return { rc: reqs.length, out: r.out, counts: r.counts, unheld: r.unheld };
    });
  }
  iommuState(): IommuState {
    return this.iommu.state();
  }
}

/** The core's iommuTranslateMax for @cfg (what RefIommu.translateMax computes). */
export function translateMax(cfg: MachineConfig): number {
  return Math.floor((cfg.ringEntries * H.RENT_SIZE) / I.IOREQ_SIZE);
}
