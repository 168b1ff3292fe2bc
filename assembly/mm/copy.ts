/**
 * copyPageRange - fork's copy of one VMA's page tables into the child (copy_page_range /
 * copy_present_pte / copy_huge_pmd in mm/memory.c and mm/huge_memory.c).
 *
 * For each entry of the parent's range:
 * - present, special (no struct page): copied as is;
 * - present, in a COW mapping (private, may write) and anonymous: if the parent mm has
 *   MMF_HAS_PINNED and the folio may be DMA-pinned, the child gets a copy now and the
 *   parent keeps the page, exclusive and writable (mm/memory.c copy_present_page; a pinned
 *   THP gets a THP-sized copy). Otherwise both entries are write-protected,
 *   PageAnonExclusive is cleared, and the page gains a mapcount and a reference;
 * - present otherwise (shared, or file pages in a private mapping): copied, write-protected
 *   on both sides if the mapping is COW, plus a mapcount and a reference;
 * - a swap entry: copied, and the slot gains a reference (swap_duplicate);
 * - another non-present entry: copied (the host accounts for it).
 *
 * All or nothing: a first pass counts the child's tables and allocates the copies; only if
 * all of that succeeds does the second pass write. The caller flushes the parent's TLBs
 * (entries it write-protected).
 */
import { EINVAL, ENOMEM, EEXIST } from "../../src/abi/errno";
import {
  PG_anon, PG_anon_exclusive, PG_head, PG_swapbacked, PG_uptodate, GUP_PIN_COUNTING_BIAS, FRAME_SIZE, FRAME_INDEX,
  FRAME_REFCOUNT,
} from "../../src/abi/frame";
import {
  COPY_COW, COPY_HAS_PINNED, REG_ANON, REG_FILE, REG_COPIED, REG_SWAP, REG_TABLES,
  RING_ENTRY0, RENT_SIZE, ALLOC_COMPOUND, REG_SCRATCH,
} from "../../src/abi/header";
import { R_FLAGS, R_MAPPED, R_NO_FRAMES, R_NO_POOL, R_ROOT } from "../../src/abi/reason";
import { PTE_SOFTW1 } from "../../src/abi/x86";
import { fail } from "../errno";
import { LEVELS, NR_FRAMES, RING_ENTRIES } from "../layout";
import { RING, ringCheck } from "../ring";
import {
  frame, frameFlags, frameBacking, frameSetMapping, frameSetIndex, frameIndex,
} from "../phys/frame";
import { allocPagesZonelist, freeBlock } from "../phys/buddy";
import { poolAvailable, frameBytesAddr, slotAddr } from "../phys/pool";
import {
  P, RW, ptePfn, pteIsLeaf, levelPages, tableAddr, TABLE_USER, TABLE_KERNEL, FRAME_MASK,
} from "../mmu/pte";
import {
  rangeLo, rangeHi, rangeKernel, rangeCheck, rootCheck, tableNew, tableCountAdd, tablesAvailable,
  opTables, opTablesReset,
} from "../mmu/pgtable";
import {
  folioHead, folioOrder, folioRefAdd, pageMapcountAdd, folioEntireMapcountAdd, pageFlagsUpdate,
} from "./page";
import { isSwapEntry, swapEntrySlot, swapDuplicate } from "./swap";

const SPECIAL: u64 = PTE_SOFTW1;

/* The call in progress. */
let cow: bool = false;
let hasPinned: bool = false;
let newMapping: u32 = 0;
let zonelist: u32 = 0;
/* Pass 1 results. */
let needTables: u64 = 0;
let needCopies: u32 = 0; // folios to copy (their levels, then their new pfns, in the ring)
let needSlots: u64 = 0; // backing slots the copies need
/** Per table level, 1 + the key of the last table pass 1 counted (in the ring's scratch). */
// @ts-ignore: decorator
@inline function lastKeyAddr(m: u32): usize {
  return RING + REG_SCRATCH + (<usize>m << 3);
}
/* Pass 2 state. */
let nextCopy: u32 = 0;
let anonPages: u32 = 0;
let filePages: u32 = 0;
let copied: u32 = 0;
let swapDup: u32 = 0;
let dstRoot: u32 = 0;

