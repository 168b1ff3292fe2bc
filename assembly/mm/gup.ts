/**
 * get_user_pages in the core (mm/gup.c): GUP-fast, the lockless walk, and the slow path's
 * follow_page_mask over pages already present, both taking references as the kernel does.
 *
 * - FOLL_GET adds @refs to the folio's refcount. FOLL_PIN adds GUP_PIN_COUNTING_BIAS per
 *   page to a small folio's refcount; a large folio gets @refs on its refcount and on its
 *   _pincount. One grab per PTE, one per huge leaf (all the subpages it covers).
 * - GUP-fast (no GUPM_LOCKED) runs as the kernel's does with interrupts off: this thread's
 *   walker word is odd for the whole walk, so no page-table page it may read is freed under
 *   it (tableFree waits in gupFastSync, assembly/mmu/pgtable.ts). Each entry is read once; the folio is grabbed only
 *   if its refcount is not zero (folio_try_get); then the table entry and the leaf are read
 *   again and the grab is undone if either changed. The walk stops at the first page it may
 *   not take; the host's slow path goes on from there.
 * - For FOLL_PIN, GUP-fast samples mm->write_protect_seq (kept in the root table's record):
 *   odd (fork is write-protecting) means no pages; a change by the end undoes every pin.
 * - The slow path (GUPM_LOCKED) runs with mmap_lock held by the host, which has checked the
 *   VMA. It stops where the kernel's follow_page_mask returns no page (the host faults and
 *   retries), returns the shared zero page (a FOLL_PIN of it counts nothing), applies
 *   FOLL_TOUCH, and takes pages that are not long-term pinnable, counting them for the
 *   host's migration step.
 */
import {
  FOLL_WRITE, FOLL_GET, FOLL_PIN, FOLL_LONGTERM, FOLL_PCI_P2PDMA, FOLL_FORCE, FOLL_TOUCH,
  FOLL_NOFAULT, GUPM_LOCKED, GUPM_FORCE_WRITE_OK, GUPM_COW_VMA, GUPM_RACE,
  GUP_STOP_NONE, GUP_STOP_NOT_PRESENT, GUP_STOP_PERM, GUP_STOP_SPECIAL, GUP_STOP_DEVMAP,
  GUP_STOP_GRAB, GUP_STOP_CHANGED, GUP_STOP_LONGTERM, GUP_STOP_UNSHARE, GUP_STOP_FILE_PIN,
  GUP_STOP_SEQ, GUP_STOP_NO_PAGE, REG_GUP_STOP, REG_GUP_GRABS, REG_GUP_LOADS, REG_GUP_HUGE_PAGES,
  REG_GUP_UNPINNABLE, RACE_BASE, RACE_RECORDS, RACE_MAX, RACE_SIZE, RACE_AT, RACE_PHASE, RACE_VPN,
  RACE_LEVEL, RACE_PUT, RACE_PTE_LO, RACE_PTE_HI, RACE_SEQ,
} from "../../src/abi/gup";
import {
  HDR_ADDR, HDR_ZERO_PFN, HDR_FOLL_PIN_ACQUIRED, RING_ENTRY0, RENT_SIZE,
  REG_PAGES, ZONE_KIND,
} from "../../src/abi/header";
import {
  FRAME_SIZE, FRAME_FLAGS, FRAME_REFCOUNT, FRAME_MAPCOUNT, FRAME_BACKING, GUP_PIN_COUNTING_BIAS, PG_head,
  PG_tail, PG_anon, PG_anon_exclusive, PG_swapbacked, PG_referenced, PG_dirty, PG_has_pinned, PG_pgtable,
  ZONE_NORMAL, ZONE_DEVICE,
} from "../../src/abi/frame";
import { PTE_SOFTW1, PTE_BIT_PKEY } from "../../src/abi/x86";
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT, R_FLAGS, R_NONCANONICAL, R_SIZE_ZERO } from "../../src/abi/reason";
import { fail } from "../errno";
import { FRAMES, POOL, NR_FRAMES, LEVELS, VA_BITS, RING_ENTRIES } from "../layout";
import { RING, THREAD, ringCheck } from "../ring";
import { frame, frameFlags, pfnToZone, zone } from "../phys/frame";
import { P, RW, US, D, PS, PKEY_MASK, ptePfn, levelPages } from "../mmu/pte";
import { rootCheck, walkerWord } from "../mmu/pgtable";
import { folioHead, folioPut, folioPincountAdd, pageFlagsUpdate } from "./page";
import { gupPutFolio, flushPinReleased } from "./unpin";

