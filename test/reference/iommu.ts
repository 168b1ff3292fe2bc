/**
 * Reference model: the IOMMU in plain TypeScript, the twin of assembly/iommu/*.ts: the
 * device table (context and PASID entries), the IOTLB and the per-device ATCs (one
 * set-associative cache type, LRU), the translation of a device's request (ATC, IOTLB, then
 * the walk RefMmu.walk already models), invalidation, and the DMA engine.
 *
 * Frame bytes: the reference machine keeps no data-frame contents (RefPhys only knows whether
 * a frame has a backing slot), so the DMA model reproduces every non-byte result (status,
 * bytes done, events, addresses, unheld pages, the backing slots a write allocates) and no
 * bytes: the differential test compares only those.
 */
import * as E from "../../src/abi/errno.js";
import * as F from "../../src/abi/frame.js";
import * as H from "../../src/abi/header.js";
import * as I from "../../src/abi/iommu.js";
import * as R from "../../src/abi/reason.js";
import * as X from "../../src/abi/x86.js";
import { fail, type RefPhys } from "./buddy.js";
import { permCheck, type RefMmu } from "./mmu.js";
import { RefIoCache } from "./iocache.js";
import { D, pfnOf } from "./pgtable.js";

export { RefIoCache, ioEntryString } from "./iocache.js";

const IO_CTRL = H.CTRL_WP | H.CTRL_NXE;
const PAGES_MAX = 2 ** 52;

/** A device-table entry: the context entry, DTE_PASIDS PASID slots (0 = free), the ATC. */
export interface RefDte {
  flags: number;
  type: number;
  domain: number;
  root: number;
  atcTick: number;
  pasid: number[];
  pdomain: number[];
  proot: number[];
  atc: RefIoCache;
}

/** A translate request: the IOVA as two u32 words. */
export interface IoReq {
  lo: number;
  hi: number;
  dev: number;
  pasid: number;
  access: number;
}

/**
 * A DMA request: the IOVA (below 2^53; with @bypass a physical address), bytes, direction
 * and offset in the data area, and the P2PDMA frames [p2pLo, p2pHi) (u32 each) the root
 * complex forwards it to. The IOD_DIR word is @dir (IODIR_*, or any other u32 to test the
 * check) with IODF_BYPASS added when @bypass is set: see dirWord.
 */
export interface DmaReq {
  iova: number;
  dev: number;
  pasid: number;
  len: number;
  dir: number;
  bypass: boolean;
  data: number;
  p2pLo: number;
  p2pHi: number;
}

/** The IOD_DIR word of @q, as a u32. */
export function dirWord(q: DmaReq): number {
  return (q.dir | (q.bypass ? I.IODF_BYPASS : 0)) >>> 0;
}

/** What the DMA engine did, for the differential test's statistics (not compared). */
export interface DmaStats {
  /** Requests with IODF_BYPASS in batches that ran, and the pages they moved. */
  bypassReqs: number;
  bypassPages: number;
  /** Requests that stopped with IODS_P2P. */
  p2pStops: number;
  /** Pages of translated requests that reached a P2PDMA frame inside [p2pLo, p2pHi). */
  windowPages: number;
}

/** The ring registers of a translate or DMA batch (REG_ATC_HITS .. REG_ATS_REQS). */
export interface IoCounts {
  atcHits: number; iotlbHits: number; walks: number; loads: number; faults: number; stale: number; atsReqs: number;
}

export interface IommuState {
  devs: { flags: number; type: number; domain: number; root: number; atcTick: number; atcLive: number[]; pasids: number[][] }[];
  iotlb: string[];
  iotlbTick: number;
  iotlbLive: number[];
  atc: string[][];
}

const zeroCounts = (): IoCounts => ({ atcHits: 0, iotlbHits: 0, walks: 0, loads: 0, faults: 0, stale: 0, atsReqs: 0 });

export class RefIommu {
  readonly mmu: RefMmu;
  readonly phys: RefPhys;
  readonly vaBits: number;
  readonly ringEntries: number;
  readonly devs: RefDte[];
  readonly iotlb: RefIoCache;
  /** The IOTLB's LRU clock (HDR_IOTLB_TICK). */
  tick = 0;
  /** The physical address of the last successful translation (ioPa). */
  pa = 0;
  n: IoCounts = zeroCounts();
  readonly stats: DmaStats = { bypassReqs: 0, bypassPages: 0, p2pStops: 0, windowPages: 0 };

