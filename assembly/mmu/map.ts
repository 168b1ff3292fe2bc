/**
 * ptMap - map a virtual range to consecutive frames with 4 KiB, 2 MiB or 1 GiB leaves
 * (the page-table half of remap_pfn_range() / vmap_range()).
 *
 * All or nothing: a first pass checks that nothing in the range is mapped and counts the
 * tables the range needs; only when frames and backing slots for all of them are free does
 * the second pass write. New upper entries are Linux's _PAGE_TABLE (user half) or
 * _KERNPG_TABLE (kernel half), so a leaf's own bits decide its rights.
 */
import { EINVAL, EEXIST } from "../../src/abi/errno";
import { R_PFN_ALIGN, R_PFN_RANGE, R_PROT_BITS, R_PAGE_SIZE, R_MAPPED } from "../../src/abi/reason";
import {
  PTE_SOFTW1, PTE_SOFTW2, PTE_SOFTW3, PTE_BIT_SOFTW4, PTE_BIT_SOFTW5,
} from "../../src/abi/x86";
import { fail } from "../errno";
import { RING, ringCheck } from "../ring";
import { REG_TABLES } from "../../src/abi/header";
import { MAX_PFN, LEVELS } from "../layout";
import {
  P, RW, US, PWT, PCD, A, D, PS, G, PAT4K, PATL, NX, PKEY_MASK, TABLE_USER, TABLE_KERNEL,
  pteIsLeaf, ptePfn, levelPages, tableAddr,
} from "./pte";
import {
  rangeLo, rangeHi, rangeKernel, rangeCheck, rootCheck, tableNew, tableCountAdd,
  tablesAvailable, opTables, opTablesReset,
} from "./pgtable";

/** Bits a caller may give a new leaf (4 KiB format: PAT at bit 7). */
export const LEAF_PROT_OK: u64 =
  RW | US | PWT | PCD | A | D | PAT4K | G | PTE_SOFTW1 | PTE_SOFTW2 | PTE_SOFTW3 | NX | PKEY_MASK |
  (<u64>1 << PTE_BIT_SOFTW4) | (<u64>1 << PTE_BIT_SOFTW5);

let leafLevel: u32 = 1;
let firstPfn: u64 = 0;
let leafBits: u64 = 0;

/** New tables an empty subtree needs to reach leaves over [lo, hi) from a table at @level. */
function emptyTables(level: u32, lo: u64, hi: u64): u64 {
  let n: u64 = 0;
  for (let m = level; m >= leafLevel; m--) {
    const sh = 9 * m;
    n += ((hi - 1) >> sh) - (lo >> sh) + 1;
  }
  return n;
}

/** Pass 1: tables needed under table @t (level @level, first lvpn @base), -1 if mapped. */
function mapCount(t: u32, level: u32, base: u64, lo: u64, hi: u64): i64 {
  const sh = 9 * (level - 1);
  const span = levelPages(level);
  const ta = tableAddr(t);
  const i1 = <u32>((hi - 1 - base) >> sh);
  let need: i64 = 0;
  for (let i = <u32>((lo - base) >> sh); i <= i1; i++) {
    const e = atomic.load<u64>(ta + (<usize>i << 3));
    const s = base + (<u64>i << sh);
    const sLo = lo > s ? lo : s;
    const sHi = hi < s + span ? hi : s + span;
    if (level == leafLevel) {
      if (e != 0) return -1;
    } else if (e == 0) {
      need += emptyTables(level - 1, sLo, sHi);
    } else if (pteIsLeaf(e, level)) {
      return -1;
    } else {
      const r = mapCount(<u32>ptePfn(e), level - 1, s, sLo, sHi);
      if (r < 0) return r;
      need += r;
    }
  }
  return need;
}

/** Pass 2: write the leaves, creating tables on the way. */
function mapFill(t: u32, level: u32, base: u64, lo: u64, hi: u64): void {
  const sh = 9 * (level - 1);
  const span = levelPages(level);
  const ta = tableAddr(t);
  const i1 = <u32>((hi - 1 - base) >> sh);
  for (let i = <u32>((lo - base) >> sh); i <= i1; i++) {
    const ea = ta + (<usize>i << 3);
    const s = base + (<u64>i << sh);
    if (level == leafLevel) {
      atomic.store<u64>(ea, ((firstPfn + (s - rangeLo)) << 12) | leafBits);
      tableCountAdd(t, 1);
      continue;
    }
    let e = atomic.load<u64>(ea);
    if (e == 0) {
      const c = tableNew(level - 1);
      e = (<u64>c << 12) | (rangeKernel ? TABLE_KERNEL : TABLE_USER);
      atomic.store<u64>(ea, e);
      tableCountAdd(t, 1);
    }
    const sLo = lo > s ? lo : s;
    const sHi = hi < s + span ? hi : s + span;
    mapFill(<u32>ptePfn(e), level - 1, s, sLo, sHi);
  }
}

/**
 * ptMap - map [vpn, vpn + npages) to frames pfn, pfn + 1, ... with leaves of @level.
 * @protLo, @protHi: the leaf's bits in 4 KiB-PTE format (LEAF_PROT_OK); P and PS are added.
 * Returns 0, -EINVAL (bad range, alignment, frame, bits), -EEXIST (something is mapped in
 * the range) or -ENOMEM (no frames or backing for the tables); nothing changes on failure.
 */
export function ptMap(
  root: f64, vpn: f64, npages: f64, pfn: f64, protLo: u32, protHi: u32, level: u32,
): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  if (level < 1 || level > 3) return fail(EINVAL, R_PAGE_SIZE, level);
  const rc = rangeCheck(vpn, npages, level);
  if (rc < 0) return rc;
  const prot = (<u64>protHi << 32) | <u64>protLo;
  if (prot & ~LEAF_PROT_OK) return fail(EINVAL, R_PROT_BITS, 0);
  if (!(pfn >= 0) || pfn != Math.floor(pfn)) return fail(EINVAL, R_PFN_RANGE, 0);
  const p = <u64>pfn;
  if (p & (levelPages(level) - 1)) return fail(EINVAL, R_PFN_ALIGN, level);
  if (pfn + npages > <f64>MAX_PFN) return fail(EINVAL, R_PFN_RANGE, 0);
  leafLevel = level;
  firstPfn = p;
  // A large leaf keeps PAT at bit 12; bit 7 becomes PS.
  let bits = prot | P;
  if (level > 1) bits = (bits & ~PAT4K) | PS | (prot & PAT4K ? PATL : 0);
  leafBits = bits;
  const need = mapCount(<u32>r, LEVELS, 0, rangeLo, rangeHi);
  if (need < 0) return fail(EEXIST, R_MAPPED, 0);
  const ra = tablesAvailable(<u64>need);
  if (ra < 0) return ra;
  opTablesReset();
  mapFill(<u32>r, LEVELS, 0, rangeLo, rangeHi);
  assert(<i64>opTables == need, "ptMap: pass 2 made a different number of tables than pass 1 counted");
  store<u32>(RING + REG_TABLES, opTables);
  return 0;
}

