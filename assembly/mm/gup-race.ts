/**
 * GUP's race scripts (tests only, GUPM_RACE): what another CPU stores into the page table,
 * the reference it drops and the write_protect_seq steps it makes, between GUP-fast's read of
 * an entry and its grab, or between the grab and the re-check.
 */
import { RACE_RECORDS, RACE_SIZE, RACE_AT, RACE_PHASE, RACE_VPN, RACE_LEVEL, RACE_PUT, RACE_PTE_LO, RACE_PTE_HI, RACE_SEQ } from "../../src/abi/gup";
import { FRAME_REFCOUNT, FRAME_MAPCOUNT, PG_pgtable } from "../../src/abi/frame";
import { NR_FRAMES, LEVELS } from "../layout";
import { frame, frameFlags } from "../phys/frame";
import { P, PS, ptePfn } from "../mmu/pte";
import { folioHead, folioPut } from "./page";
import { SPECIAL, races, raceBase, rootPfn, tableBytes } from "./gup-call";

/** Run the race script's records for page @at in @phase (tests only). */
export function race(at: u32, phase: u32): void {
  for (let r: u32 = 0; r < races; r++) {
    const rec = raceBase + RACE_RECORDS + <usize>r * RACE_SIZE;
    if (load<u32>(rec + RACE_AT) != at || load<u32>(rec + RACE_PHASE) != phase) continue;
    const vpn = <u64>load<f64>(rec + RACE_VPN);
    const level = load<u32>(rec + RACE_LEVEL);
    const ea = entryFor(vpn, level);
    if (ea != 0) {
      const pte = (<u64>load<u32>(rec + RACE_PTE_HI) << 32) | <u64>load<u32>(rec + RACE_PTE_LO);
      const old = atomic.xchg<u64>(ea, pte);
      const leaf = level == 1 || (old & PS) != 0; // a table entry has no folio to put
      if (load<u32>(rec + RACE_PUT) != 0 && leaf && (old & P) != 0 && (old & SPECIAL) == 0) {
        const pfn = <u32>ptePfn(old);
        // (Not a page-table page a stray leaf maps: no CPU's unmap would free that.)
        if (pfn < NR_FRAMES && (frameFlags(pfn) & PG_pgtable) == 0 && atomic.load<i32>(frame(folioHead(pfn)) + FRAME_REFCOUNT) > 0) {
          folioPut(folioHead(pfn), 1);
        }
      }
    }
    atomic.add<i32>(frame(rootPfn) + FRAME_MAPCOUNT, <i32>load<u32>(rec + RACE_SEQ));
  }
}

/** The address of @vpn's entry at @level under the call's root, or 0 if a table is missing. */
function entryFor(vpn: u64, level: u32): usize {
  let t = rootPfn;
  for (let l = LEVELS; l >= level; l--) {
    const ea = tableBytes(t) + ((<usize>(vpn >> (9 * (l - 1))) & 511) << 3);
    if (l == level) return ea;
    const e = atomic.load<u64>(ea);
    if ((e & P) == 0 || (l <= 3 && (e & PS) != 0)) return 0;
    if (ptePfn(e) >= <u64>NR_FRAMES || (frameFlags(<u32>ptePfn(e)) & PG_pgtable) == 0) return 0;
    t = <u32>ptePfn(e);
  }
  return 0;
}

