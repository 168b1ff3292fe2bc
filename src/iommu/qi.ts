/**
 * The IOMMU's invalidation queue (VT-d queued invalidation, drivers/iommu/intel/dmar.c
 * qi_submit_sync; SMMUv3's command queue with CMD_SYNC): descriptors run in order, and a
 * wait descriptor completes when everything before it has. Each descriptor is one core call;
 * its modeled cost goes to the clock.
 *
 * It also watches the rule of KERNEL-SPEC 7.2: a device's ATC may be invalidated only after
 * the IOTLB for that range was. A device-TLB descriptor for pages whose IO page-table entries
 * changed while the IOTLB still holds them ([I1]) lets a translation request refill the ATC
 * from the stale IOTLB, and is reported.
 * @module
 */
import * as IO from "../abi/iommu.js";
import type { Core } from "../core/core.js";
import type { Clock } from "../sim/clock.js";
import type { CostTable } from "../sim/cost.js";
import type { Trace } from "../trace/trace.js";

export type QiDesc =
  | { type: "iotlb"; domain: number; pasid: number; gran: "page" | "pasid" | "domain" | "global"; vpn?: number; npages?: number }
  | { type: "devtlb"; dev: number; pasid: number; vpn: number; npages: number; allPasids?: boolean }
  | { type: "wait" };

const GRAN = { page: IO.IOTLB_INV_PAGE, pasid: IO.IOTLB_INV_PASID, domain: IO.IOTLB_INV_DOMAIN, global: IO.IOTLB_INV_GLOBAL } as const;

/** Pages of (domain, PASID) whose entries changed and that the IOTLB has not been told of. */
interface Unflushed {
  domain: number;
  pasid: number;
  lo: number;
  hi: number;
}

export interface QiEnv {
  core: Core;
  clock: Clock;
  costs: CostTable;
  trace: Trace;
  /** The domain and PASID a device's requests with @pasid use, or null. */
  domainOf(dev: number, pasid: number): number | null;
  /** An ATC invalidation that came before the IOTLB's ([I1]). */
  orderViolation(dev: number, pasid: number, vpn: number, npages: number): void;
}

export class InvalidationQueue {
  readonly #env: QiEnv;
  #unflushed: Unflushed[] = [];
  /** Descriptors run, and entries they dropped, since boot. */
  readonly stats = { iotlb: 0, devtlb: 0, wait: 0, iotlbDropped: 0, atcDropped: 0 };

  constructor(env: QiEnv) {
    this.#env = env;
  }

  /** The IO page tables of (domain, PASID) changed over pages [lo, hi): the IOTLB may be stale there. */
  changed(domain: number, pasid: number, lo: number, hi: number): void {
    this.#unflushed.push({ domain, pasid, lo, hi });
  }

  /**
   * qiSubmitSync - run @descs in order; returns the modeled ns they took. A device-TLB
   * descriptor over pages still unflushed in the IOTLB is reported ([I1]) and still runs.
   */
  qiSubmitSync(descs: QiDesc[]): number {
    const { core, clock, costs, trace } = this.#env;
    const t0 = clock.now;
    let ns = 0;
    for (const d of descs) {
      if (d.type === "wait") {
        this.stats.wait++;
        continue; // in-order execution: everything before it has completed
      }
      if (d.type === "iotlb") {
        const n = core.check(core.x.iotlbInvalidate(d.domain, d.pasid, d.vpn ?? 0, d.npages ?? 1, GRAN[d.gran]), "qiSubmitSync(iotlb)");
        this.#flushed(d);
        this.stats.iotlb++;
        this.stats.iotlbDropped += n;
        ns += costs.iotlbInv.ns;
        continue;
      }
      const dom = this.#env.domainOf(d.dev, d.pasid);
      if (dom !== null && this.#overlaps(dom, d.pasid, d.vpn, d.vpn + d.npages, d.allPasids === true)) {
        this.#env.orderViolation(d.dev, d.pasid, d.vpn, d.npages);
      }
      const n = core.check(core.x.atcInvalidate(d.dev, d.pasid, d.vpn, d.npages, d.allPasids ? 1 : 0), "qiSubmitSync(devtlb)");
      this.stats.devtlb++;
      this.stats.atcDropped += n;
      ns += costs.atsInv.ns;
    }
    clock.advance(ns);
    trace.emit("iommu.qi", { descs: descs.map((d) => d.type).join(",") }, t0, ns);
    return ns;
  }

  #flushed(d: Extract<QiDesc, { type: "iotlb" }>): void {
    const lo = d.vpn ?? 0;
    const hi = lo + (d.npages ?? 1);
    this.#unflushed = this.#unflushed.flatMap((u) => {
      if (d.gran === "global") return [];
      if (u.domain !== d.domain) return [u];
      if (d.gran === "domain") return [];
      if (u.pasid !== d.pasid) return [u];
      if (d.gran === "pasid") return [];
      // Page-selective: what is left of u outside [lo, hi).
      const out: Unflushed[] = [];
      if (u.lo < lo) out.push({ ...u, hi: Math.min(u.hi, lo) });
      if (u.hi > hi) out.push({ ...u, lo: Math.max(u.lo, hi) });
      return out;
    });
  }

  #overlaps(domain: number, pasid: number, lo: number, hi: number, anyPasid: boolean): boolean {
    return this.#unflushed.some((u) => u.domain === domain && (anyPasid || u.pasid === pasid) && u.lo < hi && lo < u.hi);
  }
}
