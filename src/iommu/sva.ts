/**
 * Shared Virtual Addressing (drivers/iommu/iommu-sva.c): a device's PASID-tagged requests
 * walk a process's own page table. The mm gets one PASID for every device (allocated from 1);
 * one SVA domain per mm keeps the IOTLB tag, and an mmu notifier keeps the IOMMU coherent
 * with the CPU: each CPU TLB flush of the mm flushes the IOTLB for the PASID, waits, then the
 * ATC of each bound ATS device (KERNEL-SPEC 7.2, 7.4); release (the mm exiting) points the
 * PASID entry at nothing, so the device cannot touch the freed pages.
 * @module
 */
import * as IO from "../abi/iommu.js";
import type { Address } from "../core/addr.js";
import { DmaError, einval } from "../errors.js";
import type { MmStruct } from "../mm/mm.js";
import type { Process } from "../mm/process.js";
import { type MmuNotifier, mmuNotifierRegister, mmuNotifierUnregister } from "../notifier/mmu-notifier.js";
import type { Iommu, IommuDevice } from "./iommu.js";
import { type IommuDomain, iommuDomainAlloc, iommuDomainFree } from "./iommu-domain.js";
import type { QiDesc } from "./qi.js";

/** The SVA state of one mm on this IOMMU: its PASID, its domain, its notifier, its devices. */
interface SvaMm {
  pasid: number;
  domain: IommuDomain;
  notifier: MmuNotifier | null;
  handles: Set<SvaHandle>;
}

export class SvaHandle {
  readonly dev: IommuDevice;
  readonly mm: MmStruct;
  readonly pasid: number;
  readonly domain: IommuDomain;
  users = 1;

  constructor(dev: IommuDevice, mm: MmStruct, pasid: number, domain: IommuDomain) {
    this.dev = dev;
    this.mm = mm;
    this.pasid = pasid;
    this.domain = domain;
  }
}

const state = new WeakMap<Iommu, Map<MmStruct, SvaMm>>();
/** mm->pasid: global (one per mm for every IOMMU), kept until the mm goes away. */
const mmPasid = new WeakMap<MmStruct, number>();
let nextPasid = 1;

function pages(a: Address): number {
  return typeof a === "bigint" ? Number(a >> 12n) : Math.floor(a / 4096);
}

/** Flush PASID @s.pasid over pages [lo, hi) (everything when @all): IOTLB, wait, then each ATS device's ATC, wait. */
function svaFlush(iommu: Iommu, s: SvaMm, lo: number, hi: number, all: boolean): void {
  const descs: QiDesc[] = [
    all
      ? { type: "iotlb", domain: s.domain.id, pasid: s.pasid, gran: "pasid" }
      : { type: "iotlb", domain: s.domain.id, pasid: s.pasid, gran: "page", vpn: lo, npages: hi - lo },
    { type: "wait" },
  ];
  const n = all ? 2 ** 40 : hi - lo;
  for (const h of s.handles) if (h.dev.ats) descs.push({ type: "devtlb", dev: h.dev.rid, pasid: s.pasid, vpn: all ? 0 : lo, npages: n });
  if (descs.length > 2) descs.push({ type: "wait" });
  iommu.qi.qiSubmitSync(descs);
}

/**
 * iommuSvaBindDevice - bind @dev to @p's address space: its requests with the returned
 * handle's PASID walk @p's page table. Binding the same pair again returns the same handle
 * with one more user. EOPNOTSUPP for a device without PASID support; ENOSPC when the PASID
 * space or the device's PASID entries are exhausted.
 */
