/**
 * The slow path's PTE loop (follow_page_pte under mmap_lock, GUPM_LOCKED) without a race
 * script: the same checks as ptes() in assembly/mm/gup.ts, in the same order, with the frame
 * records and the call's counts kept in locals and a small folio's grab done in place, as
 * gup-fast.ts does for GUP-fast. A large folio's page goes through grab().
 */
import {
  FOLL_WRITE, FOLL_GET, FOLL_PIN, FOLL_LONGTERM, FOLL_TOUCH, GUPM_COW_VMA, GUP_STOP_NONE, GUP_STOP_NOT_PRESENT,
  GUP_STOP_PERM, GUP_STOP_SPECIAL, GUP_STOP_GRAB, GUP_STOP_UNSHARE, GUP_STOP_NO_PAGE, GUP_STOP_P2PDMA,
} from "../../src/abi/gup";
import { HDR_ADDR, HDR_ZERO_PFN, ZONE_KIND, ZONE_START, ZONE_END } from "../../src/abi/header";
import {
  FRAME_SIZE, FRAME_FLAGS, FRAME_REFCOUNT, GUP_PIN_COUNTING_BIAS, PG_head, PG_tail, PG_anon, PG_anon_exclusive,
  PG_referenced, PG_dirty, ZONE_NORMAL,
} from "../../src/abi/frame";
import { FRAMES, NR_FRAMES } from "../layout";
import { frameFlags, pfnToZone, zone } from "../phys/frame";
import { P, RW, D, ptePfn } from "../mmu/pte";
import { folioHead, folioPut, folioPincountAdd, pageFlagsUpdate } from "./page";
import { gupPutFolio } from "./unpin";
import { NONE, SPECIAL, fl, pkru, out, taken, grabs, stopWhy, unpinnable, ptesEnd, pinAcquired, tableBytes, p2pdmaRefused, accessPermitted } from "./gup-call";
import { grab, refTryAdd, tryGetFolio, writeAllowed } from "./gup-grab";

/**
 * ptesLocked - ptes() for the slow path: pages [@lv, @end) of the PTE table @t. False once
 * the walk stops (stopWhy set).
 */
