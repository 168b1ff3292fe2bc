/**
 * hmm_range_fault (mm/hmm.c): snapshot the CPU page table over a range for a device that
 * mirrors it, faulting in what the device asks for, and report each page as a pfn with
 * HMM_PFN_* flags. The caller holds the mmap lock for read and uses the interval notifier's
 * sequence protocol around the call (see hmmRangeFaultRetry, the test_hmm.c loop):
 *
 *   range.notifierSeq = mmuIntervalReadBegin(range.notifier)
 *   mmap read lock; hmmRangeFault(range); unlock          // EBUSY: start again
 *   driver lock; if (mmuIntervalReadRetry(...)) start again; program the device
 *
 * Each entry of range.hmmPfns is, on input, what the device requests (HMM_PFN_REQ_FAULT,
 * HMM_PFN_REQ_WRITE; masked by pfnFlagsMask, ORed with defaultFlags), and on output the page:
 * HMM_PFN_VALID (and HMM_PFN_WRITE) with the pfn and the map order, 0 for nothing there,
 * HMM_PFN_ERROR for what can never be valid. The layout is the kernel's of v5.10-v6.14:
 * flags in bits 63..56, the map order in bits 60..56.
 *
 * A page that must be faulted sends the whole rest of its PMD range through handle_mm_fault
 * (hmm_vma_fault) and the walk starts again from it; a fault that changed PTEs under the
 * range's own notifier makes the next check return EBUSY, as in the kernel.
 * @module
 */
import * as X from "../abi/x86.js";
import { type Address, addressOf, pageNumber } from "../core/addr.js";
import { DmaError } from "../errors.js";
import { handleMmFaultLocked } from "../mm/fault.js";
import type { MmStruct } from "../mm/mm.js";
import { VM_IO, VM_PFNMAP, VM_READ, VM_WRITE } from "../mm/vma.js";
import { type MmuIntervalNotifier, mmuIntervalCheckRetry } from "../notifier/interval.js";
import { pagemapOf } from "./memremap.js";

export const HMM_PFN_VALID = 1n << 63n;
export const HMM_PFN_WRITE = 1n << 62n;
export const HMM_PFN_ERROR = 1n << 61n;
export const HMM_PFN_ORDER_SHIFT = 56n;
export const HMM_PFN_REQ_FAULT = HMM_PFN_VALID;
export const HMM_PFN_REQ_WRITE = HMM_PFN_WRITE;
/** The flag bits: what is left is the pfn. */
export const HMM_PFN_FLAGS = 0xffn << HMM_PFN_ORDER_SHIFT;
/** HMM_RANGE_DEFAULT_TIMEOUT (ms): how long a driver keeps retrying on EBUSY. */
export const HMM_RANGE_DEFAULT_TIMEOUT = 1000;

/** struct hmm_range. */
export interface HmmRange {
  notifier: MmuIntervalNotifier;
  notifierSeq: number;
  /** [start, end) in bytes, page aligned. */
  start: Address;
  end: Address;
  /** One entry per page: requests in, pfns and flags out. */
  hmmPfns: BigUint64Array;
  defaultFlags: bigint;
  pfnFlagsMask: bigint;
  /** Device-private pages of this owner are reported, not faulted back. */
  devPrivateOwner: unknown;
}

/** hmmPfnToPfn - the pfn of an output entry. */
export function hmmPfnToPfn(e: bigint): number {
  return Number(e & ~HMM_PFN_FLAGS);
}

/** hmmPfnToMapOrder - the order of the mapping (0: 4 KiB, 9: 2 MiB, 18: 1 GiB). */
export function hmmPfnToMapOrder(e: bigint): number {
  return Number((e >> HMM_PFN_ORDER_SHIFT) & 0x1fn);
}

const P = X.PTE_P;
const RW = X.PTE_RW;
const US = X.PTE_US;
const SPECIAL = X.PTE_SOFTW1;
/*
 * The walk reads and writes range.hmmPfns as pairs of 32-bit words (little-endian, as the
 * core's memory): every flag lives in the high word (VALID bit 31, WRITE 30, ERROR 29, the
 * order in bits 28..24) and a pfn below 2^40 spans the low word and the high word's low
 * byte, so no page costs a BigInt.
 */
const VALID_HI = Number(HMM_PFN_VALID >> 32n) >>> 0;
const WRITE_HI = Number(HMM_PFN_WRITE >> 32n) >>> 0;
const ERROR_HI = Number(HMM_PFN_ERROR >> 32n) >>> 0;
/** The map-order bits of a leaf at each level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB), high word. */
const ORDER_HI = [0, 0, 9 << 24, 18 << 24, 27 << 24];
const NEED_FAULT = 1;
const NEED_WRITE_FAULT = 2;

