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
import { R_COUNT, R_FLAGS, R_IO_DEV, R_ACCESS, R_PASID, R_IOVAS, R_PAS, R_IOVA } from "../../src/abi/reason";
import {
  ACC_WRITE, ACC_USER, ACC_FETCH, CTRL_WP, CTRL_NXE, HDR_ADDR, HDR_IOTLB_TICK, HDR_IOTLB_LIVE,
  RING_ENTRY0, RENT_SIZE, REG_SCRATCH,
} from "../../src/abi/header";
import { PF_P, PF_RSVD } from "../../src/abi/x86";
import {
  DTE_FLAGS, DTE_TYPE, DTE_DOMAIN, DTE_ROOT, DTE_ATC_TICK, DTE_ATC_LIVE, DTE_VALID, DTE_ATS, DTE_PASID,
  PSE_DOMAIN, PSE_ROOT, IODOM_BLOCKED, IODOM_IDENTITY, IOTE_TAG, IOTE_ID, IOTE_SIZE, IOTE_DATA, IOTE_STAMP, IOTE_TAG_SIZE_SHIFT,
  IOA_WRITE, IOA_EXEC, IOA_PRIV, IOA_ALL, IOSRC_DIRECT, IOSRC_ATC, IOSRC_IOTLB, IOSRC_WALK, IOST_STALE,
  IOF_BLOCKED, IOF_PASID, IOF_NOT_PRESENT, IOF_PERM, IOF_RSVD, IOF_RANGE, IOX_CHECK, IOX_NOCACHE, IOX_ALL,
  IOQ_IOVA, IOQ_DEV, IOQ_PASID, IOQ_ACCESS, IOQ_STATUS, IOQ_PA, IOREQ_SIZE, PASID_MAX, REG_ATC_HITS,
  REG_IOTLB_HITS, REG_IO_WALKS, REG_IO_LOADS, REG_IO_FAULTS, REG_IO_STALE, REG_ATS_REQS, REG_IO_STOP,
} from "../../src/abi/iommu";
import { fail } from "../errno";
import { RING, ringCheck } from "../ring";
import {
  IOTLB, IOTLB_SETS, IOTLB_WAYS, ATC, ATC_STRIDE, ATC_SETS, ATC_WAYS, IOMMU_DEVS, RING_ENTRIES, VA_BITS, inKheap,
} from "../layout";
import { walk, walkData, walkSize, walkLoads } from "../mmu/walk";
import { D, RW, US, NX, FRAME_MASK } from "../mmu/pte";
import { ioLookup, ioFill, ioDrop, ioTag } from "./iocache";
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

/**
 * A cached translation serves access @acc when its effective bits have all of ioNeed(acc)
 * and none of ioForbid(acc): permCheck's rule under IO_CTRL (WP and NXE; no SMEP, SMAP or
 * protection keys), plus D for a write (else the walk sets it). One compare per hit.
 */
// @ts-ignore: decorator
@inline function ioNeed(acc: u32): u64 {
  return (acc & ACC_USER ? US : 0) | (acc & ACC_WRITE ? RW | D : 0);
}

// @ts-ignore: decorator
@inline function ioForbid(acc: u32): u64 {
  return acc & ACC_FETCH ? NX : 0;
}

