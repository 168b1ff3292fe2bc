/**
 * The struct-page calls the host's mm code makes (get_page/put_page, mapcounts, flags,
 * copy_highpage, split_huge_pmd), each checked at the edge.
 */
import { EINVAL, ENOMEM } from "../../src/abi/errno";
import { PG_head, PG_tail, PG_anon_exclusive, FRAME_MAPPING, FRAME_INDEX } from "../../src/abi/frame";
import { R_PFN_NOT_RAM, R_NOT_ALLOCATED, R_NO_POOL } from "../../src/abi/reason";
import { PTE_SOFTW1 } from "../../src/abi/x86";
import { REG_TABLES } from "../../src/abi/header";
import { fail } from "../errno";
import { NR_FRAMES } from "../layout";
import { RING, ringCheck } from "../ring";
import { frame, frameFlags, frameBacking, pfnToZone } from "../phys/frame";
import { frameBytesAddr, frameDropBytes, slotAddr, poolAvailable } from "../phys/pool";
import {
  folioHead, folioRefAdd, folioPut, pageMapcountAdd, folioEntireMapcountAdd, pageFlagsUpdate,
  folioPincountAdd,
} from "./page";
import { P, ptePfn, levelPages, entryAddr } from "../mmu/pte";
import {
  rangeLo, rangeCheck, rootCheck, tablesAvailable, opTables, opTablesReset,
} from "../mmu/pgtable";
import { splitAt } from "../mmu/split";
import { LEVELS } from "../layout";

/** A frame of this machine's memory (in a zone), as u32, or -EINVAL. */
function ramPfn(pfn: f64): i64 {
  if (!(pfn >= 0 && pfn < <f64>NR_FRAMES) || pfn != Math.floor(pfn) || pfnToZone(<u64>pfn) < 0) {
    return fail(EINVAL, R_PFN_NOT_RAM, 0);
  }
  return <i64>pfn;
}

/**
 * folioRef - add @delta to the reference count of the folio holding @pfn (get_page /
 * put_page); the last put frees it. Returns the new count, or -EINVAL for a frame not in
 * use (a free one, or a put below zero).
 */
export function folioRef(pfn: f64, delta: i32): i32 {
  const r = ramPfn(pfn);
  if (r < 0) return <i32>r;
  const head = folioHead(<u32>r);
  const cur = atomic.load<i32>(frame(head) + 4);
  if (cur <= 0 || cur + delta < 0) return fail(EINVAL, R_NOT_ALLOCATED, frameFlags(head));
  if (delta < 0) {
    folioPut(head, -delta);
    return cur + delta;
  }
  return folioRefAdd(head, delta);
}

/** pageMapcount - add @delta to page @pfn's PTE mapcount; returns the new count. */
export function pageMapcount(pfn: f64, delta: i32): i32 {
  const r = ramPfn(pfn);
  if (r < 0) return <i32>r;
  return pageMapcountAdd(<u32>r, delta);
}

/** folioEntireMapcount - add @delta to the PMD mapcount of the large folio headed at @pfn. */
export function folioEntireMapcount(pfn: f64, delta: i32): i32 {
  const r = ramPfn(pfn);
  if (r < 0) return <i32>r;
  if ((frameFlags(<u32>r) & PG_head) == 0) return fail(EINVAL, R_NOT_ALLOCATED, frameFlags(<u32>r));
  return folioEntireMapcountAdd(<u32>r, delta);
}

/** folioPincount - add @delta to the _pincount of the large folio headed at @pfn. */
export function folioPincount(pfn: f64, delta: i32): i32 {
  const r = ramPfn(pfn);
  if (r < 0) return <i32>r;
  if ((frameFlags(<u32>r) & PG_head) == 0) return fail(EINVAL, R_NOT_ALLOCATED, frameFlags(<u32>r));
  return folioPincountAdd(<u32>r, delta);
}

