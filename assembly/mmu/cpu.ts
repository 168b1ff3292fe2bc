/**
 * CPUs: the architectural state a translation uses (CR3 with its PCID, the control bits,
 * PKRU), the TLB instructions (INVLPG, INVPCID, MOV CR3, CR4 writes), and the batched
 * translation that every host call goes through.
 */
import {
  CPU_CR3_PFN, CPU_PCID, CPU_CTRL, CPU_PKRU, CPU_TICK, CPU_LIVE, CPU_SIZE, CTRL_ALL, CTRL_PGE,
  CTRL_PCIDE, ACC_MASK, ACC_WRITE, XLATE_NOTLB, XLATE_NOSIDE, XLATE_STOP, RING_ENTRY0, RENT_SIZE, TREQ_VA,
  TREQ_ACCESS, TREQ_STATUS, TREQ_PA, TLBE_DATA, TLBE_STAMP, REG_HITS, REG_MISSES, REG_WALKS,
  REG_LOADS, REG_FAULTS, REG_SPURIOUS, INVPCID_ADDR, INVPCID_SINGLE, INVPCID_ALL_GLOBAL,
  INVPCID_ALL_NONGLOBAL, TLB_TAG_SIZE_SHIFT, TLBE_TAG, XLATE_HIT, TLBE_SIZE,
} from "../../src/abi/header";
import { PFN_NONE } from "../../src/abi/frame";
import { X86_TRAP_GP } from "../../src/abi/x86";
import { EINVAL } from "../../src/abi/errno";
import {
  R_CPU, R_PCID, R_CTRL, R_COUNT, R_FLAGS, R_ROOT, R_INVPCID_TYPE, R_ACCESS,
} from "../../src/abi/reason";
import { fail } from "../errno";
import { CPUS, NR_CPUS, VA_BITS, RING_ENTRIES, TLB_SETS, TLB_WAYS, FRAMES, POOL, LEVELS } from "../layout";
import { RING, ringCheck } from "../ring";
import { D, G, FRAME_MASK } from "./pte";
import { rootCheck, rangeCheck, rangeLo, rangeHi } from "./pgtable";
import { walk, walkIn, rsvdCommon, permCheck, walkData, walkSize, walkLoads } from "./walk";
import {
  tlbBase, tlbLookup, tlbFill, tlbDrop, tlbInvalidate, MATCH_ALL, MATCH_NONGLOBAL, MATCH_PCID_NONGLOBAL,
  MATCH_PCID_OR_GLOBAL,
} from "./tlb";


const NONE: u32 = <u32>PFN_NONE;
const ALL_PAGES_HI: u64 = <u64>1 << 45;

// @ts-ignore: decorator
@inline function cpuAddr(cpu: u32): usize {
  return CPUS + <usize>cpu * CPU_SIZE;
}

/** cpusInit - every CPU without an address space, control bits clear, TLB empty. */
export function cpusInit(): void {
  for (let i: u32 = 0; i < NR_CPUS; i++) {
    const c = cpuAddr(i);
    store<u32>(c + CPU_CR3_PFN, NONE);
    store<u32>(c + CPU_PCID, 0);
    store<u32>(c + CPU_CTRL, 0);
    store<u32>(c + CPU_PKRU, 0);
    store<u64>(c + CPU_TICK, 0);
    for (let s: u32 = 0; s < 3; s++) store<u32>(c + CPU_LIVE + (s << 2), 0);
  }
}

/** Drop every entry (toggling CR4.PGE or CR4.PCIDE). */
function flushEverything(cpu: u32, c: usize): void {
  tlbInvalidate(cpu, c, 0, ALL_PAGES_HI, 0, MATCH_ALL);
}

// @ts-ignore: decorator
@inline function curPcid(c: usize): u32 {
  return load<u32>(c + CPU_CTRL) & CTRL_PCIDE ? load<u32>(c + CPU_PCID) : 0;
}

/**
 * cpuWriteCr3 - MOV to CR3: switch to the address space @root with @pcid.
 * Without @noflush (or without CR4.PCIDE) the PCID's non-global entries are dropped.
 * @root: a root table pfn, or -1 to leave the CPU without an address space.
 */
