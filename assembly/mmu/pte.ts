/**
 * x86-64 paging-entry helpers (bit values from src/abi/x86.ts, SDM vol. 3 ch. 4).
 *
 * Levels count from the leaf: 1 = PT (4 KiB), 2 = PD (2 MiB leaves), 3 = PDPT (1 GiB leaves),
 * 4 = PML4, 5 = PML5. An entry at level l covers 2^(9(l-1)) pages of 4 KiB.
 */
import {
  PTE_P, PTE_RW, PTE_US, PTE_PWT, PTE_PCD, PTE_A, PTE_D, PTE_PS, PTE_G, PTE_PAT_LARGE,
  PTE_PAT_4K, PTE_BIT_NX, PTE_BIT_PKEY, PTE_TABLE_USER, PTE_TABLE_KERNEL,
} from "../../src/abi/x86";
import { slotAddr } from "../phys/pool";
import { frameBacking } from "../phys/frame";

export const P: u64 = PTE_P;
export const RW: u64 = PTE_RW;
export const US: u64 = PTE_US;
export const PWT: u64 = PTE_PWT;
export const PCD: u64 = PTE_PCD;
export const A: u64 = PTE_A;
export const D: u64 = PTE_D;
export const PS: u64 = PTE_PS;
export const G: u64 = PTE_G;
export const PAT4K: u64 = PTE_PAT_4K;
export const PATL: u64 = PTE_PAT_LARGE;
export const NX: u64 = <u64>1 << PTE_BIT_NX;
export const PKEY_MASK: u64 = <u64>0xf << PTE_BIT_PKEY;
/** Frame bits 51:12 of an entry. */
export const FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;
export const TABLE_USER: u64 = PTE_TABLE_USER;
export const TABLE_KERNEL: u64 = PTE_TABLE_KERNEL;
/** Bits that must be zero in the frame field of a 2 MiB / 1 GiB leaf (20:13 / 29:13). */
export const RSVD_2M: u64 = 0x1f_e000;
export const RSVD_1G: u64 = 0x3fff_e000;

// @ts-ignore: decorator
@inline export function pteIsLeaf(e: u64, level: u32): bool {
  return level == 1 || (level <= 3 && (e & PS) != 0);
}

// @ts-ignore: decorator
@inline export function ptePfn(e: u64): u64 {
  return (e & FRAME_MASK) >> 12;
}

/** Pages (4 KiB) covered by one entry at @level. */
// @ts-ignore: decorator
@inline export function levelPages(level: u32): u64 {
  return <u64>1 << (9 * (level - 1));
}

/** Address of a page-table page's bytes (page tables always have a backing slot). */
// @ts-ignore: decorator
@inline export function tableAddr(pfn: u32): usize {
  return slotAddr(frameBacking(pfn));
}

/** Address of the entry for 4 KiB-page number @lvpn in the table @pfn at @level. */
// @ts-ignore: decorator
@inline export function entryAddr(pfn: u32, level: u32, lvpn: u64): usize {
  return tableAddr(pfn) + ((<usize>(lvpn >> (9 * (level - 1))) & 511) << 3);
}