/** folio_maybe_dma_pinned: a large folio's pincount, or a small one's refcount >= the bias. */
function maybeDmaPinned(head: u32): bool {
  if (frameFlags(head) & PG_head) return atomic.load<i32>(frame(head) + FRAME_SIZE + FRAME_INDEX) > 0;
  return atomic.load<i32>(frame(head) + FRAME_REFCOUNT) >= GUP_PIN_COUNTING_BIAS;
}

/** The leaf needs a copy for the child (an anon page that may be pinned, in a COW range). */
function mustCopy(e: u64, level: u32): bool {
  if (!cow || !hasPinned || (e & P) == 0 || (e & SPECIAL) != 0) return false;
  const pfn = <u32>ptePfn(e);
  if (<u64>pfn >= <u64>NR_FRAMES) return false;
  const head = level == 1 ? folioHead(pfn) : <u32>(ptePfn(e) & ~(levelPages(level) - 1));
  return (frameFlags(head) & PG_anon) != 0 && maybeDmaPinned(head);
}

/** Pass 1 for one leaf at @s (level @level): count the child's missing tables. */
function countDst(s: u64, level: u32): i32 {
  let t = dstRoot;
  for (let l = LEVELS; l > level; l--) {
    const e = atomic.load<u64>(tableAddr(t) + ((<usize>(s >> (9 * (l - 1))) & 511) << 3));
    if ((e & P) != 0 && !pteIsLeaf(e, l)) {
      t = <u32>ptePfn(e);
      continue;
    }
    if (e != 0) return -1; // the child already maps something here
    for (let m = l - 1; m >= level; m--) {
      const key = s >> (9 * m);
      if (load<u64>(lastKeyAddr(m)) != key + 1) {
        needTables++;
        store<u64>(lastKeyAddr(m), key + 1);
      }
    }
    return 0;
  }
  const e = atomic.load<u64>(tableAddr(t) + ((<usize>(s >> (9 * (level - 1))) & 511) << 3));
  return e != 0 ? -1 : 0;
}

function pass1(t: u32, level: u32, base: u64, lo: u64, hi: u64): i32 {
  const sh = 9 * (level - 1);
  const span = levelPages(level);
  const ta = tableAddr(t);
  const i1 = <u32>((hi - 1 - base) >> sh);
  for (let i = <u32>((lo - base) >> sh); i <= i1; i++) {
    const e = atomic.load<u64>(ta + (<usize>i << 3));
    if (e == 0) continue;
    const s = base + (<u64>i << sh);
    if (pteIsLeaf(e, level) || (e & P) == 0) {
      if (countDst(s, level) < 0) return -1;
      if (mustCopy(e, level)) {
        if (<u64>(needCopies + 1) * 4 <= <u64>RING_ENTRIES * RENT_SIZE) store<u32>(copySlot(needCopies), level);
        needCopies++;
        const first = level == 1 ? <u32>ptePfn(e) : <u32>(ptePfn(e) & ~(span - 1));
        for (let k: u32 = 0; k < <u32>span; k++) if (frameBacking(first + k) != 0) needSlots++;
      }
      continue;
    }
    const sLo = lo > s ? lo : s;
    const sHi = hi < s + span ? hi : s + span;
    if (pass1(<u32>ptePfn(e), level - 1, s, sLo, sHi) < 0) return -1;
  }
  return 0;
}

/** The child's table entry slot for @s at @level, creating tables on the way. */
function dstSlot(s: u64, level: u32): usize {
  let t = dstRoot;
  for (let l = LEVELS; l > level; l--) {
    const ea = tableAddr(t) + ((<usize>(s >> (9 * (l - 1))) & 511) << 3);
    let e = atomic.load<u64>(ea);
    if (e == 0) {
      const c = tableNew(l - 1);
      e = (<u64>c << 12) | (rangeKernel ? TABLE_KERNEL : TABLE_USER);
      atomic.store<u64>(ea, e);
      tableCountAdd(t, 1);
    }
    t = <u32>ptePfn(e);
  }
  return tableAddr(t) + ((<usize>(s >> (9 * (level - 1))) & 511) << 3);
}

