/**
 * ptUnmap - clear every entry in a range (zap_page_range() / unmap_page_range()), splitting
 * huge leaves the range cuts and freeing tables that become empty (free_pgtables()).
 *
 * With @cap > 0 each cleared leaf is written to the thread's ring as a leaf record (the old
 * entry, with the A and D bits the hardware set) so the caller can account for the frames;
 * after @cap leaves the call stops at a leaf boundary and leaves the page to resume from in
 * REG_RESUME (-1 when done). The range stays consistent at every stop. Flushing TLBs is the
 * caller's business, as in the kernel: a CPU may keep using a stale translation until then.
 */

import {
  REG_RESUME, REG_PAGES, REG_TABLES, RING_ENTRY0, RENT_SIZE, LEAF_PTE, LEAF_VPN, LEAF_LEVEL,
} from "../../src/abi/header";
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT } from "../../src/abi/reason";
import { fail } from "../errno";
import { LEVELS, VA_BITS, RING_ENTRIES } from "../layout";
import { RING, ringCheck } from "../ring";
import { pteIsLeaf, ptePfn, levelPages, tableAddr } from "./pte";
import {
  rangeLo, rangeHi, rangeVpnHigh, rangeCheck, rootCheck, tableCount, tableCountAdd, tableFree,
  tablesAvailable, opTables, opTablesReset,
} from "./pgtable";
import { splitTablesNeeded, splitAt } from "./split";

let cap: u32 = 0;
let leaves: u32 = 0;
let stopped: bool = false;
let resume: u64 = 0;
let pages: u64 = 0;

function unmapRange(t: u32, level: u32, base: u64, lo: u64, hi: u64): void {
  const sh = 9 * (level - 1);
  const span = levelPages(level);
  const ta = tableAddr(t);
  const i1 = <u32>((hi - 1 - base) >> sh);
  for (let i = <u32>((lo - base) >> sh); i <= i1; i++) {
    const ea = ta + (<usize>i << 3);
    const e = atomic.load<u64>(ea);
    if (e == 0) continue;
    const s = base + (<u64>i << sh);
    if (pteIsLeaf(e, level)) {
      if (cap != 0 && leaves == cap) {
        stopped = true;
        resume = s;
        return;
      }
      const old = atomic.xchg<u64>(ea, 0);
      tableCountAdd(t, -1);
      pages += span;
      if (cap != 0) {
        const rec = RING + RING_ENTRY0 + <usize>leaves * RENT_SIZE;
        store<u64>(rec + LEAF_PTE, old);
        store<f64>(rec + LEAF_VPN, <f64>(s + rangeVpnHigh));
        store<u32>(rec + LEAF_LEVEL, level);
      }
      leaves++;
      continue;
    }
    const c = <u32>ptePfn(e);
    const sLo = lo > s ? lo : s;
    const sHi = hi < s + span ? hi : s + span;
    unmapRange(c, level - 1, s, sLo, sHi);
    if (tableCount(c) == 0) {
      atomic.store<u64>(ea, 0);
      tableCountAdd(t, -1);
      tableFree(c);
    }
    if (stopped) return;
  }
}

/**
 * ptUnmap - unmap [vpn, vpn + npages).
 * @cap: 0 to clear the whole range without records, else the most leaf records to write.
 * Returns the number of leaves cleared, or -EINVAL / -ENOMEM (splitting needs tables);
 * nothing changes on failure. REG_PAGES: pages cleared; REG_TABLES: tables made and freed.
 */
export function ptUnmap(root: f64, vpn: f64, npages: f64, capacity: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  const rc = rangeCheck(vpn, npages, 1);
  if (rc < 0) return rc;
  if (capacity > RING_ENTRIES) return fail(EINVAL, R_COUNT, capacity);
  const root32 = <u32>r;
  const end: u64 = <u64>1 << (VA_BITS - 12);
  const ra = tablesAvailable(splitTablesNeeded(root32, rangeLo, rangeHi, end));
  if (ra < 0) return ra;
  opTablesReset();
  splitAt(root32, rangeLo);
  if (rangeHi < end) splitAt(root32, rangeHi);
  cap = capacity;
  leaves = 0;
  stopped = false;
  pages = 0;
  unmapRange(root32, LEVELS, 0, rangeLo, rangeHi);
  store<f64>(RING + REG_RESUME, stopped ? <f64>(resume + rangeVpnHigh) : -1);
  store<f64>(RING + REG_PAGES, <f64>pages);
  store<u32>(RING + REG_TABLES, opTables);
  return <i32>leaves;
}


