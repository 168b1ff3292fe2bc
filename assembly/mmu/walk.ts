/**
 * The page walk (SDM vol. 3 §4.5) and the permission check (§4.6).
 *
 * - Each level's entry is read once (and again after a lost compare-and-swap). Not present: #PF with P=0. A reserved bit (above
 *   MAXPHYADDR, NX without EFER.NXE, PS at PML4/PML5, low frame bits of a large leaf):
 *   #PF with P and RSVD.
 * - RW and US are ANDed over the levels, NX is ORed.
 * - The walker sets A in each non-leaf entry it goes through; A in the leaf, and D on a
 *   write, only when the access is allowed. Each is a compare-and-swap: if the entry changed
 *   under it (unmapped, protected), the walk starts again, as the hardware's locked update
 *   would see the new entry.
 * - With side effects off (a debugger's or checker's view) nothing is written.
 */
import { PF_P, PF_W, PF_U, PF_I, PF_RSVD, PF_PK, X86_TRAP_PF, PTE_BIT_PKEY } from "../../src/abi/x86";
import {
  CTRL_WP, CTRL_SMEP, CTRL_SMAP, CTRL_PKE, CTRL_NXE, ACC_WRITE, ACC_USER, ACC_FETCH, ACC_AC,
} from "../../src/abi/header";
import { LEVELS, VA_BITS, PHYS_BITS, FRAMES, POOL } from "../layout";
import { FRAME_SIZE, FRAME_BACKING } from "../../src/abi/frame";
import {
  P, RW, US, PWT, PCD, A, D, PS, G, PAT4K, PATL, NX, PKEY_MASK, FRAME_MASK, RSVD_2M, RSVD_1G,
  ptePfn,
} from "./pte";

/* Results of the last walk (the physical address goes straight to the caller's @out). */
/** The effective leaf, as a TLB entry keeps it (frame aligned to the page size, PAT at bit 7). */
export let walkData: u64 = 0;
/** Page-size code of the leaf: 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB. */
export let walkSize: u32 = 0;
export let walkLoads: u32 = 0;

// @ts-ignore: decorator
@inline export function pfFault(code: u32): i32 {
  return (X86_TRAP_PF << 16) | code;
}

/**
 * permCheck - may an access with @acc use a translation with effective bits @data?
 * Returns 0, or the #PF error code (P set, plus PK for a protection-key denial).
 */
// @ts-ignore: decorator
@inline export function permCheck(data: u64, acc: u32, ctrl: u32, pkru: u32): u32 {
  const code = PF_P | (acc & (PF_W | PF_U | PF_I));
  const write = (acc & ACC_WRITE) != 0;
  const fetch = (acc & ACC_FETCH) != 0;
  const userPage = (data & US) != 0;
  if (acc & ACC_USER) {
    if (!userPage) return code;
    if (write && (data & RW) == 0) return code;
  } else {
    if (userPage) {
      if (fetch && (ctrl & CTRL_SMEP) != 0) return code;
      if (!fetch && (ctrl & CTRL_SMAP) != 0 && (acc & ACC_AC) == 0) return code;
    }
    if (write && (data & RW) == 0 && (ctrl & CTRL_WP) != 0) return code;
  }
  if (fetch && (data & NX) != 0) return code;
  // Protection keys: data accesses to user pages, user or supervisor mode.
  if ((ctrl & CTRL_PKE) != 0 && userPage && !fetch) {
    const k = <u32>((data & PKEY_MASK) >> PTE_BIT_PKEY);
    const bits = (pkru >> (2 * k)) & 3;
    if (bits & 1) return code | PF_PK;
    if (write && (bits & 2) != 0 && ((acc & ACC_USER) != 0 || (ctrl & CTRL_WP) != 0)) {
      return code | PF_PK;
    }
  }
  return 0;
}

/** Reserved bits common to every entry: above MAXPHYADDR, and NX without EFER.NXE. */
// @ts-ignore: decorator
@inline export function rsvdCommon(ctrl: u32): u64 {
  const above = PHYS_BITS < 52 ? (((<u64>1 << 52) - 1) & ~((<u64>1 << PHYS_BITS) - 1)) : 0;
  return above | (ctrl & CTRL_NXE ? 0 : NX);
}

/** Set A in a non-leaf entry on the way down; false if the entry changed under the walk. */
// @ts-ignore: decorator
@inline function accessed(ea: usize, e: u64, side: bool): bool {
  if (e & A) return true; // the common case: one test
  return !side || atomic.cmpxchg<u64>(ea, e, e | A) == e;
}

/** Address of the entry for page @lvpn at @shift (9 x (level - 1)) in table @t. */
// @ts-ignore: decorator
@inline function entryAt(frames: usize, pool: usize, t: u32, lvpn: u64, shift: u64): usize {
  const slot = load<u32>(frames + <usize>t * FRAME_SIZE + FRAME_BACKING);
  return pool + (<usize>slot << 12) + ((<usize>(lvpn >> shift) & 511) << 3);
}

/**
 * walk - translate @va for access @acc on a CPU with control bits @ctrl and PKRU @pkru.
 * Returns 0 (the physical address stored at @out; walkData and walkSize set) or a #PF
 * status (vector << 16 | error code); walkLoads is set either way.
 *
 * One straight-line step per level (PML5, PML4, PDPT, PD, PT), as gem5's walker keeps one
 * state per level: no level-indexed branches, and the reserved-bit masks are built once.
 */