function dstTableOf(s: u64, level: u32): u32 {
  let t = dstRoot;
  for (let l = LEVELS; l > level; l--) {
    t = <u32>ptePfn(atomic.load<u64>(tableAddr(t) + ((<usize>(s >> (9 * (l - 1))) & 511) << 3)));
  }
  return t;
}

/** Copy one present leaf that needs no copy of its page. */
function copyShared(ea: usize, e: u64, s: u64, level: u32): void {
  let child = e;
  if ((e & SPECIAL) == 0 && <u64>ptePfn(e) < <u64>NR_FRAMES) {
    const pfn = <u32>ptePfn(e);
    let head: u32;
    if (level == 1) {
      head = folioHead(pfn);
      pageMapcountAdd(pfn, 1);
    } else {
      head = <u32>(ptePfn(e) & ~(levelPages(level) - 1));
      folioEntireMapcountAdd(head, 1);
    }
    folioRefAdd(head, 1);
    const anon = (frameFlags(head) & PG_anon) != 0;
    if (anon) anonPages += <u32>levelPages(level);
    else filePages += <u32>levelPages(level);
    if (cow && anon) pageFlagsUpdate(level == 1 ? pfn : head, 0, PG_anon_exclusive);
  }
  if (cow && (e & RW) != 0) {
    // Write-protect the parent's entry (keeping any A/D a walker sets meanwhile).
    let cur = e;
    while (true) {
      const seen = atomic.cmpxchg<u64>(ea, cur, cur & ~RW);
      if (seen == cur) break;
      cur = seen;
    }
    child = cur & ~RW;
  }
  const slot = dstSlot(s, level);
  atomic.store<u64>(slot, child);
  tableCountAdd(dstTableOf(s, level), 1);
}

/** Give the child its own copy of a maybe-pinned anon folio (the parent keeps its page). */
function copyPinned(e: u64, s: u64, level: u32): void {
  const span = <u32>levelPages(level);
  const src = level == 1 ? <u32>ptePfn(e) : <u32>(ptePfn(e) & ~(<u64>span - 1));
  const dst = load<u32>(copySlot(nextCopy));
  nextCopy++;
  for (let k: u32 = 0; k < span; k++) {
    if (frameBacking(src + k) == 0) continue;
    const to = frameBytesAddr(dst + k, true);
    assert(to != 0, "copyPinned: backing reserved in pass 1");
    memory.copy(to, slotAddr(frameBacking(src + k)), 4096);
  }
  const head = dst;
  pageFlagsUpdate(head, PG_anon | PG_anon_exclusive | PG_swapbacked | PG_uptodate, 0);
  frameSetMapping(head, newMapping);
  frameSetIndex(head, frameIndex(level == 1 ? folioHead(src) : src) + (level == 1 ? src - folioHead(src) : 0));
  if (level == 1) pageMapcountAdd(head, 1);
  else folioEntireMapcountAdd(head, 1);
  const child = (<u64>dst << 12) | (e & ~FRAME_MASK);
  const slot = dstSlot(s, level);
  atomic.store<u64>(slot, child);
  tableCountAdd(dstTableOf(s, level), 1);
  anonPages += span;
  copied++;
}

function pass2(t: u32, level: u32, base: u64, lo: u64, hi: u64): void {
  const sh = 9 * (level - 1);
  const span = levelPages(level);
  const ta = tableAddr(t);
  const i1 = <u32>((hi - 1 - base) >> sh);
  for (let i = <u32>((lo - base) >> sh); i <= i1; i++) {
    const ea = ta + (<usize>i << 3);
    const e = atomic.load<u64>(ea);
    if (e == 0) continue;
    const s = base + (<u64>i << sh);
    if ((e & P) == 0) {
      if (isSwapEntry(e)) {
        swapDuplicate(swapEntrySlot(e));
        swapDup++;
      }
      atomic.store<u64>(dstSlot(s, level), e);
      tableCountAdd(dstTableOf(s, level), 1);
      continue;
    }
    if (pteIsLeaf(e, level)) {
      if (mustCopy(e, level)) copyPinned(e, s, level);
      else copyShared(ea, e, s, level);
      continue;
    }
    const sLo = lo > s ? lo : s;
    const sHi = hi < s + span ? hi : s + span;
    pass2(<u32>ptePfn(e), level - 1, s, sLo, sHi);
  }
}