/** Internal: the walk must start again from the page it faulted (the kernel's -EBUSY inside). */
class Again {
  constructor(readonly from: number) {}
}

/** range.hmmPfns as 32-bit words, and the high words of its request mask and default flags. */
interface Words {
  w: Uint32Array;
  maskHi: number;
  defaultHi: number;
}

function wordsOf(range: HmmRange): Words {
  const out = range.hmmPfns;
  return {
    w: new Uint32Array(out.buffer, out.byteOffset, out.length * 2),
    maskHi: Number((range.pfnFlagsMask >> 32n) & 0xffffffffn),
    defaultHi: Number((range.defaultFlags >> 32n) & 0xffffffffn),
  };
}

/** The high word of page @i's request: its entry masked by pfnFlagsMask, ORed with defaultFlags. */
function requestHi(r: Words, i: number): number {
  return (r.w[2 * i + 1]! & r.maskHi) | r.defaultHi;
}

/** hmm_pte_need_fault: what request @req asks of a page the CPU maps with @cpu (high words). */
function needFault(req: number, cpu: number): number {
  if (!(req & VALID_HI)) return 0; // HMM_PFN_REQ_FAULT
  if (req & WRITE_HI && !(cpu & WRITE_HI)) return NEED_FAULT | NEED_WRITE_FAULT;
  if (!(cpu & VALID_HI)) return NEED_FAULT;
  return 0;
}

/** Store @pfn with high-word flags @hi as page @i's output. */
function store(w: Uint32Array, i: number, pfn: number, hi: number): void {
  w[2 * i] = pfn % 0x100000000;
  w[2 * i + 1] = Math.floor(pfn / 0x100000000) | hi;
}

/**
 * hmmRangeFault - hmm_range_fault. Fills range.hmmPfns; throws EBUSY when the notifier's
 * sequence moved (an invalidation hit the range: start again from read_begin), EFAULT for
 * a page that cannot be made valid when it was requested (no VMA, VM_IO/VM_PFNMAP, no
 * VM_READ, a special mapping, a fault that failed), EPERM for a write fault on a VMA
 * without VM_WRITE, EINVAL for a bad range. The caller holds mm's mmap lock (EINVAL if not).
 */
export function hmmRangeFault(range: HmmRange): void {
  const mm = range.notifier.mm;
  const first = pageNumber(range.start, "range.start");
  const end = pageNumber(range.end, "range.end");
  if (end <= first) throw new DmaError("EINVAL", "hmmRangeFault: range.end is not after range.start", { arg: "range.end" });
  if (!(range.hmmPfns instanceof BigUint64Array) || range.hmmPfns.length < end - first) {
    throw new DmaError("EINVAL", `hmmRangeFault: hmmPfns must be a BigUint64Array of at least ${end - first} entries`, { arg: "range.hmmPfns" });
  }
  if (!mm.mmapLock.held) throw new DmaError("EINVAL", "hmmRangeFault: the mmap lock is not held (mmap_assert_locked)", { arg: "range" });
  const k = mm.kernel;
  let last = first;
  for (;;) {
    if (mmuIntervalCheckRetry(range.notifier, range.notifierSeq)) {
      k.trace.count("hmm.range_fault_busy");
      throw new DmaError("EBUSY", "hmmRangeFault: an invalidation hit the range since mmuIntervalReadBegin", { arg: "range.notifierSeq" });
    }
    try {
      walkRange(mm, range, first, last, end);
      k.trace.count("hmm.range_fault_pages", end - first);
      return;
    } catch (e) {
      if (!(e instanceof Again)) throw e;
      last = e.from;
    }
  }
}

/** The walk of [@from, @end) (walk_page_range over the VMAs), outputs from range.hmmPfns[@from - @first]. */
function walkRange(mm: MmStruct, range: HmmRange, first: number, from: number, end: number): void {
  const snapshotOnly = !((range.defaultFlags | range.pfnFlagsMask) & HMM_PFN_REQ_FAULT);
  const words = wordsOf(range);
  let at = from;
  while (at < end) {
    const vma = mm.vmas.find(at) ?? null;
    const next = vma ? Math.min(end, vma.end) : Math.min(end, nextVmaStart(mm, at, end));
    if (!vma || vma.flags & (VM_IO | VM_PFNMAP) || !(vma.flags & VM_READ)) {
      // hmm_vma_walk_hole / hmm_vma_walk_test: requested -> EFAULT, else HMM_PFN_ERROR.
      if (!snapshotOnly) {
        for (let v = at; v < next; v++) {
          if (needFault(requestHi(words, v - first), 0)) {
            throw new DmaError("EFAULT", `hmmRangeFault: ${hexAddr(v)} ${vma ? "is not readable memory with struct pages" : "is not mapped"}`, { arg: "range" });
          }
        }
      }
      range.hmmPfns.fill(HMM_PFN_ERROR, at - first, next - first);
      at = next;
      continue;
    }
    walkVma(mm, range, words, first, at, next, vma.flags, snapshotOnly);
    at = next;
  }
}