export function cpuWriteCr3(cpu: u32, root: f64, pcid: u32, noflush: bool): i32 {
  if (cpu >= NR_CPUS) return fail(EINVAL, R_CPU, cpu);
  const c = cpuAddr(cpu);
  let pfn = NONE;
  if (root != -1) {
    const r = rootCheck(root);
    if (r < 0) return <i32>r;
    pfn = <u32>r;
  }
  const pcide = (load<u32>(c + CPU_CTRL) & CTRL_PCIDE) != 0;
  if (pcid > 0xfff || (!pcide && pcid != 0)) return fail(EINVAL, R_PCID, pcid);
  store<u32>(c + CPU_CR3_PFN, pfn);
  store<u32>(c + CPU_PCID, pcid);
  if (!pcide || !noflush) tlbInvalidate(cpu, c, 0, ALL_PAGES_HI, pcid, MATCH_PCID_NONGLOBAL);
  return 0;
}

/**
 * cpuSetCtrl - write CR0.WP, CR4.{PGE,PCIDE,SMEP,SMAP,PKE} and EFER.NXE at once.
 * Changing PGE or PCIDE flushes the whole TLB; setting PCIDE needs PCID 0 (else #GP, here
 * -EINVAL); clearing it makes the current PCID 0.
 */
export function cpuSetCtrl(cpu: u32, ctrl: u32): i32 {
  if (cpu >= NR_CPUS) return fail(EINVAL, R_CPU, cpu);
  if (ctrl & ~CTRL_ALL) return fail(EINVAL, R_CTRL, ctrl);
  const c = cpuAddr(cpu);
  const old = load<u32>(c + CPU_CTRL);
  const turnsOnPcid = (ctrl & CTRL_PCIDE) != 0 && (old & CTRL_PCIDE) == 0;
  if (turnsOnPcid && load<u32>(c + CPU_PCID) != 0) return fail(EINVAL, R_PCID, 0);
  store<u32>(c + CPU_CTRL, ctrl);
  if ((ctrl & CTRL_PCIDE) == 0) store<u32>(c + CPU_PCID, 0);
  if ((old ^ ctrl) & (CTRL_PGE | CTRL_PCIDE)) flushEverything(cpu, c);
  return 0;
}

/** cpuWrpkru - WRPKRU. */
export function cpuWrpkru(cpu: u32, pkru: u32): i32 {
  if (cpu >= NR_CPUS) return fail(EINVAL, R_CPU, cpu);
  store<u32>(cpuAddr(cpu) + CPU_PKRU, pkru);
  return 0;
}

/**
 * tlbFlushRange - drop the current PCID's and the global entries overlapping a range: one
 * INVLPG per page, as flush_tlb_func() issues for a small flush.
 * Returns how many entries were dropped, or -EINVAL.
 */
export function tlbFlushRange(cpu: u32, vpn: f64, npages: f64): i32 {
  if (cpu >= NR_CPUS) return fail(EINVAL, R_CPU, cpu);
  const rc = rangeCheck(vpn, npages, 1);
  if (rc < 0) return rc;
  const c = cpuAddr(cpu);
  return <i32>tlbInvalidate(cpu, c, rangeLo, rangeHi, curPcid(c), MATCH_PCID_OR_GLOBAL);
}

/**
 * tlbFlushPcidRange - drop @pcid's non-global entries overlapping a range, whatever the CPU
 * runs now: the flush a TLB shootdown does for an mm on a CPU that may hold its entries
 * (INVPCID type 0 per page, or type 1 for a range above the flush ceiling the caller picks).
 * Returns how many entries were dropped, or -EINVAL.
 */
export function tlbFlushPcidRange(cpu: u32, pcid: u32, vpn: f64, npages: f64): i32 {
  if (cpu >= NR_CPUS) return fail(EINVAL, R_CPU, cpu);
  if (pcid > 0xfff) return fail(EINVAL, R_PCID, pcid);
  const rc = rangeCheck(vpn, npages, 1);
  if (rc < 0) return rc;
  return <i32>tlbInvalidate(cpu, cpuAddr(cpu), rangeLo, rangeHi, pcid, MATCH_PCID_NONGLOBAL);
}

/**
 * tlbInvpcid - INVPCID @type for @pcid (and, for type 0, the page @vpn).
 * Returns how many entries were dropped, or -EINVAL.
 */
