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
  REG_RESUME, REG_PAGES, REG_TABLES, REG_ANON, REG_FILE, REG_FREED, REG_SWAP, RING_ENTRY0, RENT_SIZE,
  LEAF_PTE, LEAF_VPN, LEAF_LEVEL,
} from "../../src/abi/header";
import { PG_anon, PG_dirty, PG_referenced } from "../../src/abi/frame";
import { PTE_SOFTW1 } from "../../src/abi/x86";
import { frameFlags } from "../phys/frame";
import {
  folioHead, folioPut, pageMapcountAdd, folioEntireMapcountAdd, pageFlagsUpdate,
} from "../mm/page";
import { isSwapEntry, swapEntrySlot, swapFree } from "../mm/swap";
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT } from "../../src/abi/reason";
import { fail } from "../errno";
import { LEVELS, VA_BITS, RING_ENTRIES, NR_FRAMES } from "../layout";
import { RING, ringCheck } from "../ring";
import { P, A, D, pteIsLeaf, ptePfn, levelPages, tableAddr } from "./pte";

const SPECIAL: u64 = PTE_SOFTW1;
import {
  rangeLo, rangeHi, rangeVpnHigh, rangeCheck, rootCheck, tableCount, tableCountAdd, tableFree,
  tablesAvailable, opTables, opTablesReset,
} from "./pgtable";
import { splitTablesNeeded, splitAt } from "./split";

let cap: u32 = 0;
let leaves: u32 = 0;
let records: u32 = 0;
let stopped: bool = false;
let resume: u64 = 0;
let pages: u64 = 0;
/* zap mode: account for the struct pages behind the leaves (zap_pte_range). */
let zap: bool = false;
let anonPages: u32 = 0;
let filePages: u32 = 0;
let freed: u32 = 0;
let swapped: u32 = 0;

/**
 * The struct-page side of clearing present leaf @e at @level (zap_present_pte /
 * zap_huge_pmd): mapcount down, D -> folio dirty for file pages, A -> referenced, and the
 * mapping's folio reference dropped (freeing the folio on the last one). Special entries
 * (device pages, the zero page) have no struct page.
 */
function zapAccount(e: u64, level: u32): void {
  if ((e & SPECIAL) != 0) return;
  const pfn = <u32>ptePfn(e);
  if (<u64>pfn >= <u64>NR_FRAMES) return;
  let head: u32;
  if (level == 1) {
    head = folioHead(pfn);
    pageMapcountAdd(pfn, -1);
  } else {
    head = <u32>(ptePfn(e) & ~(levelPages(level) - 1));
    folioEntireMapcountAdd(head, -1);
  }
  const flags = frameFlags(head);
  const n = <u32>levelPages(level);
  if (flags & PG_anon) anonPages += n;
  else filePages += n;
  let set: u32 = 0;
  if ((e & D) != 0 && (flags & PG_anon) == 0) set |= PG_dirty;
  if ((e & A) != 0) set |= PG_referenced;
  if (set) pageFlagsUpdate(head, set, 0);
  if (folioPut(head, 1)) freed++;
}

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
      // Record every leaf (ptUnmap) or, in zap mode, the non-present entries the host must
      // handle (not swap entries: the swap map is the core's).
      const wants = cap != 0 && (!zap || ((e & P) == 0 && !isSwapEntry(e)));
      if (wants && records == cap) {
        stopped = true;
        resume = s;
        return;
      }
      const old = atomic.xchg<u64>(ea, 0);
      tableCountAdd(t, -1);
      pages += span;
      if (wants) {
        const rec = RING + RING_ENTRY0 + <usize>records * RENT_SIZE;
        store<u64>(rec + LEAF_PTE, old);
        store<f64>(rec + LEAF_VPN, <f64>(s + rangeVpnHigh));
        store<u32>(rec + LEAF_LEVEL, level);
        records++;
      }
      if (zap && (old & P) != 0) zapAccount(old, level);
      else if (zap && isSwapEntry(old)) {
        swapFree(swapEntrySlot(old));
        swapped++;
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
  zap = false;
  const n = unmapCommon(root, vpn, npages, capacity);
  return n < 0 ? n : <i32>leaves;
}

/**
 * zapRange - unmap [vpn, vpn + npages) and account for the pages (zap_page_range): each
 * present leaf gives back its mapcount and folio reference (freeing folios whose last
 * reference that was), a dirty file page gets PG_dirty, an accessed one PG_referenced.
 * A swap entry drops its slot's reference (swap_free). Other non-present entries
 * (migration, device-private, foreign) are written to the ring, up to @capacity, for the
 * host; the call stops there and leaves REG_RESUME, as ptUnmap does.
 * Returns the number of records written (REG_PAGES, REG_ANON, REG_FILE, REG_FREED,
 * REG_SWAP, REG_TABLES report the rest), or -errno with nothing changed.
 */
export function zapRange(root: f64, vpn: f64, npages: f64, capacity: u32): i32 {
  zap = true;
  anonPages = 0;
  filePages = 0;
  freed = 0;
  swapped = 0;
  const n = unmapCommon(root, vpn, npages, capacity);
  zap = false;
  if (n < 0) return n;
  store<u32>(RING + REG_ANON, anonPages);
  store<u32>(RING + REG_FILE, filePages);
  store<u32>(RING + REG_FREED, freed);
  store<u32>(RING + REG_SWAP, swapped);
  return <i32>records;
}

function unmapCommon(root: f64, vpn: f64, npages: f64, capacity: u32): i32 {
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
  records = 0;
  stopped = false;
  pages = 0;
  unmapRange(root32, LEVELS, 0, rangeLo, rangeHi);
  store<f64>(RING + REG_RESUME, stopped ? <f64>(resume + rangeVpnHigh) : -1);
  store<f64>(RING + REG_PAGES, <f64>pages);
  store<u32>(RING + REG_TABLES, opTables);
  return 0;
}