const SPECIAL: u64 = PTE_SOFTW1;
const NONE: u32 = 0xffff_ffff;
const ALLOWED: u32 =
  FOLL_WRITE | FOLL_GET | FOLL_PIN | FOLL_LONGTERM | FOLL_PCI_P2PDMA | FOLL_FORCE | FOLL_TOUCH |
  FOLL_NOFAULT | GUPM_LOCKED | GUPM_FORCE_WRITE_OK | GUPM_COW_VMA | GUPM_RACE;

/* The call in progress. */
let fl: u32 = 0;
let pkru: u32 = 0;
let rootPfn: u32 = 0;
let taken: u32 = 0;
let stopWhy: u32 = 0; // GUP_STOP_NONE
let grabs: u32 = 0;
let loads: u32 = 0;
let unpinnable: u32 = 0;
let hugePages: u32 = 0;
/** NR_FOLL_PIN_ACQUIRED of this call, added to the shared counter once at its end. */
let pinAcquired: i64 = 0;
let out: usize = 0;
/* Race script (tests). */
let races: u32 = 0;
let raceBase: usize = 0;

/** gupMaxPages - the most pages one gupRange call returns (the ring's f64 slots). */
export function gupMaxPages(): u32 {
  return (RING_ENTRIES * RENT_SIZE - RACE_BASE) >> 3;
}

/** zoneKindOf - ZONE_* of the zone holding @pfn, or -1 for a frame outside every zone. */
// @ts-ignore: decorator
@inline function zoneKindOf(pfn: u32): i32 {
  const z = pfnToZone(pfn);
  return z < 0 ? -1 : <i32>load<u32>(zone(<u32>z) + ZONE_KIND);
}

/** folio_is_longterm_pinnable: not in MOVABLE, CMA or device memory. The zero page is. */
// @ts-ignore: decorator
@inline function longtermPinnable(pfn: u32): bool {
  const k = zoneKindOf(pfn);
  return k == ZONE_NORMAL || pfn == load<u32>(HDR_ADDR + HDR_ZERO_PFN);
}

/** pte_access_permitted: present, user, writable for a write, and the protection key allows it. */
// @ts-ignore: decorator
@inline function accessPermitted(e: u64, write: bool, pk: u32): bool {
  if ((e & (P | US)) != (P | US)) return false;
  if (write && (e & RW) == 0) return false;
  const bits = (pk >> (2 * <u32>((e & PKEY_MASK) >> PTE_BIT_PKEY))) & 3;
  return (bits & 1) == 0 && !(write && (bits & 2) != 0);
}

/**
 * tryGetFolio - add @refs to the refcount of the folio holding @pfn unless it is zero (the
 * folio is being freed), then make sure the page still belongs to that folio. Returns the
 * head, or NONE.
 */
function tryGetFolio(pfn: u32, refs: i32): u32 {
  while (true) {
    const head = folioHead(pfn);
    const ra = frame(head) + FRAME_REFCOUNT;
    let old = atomic.load<i32>(ra);
    while (true) {
      if (old <= 0 || old > 0x7fff_ffff - refs * GUP_PIN_COUNTING_BIAS) return NONE;
      const seen = atomic.cmpxchg<i32>(ra, old, old + refs);
      if (seen == old) break;
      old = seen;
    }
    if (folioHead(pfn) == head) return head;
    folioPut(head, refs); // split or freed and reused under us: try again
  }
}

/**
 * grab - take @refs references (FOLL_GET) or pins (FOLL_PIN) on the folio of @pfn, as
 * try_grab_folio_fast does (GUP-fast) or try_grab_folio (slow path, where the page table
 * lock guarantees a live folio). Returns the head, or NONE with stopWhy set.
 */