export function tlbInvpcid(cpu: u32, type: u32, pcid: u32, vpn: f64): i32 {
  if (cpu >= NR_CPUS) return fail(EINVAL, R_CPU, cpu);
  if (type > <u32>INVPCID_ALL_NONGLOBAL) return fail(EINVAL, R_INVPCID_TYPE, type);
  if (pcid > 0xfff) return fail(EINVAL, R_PCID, pcid);
  const c = cpuAddr(cpu);
  if (type == INVPCID_ADDR) {
    const rc = rangeCheck(vpn, 1, 1);
    if (rc < 0) return rc;
    return <i32>tlbInvalidate(cpu, c, rangeLo, rangeHi, pcid, MATCH_PCID_NONGLOBAL);
  }
  if (type == INVPCID_SINGLE) {
    return <i32>tlbInvalidate(cpu, c, 0, ALL_PAGES_HI, pcid, MATCH_PCID_NONGLOBAL);
  }
  const mode = type == INVPCID_ALL_GLOBAL ? MATCH_ALL : MATCH_NONGLOBAL;
  return <i32>tlbInvalidate(cpu, c, 0, ALL_PAGES_HI, 0, mode);
}

/**
 * translateBatch - translate requests [@first, @first + @n) of this thread's ring on @cpu.
 *
 * Each request is {va, access}; each gets a status (the page size and whether the TLB hit,
 * a fault as vector << 16 | error code, or -EINVAL for unknown access bits; see TREQ_* in
 * src/abi/header.ts) and, on success, the physical address. A TLB hit whose
 * rights no longer allow the access, or a write through an entry not yet dirty, drops the
 * entry and walks again, as the CPU does after the (spurious) fault or for the D-bit update.
 * @flags: XLATE_NOTLB to bypass the TLB, XLATE_NOSIDE for a walk that writes nothing,
 * XLATE_STOP to stop at the first fault (the requests after it are left alone, as a CPU
 * executing the accesses in order would not reach them).
 * Returns how many requests were processed (@n, or up to and including the first fault
 * with XLATE_STOP), or -EINVAL for a bad cpu, range or flags, or a CPU without an address
 * space.
 * The ring's result registers receive this batch's counts of hits, misses, walks, entry
 * loads, faults and spurious faults.
 */
export function translateBatch(cpu: u32, first: u32, n: u32, flags: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  if (cpu >= NR_CPUS) return fail(EINVAL, R_CPU, cpu);
  if (first > RING_ENTRIES || n > RING_ENTRIES - first) return fail(EINVAL, R_COUNT, first + n);
  if (flags & ~(XLATE_NOTLB | XLATE_NOSIDE | XLATE_STOP)) return fail(EINVAL, R_FLAGS, flags);
  const c = cpuAddr(cpu);
  const root = load<u32>(c + CPU_CR3_PFN);
  if (root == NONE) return fail(EINVAL, R_ROOT, cpu);
  const ctrl = load<u32>(c + CPU_CTRL);
  const pkru = load<u32>(c + CPU_PKRU);
  const pcid = curPcid(c);
  const useTlb = (flags & (XLATE_NOTLB | XLATE_NOSIDE)) == 0;
  const side = (flags & XLATE_NOSIDE) == 0;
  const sh: u64 = 64 - VA_BITS;
  const vaMask: u64 = (<u64>1 << VA_BITS) - 1;
  if (!useTlb) {
    return walkBatch(root, ctrl, pkru, side, (flags & XLATE_STOP) != 0, first, n, sh, FRAMES, POOL - 4096, LEVELS == 5, vaMask, rsvdCommon(ctrl));
  }
  let tick = load<u64>(c + CPU_TICK);
  let hits: u32 = 0;
  let misses: u32 = 0;
  let walks: u32 = 0;
  let loads: u32 = 0;
  let faults: u32 = 0;
  let spurious: u32 = 0;
  const base = tlbBase(cpu);
  const setMask = <u64>(TLB_SETS - 1);
  const setBytes = <usize>TLB_WAYS * TLBE_SIZE;
  const stop = (flags & XLATE_STOP) != 0;
  let done = n;
  let req = RING + RING_ENTRY0 + <usize>first * RENT_SIZE;
  for (let i: u32 = 0; i < n; i++, req += RENT_SIZE) {
    const va = load<u64>(req + TREQ_VA);
    const acc = load<u32>(req + TREQ_ACCESS);
    if (refuseAccess(req, acc, i)) continue;
    if (<i64>(va << sh) >> sh != <i64>va) {
      store<i32>(req + TREQ_STATUS, X86_TRAP_GP << 16);
      faults++;
      if (stop) {
        done = i + 1;
        break;
      }
      continue;
    }
    const lvpn = (va & vaMask) >> 12;
    let stale = false;
    if (useTlb) {
      const e = tlbLookup(base, setMask, setBytes, c, lvpn, pcid);
      if (e != 0) {
        const data = load<u64>(e + TLBE_DATA);
        const denied = permCheck(data, acc, ctrl, pkru);
        if (denied == 0 && ((acc & ACC_WRITE) == 0 || (data & D) != 0)) {
          const size = <u32>(load<u64>(e + TLBE_TAG) >> TLB_TAG_SIZE_SHIFT) & 3;
          const offMask: u64 = (<u64>1 << (12 + 9 * size)) - 1;
          store<u64>(e + TLBE_STAMP, ++tick);
          store<i32>(req + TREQ_STATUS, <i32>(size | XLATE_HIT));
          store<u64>(req + TREQ_PA, (data & FRAME_MASK) | (va & offMask));
          hits++;
          continue;
        }
        stale = denied != 0;
        tlbDrop(c, e);
      }
      misses++;
    }
    const st = walk(root, va, acc, ctrl, pkru, side, req + TREQ_PA);
    walks++;
    loads += walkLoads;
    if (st != 0) {
      store<i32>(req + TREQ_STATUS, st);
      faults++;
      if (stop) {
        done = i + 1;
        break;
      }
      continue;
    }
    store<i32>(req + TREQ_STATUS, <i32>walkSize);
    if (stale) spurious++;
    if (useTlb) {
      const global = (walkData & G) != 0 && (ctrl & CTRL_PGE) != 0;
      tlbFill(cpu, c, lvpn, pcid, walkSize, walkData, global, ++tick);
    }
  }
  store<u64>(c + CPU_TICK, tick);
  batchCounts(hits, misses, walks, loads, faults, spurious);
  return <i32>done;
}