export function iommuSvaBindDevice(iommu: Iommu, dev: IommuDevice, p: Process): SvaHandle {
  if (iommu.devices[dev.rid] !== dev) throw einval("dev", `${dev.name} is not behind this IOMMU`);
  if (!dev.pasid) throw new DmaError("EOPNOTSUPP", `iommuSvaBindDevice: ${dev.name} does not support PASIDs`, { arg: "dev" });
  const mm = p.mm;
  if (mm.dead) throw einval("process", `pid ${p.pid} has exited`);
  const old = dev.sva.get(mm);
  if (old) {
    old.users++;
    return old;
  }
  let pasid = mmPasid.get(mm);
  if (pasid === undefined) {
    if (nextPasid > IO.PASID_MAX) throw new DmaError("ENOSPC", "iommuSvaBindDevice: PASIDs exhausted", { arg: "pasid" });
    pasid = nextPasid++;
    mmPasid.set(mm, pasid);
  }
  let mms = state.get(iommu);
  if (!mms) state.set(iommu, (mms = new Map()));
  let s = mms.get(mm);
  const fresh = !s;
  if (!s) s = { pasid, domain: iommuDomainAlloc(iommu, "sva"), notifier: null, handles: new Set() };
  const c = iommu.k.core;
  const rc = c.x.iommuSetPasid(dev.rid, pasid, s.domain.id, mm.pgd.pfn);
  if (rc < 0) {
    if (fresh) iommuDomainFree(s.domain);
    c.check(rc, "iommuSvaBindDevice");
  }
  if (fresh) {
    mms.set(mm, s);
    const sm = s;
    s.notifier = mmuNotifierRegister(mm, {
      invalidateSecondaryTlbs(_sub, _mm, start, end) {
        const lo = pages(start);
        const hi = pages(end);
        const all = lo === 0 && hi >= 2 ** 40;
        iommu.qi.changed(sm.domain.id, sm.pasid, lo, all ? 2 ** 52 : hi);
        svaFlush(iommu, sm, lo, hi, all);
      },
      release() {
        // The mm is exiting: block the PASID on every device before its pages are freed.
        for (const h of sm.handles) c.check(c.x.iommuSetPasid(h.dev.rid, sm.pasid, 0, -1), "sva release");
        svaFlush(iommu, sm, 0, 0, true);
        for (const h of sm.handles) h.dev.sva.delete(mm);
        sm.handles.clear();
        mms.delete(mm);
        iommuDomainFree(sm.domain);
      },
    });
  }
  const h = new SvaHandle(dev, mm, pasid, s.domain);
  s.handles.add(h);
  dev.sva.set(mm, h);
  iommu.k.trace.emit("iommu.sva_bind", { dev: dev.name, pid: mm.pid, pasid }, iommu.k.clock.now);
  return h;
}

/**
 * iommuSvaUnbindDevice - drop one user of @h; the last detaches the PASID from the device
 * (flushing what it cached), and the mm's last device frees the SVA domain and its notifier.
 * EINVAL for a handle already unbound.
 */
export function iommuSvaUnbindDevice(h: SvaHandle): void {
  const iommu = h.domain.iommu;
  if (h.users < 1 || h.dev.sva.get(h.mm) !== h) throw einval("handle", "already unbound");
  if (--h.users > 0) return;
  const s = state.get(iommu)?.get(h.mm);
  h.dev.sva.delete(h.mm);
  if (!s) return;
  const c = iommu.k.core;
  c.check(c.x.iommuSetPasid(h.dev.rid, h.pasid, 0, -1), "iommuSvaUnbindDevice");
  const only = new Set([h]);
  svaFlush(iommu, { ...s, handles: only }, 0, 0, true);
  s.handles.delete(h);
  iommu.k.trace.emit("iommu.sva_unbind", { dev: h.dev.name, pid: h.mm.pid, pasid: h.pasid }, iommu.k.clock.now);
  // The mm's last device: unregistering runs the notifier's release, which frees the domain.
  if (!s.handles.size && s.notifier) mmuNotifierUnregister(s.notifier);
}

/** iommuSvaGetPasid - the PASID @h's device must tag its requests with. */
export function iommuSvaGetPasid(h: SvaHandle): number {
  return h.pasid;
}