/**
 * copyPageRange - copy the parent's entries for [vpn, vpn + npages) into the child root
 * @dst (see the module comment).
 * @flags: COPY_COW for a private writable mapping, COPY_HAS_PINNED if the parent has
 *   MMF_HAS_PINNED.
 * @mapping: the anon_vma id the child's copied pages get (their index is the parent's).
 * @zones: the zonelist copies are allocated from.
 * Returns 0, or -EINVAL / -EEXIST (the child maps something there) / -ENOMEM, changing
 * nothing. REG_ANON, REG_FILE: pages the child now maps; REG_COPIED: folios copied, whose
 * pfns are the ring's first REG_COPIED u32 words (the host puts them on the LRU);
 * REG_SWAP: swap references duplicated; REG_TABLES: child tables made.
 */
export function copyPageRange(
  src: f64, dst: f64, vpn: f64, npages: f64, flags: u32, mapping: u32, zones: u32,
): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const rs = rootCheck(src);
  if (rs < 0) return <i32>rs;
  const rd = rootCheck(dst);
  if (rd < 0) return <i32>rd;
  if (rs == rd) return fail(EINVAL, R_ROOT, 0);
  if (flags & ~(COPY_COW | COPY_HAS_PINNED)) return fail(EINVAL, R_FLAGS, flags);
  const rc = rangeCheck(vpn, npages, 1);
  if (rc < 0) return rc;
  cow = (flags & COPY_COW) != 0;
  hasPinned = (flags & COPY_HAS_PINNED) != 0;
  newMapping = mapping;
  zonelist = zones;
  dstRoot = <u32>rd;
  needTables = 0;
  needCopies = 0;
  needSlots = 0;
  for (let m: u32 = 0; m < 6; m++) store<u64>(lastKeyAddr(m), 0);
  if (pass1(<u32>rs, LEVELS, 0, rangeLo, rangeHi) < 0) return fail(EEXIST, R_MAPPED, 0);
  // Reserve everything pass 2 uses: the copies (allocated now, freed again on failure),
  // their bytes, and the child's tables.
  const ra = allocateCopies();
  if (ra < 0) return ra;
  const rt = tablesAvailable(needTables);
  if (rt < 0 || <u64>poolAvailable() < needTables + needSlots) {
    freeCopies(needCopies);
    return rt < 0 ? rt : fail(ENOMEM, R_NO_POOL, <u32>(needTables + needSlots));
  }
  opTablesReset();
  nextCopy = 0;
  anonPages = 0;
  filePages = 0;
  copied = 0;
  swapDup = 0;
  pass2(<u32>rs, LEVELS, 0, rangeLo, rangeHi);
  assert(<u64>opTables == needTables, "copyPageRange: pass 2 made other tables than pass 1 counted");
  store<u32>(RING + REG_ANON, anonPages);
  store<u32>(RING + REG_FILE, filePages);
  store<u32>(RING + REG_COPIED, copied);
  store<u32>(RING + REG_SWAP, swapDup);
  store<u32>(RING + REG_TABLES, opTables);
  return 0;
}

// @ts-ignore: decorator
@inline function copySlot(k: u32): usize {
  return RING + RING_ENTRY0 + (<usize>k << 2);
}

/** Pass 1 listed each copy's level in the ring; replace each with an allocated folio. */
function allocateCopies(): i32 {
  if (<u64>needCopies * 4 > <u64>RING_ENTRIES * RENT_SIZE) return fail(ENOMEM, R_NO_FRAMES, needCopies);
  for (let k: u32 = 0; k < needCopies; k++) {
    const level = load<u32>(copySlot(k));
    const order = 9 * (level - 1);
    const pfn = allocPagesZonelist(zonelist, order, order ? ALLOC_COMPOUND : 0);
    if (pfn < 0) {
      freeCopies(k);
      return <i32>pfn;
    }
    store<u32>(copySlot(k), <u32>pfn);
  }
  return 0;
}

function freeCopies(n: u32): void {
  for (let k: u32 = 0; k < n; k++) {
    const head = load<u32>(copySlot(k));
    atomic.store<i32>(frame(head) + FRAME_REFCOUNT, 0);
    freeBlock(head, folioOrder(head));
  }
}