export function ptesLocked(t: u32, lv: u64, end: u64): bool {
  const f = fl;
  const write = (f & FOLL_WRITE) != 0;
  const pin = (f & FOLL_PIN) != 0;
  const longterm = (f & FOLL_LONGTERM) != 0;
  // mustUnshare for a read-only entry: an anonymous page that is not exclusive, or any
  // other page when a long-term pin would read a COW mapping.
  const unshareCheck = (f & (FOLL_WRITE | FOLL_PIN)) == FOLL_PIN;
  const unshareOther = longterm && (f & GUPM_COW_VMA) != 0;
  const touchDirty = (f & (FOLL_TOUCH | FOLL_WRITE)) == (FOLL_TOUCH | FOLL_WRITE);
  const pk = pkru;
  const zeroPfn = load<u32>(HDR_ADDR + HDR_ZERO_PFN);
  const frames = FRAMES;
  const nframes = <u64>NR_FRAMES;
  const base = tableBytes(t);
  const o = out;
  let n = taken;
  let g = grabs;
  let unp = unpinnable;
  // folio_is_longterm_pinnable by zone: the last zone looked up, [zLo, zHi) and its verdict.
  let zLo: u32 = 0;
  let zHi: u32 = 0;
  let zOk = false;
  let why: u32 = GUP_STOP_NONE;
  let v = lv;
  for (; v < end; v++) {
    const pa = base + ((<usize>v & 511) << 3);
    const e = atomic.load<u64>(pa);
    // pte_access_permitted (present, user, protection key; writable only if the entry is:
    // a write through a read-only entry is judged once the page is known).
    if (!accessPermitted(e, write && (e & RW) != 0, pk)) {
      why = (e & P) == 0 ? GUP_STOP_NOT_PRESENT : GUP_STOP_PERM;
      break;
    }
    const pfn = <u32>ptePfn(e);
    if (e & SPECIAL) {
      // The shared zero page is handed out (a pin of it counts nothing); a write faults.
      if (pfn != zeroPfn) {
        why = GUP_STOP_SPECIAL;
        break;
      }
      if (write) {
        why = GUP_STOP_PERM;
        break;
      }
      if (f & FOLL_GET) {
        g++;
        atomic.add<i32>(frames + <usize>pfn * FRAME_SIZE + FRAME_REFCOUNT, 1);
      }
      store<f64>(o + (<usize>n << 3), <f64>pfn);
      n++;
      continue;
    }
    if (<u64>pfn >= nframes) {
      why = GUP_STOP_NO_PAGE;
      break;
    }
    if (p2pdmaRefused(pfn)) {
      why = GUP_STOP_P2PDMA;
      break;
    }
    const fa = frames + <usize>pfn * FRAME_SIZE;
    const pf = atomic.load<u32>(fa + FRAME_FLAGS);
    // can_follow_write_pte: FOLL_FORCE on an exclusive anonymous page of a COW mapping.
    if (write && (e & RW) == 0 && !writeAllowed(e, pf, frameFlags(folioHead(pfn)))) {
      why = GUP_STOP_PERM;
      break;
    }
    let head = pfn;
    if ((pf & (PG_head | PG_tail)) != 0) {
      // A page of a large folio: the general grab (it finds the head).
      grabs = g;
      head = grab(pfn, 1);
      g = grabs;
      if (head == NONE) {
        why = stopWhy;
        break;
      }
    } else {
      // try_grab_folio on a small folio: +1 (FOLL_GET) or +GUP_PIN_COUNTING_BIAS (FOLL_PIN) in
      // one compare-and-swap (the kernel's folio_try_get then folio_ref_add: the same end state).
      g++;
      const add: i32 = pin ? GUP_PIN_COUNTING_BIAS : 1;
      const ra = fa + FRAME_REFCOUNT;
      const ok = refTryAdd(ra, add);
      if (!ok) {
        why = GUP_STOP_GRAB;
        break;
      }
      if (folioHead(pfn) != pfn) {
        // Became part of a large folio in between: undo, and take the folio it is in now.
        folioPut(pfn, add);
        head = tryGetFolio(pfn, 1);
        if (head == NONE) {
          why = GUP_STOP_GRAB;
          break;
        }
        if (pin) {
          if (frameFlags(head) & PG_head) folioPincountAdd(head, 1);
          else atomic.add<i32>(frames + <usize>head * FRAME_SIZE + FRAME_REFCOUNT, GUP_PIN_COUNTING_BIAS - 1);
        }
      }
      if (pin) pinAcquired++;
    }
    // leafChecks for the slow path: the unshare rule, referenced, FOLL_TOUCH's dirtying.
    const hf = frameFlags(head);
    const anon = (hf & PG_anon) != 0;
    if (unshareCheck && (e & RW) == 0 && (anon ? (pf & PG_anon_exclusive) == 0 : unshareOther)) {
      gupPutFolio(head, 1, f);
      why = GUP_STOP_UNSHARE;
      break;
    }
    let set: u32 = (hf & PG_referenced) == 0 ? PG_referenced : 0;
    if (touchDirty && (e & D) == 0 && (hf & PG_dirty) == 0) set |= PG_dirty;
    if (set) pageFlagsUpdate(head, set, 0);
    if (longterm) {
      if (pfn - zLo >= zHi - zLo) {
        const z = pfnToZone(pfn);
        if (z < 0) {
          zLo = 0; // no zone: an empty range, looked up again next time
          zHi = 0;
          zOk = false;
        } else {
          const zp = zone(<u32>z);
          zLo = load<u32>(zp + ZONE_START);
          zHi = load<u32>(zp + ZONE_END);
          zOk = <i32>load<u32>(zp + ZONE_KIND) == ZONE_NORMAL;
        }
      }
      if (!zOk && pfn != zeroPfn) unp++; // zOk is this page's zone's verdict now
    }
    store<f64>(o + (<usize>n << 3), <f64>pfn);
    n++;
  }
  unpinnable = unp;
  return ptesEnd(n, g, <u32>(v - lv), why);
}
