/**
 * Reading and writing single entries: ptepGet (ptep_get() after a walk, as follow_pte()
 * does) and ptepSet (set_pte_at() / set_pmd_at(), raw).
 *
 * ptepSet exists for tests and for users who want to see the hardware meet a bad entry
 * (a reserved bit, an upper level without RW); it keeps the page-table structure intact:
 * an entry that points to a table keeps pointing to it, and no table entry is created.
 */
import { EINVAL, ENOENT } from "../../src/abi/errno";
import { REG_PTE_LO, REG_PTE_HI, REG_LEVEL, RING_ENTRY0, RENT_SIZE } from "../../src/abi/header";
import { R_COUNT, R_LEVEL, R_NOT_MAPPED, R_TABLE_ENTRY } from "../../src/abi/reason";
import { fail } from "../errno";
import { LEVELS, RING_ENTRIES } from "../layout";
import { RING, ringCheck } from "../ring";
import { P, PS, FRAME_MASK, pteIsLeaf, ptePfn, entryAddr, levelPages } from "./pte";
import { rangeLo, rangeHi, rangeVpnHigh, rangeCheck, rootCheck, tableCountAdd } from "./pgtable";
import { ptUnmap } from "./unmap";

/**
 * ptepGet - the entry for page @vpn at @level (0: the first leaf or empty entry the walk
 * meets). The walk stops early at a leaf or empty entry above @level.
 * Writes the entry to REG_PTE_LO/HI and its level to REG_LEVEL; returns the level, or
 * -EINVAL.
 */
export function ptepGet(root: f64, vpn: f64, want: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  if (want > LEVELS) return fail(EINVAL, R_LEVEL, want);
  const rc = rangeCheck(vpn, 1, 1);
  if (rc < 0) return rc;
  let t = <u32>r;
  let level = LEVELS;
  let e: u64 = 0;
  while (true) {
    e = atomic.load<u64>(entryAddr(t, level, rangeLo));
    if (level == want || (e & P) == 0 || pteIsLeaf(e, level)) break;
    t = <u32>ptePfn(e);
    level--;
  }
  store<u32>(RING + REG_PTE_LO, <u32>e);
  store<u32>(RING + REG_PTE_HI, <u32>(e >> 32));
  store<u32>(RING + REG_LEVEL, level);
  return level;
}

/** The most pages one ptepRange call reads: 12 bytes each in the ring's entries. */
export function ptepRangeMax(): u32 {
  return <u32>((<u64>RING_ENTRIES * RENT_SIZE) / 12);
}

/**
 * ptepRange - ptepGet(…, 0) for each of the @n pages from @vpn, in one call (what a walk of
 * a range for hmm_range_fault or a device snapshot reads): for page i the ring's entries
 * hold, at 12 * i, the entry's low and high words and its level (the leaf, or the empty
 * entry where the walk stopped). A huge leaf is given for each page it maps. One descent per
 * PTE table, huge leaf or hole. Returns @n, or -EINVAL (root, range, or more than
 * ptepRangeMax pages).
 */
export function ptepRange(root: f64, vpn: f64, n: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  if (n > ptepRangeMax()) return fail(EINVAL, R_COUNT, n);
  const rc = rangeCheck(vpn, <f64>n, 1);
  if (rc < 0) return rc;
  const out = RING + RING_ENTRY0;
  let lv = rangeLo;
  const end = rangeHi;
  let i: usize = 0;
  while (lv < end) {
    let t = <u32>r;
    let level = LEVELS;
    let e: u64 = 0;
    while (true) {
      e = atomic.load<u64>(entryAddr(t, level, lv));
      if (level == 1 || (e & P) == 0 || pteIsLeaf(e, level)) break;
      if (level == 2) {
        // A PTE table: every page up to its end (or the range's) from it.
        const pt = <u32>ptePfn(e);
        const stop = min(end, (lv | 511) + 1);
        for (; lv < stop; lv++, i++) {
          const x = atomic.load<u64>(entryAddr(pt, 1, lv));
          const a = out + i * 12;
          store<u32>(a, <u32>x);
          store<u32>(a + 4, <u32>(x >> 32));
          store<u32>(a + 8, 1);
        }
        break;
      }
      t = <u32>ptePfn(e);
      level--;
    }
    if (level == 2 && (e & P) != 0 && !pteIsLeaf(e, 2)) continue;
    // A leaf or an empty entry at @level: the same for every page it spans.
    const span = levelPages(level);
    const stop = min(end, (lv & ~(span - 1)) + span);
    for (; lv < stop; lv++, i++) {
      const a = out + i * 12;
      store<u32>(a, <u32>e);
      store<u32>(a + 4, <u32>(e >> 32));
      store<u32>(a + 8, level);
    }
  }
  return <i32>n;
}

/**
 * ptepSet - write the entry at @level for page @vpn.
 * - The tables above @level must exist, else -ENOENT.
 * - An entry pointing to a table may change only its flag bits (P, the frame and, at
 *   levels 2-3, PS stay), else -EINVAL.
 * - Elsewhere: level 1 takes any value; levels 2-3 take 0 or a present leaf (PS set);
 *   levels 4-5 take only 0. Writing 0 clears through ptUnmap, so emptied tables are freed.
 * Returns 0 or -errno; nothing changes on failure.
 */
export function ptepSet(root: f64, vpn: f64, level: u32, lo: u32, hi: u32): i32 {
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  if (level < 1 || level > LEVELS) return fail(EINVAL, R_LEVEL, level);
  const rc = rangeCheck(vpn, 1, 1);
  if (rc < 0) return rc;
  let t = <u32>r;
  for (let l = LEVELS; l > level; l--) {
    const e = atomic.load<u64>(entryAddr(t, l, rangeLo));
    if ((e & P) == 0 || pteIsLeaf(e, l)) return fail(ENOENT, R_NOT_MAPPED, l);
    t = <u32>ptePfn(e);
  }
  const ea = entryAddr(t, level, rangeLo);
  const old = atomic.load<u64>(ea);
  const v = (<u64>hi << 32) | lo;
  const oldTable = level > 1 && (old & P) != 0 && !pteIsLeaf(old, level);
  if (oldTable) {
    const keep = P | FRAME_MASK | (level <= 3 ? PS : 0);
    if ((v & keep) != (old & keep)) return fail(EINVAL, R_TABLE_ENTRY, level);
  } else if (level >= 4) {
    if (v != 0) return fail(EINVAL, R_TABLE_ENTRY, level);
  } else if (level >= 2) {
    if (v != 0 && (v & (P | PS)) != (P | PS)) return fail(EINVAL, R_TABLE_ENTRY, level);
  }
  if (v == 0) {
    if (old == 0) return 0;
    // Clearing goes through unmap, which frees the tables that become empty.
    const span = levelPages(level);
    const first = <f64>((rangeLo & ~(span - 1)) + rangeVpnHigh);
    const u = ptUnmap(root, first, <f64>span, 0);
    return u < 0 ? u : 0;
  }
  atomic.store<u64>(ea, v);
  if (old == 0) tableCountAdd(t, 1);
  return 0;
}
