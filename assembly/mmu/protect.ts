/**
 * ptProtect - change the bits of every present leaf in a range (change_protection()):
 * new = (old & ~clear) | set, one compare-and-swap per leaf so A and D bits set by a
 * concurrent walker survive. Huge leaves the range cuts are split first. Upper-level
 * entries are left alone, as Linux leaves them permissive. Non-present entries (swap,
 * migration) are skipped. Flushing TLBs is the caller's business.
 */
import { EINVAL } from "../../src/abi/errno";
import { REG_PAGES, REG_TABLES } from "../../src/abi/header";
import { R_PROT_BITS } from "../../src/abi/reason";
import {
  PTE_SOFTW1, PTE_SOFTW2, PTE_SOFTW3, PTE_BIT_SOFTW4, PTE_BIT_SOFTW5,
} from "../../src/abi/x86";
import { fail } from "../errno";
import { LEVELS, VA_BITS } from "../layout";
import { RING, ringCheck } from "../ring";
import { P, RW, US, PWT, PCD, A, D, G, NX, PKEY_MASK, pteIsLeaf, ptePfn, levelPages, tableAddr } from "./pte";
import {
  rangeLo, rangeHi, rangeCheck, rootCheck, tablesAvailable, opTables, opTablesReset,
} from "./pgtable";
import { splitTablesNeeded, splitAt } from "./split";

/** Bits change_protection may set or clear (not P, PS, PAT or the frame). */
export const PROTECT_OK: u64 =
  RW | US | PWT | PCD | A | D | G | PTE_SOFTW1 | PTE_SOFTW2 | PTE_SOFTW3 | NX | PKEY_MASK |
  (<u64>1 << PTE_BIT_SOFTW4) | (<u64>1 << PTE_BIT_SOFTW5);

let setBits: u64 = 0;
let clearBits: u64 = 0;
let changed: u32 = 0;
let pages: u64 = 0;

function protectRange(t: u32, level: u32, base: u64, lo: u64, hi: u64): void {
  const sh = 9 * (level - 1);
  const span = levelPages(level);
  const ta = tableAddr(t);
  const i1 = <u32>((hi - 1 - base) >> sh);
  for (let i = <u32>((lo - base) >> sh); i <= i1; i++) {
    const ea = ta + (<usize>i << 3);
    let e = atomic.load<u64>(ea);
    if ((e & P) == 0) continue;
    const s = base + (<u64>i << sh);
    if (pteIsLeaf(e, level)) {
      pages += span;
      while (true) {
        const n = (e & ~clearBits) | setBits;
        if (n == e) break;
        const seen = atomic.cmpxchg<u64>(ea, e, n);
        if (seen == e) {
          changed++;
          break;
        }
        e = seen;
      }
      continue;
    }
    const sLo = lo > s ? lo : s;
    const sHi = hi < s + span ? hi : s + span;
    protectRange(<u32>ptePfn(e), level - 1, s, sLo, sHi);
  }
}

/**
 * ptProtect - set and clear leaf bits over [vpn, vpn + npages).
 * Returns the number of leaves whose entry changed, or -EINVAL / -ENOMEM (splitting needs
 * tables); nothing changes on failure. REG_PAGES: pages of present leaves in the range.
 */
export function ptProtect(
  root: f64, vpn: f64, npages: f64, setLo: u32, setHi: u32, clrLo: u32, clrHi: u32,
): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  const rc = rangeCheck(vpn, npages, 1);
  if (rc < 0) return rc;
  const set = (<u64>setHi << 32) | setLo;
  const clr = (<u64>clrHi << 32) | clrLo;
  if ((set | clr) & ~PROTECT_OK) return fail(EINVAL, R_PROT_BITS, 0);
  const root32 = <u32>r;
  const end: u64 = <u64>1 << (VA_BITS - 12);
  const ra = tablesAvailable(splitTablesNeeded(root32, rangeLo, rangeHi, end));
  if (ra < 0) return ra;
  opTablesReset();
  splitAt(root32, rangeLo);
  if (rangeHi < end) splitAt(root32, rangeHi);
  setBits = set;
  clearBits = clr;
  changed = 0;
  pages = 0;
  protectRange(root32, LEVELS, 0, rangeLo, rangeHi);
  store<f64>(RING + REG_PAGES, <f64>pages);
  store<u32>(RING + REG_TABLES, opTables);
  return <i32>changed;
}
