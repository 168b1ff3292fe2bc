/**
 * Taking a folio for GUP (mm/gup.c try_grab_folio / try_grab_folio_fast, folio_try_get) and
 * the checks that follow a grab (gup_must_unshare, gup_fast_folio_allowed, FOLL_TOUCH,
 * can_follow_write_pte), for the call in progress (gup-call.ts).
 */
import {
  FOLL_WRITE, FOLL_PIN, FOLL_LONGTERM, FOLL_FORCE, FOLL_TOUCH, GUPM_LOCKED, GUPM_FORCE_WRITE_OK, GUPM_COW_VMA,
  GUP_STOP_GRAB, GUP_STOP_LONGTERM, GUP_STOP_UNSHARE, GUP_STOP_FILE_PIN,
} from "../../src/abi/gup";
import {
  FRAME_REFCOUNT, GUP_PIN_COUNTING_BIAS, PG_head, PG_anon, PG_anon_exclusive, PG_swapbacked, PG_referenced, PG_dirty,
} from "../../src/abi/frame";
import { frame, frameFlags } from "../phys/frame";
import { RW, D } from "../mmu/pte";
import { folioHead, folioPut, folioPincountAdd, pageFlagsUpdate } from "./page";
import { NONE, fl, grabs, stopWhy, pinAcquired, longtermPinnable } from "./gup-call";

/**
 * tryGetFolio - add @refs to the refcount of the folio holding @pfn unless it is zero (the
 * folio is being freed), then make sure the page still belongs to that folio. Returns the
 * head, or NONE.
 */
export function tryGetFolio(pfn: u32, refs: i32): u32 {
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
 * refTryAdd - folio_try_get on the refcount at @ra of a page GUP found by its PTE: add @add
 * unless the count is zero (being freed) or too close to overflow for a pin. The caller then
 * checks the page is still the folio it took.
 */
// @ts-ignore: decorator
@inline export function refTryAdd(ra: usize, add: i32): bool {
  let old = atomic.load<i32>(ra);
  while (old > 0 && old <= 0x7fff_ffff - GUP_PIN_COUNTING_BIAS) {
    const seen = atomic.cmpxchg<i32>(ra, old, old + add);
    if (seen == old) return true;
    old = seen;
  }
  return false;
}

/**
 * grab - take @refs references (FOLL_GET) or pins (FOLL_PIN) on the folio of @pfn, as
 * try_grab_folio_fast does (GUP-fast) or try_grab_folio (slow path, where the page table
 * lock guarantees a live folio). Returns the head, or NONE with stopWhy set.
 */
export function grab(pfn: u32, refs: i32): u32 {
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
@inline export function mustUnshare(exclFlags: u32, anon: bool): bool {
  if ((fl & (FOLL_WRITE | FOLL_PIN)) != FOLL_PIN) return false;
  if (!anon) {
    if ((fl & FOLL_LONGTERM) == 0) return false;
    return (fl & GUPM_LOCKED) == 0 || (fl & GUPM_COW_VMA) != 0;
  }
  return (exclFlags & PG_anon_exclusive) == 0;
}

/**
 * leafChecks - what follows a successful grab of the folio @head for the page(s) mapped by
 * entry @e: the fast path's file-pin rule, the unshare rule, FOLL_TOUCH, referenced.
 * @excl: the flags holding PG_anon_exclusive (the page's own for a PTE, the head's for a
 * huge leaf). False (grab to be undone, stopWhy set) if the page may not be taken.
 */
export function leafChecks(e: u64, head: u32, excl: u32): bool {
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
@inline export function writeAllowed(e: u64, excl: u32, hf: u32): bool {
  if ((fl & FOLL_WRITE) == 0 || (e & RW) != 0) return true;
  if ((fl & (GUPM_LOCKED | FOLL_FORCE | GUPM_FORCE_WRITE_OK)) != (GUPM_LOCKED | FOLL_FORCE | GUPM_FORCE_WRITE_OK)) return false;
  return (hf & PG_anon) != 0 && (excl & PG_anon_exclusive) != 0;
}