export function walk(root: u32, va: u64, acc: u32, ctrl: u32, pkru: u32, side: bool, out: usize): i32 {
  // Layout globals in locals: V8 re-reads a mutable global at every use.
  return walkIn(FRAMES, POOL - 4096, LEVELS == 5, (<u64>1 << VA_BITS) - 1, rsvdCommon(ctrl), root, va, acc, ctrl, pkru, side, out);
}

/**
 * walkIn - walk() with what is the same for every walk of a batch passed in: the frame
 * records at @frames, the pool's slot 0 at @pool (slot numbers start at 1), 5-level paging,
 * the VA mask, and the reserved bits of every entry (rsvdCommon(@ctrl)). Inlined into
 * batch loops, which compute them once.
 */
// @ts-ignore: decorator
@inline export function walkIn(
  frames: usize, pool: usize, five: bool, vaMask: u64, common: u64,
  root: u32, va: u64, acc: u32, ctrl: u32, pkru: u32, side: bool, out: usize,
): i32 {
  const lvpn = (va & vaMask) >> 12;
  const notPresent = pfFault(acc & (PF_W | PF_U | PF_I));
  // Entries read: each exit knows how many this attempt read (l5 + its depth); `done`
  // keeps those of attempts restarted after a lost compare-and-swap.
  const l5: u32 = five ? 1 : 0;
  let done: u32 = 0;
  while (true) {
    let t = root;
    let rights: u64 = RW | US;
    let nx: u64 = 0;
    let ea: usize;
    let e: u64;
    let level: u32;
    if (five) {
      ea = entryAt(frames, pool, t, lvpn, 36);
      e = atomic.load<u64>(ea);
      if ((e & P) == 0) return walkEnd(notPresent, done + 1);
      if (e & (common | PS)) return walkEnd(notPresent | PF_P | PF_RSVD, done + 1);
      if (!accessed(ea, e, side)) {
        done += 1;
        continue;
      }
      rights &= e;
      nx |= e & NX;
      t = <u32>ptePfn(e);
    }
    ea = entryAt(frames, pool, t, lvpn, 27);
    e = atomic.load<u64>(ea);
    if ((e & P) == 0) return walkEnd(notPresent, done + l5 + 1);
    if (e & (common | PS)) return walkEnd(notPresent | PF_P | PF_RSVD, done + l5 + 1);
    if (!accessed(ea, e, side)) {
      done += l5 + 1;
      continue;
    }
    rights &= e;
    nx |= e & NX;
    t = <u32>ptePfn(e);
    ea = entryAt(frames, pool, t, lvpn, 18);
    e = atomic.load<u64>(ea);
    if ((e & P) == 0) return walkEnd(notPresent, done + l5 + 2);
    if (e & PS) {
      if (e & (common | RSVD_1G)) return walkEnd(notPresent | PF_P | PF_RSVD, done + l5 + 2);
      level = 3;
    } else {
      if (e & common) return walkEnd(notPresent | PF_P | PF_RSVD, done + l5 + 2);
      if (!accessed(ea, e, side)) {
        done += l5 + 2;
        continue;
      }
      rights &= e;
      nx |= e & NX;
      t = <u32>ptePfn(e);
      ea = entryAt(frames, pool, t, lvpn, 9);
      e = atomic.load<u64>(ea);
      if ((e & P) == 0) return walkEnd(notPresent, done + l5 + 3);
      if (e & PS) {
        if (e & (common | RSVD_2M)) return walkEnd(notPresent | PF_P | PF_RSVD, done + l5 + 3);
        level = 2;
      } else {
        if (e & common) return walkEnd(notPresent | PF_P | PF_RSVD, done + l5 + 3);
        if (!accessed(ea, e, side)) {
          done += l5 + 3;
          continue;
        }
        rights &= e;
        nx |= e & NX;
        t = <u32>ptePfn(e);
        ea = entryAt(frames, pool, t, lvpn, 0);
        e = atomic.load<u64>(ea);
        if ((e & P) == 0) return walkEnd(notPresent, done + l5 + 4);
        if (e & common) return walkEnd(notPresent | PF_P | PF_RSVD, done + l5 + 4);
        level = 1;
      }
    }
    // The leaf.
    rights &= e;
    nx |= e & NX;
    const size = level - 1;
    const sizeMask: u64 = (<u64>1 << (12 + 9 * size)) - 1;
    const frameBase = e & FRAME_MASK & ~sizeMask;
    const pat = level == 1 ? e & PAT4K : e & PATL ? PAT4K : 0;
    let data =
      frameBase | P | rights | (e & (PWT | PCD | D | G)) | pat | nx | (e & PKEY_MASK);
    // Entries this attempt read: l5 + 2 for a 1 GiB leaf, + 3 for 2 MiB, + 4 for 4 KiB.
    const loads = done + l5 + 5 - level;
    const denied = permCheck(data, acc, ctrl, pkru);
    if (denied) return walkEnd(pfFault(denied), loads);
    if (side) {
      const want = A | (acc & ACC_WRITE ? D : 0);
      if ((e & want) != want) {
        if (atomic.cmpxchg<u64>(ea, e, e | want) != e) {
          done = loads;
          continue;
        }
        data |= want & D;
      }
    }
    store<u64>(out, frameBase | (va & sizeMask));
    walkData = data;
    walkSize = size;
    return walkEnd(0, loads);
  }
}

// @ts-ignore: decorator
@inline function walkEnd(status: i32, loads: u32): i32 {
  walkLoads = loads;
  return status;
}
