/**
 * Per-CPU TLB: set-associative, tagged by PCID and page size, LRU replacement.
 *
 * - An entry's tag packs the page number at its size, the size, the PCID, G and V (layout in
 *   src/abi/header.ts); a hit is one XOR and compare (two for global entries, which match
 *   every PCID). Sizes are probed 4 KiB, then 2 MiB, then 1 GiB, skipping sizes with no live
 *   entries.
 * - The set index is the page number at the entry's size modulo the number of sets.
 * - Victim: the first invalid way, else the least recently used (smallest stamp).
 * - Invalidation scopes follow INVLPG and INVPCID: one address (with or without globals),
 *   one PCID (non-global), everything but globals, everything. A range invalidation probes
 *   page by page when that is cheaper than a sweep of the whole TLB; both remove exactly
 *   the entries that overlap the range.
 */
import {
  CPU_TICK, CPU_LIVE, TLBE_TAG, TLBE_DATA, TLBE_STAMP, TLBE_SIZE, TLB_TAG_V, TLB_TAG_G,
  TLB_TAG_PCID_SHIFT, TLB_TAG_SIZE_SHIFT, TLB_TAG_VPN_SHIFT,
} from "../../src/abi/header";
import { TLBS, TLB_STRIDE, TLB_SETS, TLB_WAYS } from "../layout";

const PCID_FIELD: u64 = <u64>0xfff << TLB_TAG_PCID_SHIFT;
/** Tag bits a global entry ignores: its PCID, and G itself. */
const GLOBAL_IGNORE: u64 = PCID_FIELD | TLB_TAG_G;

/* Match modes of an invalidation. */
export const MATCH_PCID_OR_GLOBAL: u32 = 0; // INVLPG: the PCID's entries and global ones
export const MATCH_PCID_NONGLOBAL: u32 = 1; // INVPCID 0/1, MOV CR3: the PCID's, not global
export const MATCH_ALL: u32 = 2; // INVPCID 2
export const MATCH_NONGLOBAL: u32 = 3; // INVPCID 3

// @ts-ignore: decorator
@inline export function tlbSetAddr(cpu: u32, size: u32, vpnS: u64): usize {
  const set = <usize>(vpnS & <u64>(TLB_SETS - 1));
  return TLBS + <usize>cpu * TLB_STRIDE + set * TLB_WAYS * TLBE_SIZE;
}

// @ts-ignore: decorator
@inline export function tlbTag(vpnS: u64, size: u32, pcid: u32): u64 {
  return (
    (vpnS << TLB_TAG_VPN_SHIFT) | (<u64>size << TLB_TAG_SIZE_SHIFT) |
    (<u64>pcid << TLB_TAG_PCID_SHIFT) | TLB_TAG_V
  );
}

// @ts-ignore: decorator
@inline function liveAddr(c: usize, size: u32): usize {
  return c + CPU_LIVE + (<usize>size << 2);
}

/** This CPU's TLB geometry, hoisted out of a batch's loop. */
// @ts-ignore: decorator
@inline export function tlbBase(cpu: u32): usize {
  return TLBS + <usize>cpu * TLB_STRIDE;
}

/**
 * tlbLookup - the entry translating page @lvpn for @pcid, or 0 on a miss.
 * @base: tlbBase(cpu); @setMask: sets - 1; @setBytes: ways * TLBE_SIZE.
 */
// @ts-ignore: decorator
@inline export function tlbLookup(
  base: usize, setMask: u64, setBytes: usize, c: usize, lvpn: u64, pcid: u32,
): usize {
  for (let size: u32 = 0; size < 3; size++) {
    if (load<u32>(liveAddr(c, size)) == 0) continue;
    const vpnS = lvpn >> (<u64>size * 9);
    const want = tlbTag(vpnS, size, pcid);
    let e = base + <usize>(vpnS & setMask) * setBytes;
    const end = e + setBytes;
    for (; e < end; e += TLBE_SIZE) {
      const tag = load<u64>(e + TLBE_TAG);
      const x = tag ^ want;
      if (x == 0 || ((tag & TLB_TAG_G) != 0 && (x & ~GLOBAL_IGNORE) == 0)) return e;
    }
  }
  return 0;
}