function grab(pfn: u32, refs: i32): u32 {
  grabs++;
  const head = tryGetFolio(pfn, refs);
  if (head == NONE) {
    stopWhy = GUP_STOP_GRAB;
    return NONE;
  }
  if (fl & FOLL_PIN) {
    if ((fl & (FOLL_LONGTERM | GUPM_LOCKED)) == FOLL_LONGTERM && !longtermPinnable(head)) {
      folioPut(head, refs);
      stopWhy = GUP_STOP_LONGTERM;
      return NONE;
    }
    if (frameFlags(head) & PG_head) folioPincountAdd(head, refs);
    else atomic.add<i32>(frame(head) + FRAME_REFCOUNT, refs * (GUP_PIN_COUNTING_BIAS - 1));
    pinAcquired += refs;
  }
  return head;
}

/** mustUnshare - gup_must_unshare for a page mapped read-only. */
// @ts-ignore: decorator
@inline function mustUnshare(exclFlags: u32, anon: bool): bool {
  if ((fl & (FOLL_WRITE | FOLL_PIN)) != FOLL_PIN) return false;
  if (!anon) {
    if ((fl & FOLL_LONGTERM) == 0) return false;
    return (fl & GUPM_LOCKED) == 0 || (fl & GUPM_COW_VMA) != 0;
  }
  return (exclFlags & PG_anon_exclusive) == 0;
}

