/**
 * GUP-fast's PTE loop (mm/gup.c gup_fast_pte_range), the hot loop of the lockless walk: the
 * same checks as the slow path's ptes() in assembly/mm/gup.ts, in the same order, with the
 * frame records and flags kept in locals. Races (tests) take the general loop instead.
 */
import {
  FOLL_WRITE, FOLL_PIN, FOLL_LONGTERM, GUP_STOP_NONE, GUP_STOP_NOT_PRESENT, GUP_STOP_PERM, GUP_STOP_SPECIAL,
  GUP_STOP_DEVMAP, GUP_STOP_GRAB, GUP_STOP_CHANGED, GUP_STOP_LONGTERM, GUP_STOP_UNSHARE, GUP_STOP_FILE_PIN,
  GUP_STOP_NO_PAGE, GUP_STOP_P2PDMA,
} from "../../src/abi/gup";
import {
  FRAME_SIZE, FRAME_FLAGS, FRAME_REFCOUNT, GUP_PIN_COUNTING_BIAS, PG_head, PG_tail, PG_anon, PG_anon_exclusive,
  PG_swapbacked, PG_referenced, ZONE_DEVICE,
} from "../../src/abi/frame";
import { PTE_BIT_PKEY } from "../../src/abi/x86";
import { FRAMES, NR_FRAMES } from "../layout";
import { frameFlags } from "../phys/frame";
import { P, US, RW, PKEY_MASK, ptePfn } from "../mmu/pte";
import { folioPut, folioPincountAdd, pageFlagsUpdate } from "./page";
import { gupPutFolio } from "./unpin";
import {
  NONE, SPECIAL, fl, pkru, out, taken, grabs, stopWhy, pinAcquired, zoneKindOf, longtermPinnable, tableBytes, p2pdmaRefused, ptesEnd,
} from "./gup-call";
import { grab, refTryAdd } from "./gup-grab";

/**
 * ptesFast - gup_fast_pte_range without the race script: the same checks as ptes() in the
 * same order, with the frame records and flags kept in locals (the hot loop of GUP-fast).
 */
export function ptesFast(t: u32, pmdAddr: usize, pmd: u64, lv: u64, end: u64): bool {
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
    if (p2pdmaRefused(pfn)) {
      why = GUP_STOP_P2PDMA;
      break;
    }
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
      // A pin of a small folio adds the whole bias in the one compare-and-swap (the kernel's
      // folio_try_get then folio_ref_add, with the same end state); a head takes 1 and a pincount.
      const add: i32 = pin && (pf & PG_head) == 0 ? GUP_PIN_COUNTING_BIAS : 1;
      const ra = fa + FRAME_REFCOUNT;
      let ok = refTryAdd(ra, add);
      if (ok && (atomic.load<u32>(fa + FRAME_FLAGS) & PG_tail) != 0) {
        folioPut(pfn, add); // became a tail under us: the slow way
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
          folioPut(pfn, add);
          why = GUP_STOP_LONGTERM;
          break;
        }
        // A large folio's head counts the pin in _pincount; a small folio's is in its refcount.
        if (pf & PG_head) folioPincountAdd(pfn, 1);
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
  return ptesEnd(n, g, <u32>(v - lv), why);
}