/** tlbFill - insert a translation, evicting the set's LRU entry if it is full. */
export function tlbFill(
  cpu: u32, c: usize, lvpn: u64, pcid: u32, size: u32, data: u64, global: bool, stamp: u64,
): void {
  const vpnS = lvpn >> (9 * size);
  let e = tlbSetAddr(cpu, size, vpnS);
  const end = e + <usize>TLB_WAYS * TLBE_SIZE;
  let victim: usize = 0;
  let oldest: u64 = U64.MAX_VALUE;
  for (; e < end; e += TLBE_SIZE) {
    const tag = load<u64>(e + TLBE_TAG);
    if ((tag & TLB_TAG_V) == 0) {
      victim = e;
      break;
    }
    const st = load<u64>(e + TLBE_STAMP);
    if (st < oldest) {
      oldest = st;
      victim = e;
    }
  }
  const old = load<u64>(victim + TLBE_TAG);
  if (old & TLB_TAG_V) {
    const la = liveAddr(c, <u32>(old >> TLB_TAG_SIZE_SHIFT) & 3);
    store<u32>(la, load<u32>(la) - 1);
  }
  store<u64>(victim + TLBE_TAG, tlbTag(vpnS, size, pcid) | (global ? TLB_TAG_G : 0));
  store<u64>(victim + TLBE_DATA, data);
  store<u64>(victim + TLBE_STAMP, stamp);
  const la = liveAddr(c, size);
  store<u32>(la, load<u32>(la) + 1);
}

/** tlbDrop - invalidate one entry. */
// @ts-ignore: decorator
@inline export function tlbDrop(c: usize, e: usize): void {
  const tag = load<u64>(e + TLBE_TAG);
  store<u64>(e + TLBE_TAG, 0);
  const la = liveAddr(c, <u32>(tag >> TLB_TAG_SIZE_SHIFT) & 3);
  store<u32>(la, load<u32>(la) - 1);
}

// @ts-ignore: decorator
@inline function matches(tag: u64, pcid: u32, mode: u32): bool {
  const global = (tag & TLB_TAG_G) != 0;
  if (mode == MATCH_ALL) return true;
  if (mode == MATCH_NONGLOBAL) return !global;
  const same = <u32>((tag & PCID_FIELD) >> TLB_TAG_PCID_SHIFT) == pcid;
  if (mode == MATCH_PCID_OR_GLOBAL) return same || global;
  return same && !global;
}

/**
 * tlbInvalidate - drop the entries that overlap pages [lo, hi) (linear page numbers) and
 * match @pcid under @mode. Returns how many were dropped.
 */
export function tlbInvalidate(cpu: u32, c: usize, lo: u64, hi: u64, pcid: u32, mode: u32): u32 {
  let dropped: u32 = 0;
  const entries = <u64>TLB_SETS * TLB_WAYS;
  let sizes: u64 = 0;
  for (let s: u32 = 0; s < 3; s++) if (load<u32>(liveAddr(c, s)) != 0) sizes++;
  if (sizes == 0) return 0;
  if ((hi - lo) * sizes * <u64>TLB_WAYS < entries) {
    // Probe the sets each page maps to, as INVLPG would one page at a time.
    for (let p = lo; p < hi; p++) {
      for (let size: u32 = 0; size < 3; size++) {
        if (load<u32>(liveAddr(c, size)) == 0) continue;
        const vpnS = p >> (9 * size);
        const want = (vpnS << TLB_TAG_VPN_SHIFT) | (<u64>size << TLB_TAG_SIZE_SHIFT) | TLB_TAG_V;
        let e = tlbSetAddr(cpu, size, vpnS);
        const end = e + <usize>TLB_WAYS * TLBE_SIZE;
        for (; e < end; e += TLBE_SIZE) {
          const tag = load<u64>(e + TLBE_TAG);
          if ((tag & ~GLOBAL_IGNORE) == want && matches(tag, pcid, mode)) {
            tlbDrop(c, e);
            dropped++;
          }
        }
      }
    }
    return dropped;
  }
  let e = TLBS + <usize>cpu * TLB_STRIDE;
  const end = e + <usize>entries * TLBE_SIZE;
  for (; e < end; e += TLBE_SIZE) {
    const tag = load<u64>(e + TLBE_TAG);
    if ((tag & TLB_TAG_V) == 0) continue;
    const size = <u32>(tag >> TLB_TAG_SIZE_SHIFT) & 3;
    const first = (tag >> TLB_TAG_VPN_SHIFT) << (9 * size);
    const last = first + (<u64>1 << (9 * size));
    if (first < hi && lo < last && matches(tag, pcid, mode)) {
      tlbDrop(c, e);
      dropped++;
    }
  }
  return dropped;
}

/** tlbStampNext - advance the CPU's LRU clock. */
// @ts-ignore: decorator
@inline export function tlbTick(c: usize): u64 {
  const t = load<u64>(c + CPU_TICK) + 1;
  store<u64>(c + CPU_TICK, t);
  return t;
}


