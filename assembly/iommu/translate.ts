/**
 * Translation of a device's memory request (DESIGN "translate for a device"): the device's
 * ATC when it has ATS, else or on a miss the IOMMU's IOTLB, else the IO page walk, then
 * fill the IOTLB and the ATC. A request with a PASID walks that PASID's table (an SVA
 * binding: the mm's own pgd); one without walks the context entry's domain, or passes
 * through (identity), or is blocked.
 *
 * The walk is the CPU's (assembly/mmu/walk.ts) on an x86-64-format table: user-mode
 * access unless the request is privileged, WP and NX enforced, A and D set as the VT-d
 * first-level walker does. A cached entry serves an access it allows, and a write only if
 * it is already dirty; otherwise it is dropped and the walk runs, as a CPU TLB's is.
 *
 * With IOX_CHECK every cached hit is checked against a walk that writes nothing: a hit the
 * tables no longer give (unmapped, remapped, made read-only) is marked stale. The hardware
 * still uses it; the host decides whether that was allowed (a lazy-mode window) or a bug.
 */
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT, R_FLAGS, R_IO_DEV, R_ACCESS, R_PASID } from "../../src/abi/reason";
import {
  ACC_WRITE, ACC_USER, ACC_FETCH, CTRL_WP, CTRL_NXE, HDR_ADDR, HDR_IOTLB_TICK, HDR_IOTLB_LIVE,
  RING_ENTRY0, RENT_SIZE, REG_SCRATCH,
} from "../../src/abi/header";
import { PF_P, PF_RSVD } from "../../src/abi/x86";
import {
  DTE_FLAGS, DTE_TYPE, DTE_DOMAIN, DTE_ROOT, DTE_ATC_TICK, DTE_ATC_LIVE, DTE_VALID, DTE_ATS, DTE_PASID,
  PSE_DOMAIN, PSE_ROOT, IODOM_BLOCKED, IODOM_IDENTITY, IOTE_TAG, IOTE_DATA, IOTE_STAMP, IOTE_TAG_SIZE_SHIFT,
  IOA_WRITE, IOA_EXEC, IOA_PRIV, IOA_ALL, IOSRC_DIRECT, IOSRC_ATC, IOSRC_IOTLB, IOSRC_WALK, IOST_STALE,
  IOF_BLOCKED, IOF_PASID, IOF_NOT_PRESENT, IOF_PERM, IOF_RSVD, IOF_RANGE, IOX_CHECK, IOX_NOCACHE, IOX_ALL,
  IOQ_IOVA, IOQ_DEV, IOQ_PASID, IOQ_ACCESS, IOQ_STATUS, IOQ_PA, IOREQ_SIZE, PASID_MAX, REG_ATC_HITS,
  REG_IOTLB_HITS, REG_IO_WALKS, REG_IO_LOADS, REG_IO_FAULTS, REG_IO_STALE, REG_ATS_REQS,
} from "../../src/abi/iommu";
import { fail } from "../errno";
import { RING, ringCheck } from "../ring";
import {
  IOTLB, IOTLB_SETS, IOTLB_WAYS, ATC, ATC_STRIDE, ATC_SETS, ATC_WAYS, IOMMU_DEVS, RING_ENTRIES, VA_BITS,
} from "../layout";
import { walk, walkData, walkSize, walkLoads, permCheck } from "../mmu/walk";
import { D, FRAME_MASK } from "../mmu/pte";
import { ioLookup, ioFill, ioDrop } from "./iocache";
import { dte, pasidEntry } from "./devtab";

const IO_CTRL: u32 = CTRL_WP | CTRL_NXE;

/** The physical address of the last successful translation. */
export let ioPa: u64 = 0;
/* Counts of the current batch (see REG_ATC_HITS ...). */
let nAtc: u32 = 0;
let nIotlb: u32 = 0;
let nWalks: u32 = 0;
let nLoads: u32 = 0;
let nFaults: u32 = 0;
let nStale: u32 = 0;
let nAts: u32 = 0;

export function ioCountsReset(): void {
  nAtc = nIotlb = nWalks = nLoads = nFaults = nStale = nAts = 0;
}

export function ioCountsStore(): void {
  store<u32>(RING + REG_ATC_HITS, nAtc);
  store<u32>(RING + REG_IOTLB_HITS, nIotlb);
  store<u32>(RING + REG_IO_WALKS, nWalks);
  store<u32>(RING + REG_IO_LOADS, nLoads);
  store<u32>(RING + REG_IO_FAULTS, nFaults);
  store<u32>(RING + REG_IO_STALE, nStale);
  store<u32>(RING + REG_ATS_REQS, nAts);
}