function nextVmaStart(mm: MmStruct, at: number, end: number): number {
  const after = mm.vmas.overlapping(at, end)[0];
  return after ? after.start : end;
}

function hexAddr(vpn: number): string {
  return `0x${addressOf(vpn).toString(16)}`;
}

/** The PTEs of [@at, @end) inside one VMA, read a batch at a time from the core. */
function walkVma(mm: MmStruct, range: HmmRange, words: Words, first: number, at: number, end: number, vmFlags: number, snapshotOnly: boolean): void {
  const k = mm.kernel;
  const c = k.core;
  const max = c.x.ptepRangeMax();
  const zero = k.zeroPfn;
  const w = words.w;
  while (at < end) {
    const n = Math.min(max, end - at);
    k.check(c.x.ptepRange(mm.pgd.pfn, at, n), "hmmRangeFault");
    const u32 = c.u32;
    const base = (c.ring + 128) >>> 2; // RING_ENTRY0
    for (let i = 0; i < n; i++) {
      const lo = u32[base + 3 * i]!;
      const hi = u32[base + 3 * i + 1]!;
      const level = u32[base + 3 * i + 2]!;
      const v = at + i;
      let cpu = 0; // VALID/WRITE, high word
      let pfn = 0;
      let special = false;
      if (lo & P) {
        const leafPfn = (hi & 0xfffff) * 2 ** 20 + (lo >>> 12);
        const span = level === 1 ? 1 : 2 ** (9 * (level - 1));
        pfn = leafPfn - (leafPfn % span) + (v % span);
        special = level === 1 && (lo & SPECIAL) !== 0 && pfn !== zero;
        // PROT_NONE (the emulator's: no US bit) reads as not valid, as pte_protnone does.
        if (lo & US && !special) cpu = VALID_HI | (lo & RW && pfn !== zero ? WRITE_HI : 0);
      } else if (level === 1 && ((lo >>> X.SWP_KIND_SHIFT) & X.SWP_KIND_MASK) === X.SWP_DEVICE_PRIVATE) {
        // A device-private page: reported to its owner, faulted back (migrated) for anyone else.
        const page = (hi & 0xfffff) * 2 ** 20 + (lo >>> 12);
        if (pagemapOf(k, page)?.owner === range.devPrivateOwner && range.devPrivateOwner !== null) {
          // Reported as it is, never faulted (even for a write request on a read-only entry).
          store(w, v - first, page, VALID_HI | (lo & X.SWP_WRITE ? WRITE_HI : 0));
          continue;
        }
      }
      const need = snapshotOnly ? 0 : needFault(requestHi(words, v - first), cpu);
      if (special) {
        if (need) throw new DmaError("EFAULT", `hmmRangeFault: ${hexAddr(v)} is a special mapping (no struct page)`, { arg: "range" });
        store(w, v - first, 0, ERROR_HI);
        continue;
      }
      if (need) fault(mm, v, Math.min(end, v - (v % 512) + 512), need, vmFlags);
      if (cpu) store(w, v - first, pfn, cpu | ORDER_HI[level]!);
      else store(w, v - first, 0, 0);
    }
    at += n;
  }
}

/** hmm_vma_fault: handle_mm_fault on every page of [@v, @end), then walk again from @v. */
function fault(mm: MmStruct, v: number, end: number, need: number, vmFlags: number): never {
  const write = (need & NEED_WRITE_FAULT) !== 0;
  if (write && !(vmFlags & VM_WRITE)) {
    throw new DmaError("EPERM", `hmmRangeFault: write fault at ${hexAddr(v)} in a mapping without write permission`, { arg: "range" });
  }
  const k = mm.kernel;
  for (let a = v; a < end; a++) {
    const r = handleMmFaultLocked(mm, a, { write });
    // handle_mm_fault, as GUP's faultin_page charges it (no trap, but the same handler).
    k.clock.advance(k.costs.minorFault.ns);
    if (r !== "ok") throw new DmaError("EFAULT", `hmmRangeFault: the fault at ${hexAddr(a)} ended in ${r}`, { arg: "range" });
  }
  mm.kernel.trace.count("hmm.range_fault_faults", end - v);
  throw new Again(v);
}
