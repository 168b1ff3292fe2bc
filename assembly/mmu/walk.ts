/**
 * The page walk (SDM vol. 3 §4.5) and the permission check (§4.6).
 *
 * - Each level's entry is read once. Not present: #PF with P=0. A reserved bit (above
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
import { LEVELS, VA_BITS, PHYS_BITS } from "../layout";
import {
  P, RW, US, PWT, PCD, A, D, PS, G, PAT4K, PATL, NX, PKEY_MASK, FRAME_MASK, RSVD_2M, RSVD_1G,
  ptePfn, entryAddr,
} from "./pte";

/* Results of the last walk. */
export let walkPa: u64 = 0;
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
@inline function rsvdCommon(ctrl: u32): u64 {
  const above = PHYS_BITS < 52 ? (((<u64>1 << 52) - 1) & ~((<u64>1 << PHYS_BITS) - 1)) : 0;
  return above | (ctrl & CTRL_NXE ? 0 : NX);
}

/**
 * walk - translate @va for access @acc on a CPU with control bits @ctrl and PKRU @pkru.
 * Returns 0 (walkPa, walkData, walkSize set) or a #PF status (vector << 16 | error code).
 */
export function walk(root: u32, va: u64, acc: u32, ctrl: u32, pkru: u32, side: bool): i32 {
  const lvpn = (va & ((<u64>1 << VA_BITS) - 1)) >> 12;
  const common = rsvdCommon(ctrl);
  const accBits = acc & (PF_W | PF_U | PF_I);
  walkLoads = 0;
  while (true) {
    let t = root;
    let level = LEVELS;
    let rights: u64 = RW | US;
    let nx: u64 = 0;
    let ea: usize = 0;
    let e: u64 = 0;
    let restart = false;
    while (true) {
      ea = entryAddr(t, level, lvpn);
      e = atomic.load<u64>(ea);
      walkLoads++;
      if ((e & P) == 0) return pfFault(accBits);
      const leaf = level == 1 || (level <= 3 && (e & PS) != 0);
      let rsvd = common;
      if (level >= 4) rsvd |= PS;
      else if (leaf && level == 2) rsvd |= RSVD_2M;
      else if (leaf && level == 3) rsvd |= RSVD_1G;
      if (e & rsvd) return pfFault(accBits | PF_P | PF_RSVD);
      rights &= e;
      nx |= e & NX;
      if (leaf) break;
      if (side && (e & A) == 0 && atomic.cmpxchg<u64>(ea, e, e | A) != e) {
        restart = true;
        break;
      }
      t = <u32>ptePfn(e);
      level--;
    }
    if (restart) continue;
    const size = level - 1;
    const sizeMask: u64 = (<u64>1 << (12 + 9 * size)) - 1;
    const frameBase = e & FRAME_MASK & ~sizeMask;
    const pat = level == 1 ? e & PAT4K : e & PATL ? PAT4K : 0;
    let data =
      frameBase | P | rights | (e & (PWT | PCD | D | G)) | pat | nx | (e & PKEY_MASK);
    const denied = permCheck(data, acc, ctrl, pkru);
    if (denied) return pfFault(denied);
    if (side) {
      const want = A | (acc & ACC_WRITE ? D : 0);
      if ((e & want) != want) {
        if (atomic.cmpxchg<u64>(ea, e, e | want) != e) continue;
        data |= want & D;
      }
    }
    walkPa = frameBase | (va & sizeMask);
    walkData = data;
    walkSize = size;
    return 0;
  }
}