// @ts-ignore: decorator
@inline function usable(data: u64, need: u64, forbid: u64): bool {
  return (data & (need | forbid)) == need;
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

/** ioContext's mark of a paging context: (IOCX_PAGING | root << 32 | domain). */
const IOCX_PAGING: u64 = <u64>1 << 63;

/**
 * ioContext - what @dev's device-table entry @d (flags @df) gives its requests with
 * @pasid: IOCX_PAGING | the table's root << 32 | the IOTLB domain; or, without the mark,
 * a fault's kind << 16, or 0 for an identity (passthrough) context.
 */
// @ts-ignore: decorator
@inline function ioContext(d: usize, df: u32, pasid: u32): u64 {
  if ((df & DTE_VALID) == 0) return <u64>IOF_BLOCKED << 16;
  if (pasid == 0) {
    const type = load<u32>(d + DTE_TYPE);
    if (type == IODOM_BLOCKED) return <u64>IOF_BLOCKED << 16;
    if (type == IODOM_IDENTITY) return 0;
    return IOCX_PAGING | (<u64>load<u32>(d + DTE_ROOT) << 32) | load<u32>(d + DTE_DOMAIN);
  }
  if ((df & DTE_PASID) == 0) return <u64>IOF_PASID << 16;
  const p = pasidEntry(d, pasid);
  if (p == 0) return <u64>IOF_PASID << 16;
  return IOCX_PAGING | (<u64>load<u32>(p + PSE_ROOT) << 32) | load<u32>(p + PSE_DOMAIN);
}

/**
 * ioTranslate - translate one request of device @dev; sets ioPa. Returns the status
 * (IOQ_STATUS's encoding). @dev, @pasid and @a are valid (the batch checked them).
 */
export function ioTranslate(dev: u32, pasid: u32, iova: u64, a: u32, flags: u32): i32 {
  const d = dte(dev);
  const df = load<u32>(d + DTE_FLAGS);
  const cx = ioContext(d, df, pasid);
  if ((cx & IOCX_PAGING) == 0) {
    if (cx != 0) return faulted(<u32>cx >> 16, 0);
    ioPa = iova; // passthrough
    return IOSRC_DIRECT << 2;
  }
  const domain = <u32>cx;
  const root = <u32>(cx >> 32) & 0x7fffffff;
  if (iova >> (<u64>VA_BITS - 1) != 0) return faulted(IOF_RANGE, 0);
  const acc = ioAcc(a);
  const need = ioNeed(acc);
  const forbid = ioForbid(acc);
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
      if (usable(load<u64>(e + IOTE_DATA), need, forbid)) {
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
      if (usable(data, need, forbid)) {
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

/** Whether @v is an IOVA: an integer in [0, 2^64) (NaN is not). */
// @ts-ignore: decorator
@inline function isIova(v: f64): bool {
  return v >= 0 && v < 18446744073709551616.0 && v == Math.floor(v);
}

/** The index of the first of the @n f64s at @src that is not an IOVA, or -1: two a step (SIMD), then the odd one. */
function iovaCheck(src: usize, n: u32): i32 {
  const zero = f64x2.splat(0);
  const limit = f64x2.splat(18446744073709551616.0);
  let ok = i64x2.splat(-1);
  const pairs = n & ~1;
  for (let i: u32 = 0; i < pairs; i += 2) {
    const v = v128.load(src + (<usize>i << 3));
    ok = v128.and(ok, v128.and(v128.and(f64x2.ge(v, zero), f64x2.lt(v, limit)), f64x2.eq(v, f64x2.floor(v))));
  }
  let good = i64x2.all_true(ok);
  if (good && pairs < n) good = isIova(load<f64>(src + (<usize>pairs << 3)));
  if (good) return -1;
  for (let i: u32 = 0; i < n; i++) if (!isIova(load<f64>(src + (<usize>i << 3)))) return <i32>i;
  return -1;
}

/** The most IOVAs one iommuTranslateIovas call carries through the ring. */
export function iommuTranslateIovasMax(): u32 {
  return <u32>((<u64>RING_ENTRIES * RENT_SIZE) >> 3);
}

/**
 * iotlbHits - serve entries [@i, @n) of the list at @src from the IOTLB's 4 KiB entries
 * tagged @id, while each hits and allows the access (@need, @forbid), writing the addresses
 * to @dst; returns the index of the first that does not. A hit here is the one ioTranslate
 * would find (it probes 4 KiB entries first), with the same LRU stamp and count. Its own
 * function, so the loop's few values stay in registers.
 */
function iotlbHits(src: usize, dst: usize, i: u32, n: u32, id: u32, need: u64, forbid: u64): u32 {
  if (load<u32>(HDR_ADDR + HDR_IOTLB_LIVE) == 0) return i;
  // The layout's globals in locals: V8 reloads a mutable global at every use.
  const tlb = IOTLB;
  const mask = <u64>(IOTLB_SETS - 1);
  const setBytes = <usize>IOTLB_WAYS * IOTE_SIZE;
  const top = <u64>VA_BITS - 1;
  const tickAt = HDR_ADDR + HDR_IOTLB_TICK;
  const first = i;
  for (; i < n; i++) {
    const iova = <u64>load<f64>(src + (<usize>i << 3));
    if (iova >> top != 0) break;
    const lvpn = iova >> 12;
    const want = ioTag(lvpn, 0);
    let e = tlb + <usize>(lvpn & mask) * setBytes;
    const end = e + setBytes;
    while (e < end && (load<u64>(e + IOTE_TAG) != want || load<u32>(e + IOTE_ID) != id)) e += IOTE_SIZE;
    if (e == end) break;
    const data = load<u64>(e + IOTE_DATA);
    if (!usable(data, need, forbid)) break;
    const t = load<u64>(tickAt) + 1;
    store<u64>(tickAt, t);
    store<u64>(e + IOTE_STAMP, t);
    // Below 2^52: the signed conversion is exact (and one instruction on x86-64).
    store<f64>(dst + (<usize>i << 3), <f64><i64>((data & FRAME_MASK) | (iova & 0xfff)));
  }
  nIotlb += i - first;
  return i;
}

/**
 * iommuTranslateIovas - translate @n IOVAs (f64 byte addresses at @inAddr) of device @dev's
 * requests with @pasid and access @a, writing each physical address (f64) to @outAddr, as
 * a DMA engine walks a descriptor list: one device, one context, decoded once. Stops at the
 * first fault: its status goes to REG_IO_STOP (0 when none). @inAddr / @outAddr: 0 for the
 * ring's entry area (the same area for both: translated in place), else an array in the
 * kernel heap; the two are the same array or do not overlap. Returns how many were
 * translated, or -EINVAL (device, PASID, access, flags, count, an array's place, an entry
 * that is not an integer in [0, 2^64)) with nothing done.
 */
export function iommuTranslateIovas(dev: u32, pasid: u32, a: u32, flags: u32, n: u32, inAddr: usize, outAddr: usize): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const c = ioRequestCheck(dev, pasid, a, dev);
  if (c < 0) return c;
  if (flags & ~IOX_ALL) return fail(EINVAL, R_FLAGS, flags);
  const ring = RING + RING_ENTRY0;
  if ((inAddr == 0 || outAddr == 0) && n > iommuTranslateIovasMax()) return fail(EINVAL, R_COUNT, n);
  if (inAddr != 0 && !inKheap(inAddr, n)) return fail(EINVAL, R_IOVAS, inAddr);
  if (outAddr != 0 && !inKheap(outAddr, n)) return fail(EINVAL, R_PAS, outAddr);
  const src = inAddr != 0 ? inAddr : ring;
  const dst = outAddr != 0 ? outAddr : ring;
  // In place, or apart: an output that overlaps the input elsewhere would overwrite entries not yet read.
  if (src != dst && <u64>src < <u64>dst + (<u64>n << 3) && <u64>dst < <u64>src + (<u64>n << 3)) return fail(EINVAL, R_PAS, outAddr);
  const bad = iovaCheck(src, n);
  if (bad >= 0) return fail(EINVAL, R_IOVA, bad);
  ioCountsReset();
  const d = dte(dev);
  const df = load<u32>(d + DTE_FLAGS);
  const cx = ioContext(d, df, pasid);
  // IOTLB hits are served by iotlbHits when nothing else could answer first (a paging
  // context, no ATC, no re-walk check); any other request, and a miss, goes through
  // ioTranslate, and the hits go on after it.
  const fast = (cx & IOCX_PAGING) != 0 && (df & DTE_ATS) == 0 && (flags & (IOX_NOCACHE | IOX_CHECK)) == 0;
  const id = (<u32>cx << 20) | pasid;
  const acc = ioAcc(a);
  const need = ioNeed(acc);
  const forbid = ioForbid(acc);
  let st: i32 = 0;
  let i: u32 = fast ? iotlbHits(src, dst, 0, n, id, need, forbid) : 0;
  while (i < n) {
    st = ioTranslate(dev, pasid, <u64>load<f64>(src + (<usize>i << 3)), a, flags);
    if (st >= 0x10000) break;
    store<f64>(dst + (<usize>i << 3), <f64>ioPa);
    i++;
    if (fast) i = iotlbHits(src, dst, i, n, id, need, forbid);
  }
  ioCountsStore();
  store<i32>(RING + REG_IO_STOP, i < n ? st : 0);
  return <i32>i;
}