/** The walk's access bits for IOA_* @a. */
// @ts-ignore: decorator
@inline function ioAcc(a: u32): u32 {
  return (a & IOA_PRIV ? 0 : ACC_USER) | (a & IOA_WRITE ? ACC_WRITE : 0) | (a & IOA_EXEC ? ACC_FETCH : 0);
}

// @ts-ignore: decorator
@inline function usable(data: u64, acc: u32): bool {
  return permCheck(data, acc, IO_CTRL, 0) == 0 && ((acc & ACC_WRITE) == 0 || (data & D) != 0);
}

function faulted(kind: u32, code: u32): i32 {
  nFaults++;
  return <i32>((kind << 16) | code);
}

/** Whether a cached translation of @iova to @pa is one the tables under @root no longer give. */
function stale(root: u32, iova: u64, acc: u32, pa: u64): bool {
  const out = RING + REG_SCRATCH;
  if (walk(root, iova, acc, IO_CTRL, 0, false, out) != 0) return true;
  return load<u64>(out) != pa;
}

// @ts-ignore: decorator
@inline function hitPa(e: usize, iova: u64): u64 {
  const size = <u32>(load<u64>(e + IOTE_TAG) >> IOTE_TAG_SIZE_SHIFT) & 3;
  const off: u64 = (<u64>1 << (12 + 9 * <u64>size)) - 1;
  return (load<u64>(e + IOTE_DATA) & FRAME_MASK & ~off) | (iova & off);
}

/**
 * ioTranslate - translate one request of device @dev; sets ioPa. Returns the status
 * (IOQ_STATUS's encoding). @dev, @pasid and @a are valid (the batch checked them).
 */
export function ioTranslate(dev: u32, pasid: u32, iova: u64, a: u32, flags: u32): i32 {
  const d = dte(dev);
  const df = load<u32>(d + DTE_FLAGS);
  if ((df & DTE_VALID) == 0) return faulted(IOF_BLOCKED, 0);
  let domain: u32;
  let root: u32;
  if (pasid == 0) {
    const type = load<u32>(d + DTE_TYPE);
    if (type == IODOM_BLOCKED) return faulted(IOF_BLOCKED, 0);
    if (type == IODOM_IDENTITY) {
      ioPa = iova;
      return IOSRC_DIRECT << 2;
    }
    domain = load<u32>(d + DTE_DOMAIN);
    root = load<u32>(d + DTE_ROOT);
  } else {
    if ((df & DTE_PASID) == 0) return faulted(IOF_PASID, 0);
    const p = pasidEntry(d, pasid);
    if (p == 0) return faulted(IOF_PASID, 0);
    domain = load<u32>(p + PSE_DOMAIN);
    root = load<u32>(p + PSE_ROOT);
  }
  if (iova >> (<u64>VA_BITS - 1) != 0) return faulted(IOF_RANGE, 0);
  const acc = ioAcc(a);
  const lvpn = iova >> 12;
  const cache = (flags & IOX_NOCACHE) == 0;
  const check = (flags & IOX_CHECK) != 0;
  const ats = cache && (df & DTE_ATS) != 0;
  const atc = ATC + <usize>dev * ATC_STRIDE;
  const atcLive = d + DTE_ATC_LIVE;
  const atcMask = <u64>(ATC_SETS - 1);
  if (ats) {
    const e = ioLookup(atc, atcMask, ATC_WAYS, atcLive, lvpn, pasid);
    if (e != 0) {
      if (usable(load<u64>(e + IOTE_DATA), acc)) {
        const t = load<u64>(d + DTE_ATC_TICK) + 1;
        store<u64>(d + DTE_ATC_TICK, t);
        store<u64>(e + IOTE_STAMP, t);
        ioPa = hitPa(e, iova);
        nAtc++;
        let st = <i32>((load<u64>(e + IOTE_TAG) >> IOTE_TAG_SIZE_SHIFT) & 3) | (IOSRC_ATC << 2);
        if (check && stale(root, iova, acc, ioPa)) {
          st |= IOST_STALE;
          nStale++;
        }
        return st;
      }
      ioDrop(atcLive, e);
    }
    nAts++; // a translation request to the IOMMU
  }
  const id = (domain << 20) | pasid;
  const live = HDR_ADDR + HDR_IOTLB_LIVE;
  const tickAt = HDR_ADDR + HDR_IOTLB_TICK;
  const mask = <u64>(IOTLB_SETS - 1);
  if (cache) {
    const e = ioLookup(IOTLB, mask, IOTLB_WAYS, live, lvpn, id);
    if (e != 0) {
      const data = load<u64>(e + IOTE_DATA);
      if (usable(data, acc)) {
        const t = load<u64>(tickAt) + 1;
        store<u64>(tickAt, t);
        store<u64>(e + IOTE_STAMP, t);
        ioPa = hitPa(e, iova);
        nIotlb++;
        const size = <u32>(load<u64>(e + IOTE_TAG) >> IOTE_TAG_SIZE_SHIFT) & 3;
        let st = <i32>size | (IOSRC_IOTLB << 2);
        if (check && stale(root, iova, acc, ioPa)) {
          st |= IOST_STALE;
          nStale++;
        }
        if (ats) {
          const at = load<u64>(d + DTE_ATC_TICK) + 1;
          store<u64>(d + DTE_ATC_TICK, at);
          ioFill(atc, atcMask, ATC_WAYS, atcLive, lvpn, pasid, size, data, at);
        }
        return st;
      }
      ioDrop(live, e);
    }
  }
  const out = RING + REG_SCRATCH;
  const w = walk(root, iova, acc, IO_CTRL, 0, true, out);
  nWalks++;
  nLoads += walkLoads;
  if (w != 0) {
    const code = <u32>w & 0xffff;
    return faulted(code & PF_RSVD ? IOF_RSVD : code & PF_P ? IOF_PERM : IOF_NOT_PRESENT, code);
  }
  ioPa = load<u64>(out);
  if (cache) {
    const t = load<u64>(tickAt) + 1;
    store<u64>(tickAt, t);
    ioFill(IOTLB, mask, IOTLB_WAYS, live, lvpn, id, walkSize, walkData, t);
    if (ats) {
      const at = load<u64>(d + DTE_ATC_TICK) + 1;
      store<u64>(d + DTE_ATC_TICK, at);
      ioFill(atc, atcMask, ATC_WAYS, atcLive, lvpn, pasid, walkSize, walkData, at);
    }
  }
  return <i32>walkSize | (IOSRC_WALK << 2);
}