/** pageFlags - set then clear PG_* bits of @pfn atomically; returns the old flags. */
export function pageFlags(pfn: f64, set: u32, clear: u32): f64 {
  const r = ramPfn(pfn);
  if (r < 0) return <f64>r;
  return <f64>pageFlagsUpdate(<u32>r, set, clear);
}

/** pageSetMapping - the mapping id and index of page (folio head) @pfn. */
export function pageSetMapping(pfn: f64, mapping: u32, index: u32): i32 {
  const r = ramPfn(pfn);
  if (r < 0) return <i32>r;
  if (frameFlags(<u32>r) & PG_tail) return fail(EINVAL, R_NOT_ALLOCATED, frameFlags(<u32>r));
  store<u32>(frame(<u32>r) + FRAME_MAPPING, mapping);
  store<u32>(frame(<u32>r) + FRAME_INDEX, index);
  return 0;
}

/**
 * copyHighpage - copy frame @src's bytes to frame @dst (copy_highpage); a source without
 * bytes makes the destination read as zeros. -ENOMEM when the pool has no slot left.
 */
export function copyHighpage(dst: f64, src: f64): i32 {
  const d = ramPfn(dst);
  if (d < 0) return <i32>d;
  const s = ramPfn(src);
  if (s < 0) return <i32>s;
  const sb = frameBacking(<u32>s);
  if (sb == 0) {
    frameDropBytes(<u32>d);
    return 0;
  }
  const to = frameBytesAddr(<u32>d, true);
  if (to == 0) return fail(ENOMEM, R_NO_POOL, 1);
  memory.copy(to, slotAddr(sb), 4096);
  return 0;
}

/**
 * splitHugePmd - split the huge leaf mapping page @vpn into the next level down
 * (__split_huge_pmd_locked) and move its accounting: the folio's PMD mapcount becomes one
 * PTE mapcount per page and the mapping's one reference one per page; PageAnonExclusive
 * of the head goes to every page. Special leaves just split.
 * Returns the level of the leaf that was split (2 or 3), 0 if none maps @vpn at a huge
 * level, or -errno (ENOMEM: no table) with nothing changed.
 */
export function splitHugePmd(root: f64, vpn: f64): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  const rc = rangeCheck(vpn, 1, 1);
  if (rc < 0) return rc;
  // Find the leaf.
  let t = <u32>r;
  let level = LEVELS;
  let e: u64 = 0;
  while (true) {
    e = atomic.load<u64>(entryAddr(t, level, rangeLo));
    if ((e & P) == 0) return 0;
    if (level == 1 || (level <= 3 && (e & 0x80) != 0)) break;
    t = <u32>ptePfn(e);
    level--;
  }
  if (level < 2) return 0;
  const special = (e & PTE_SOFTW1) != 0 || ptePfn(e) >= <u64>NR_FRAMES;
  // A PUD-mapped folio (hugetlb) is never split in Linux; only special 1 GiB leaves split.
  if (level == 3 && !special) return fail(EINVAL, R_NOT_ALLOCATED, 3);
  const ra = tablesAvailable(1);
  if (ra < 0) return ra;
  opTablesReset();
  const span = levelPages(level);
  const first = rangeLo & ~(span - 1);
  // Split so the leaf's first page starts a leaf of the next level down: one split only.
  splitAt(<u32>r, first + (span >> 9));
  store<u32>(RING + REG_TABLES, opTables);
  if (special) return level;
  const head = <u32>(ptePfn(e) & ~(span - 1));
  {
    // A 2 MiB folio: PMD mapping -> 512 PTE mappings.
    folioEntireMapcountAdd(head, -1);
    const exclusive = (frameFlags(head) & PG_anon_exclusive) != 0;
    for (let k: u32 = 0; k < 512; k++) {
      pageMapcountAdd(head + k, 1);
      if (exclusive) pageFlagsUpdate(head + k, PG_anon_exclusive, 0);
    }
    folioRefAdd(head, 511);
  }
  return level;
}