/** Run the race script's records for page @at in @phase (tests only). */
function race(at: u32, phase: u32): void {
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

// @ts-ignore: decorator
@inline function tableBytes(t: u32): usize {
  return POOL - 4096 + (<usize>load<u32>(FRAMES + <usize>t * FRAME_SIZE + FRAME_BACKING) << 12);
}

/** Record page @pfn as taken. */
// @ts-ignore: decorator
@inline function emit(pfn: u32): void {
  store<f64>(out + (<usize>taken << 3), <f64>pfn);
  taken++;
}

/**
 * leafChecks - what follows a successful grab of the folio @head for the page(s) mapped by
 * entry @e: the fast path's file-pin rule, the unshare rule, FOLL_TOUCH, referenced.
 * @excl: the flags holding PG_anon_exclusive (the page's own for a PTE, the head's for a
 * huge leaf). False (grab to be undone, stopWhy set) if the page may not be taken.
 */
function leafChecks(e: u64, head: u32, excl: u32): bool {
  const hf = frameFlags(head);
  const anon = (hf & PG_anon) != 0;
  const locked = (fl & GUPM_LOCKED) != 0;
  // gup_fast_folio_allowed: a long-term writable pin of a page-cache folio needs the
  // file system's say, which GUP-fast cannot ask; shmem is fine.
  if (!locked && (fl & (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE)) == (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE)) {
    if (!anon && (hf & PG_swapbacked) == 0) {
      stopWhy = GUP_STOP_FILE_PIN;
      return false;
    }
  }
  if ((e & RW) == 0 && mustUnshare(excl, anon)) {
    stopWhy = GUP_STOP_UNSHARE;
    return false;
  }
  let set: u32 = 0;
  if ((hf & PG_referenced) == 0) set |= PG_referenced;
  // FOLL_TOUCH (slow path only; GUP-fast does not look at it): a write through a clean
  // PTE dirties the folio.
  if (locked && (fl & (FOLL_TOUCH | FOLL_WRITE)) == (FOLL_TOUCH | FOLL_WRITE) && (e & D) == 0 && (hf & PG_dirty) == 0) {
    set |= PG_dirty;
  }
  if (set) pageFlagsUpdate(head, set, 0);
  return true;
}

/**
 * writeAllowed - may a write take the page behind read-only entry @e? Only in the slow path,
 * with FOLL_FORCE in a VMA the host says allows it, on an exclusive anonymous page
 * (can_follow_write_pte). Everything else faults first.
 */
// @ts-ignore: decorator
@inline function writeAllowed(e: u64, excl: u32, hf: u32): bool {
  if ((fl & FOLL_WRITE) == 0 || (e & RW) != 0) return true;
  if ((fl & (GUPM_LOCKED | FOLL_FORCE | GUPM_FORCE_WRITE_OK)) != (GUPM_LOCKED | FOLL_FORCE | GUPM_FORCE_WRITE_OK)) return false;
  return (hf & PG_anon) != 0 && (excl & PG_anon_exclusive) != 0;
}

/**
 * ptesFast - gup_fast_pte_range without the race script: the same checks as ptes() in the
 * same order, with the frame records and flags kept in locals (the hot loop of GUP-fast).
 */
function ptesFast(t: u32, pmdAddr: usize, pmd: u64, lv: u64, end: u64): bool {
  const f = fl;
  const write = (f & FOLL_WRITE) != 0;
  const pin = (f & FOLL_PIN) != 0;
  const longterm = (f & FOLL_LONGTERM) != 0;
  const filePinCheck = (f & (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE)) == (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE);
  const unshareCheck = (f & (FOLL_WRITE | FOLL_PIN)) == FOLL_PIN;
  const need: u64 = write ? P | US | RW : P | US;
  const pk = pkru;
  const frames = FRAMES;
  const nframes = <u64>NR_FRAMES;
  const base = tableBytes(t);
  const o = out;
  let n = taken;
  let g = grabs;
  let why: u32 = GUP_STOP_NONE;
  let v = lv;
  for (; v < end; v++) {
    const pa = base + ((<usize>v & 511) << 3);
    const e = atomic.load<u64>(pa);
    if ((e & need) != need) {
      why = (e & P) == 0 ? GUP_STOP_NOT_PRESENT : GUP_STOP_PERM;
      break;
    }
    const bits = (pk >> (2 * <u32>((e & PKEY_MASK) >> PTE_BIT_PKEY))) & 3;
    if ((bits & 1) != 0 || (write && (bits & 2) != 0)) {
      why = GUP_STOP_PERM;
      break;
    }
    if (e & SPECIAL) {
      why = GUP_STOP_SPECIAL;
      break;
    }
    const pfn64 = ptePfn(e);
    if (pfn64 >= nframes) {
      why = GUP_STOP_NO_PAGE;
      break;
    }
    const pfn = <u32>pfn64;
    if (longterm && zoneKindOf(pfn) == ZONE_DEVICE) {
      why = GUP_STOP_DEVMAP;
      break;
    }
    // try_grab_folio_fast: folio_try_get, then page_folio must not have changed.
    const fa = frames + <usize>pfn * FRAME_SIZE;
    let pf = atomic.load<u32>(fa + FRAME_FLAGS);
    let head = pfn;
    if (pf & PG_tail) {
      head = grab(pfn, 1); // its count of grabs is overwritten by g below
      g++;
      if (head == NONE) {
        why = stopWhy;
        break;
      }
    } else {
      g++;
      const ra = fa + FRAME_REFCOUNT;
      let old = atomic.load<i32>(ra);
      let ok = false;
      while (old > 0 && old <= 0x7fff_ffff - GUP_PIN_COUNTING_BIAS) {
        const seen = atomic.cmpxchg<i32>(ra, old, old + 1);
        if (seen == old) {
          ok = true;
          break;
        }
        old = seen;
      }
      if (ok && (atomic.load<u32>(fa + FRAME_FLAGS) & PG_tail) != 0) {
        folioPut(pfn, 1); // became a tail under us: the slow way
        ok = false;
        head = grab(pfn, 1);
        g++;
        if (head == NONE) {
          why = stopWhy;
          break;
        }
        pf = PG_tail;
      } else if (!ok) {
        why = GUP_STOP_GRAB;
        break;
      } else if (pin) {
        if (longterm && !longtermPinnable(pfn)) {
          folioPut(pfn, 1);
          why = GUP_STOP_LONGTERM;
          break;
        }
        // A large folio's head counts the pin in _pincount; a small folio in its refcount.
        if (pf & PG_head) folioPincountAdd(pfn, 1);
        else atomic.add<i32>(ra, GUP_PIN_COUNTING_BIAS - 1);
        pinAcquired++;
      }
    }
    if (atomic.load<u64>(pmdAddr) != pmd || atomic.load<u64>(pa) != e) {
      gupPutFolio(head, 1, f);
      why = GUP_STOP_CHANGED;
      break;
    }
    const hf = head == pfn ? atomic.load<u32>(fa + FRAME_FLAGS) : frameFlags(head);
    const anon = (hf & PG_anon) != 0;
    if (filePinCheck && !anon && (hf & PG_swapbacked) == 0) {
      gupPutFolio(head, 1, f);
      why = GUP_STOP_FILE_PIN;
      break;
    }
    if (unshareCheck && (e & RW) == 0) {
      const excl = head == pfn ? hf : atomic.load<u32>(fa + FRAME_FLAGS);
      if (anon ? (excl & PG_anon_exclusive) == 0 : longterm) {
        gupPutFolio(head, 1, f);
        why = GUP_STOP_UNSHARE;
        break;
      }
    }
    if ((hf & PG_referenced) == 0) pageFlagsUpdate(head, PG_referenced, 0);
    store<f64>(o + (<usize>n << 3), <f64>pfn);
    n++;
  }
  taken = n;
  grabs = g;
  loads += <u32>(v - lv) + (why != GUP_STOP_NONE ? 1 : 0); // the entries read, the stopping one too
  if (why != GUP_STOP_NONE) {
    stopWhy = why;
    return false;
  }
  return true;
}

/**
 * ptes - gup_fast_pte_range / follow_page_pte over the PTE table @t (found through the entry
 * at @pmdAddr, read as @pmd) for pages [@lv, @end) of one table. False once the walk stops.
 */
function ptes(t: u32, pmdAddr: usize, pmd: u64, lv: u64, end: u64, first: u64): bool {
  const locked = (fl & GUPM_LOCKED) != 0;
  const write = (fl & FOLL_WRITE) != 0;
  const zeroPfn = load<u32>(HDR_ADDR + HDR_ZERO_PFN);
  const base = tableBytes(t);
  const nframes = NR_FRAMES;
  for (let v = lv; v < end; v++) {
    const pa = base + ((<usize>v & 511) << 3);
    const e = atomic.load<u64>(pa);
    loads++;
    if ((e & P) == 0) return stop(GUP_STOP_NOT_PRESENT);
    // pte_access_permitted; a write through a read-only entry is judged below, once the
    // page is known (the slow path's FOLL_FORCE rule).
    if (!accessPermitted(e, write && (!locked || (e & RW) != 0), pkru)) return stop(GUP_STOP_PERM);
    const pfn = <u32>ptePfn(e);
    if (e & SPECIAL) {
      // vm_normal_page() is NULL; only the slow path hands out the zero page, and a write
      // faults instead (COW away from it).
      if (!locked || pfn != zeroPfn) return stop(GUP_STOP_SPECIAL);
      if (write) return stop(GUP_STOP_PERM);
      if (fl & FOLL_GET) {
        grabs++;
        atomic.add<i32>(frame(pfn) + FRAME_REFCOUNT, 1);
      }
      emit(pfn);
      continue;
    }
    if (<u64>pfn >= <u64>nframes) return stop(GUP_STOP_NO_PAGE);
    const pf = frameFlags(pfn);
    if (write && (e & RW) == 0 && !writeAllowed(e, pf, frameFlags(folioHead(pfn)))) return stop(GUP_STOP_PERM);
    if (!locked && (fl & FOLL_LONGTERM) != 0 && zoneKindOf(pfn) == ZONE_DEVICE) return stop(GUP_STOP_DEVMAP);
    if (races) race(<u32>(v - first), 0);
    const head = grab(pfn, 1);
    if (head == NONE) return false;
    if (races) race(<u32>(v - first), 1);
    if (!locked && (atomic.load<u64>(pmdAddr) != pmd || atomic.load<u64>(pa) != e)) {
      gupPutFolio(head, 1, fl);
      return stop(GUP_STOP_CHANGED);
    }
    if (!leafChecks(e, head, pf)) {
      gupPutFolio(head, 1, fl);
      return false;
    }
    if (locked && (fl & FOLL_LONGTERM) != 0 && !longtermPinnable(pfn)) unpinnable++;
    emit(pfn);
  }
  return true;
}

/**
 * hugeLeaf - gup_fast_pmd_leaf / gup_fast_pud_leaf (or follow_huge_pmd): the pages
 * [@lv, @end) of the huge leaf @e at @ea, one grab for all of them.
 */
function hugeLeaf(ea: usize, e: u64, level: u32, lv: u64, end: u64, first: u64): bool {
  const locked = (fl & GUPM_LOCKED) != 0;
  const write = (fl & FOLL_WRITE) != 0;
  if (!accessPermitted(e, write && (!locked || (e & RW) != 0), pkru)) return stop(GUP_STOP_PERM);
  if (e & SPECIAL) return stop(GUP_STOP_SPECIAL);
  const span = levelPages(level);
  const basePfn = ptePfn(e) & ~(span - 1);
  const pfn = <u32>(basePfn + (lv & (span - 1)));
  if (<u64>pfn + (end - lv) > <u64>NR_FRAMES) return stop(GUP_STOP_NO_PAGE);
  const hf0 = frameFlags(folioHead(pfn));
  if (write && (e & RW) == 0 && !writeAllowed(e, hf0, hf0)) return stop(GUP_STOP_PERM);
  if (!locked && (fl & FOLL_LONGTERM) != 0 && zoneKindOf(pfn) == ZONE_DEVICE) return stop(GUP_STOP_DEVMAP);
  const nr = <i32>(end - lv);
  if (races) race(<u32>(lv - first), 0);
  const head = grab(pfn, nr);
  if (head == NONE) return false;
  if (races) race(<u32>(lv - first), 1);
  if (!locked && atomic.load<u64>(ea) != e) {
    gupPutFolio(head, nr, fl);
    return stop(GUP_STOP_CHANGED);
  }
  if (!leafChecks(e, head, frameFlags(head))) {
    gupPutFolio(head, nr, fl);
    return false;
  }
  if (locked && (fl & FOLL_LONGTERM) != 0 && !longtermPinnable(pfn)) unpinnable += <u32>nr;
  // pages[] for every subpage (record_subpages), four at a time.
  let at = out + (<usize>taken << 3);
  const stopAt = at + (<usize>nr << 3);
  let f = <f64>pfn;
  while (at + 32 <= stopAt) {
    store<f64>(at, f);
    store<f64>(at, f + 1.0, 8);
    store<f64>(at, f + 2.0, 16);
    store<f64>(at, f + 3.0, 24);
    f += 4.0;
    at += 32;
  }
  while (at < stopAt) {
    store<f64>(at, f);
    f += 1.0;
    at += 8;
  }
  taken += <u32>nr;
  hugePages += <u32>nr;
  return true;
}

// @ts-ignore: decorator
@inline function stop(why: u32): bool {
  stopWhy = why;
  return false;
}

/** The walk over [@lv, @end) (linear page numbers in the lower half). */
function walkRange(lv: u64, end: u64): void {
  const first = lv;
  while (lv < end) {
    let t = rootPfn;
    let level = LEVELS;
    let ok = true;
    while (true) {
      const ea = tableBytes(t) + ((<usize>(lv >> (9 * (level - 1))) & 511) << 3);
      const e = atomic.load<u64>(ea);
      loads++;
      const span = levelPages(level);
      const spanEnd = (lv & ~(span - 1)) + span;
      const to = end < spanEnd ? end : spanEnd;
      if ((e & P) == 0) {
        stop(GUP_STOP_NOT_PRESENT);
        return;
      }
      if (level <= 3 && (e & PS) != 0) {
        if (!hugeLeaf(ea, e, level, lv, to, first)) return;
        lv = to;
        break;
      }
      const next64 = ptePfn(e);
      // A table entry that does not lead to a page-table page (never made by the kernel's
      // own code; a test may write one) ends the walk rather than read a frame's bytes.
      if (next64 >= <u64>NR_FRAMES || (frameFlags(<u32>next64) & PG_pgtable) == 0) {
        stop(GUP_STOP_NOT_PRESENT);
        return;
      }
      const next = <u32>next64;
      if (level == 2) {
        ok = (fl & GUPM_LOCKED) == 0 && races == 0 ? ptesFast(next, ea, e, lv, to) : ptes(next, ea, e, lv, to, first);
        if (!ok) return;
        lv = to;
        break;
      }
      t = next;
      level--;
    }
  }
}

/**
 * gupRange - take the pages [@vpn, @vpn + @npages) of the address space under @root, the
 * GUP-fast way or (GUPM_LOCKED) the slow path's, with FOLL_* @flags and the task's @pkru.
 * Exactly one of FOLL_GET and FOLL_PIN. Writes one f64 pfn per page taken from the ring's
 * first entry. Returns the number of pages taken (REG_GUP_STOP says why it stopped there),
 * or -EINVAL for a bad root, range or flags, with nothing taken.
 */
export function gupRange(root: f64, vpn: f64, npages: u32, flags: u32, pk: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  if (flags & ~ALLOWED) return fail(EINVAL, R_FLAGS, flags & ~ALLOWED);
  if (((flags & FOLL_GET) != 0) == ((flags & FOLL_PIN) != 0)) return fail(EINVAL, R_FLAGS, flags);
  if (npages == 0) return fail(EINVAL, R_SIZE_ZERO, 0);
  if (npages > gupMaxPages()) return fail(EINVAL, R_COUNT, npages);
  const half: f64 = <f64>(<u64>1 << (VA_BITS - 13));
  if (!(vpn >= 0) || vpn != Math.floor(vpn) || vpn + <f64>npages > half) return fail(EINVAL, R_NONCANONICAL, 0);
  fl = flags;
  pkru = pk;
  rootPfn = <u32>r;
  taken = 0;
  stopWhy = GUP_STOP_NONE;
  grabs = 0;
  loads = 0;
  unpinnable = 0;
  hugePages = 0;
  out = RING + RING_ENTRY0;
  races = 0;
  if (flags & GUPM_RACE) {
    raceBase = RING + RING_ENTRY0 + <usize>RING_ENTRIES * RENT_SIZE - RACE_BASE;
    races = load<u32>(raceBase);
    if (races > <u32>RACE_MAX) return fail(EINVAL, R_COUNT, races);
  }
  const lv = <u64>vpn;
  if (flags & GUPM_LOCKED) {
    walkRange(lv, lv + npages);
  } else {
    const w = walkerWord(<u32>THREAD);
    atomic.add<u32>(w, 1); // local_irq_save
    const seqAddr = frame(rootPfn) + FRAME_MAPCOUNT;
    let seq: i32 = 0;
    if (flags & FOLL_PIN) {
      seq = atomic.load<i32>(seqAddr);
      if ((frameFlags(rootPfn) & PG_has_pinned) == 0) pageFlagsUpdate(rootPfn, PG_has_pinned, 0);
    }
    if ((flags & FOLL_PIN) != 0 && (seq & 1) != 0) {
      stopWhy = GUP_STOP_SEQ;
    } else {
      walkRange(lv, lv + npages);
      if ((flags & FOLL_PIN) != 0 && atomic.load<i32>(seqAddr) != seq) {
        undoAll();
        stopWhy = GUP_STOP_SEQ;
      }
    }
    atomic.add<u32>(w, 1); // local_irq_restore
  }
  if (pinAcquired != 0) atomic.add<i64>(HDR_ADDR + HDR_FOLL_PIN_ACQUIRED, pinAcquired);
  pinAcquired = 0;
  flushPinReleased();
  store<u32>(RING + REG_GUP_STOP, stopWhy);
  store<u32>(RING + REG_GUP_GRABS, grabs);
  store<u32>(RING + REG_GUP_LOADS, loads);
  store<u32>(RING + REG_GUP_UNPINNABLE, unpinnable);
  store<u32>(RING + REG_GUP_HUGE_PAGES, hugePages);
  store<f64>(RING + REG_PAGES, <f64>taken);
  return <i32>taken;
}

/** undoAll - unpin everything this call took (fork raced with the walk), a folio at a time. */
function undoAll(): void {
  let i: u32 = 0;
  while (i < taken) {
    const pfn = <u32>load<f64>(out + (<usize>i << 3));
    const head = folioHead(pfn);
    let n: u32 = 1;
    while (i + n < taken && folioHead(<u32>load<f64>(out + (<usize>(i + n) << 3))) == head) n++;
    gupPutFolio(head, <i32>n, fl);
    i += n;
  }
  taken = 0;
  hugePages = 0;
}