/** Request @i at @req asks for unknown access bits @acc: its status is -EINVAL naming it. */
// @ts-ignore: decorator
@inline function refuseAccess(req: usize, acc: u32, i: u32): bool {
  if ((acc & ~ACC_MASK) == 0) return false;
  store<i32>(req + TREQ_STATUS, fail(EINVAL, R_ACCESS, i));
  return true;
}

/** The ring's result registers after a translate batch. */
// @ts-ignore: decorator
@inline function batchCounts(hits: u32, misses: u32, walks: u32, loads: u32, faults: u32, spurious: u32): void {
  store<u32>(RING + REG_HITS, hits);
  store<u32>(RING + REG_MISSES, misses);
  store<u32>(RING + REG_WALKS, walks);
  store<u32>(RING + REG_LOADS, loads);
  store<u32>(RING + REG_FAULTS, faults);
  store<u32>(RING + REG_SPURIOUS, spurious);
}

/**
 * walkBatch - translateBatch without the TLB (XLATE_NOTLB or XLATE_NOSIDE): every request
 * walks, as translateBatch's loop would with the TLB left out. Its own function, with the
 * walk inlined, so the loop's values stay in registers (inside translateBatch's loop
 * TurboFan spilled them around each walk call). What is the same for every walk comes in
 * as parameters (walkIn's): computed here, TurboFan would redo it inside the loop.
 */
function walkBatch(
  root: u32, ctrl: u32, pkru: u32, side: bool, stop: bool, first: u32, n: u32, sh: u64,
  frames: usize, pool: usize, five: bool, vaMask: u64, common: u64,
): i32 {
  let walks: u32 = 0;
  let loads: u32 = 0;
  let faults: u32 = 0;
  let done = n;
  let req = RING + RING_ENTRY0 + <usize>first * RENT_SIZE;
  for (let i: u32 = 0; i < n; i++, req += RENT_SIZE) {
    const va = load<u64>(req + TREQ_VA);
    const acc = load<u32>(req + TREQ_ACCESS);
    if (refuseAccess(req, acc, i)) continue;
    let st: i32 = X86_TRAP_GP << 16;
    if (<i64>(va << sh) >> sh == <i64>va) {
      st = walkIn(frames, pool, five, vaMask, common, root, va, acc, ctrl, pkru, side, req + TREQ_PA);
      walks++;
      loads += walkLoads;
      if (st == 0) {
        store<i32>(req + TREQ_STATUS, <i32>walkSize);
        continue;
      }
    }
    store<i32>(req + TREQ_STATUS, st);
    faults++;
    if (stop) {
      done = i + 1;
      break;
    }
  }
  batchCounts(0, 0, walks, loads, faults, 0);
  return <i32>done;
}