/** ioRequestCheck - -EINVAL (naming request @i) for a device, PASID or access out of range. */
export function ioRequestCheck(dev: u32, pasid: u32, a: u32, i: u32): i32 {
  if (dev >= IOMMU_DEVS) return fail(EINVAL, R_IO_DEV, i);
  if (pasid > <u32>PASID_MAX) return fail(EINVAL, R_PASID, pasid);
  if (a & ~IOA_ALL) return fail(EINVAL, R_ACCESS, i);
  return 0;
}

/** The most translate requests one call carries. */
export function iommuTranslateMax(): u32 {
  return <u32>((<u64>RING_ENTRIES * RENT_SIZE) / IOREQ_SIZE);
}

/**
 * iommuTranslate - translate @n requests in the ring (IOREQ_SIZE each), writing each one's
 * status and physical address in place, and this batch's counts to the ring's registers.
 * Returns @n, or -EINVAL (count, flags, a request's device, PASID or access) with nothing
 * translated.
 */
export function iommuTranslate(n: u32, flags: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  if (n > iommuTranslateMax()) return fail(EINVAL, R_COUNT, n);
  if (flags & ~IOX_ALL) return fail(EINVAL, R_FLAGS, flags);
  const base = RING + RING_ENTRY0;
  for (let i: u32 = 0; i < n; i++) {
    const q = base + <usize>i * IOREQ_SIZE;
    const c = ioRequestCheck(load<u32>(q + IOQ_DEV), load<u32>(q + IOQ_PASID), load<u32>(q + IOQ_ACCESS), i);
    if (c < 0) return c;
  }
  ioCountsReset();
  for (let i: u32 = 0; i < n; i++) {
    const q = base + <usize>i * IOREQ_SIZE;
    const st = ioTranslate(load<u32>(q + IOQ_DEV), load<u32>(q + IOQ_PASID), load<u64>(q + IOQ_IOVA), load<u32>(q + IOQ_ACCESS), flags);
    store<i32>(q + IOQ_STATUS, st);
    store<u64>(q + IOQ_PA, st < 0x10000 ? ioPa : 0);
  }
  ioCountsStore();
  return <i32>n;
}