  constructor(mmu: RefMmu, phys: RefPhys, cfg: { levels: number; ringEntries: number; iommu: { devices: number; iotlb: { sets: number; ways: number }; atc: { sets: number; ways: number } } }) {
    this.mmu = mmu;
    this.phys = phys;
    this.vaBits = cfg.levels === 5 ? 57 : 48;
    this.ringEntries = cfg.ringEntries;
    this.iotlb = new RefIoCache(cfg.iommu.iotlb.sets, cfg.iommu.iotlb.ways);
    const z = () => new Array<number>(I.DTE_PASIDS).fill(0);
    this.devs = Array.from({ length: cfg.iommu.devices }, () => ({
      flags: 0, type: 0, domain: 0, root: 0, atcTick: 0, pasid: z(), pdomain: z(), proot: z(),
      atc: new RefIoCache(cfg.iommu.atc.sets, cfg.iommu.atc.ways),
    }));
  }

  #dev(dev: number): RefDte {
    if (!(dev >= 0 && dev < this.devs.length)) fail(E.EINVAL, R.R_IO_DEV, dev);
    return this.devs[dev]!;
  }

  /* ---- the device table (devtab.ts) ---- */

  setDevice(dev: number, flags: number, type: number, domain: number, root: number): number {
    const d = this.#dev(dev);
    if (flags & ~I.DTE_FLAGS_ALL) fail(E.EINVAL, R.R_FLAGS, flags);
    if (type > I.IODOM_PAGING) fail(E.EINVAL, R.R_IO_DOMAIN, type);
    let r = 0;
    if (type === I.IODOM_PAGING) {
      if (domain < 1 || domain > I.IOMMU_MAX_DOMAIN) fail(E.EINVAL, R.R_IO_DOMAIN, domain);
      r = this.mmu.pts.rootCheck(root);
    } else {
      domain = 0;
    }
    d.flags = flags;
    d.type = type;
    d.domain = domain;
    d.root = r;
    return 0;
  }

  setPasid(dev: number, pasid: number, domain: number, root: number): number {
    const d = this.#dev(dev);
    if (pasid < 1 || pasid > I.PASID_MAX) fail(E.EINVAL, R.R_PASID, pasid);
    let s = d.pasid.indexOf(pasid);
    if (root < 0) {
      if (s < 0) fail(E.ENOENT, R.R_PASID, pasid);
      d.pasid[s] = d.pdomain[s] = d.proot[s] = 0;
      return 0;
    }
    if (domain < 1 || domain > I.IOMMU_MAX_DOMAIN) fail(E.EINVAL, R.R_IO_DOMAIN, domain);
    const r = this.mmu.pts.rootCheck(root);
    if (s < 0) s = d.pasid.indexOf(0);
    if (s < 0) fail(E.ENOSPC, R.R_PASID_FULL, I.DTE_PASIDS);
    d.pasid[s] = pasid;
    d.pdomain[s] = domain;
    d.proot[s] = r;
    return 0;
  }

  /** The first device whose context or PASID entry walks @root, or -1. */
  devtabUser(root: number): number {
    return this.devs.findIndex((d) => (d.type === I.IODOM_PAGING && d.root === root) || d.pasid.some((p, s) => p !== 0 && d.proot[s] === root));
  }

  /* ---- translation (translate.ts) ---- */

  #faulted(kind: number, code: number): number {
    this.n.faults++;
    return kind * 65536 + code;
  }

  static usable(c: RefIoCache, e: number, acc: number): boolean {
    return permCheck(c.dlo[e]!, c.dhi[e]!, acc, IO_CTRL, 0) === 0 && (!(acc & H.ACC_WRITE) || (c.dlo[e]! & D) !== 0);
  }

  static hitPa(c: RefIoCache, e: number, lvpn: number, vaLo: number): number {
    const pages = 2 ** (9 * c.size[e]!);
    return pfnOf(c.dlo[e]! & ~0xfff, c.dhi[e]!) * 4096 + (lvpn % pages) * 4096 + (vaLo & 0xfff);
  }

  #stale(root: number, lvpn: number, vaLo: number, acc: number, pa: number): boolean {
    const w = this.mmu.walk(root, lvpn, vaLo, acc, IO_CTRL, 0, false);
    return w.status !== 0 || w.pa !== pa;
  }

  /** ioTranslate: one request's status; sets this.pa. */
  translateOne(dev: number, pasid: number, vaLo: number, vaHi: number, a: number, flags: number): number {
    const d = this.devs[dev]!;
    if (!(d.flags & I.DTE_VALID)) return this.#faulted(I.IOF_BLOCKED, 0);
    let domain: number;
    let root: number;
    if (pasid === 0) {
      if (d.type === I.IODOM_BLOCKED) return this.#faulted(I.IOF_BLOCKED, 0);
      if (d.type === I.IODOM_IDENTITY) {
        this.pa = vaHi * 2 ** 32 + vaLo;
        return I.IOSRC_DIRECT << 2;
      }
      domain = d.domain;
      root = d.root;
    } else {
      if (!(d.flags & I.DTE_PASID)) return this.#faulted(I.IOF_PASID, 0);
      const s = d.pasid.indexOf(pasid);
      if (s < 0) return this.#faulted(I.IOF_PASID, 0);
      domain = d.pdomain[s]!;
      root = d.proot[s]!;
    }
    if (vaHi >>> (this.vaBits - 33) !== 0) return this.#faulted(I.IOF_RANGE, 0);
    const acc = (a & I.IOA_PRIV ? 0 : H.ACC_USER) | (a & I.IOA_WRITE ? H.ACC_WRITE : 0) | (a & I.IOA_EXEC ? H.ACC_FETCH : 0);
    const lvpn = vaHi * 2 ** 20 + (vaLo >>> 12);
    const cache = (flags & I.IOX_NOCACHE) === 0;
    const check = (flags & I.IOX_CHECK) !== 0;
    const ats = cache && (d.flags & I.DTE_ATS) !== 0;
    const atc = d.atc;
    if (ats) {
      const e = atc.lookup(lvpn, pasid);
      if (e >= 0) {
        if (RefIommu.usable(atc, e, acc)) {
          atc.stamp[e] = ++d.atcTick;
          this.pa = RefIommu.hitPa(atc, e, lvpn, vaLo);
          this.n.atcHits++;
          let st = atc.size[e]! | (I.IOSRC_ATC << 2);
          if (check && this.#stale(root, lvpn, vaLo, acc, this.pa)) {
            st |= I.IOST_STALE;
            this.n.stale++;
          }
          return st;
        }
        atc.drop(e);
      }
      this.n.atsReqs++;
    }
    const id = ((domain << I.PASID_BITS) | pasid) >>> 0;
    const tlb = this.iotlb;
    if (cache) {
      const e = tlb.lookup(lvpn, id);
      if (e >= 0) {
        if (RefIommu.usable(tlb, e, acc)) {
          tlb.stamp[e] = ++this.tick;
          this.pa = RefIommu.hitPa(tlb, e, lvpn, vaLo);
          this.n.iotlbHits++;
          const size = tlb.size[e]!;
          let st = size | (I.IOSRC_IOTLB << 2);
          if (check && this.#stale(root, lvpn, vaLo, acc, this.pa)) {
            st |= I.IOST_STALE;
            this.n.stale++;
          }
          if (ats) atc.fill(lvpn, pasid, size, tlb.dlo[e]!, tlb.dhi[e]!, ++d.atcTick);
          return st;
        }
        tlb.drop(e);
      }
    }
    const w = this.mmu.walk(root, lvpn, vaLo, acc, IO_CTRL, 0, true);
    this.n.walks++;
    this.n.loads += w.loads;
    if (w.status !== 0) {
      const code = w.status & 0xffff;
      return this.#faulted(code & X.PF_RSVD ? I.IOF_RSVD : code & X.PF_P ? I.IOF_PERM : I.IOF_NOT_PRESENT, code);
    }
    this.pa = w.pa;
    if (cache) {
      tlb.fill(lvpn, id, w.size, w.dlo, w.dhi, ++this.tick);
      if (ats) atc.fill(lvpn, pasid, w.size, w.dlo, w.dhi, ++d.atcTick);
    }
    return w.size | (I.IOSRC_WALK << 2);
  }

  /** ioRequestCheck. */
  #requestCheck(dev: number, pasid: number, a: number, i: number): void {
    if (!(dev >= 0 && dev < this.devs.length)) fail(E.EINVAL, R.R_IO_DEV, i);
    if (pasid > I.PASID_MAX) fail(E.EINVAL, R.R_PASID, pasid);
    if (a & ~I.IOA_ALL) fail(E.EINVAL, R.R_ACCESS, i);
  }

  translateMax(): number {
    return Math.floor((this.ringEntries * H.RENT_SIZE) / I.IOREQ_SIZE);
  }

  /** iommuTranslate: per request [status, pa], and the batch's counts. */
  translate(reqs: IoReq[], flags: number): { out: [number, number][]; counts: IoCounts } {
    if (reqs.length > this.translateMax()) fail(E.EINVAL, R.R_COUNT, reqs.length);
    if (flags & ~I.IOX_ALL) fail(E.EINVAL, R.R_FLAGS, flags);
    reqs.forEach((q, i) => this.#requestCheck(q.dev, q.pasid, q.access, i));
    this.n = zeroCounts();
    const out = reqs.map((q): [number, number] => {
      const st = this.translateOne(q.dev, q.pasid, q.lo, q.hi, q.access, flags);
      return [st, st < 0x10000 ? this.pa : 0];
    });
    return { out, counts: this.n };
  }

  /**
   * iommuTranslateIovas: @dev's requests with @pasid and access @a for each IOVA (a double),
   * up to the first fault; [@ring]: through the ring (its capacity bounds the count).
   */
  translateIovas(dev: number, pasid: number, a: number, flags: number, iovas: number[], ring: boolean): { out: number[]; stop: number; counts: IoCounts } {
    this.#requestCheck(dev, pasid, a, dev);
    if (flags & ~I.IOX_ALL) fail(E.EINVAL, R.R_FLAGS, flags);
    if (ring && iovas.length > Math.floor((this.ringEntries * H.RENT_SIZE) / 8)) fail(E.EINVAL, R.R_COUNT, iovas.length);
    iovas.forEach((v, i) => {
      if (!(v >= 0 && v < 2 ** 64 && v === Math.floor(v))) fail(E.EINVAL, R.R_IOVA, i);
    });
    this.n = zeroCounts();
    const out: number[] = [];
    for (const v of iovas) {
      const st = this.translateOne(dev, pasid, v % 2 ** 32, Math.floor(v / 2 ** 32), a, flags);
      if (st >= 0x10000) return { out, stop: st, counts: this.n };
      out.push(this.pa);
    }
    return { out, stop: 0, counts: this.n };
  }

  /* ---- invalidation (iotlb.ts, atc.ts) ---- */

  static pageRangeCheck(vpn: number, npages: number): void {
    if (!(vpn >= 0 && vpn < PAGES_MAX) || vpn !== Math.floor(vpn)) fail(E.EINVAL, R.R_NONCANONICAL, 0);
    if (!(npages >= 1) || npages !== Math.floor(npages) || vpn + npages > PAGES_MAX) fail(E.EINVAL, R.R_SIZE_ZERO, 0);
  }

  iotlbInvalidate(domain: number, pasid: number, vpn: number, npages: number, gran: number): number {
    if (gran > I.IOTLB_INV_GLOBAL) fail(E.EINVAL, R.R_FLAGS, gran);
    if (gran !== I.IOTLB_INV_GLOBAL && (domain < 1 || domain > I.IOMMU_MAX_DOMAIN)) fail(E.EINVAL, R.R_IO_DOMAIN, domain);
    if (pasid > I.PASID_MAX) fail(E.EINVAL, R.R_PASID, pasid);
    let lo = 0;
    let hi = Infinity;
    let mask = 0xffffffff;
    if (gran === I.IOTLB_INV_PAGE) {
      RefIommu.pageRangeCheck(vpn, npages);
      lo = vpn;
      hi = vpn + npages;
    } else if (gran === I.IOTLB_INV_DOMAIN) {
      mask = ~((1 << I.PASID_BITS) - 1);
    } else if (gran === I.IOTLB_INV_GLOBAL) {
      mask = 0;
    }
    return this.iotlb.invalidate((domain << I.PASID_BITS) | pasid, mask, lo, hi);
  }

  atcInvalidate(dev: number, pasid: number, vpn: number, npages: number, allPasids: boolean): number {
    const d = this.#dev(dev);
    if (pasid > I.PASID_MAX) fail(E.EINVAL, R.R_PASID, pasid);
    RefIommu.pageRangeCheck(vpn, npages);
    return d.atc.invalidate(pasid, allPasids ? 0 : 0xffffffff, vpn, vpn + npages);
  }

  /* ---- the DMA engine (dma.ts) ---- */

  /** Whether frame @pfn is held: device memory, reserved, or its folio referenced. */
  held(pfn: number, kind: number): boolean {
    if (kind === F.ZONE_DEVICE || kind === F.ZONE_DEVICE_PRIVATE || kind === F.ZONE_P2PDMA) return true;
    const p = this.phys;
    const f = p.flags[pfn]!;
    if (f & F.PG_reserved) return true;
    return p.refcount[f & F.PG_tail ? p.mapping[pfn]! : pfn]! > 0;
  }

  /**
   * iommuDma: per request [status, done, events, first event PA, stop PA]; counts; unheld pages.
   * A bypass request's address is physical (no translation, no counts); a translated one
   * that reaches a P2PDMA frame outside [p2pLo, p2pHi) stops there with IODS_P2P.
   */
  dma(reqs: DmaReq[], flags: number): { out: number[][]; counts: IoCounts; unheld: number } {
    const n = reqs.length;
    const all = this.ringEntries * H.RENT_SIZE;
    const room = n * I.IODMA_SIZE >= all ? 0 : all - n * I.IODMA_SIZE;
    if (n === 0 || room === 0) fail(E.EINVAL, R.R_COUNT, n);
    if (flags & ~I.IOX_ALL) fail(E.EINVAL, R.R_FLAGS, flags);
    reqs.forEach((q, i) => {
      const dir = dirWord(q);
      this.#requestCheck(q.dev, q.pasid, (dir & 0xff) === I.IODIR_FROM_DEVICE ? I.IOA_WRITE : I.IOA_READ, i);
      if ((dir & ~I.IODF_BYPASS) >>> 0 > I.IODIR_FROM_DEVICE) fail(E.EINVAL, R.R_FLAGS, dir);
      if (q.data + q.len > room) fail(E.EINVAL, R.R_COUNT, i);
    });
    this.n = zeroCounts();
    let unheld = 0;
    const p = this.phys;
    const out = reqs.map((q) => {
      const dir = dirWord(q);
      const toMem = (dir & 0xff) === I.IODIR_FROM_DEVICE;
      const bypass = (dir & I.IODF_BYPASS) !== 0;
      const p2pLo = q.p2pLo >>> 0;
      const p2pHi = q.p2pHi >>> 0;
      let done = 0;
      let events = 0;
      let pagesUnheld = 0;
      let status = 0;
      let first = 0;
      let stop = 0;
      if (bypass) this.stats.bypassReqs++;
      while (done < q.len) {
        const va = q.iova + done;
        const chunk = Math.min(q.len - done, 4096 - (va % 4096));
        let st = 0;
        let pa = va;
        if (!bypass) {
          st = this.translateOne(q.dev, q.pasid, va % 2 ** 32, Math.floor(va / 2 ** 32), toMem ? I.IOA_WRITE : I.IOA_READ, flags);
          if (st >= 0x10000) {
            status = st;
            break;
          }
          pa = this.pa;
        }
        const pfn = Math.floor(pa / 4096);
        const z = pfn < p.nrFrames ? p.zoneOf(pfn) : undefined;
        if (!z) {
          status = I.IODS_MMIO;
          stop = pa;
          break;
        }
        if (z.kind === F.ZONE_P2PDMA && !bypass && (pfn < p2pLo || pfn >= p2pHi)) {
          status = I.IODS_P2P;
          stop = pa;
          this.stats.p2pStops++;
          break;
        }
        let ev = st & I.IOST_STALE ? I.IODE_STALE : 0;
        if (!this.held(pfn, z.kind)) {
          ev |= I.IODE_UNHELD;
          pagesUnheld++;
        }
        if (ev !== 0 && events === 0) first = pa;
        events |= ev;
        if (toMem && !p.backed[pfn]) {
          // frameBytesAddr(pfn, true): a zeroed backing slot, or ENOMEM with the pool exhausted.
          if (p.poolAvailable() === 0) {
            status = -E.ENOMEM;
            break;
          }
          p.backed[pfn] = 1;
          p.poolUsed++;
        }
        done += chunk;
        if (bypass) this.stats.bypassPages++;
        else if (z.kind === F.ZONE_P2PDMA) this.stats.windowPages++;
      }
      unheld += pagesUnheld;
      return [status, done, events | (pagesUnheld << I.IODE_UNHELD_SHIFT), first, stop];
    });
    return { out, counts: this.n, unheld };
  }

  /* ---- state ---- */

  state(): IommuState {
    return {
      devs: this.devs.map((d) => ({
        flags: d.flags, type: d.type, domain: d.domain, root: d.root, atcTick: d.atcTick, atcLive: [...d.atc.live],
        pasids: d.pasid.map((p, s) => [p, d.pdomain[s]!, d.proot[s]!]),
      })),
      iotlb: this.iotlb.entries(),
      iotlbTick: this.tick,
      iotlbLive: [...this.iotlb.live],
      atc: this.devs.map((d) => d.atc.entries()),
    };
  }
}
