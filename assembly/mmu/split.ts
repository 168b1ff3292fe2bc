/**
 * Splitting huge leaves at the edges of a range (split_huge_pud() / split_huge_pmd()).
 *
 * An unmap or protect over part of a 1 GiB or 2 MiB leaf first splits that leaf into a table
 * of 512 smaller leaves mapping the same frames with the same bits (A and D copied to each,
 * PAT moved from bit 12 to bit 7 for 4 KiB entries). Only the two ends of a range can cut a
 * leaf, so at most four tables are needed; splitTablesNeeded() counts them exactly first.
 */
import { LEVELS } from "../layout";
import {
  P, PS, PAT4K, PATL, FRAME_MASK, TABLE_USER, TABLE_KERNEL, pteIsLeaf, ptePfn, levelPages,
  entryAddr, tableAddr,
} from "./pte";
import { rangeKernel, tableNew, tableCountAdd } from "./pgtable";

/* leafAt() results. */
let leafAddr: usize = 0;
let leafBase: u64 = 0;

/** Level of the leaf mapping @lvpn (entry address in leafAddr), or 0 if none does. */
function leafAt(root: u32, lvpn: u64): u32 {
  let t = root;
  for (let level = LEVELS; level >= 1; level--) {
    const ea = entryAddr(t, level, lvpn);
    const e = atomic.load<u64>(ea);
    if ((e & P) == 0) return 0;
    if (pteIsLeaf(e, level)) {
      leafAddr = ea;
      leafBase = lvpn & ~(levelPages(level) - 1);
      return level;
    }
    t = <u32>ptePfn(e);
  }
  return 0;
}

/** Tables needed to split the huge leaves that [lo, hi) cuts. */
export function splitTablesNeeded(root: u32, lo: u64, hi: u64, end: u64): u64 {
  let n: u64 = 0;
  const la = leafAt(root, lo);
  const baseA = leafBase;
  const loCut1G = la == 3 && (lo & (levelPages(3) - 1)) != 0;
  const loCut2M = (la == 3 || la == 2) && (lo & 511) != 0;
  if (loCut1G) n++;
  if (loCut2M) n++;
  if (hi >= end) return n;
  const lb = leafAt(root, hi);
  if (lb == 3 && (hi & (levelPages(3) - 1)) != 0) {
    const sameGig = loCut1G && baseA == leafBase;
    if (!sameGig) n++;
    if ((hi & 511) != 0 && !(sameGig && loCut2M && lo >> 9 == hi >> 9)) n++;
  } else if (lb == 2 && (hi & 511) != 0) {
    if (!(la == 2 && loCut2M && baseA == leafBase)) n++;
  }
  return n;
}

/** Replace the huge leaf at @ea (level @level) by a table of 512 leaves one level down. */
function splitLeaf(ea: usize, level: u32): void {
  const c = tableNew(level - 1);
  const ta = tableAddr(c);
  const step = levelPages(level - 1);
  while (true) {
    const old = atomic.load<u64>(ea);
    let bits = old & ~FRAME_MASK;
    if (level - 1 == 1) bits = (bits & ~PS) | (old & PATL ? PAT4K : 0);
    else bits |= old & PATL;
    const first = ptePfn(old) & ~(levelPages(level) - 1);
    for (let i: u64 = 0; i < 512; i++) {
      atomic.store<u64>(ta + (<usize>i << 3), ((first + i * step) << 12) | bits);
    }
    const table = (<u64>c << 12) | (rangeKernel ? TABLE_KERNEL : TABLE_USER);
    // A walker may have set A or D meanwhile: rebuild from the new value if so.
    if (atomic.cmpxchg<u64>(ea, old, table) == old) break;
  }
  tableCountAdd(c, 512);
}

/** splitAt - make @lvpn the first page of a leaf, splitting the huge leaves around it. */
export function splitAt(root: u32, lvpn: u64): void {
  while (true) {
    const level = leafAt(root, lvpn);
    if (level < 2 || (lvpn & (levelPages(level) - 1)) == 0) return;
    splitLeaf(leafAddr, level);
  }
}
