/**
 * Page protections: what a caller asks for ({write, user, nx, ...}) and the x86 entry bits
 * that express it; and decoding an entry back. Memory types follow Linux's PAT setup
 * (arch/x86/mm/pat/memtype.c): PAT index 0 WB, 1 WC, 2 UC-, 3 UC, 5 WP, 7 WT.
 * @module
 */
import * as X from "../abi/x86.js";
import { einval } from "../errors.js";

export type CacheMode = "WB" | "WC" | "UC-" | "UC" | "WT" | "WP";
const PAT_INDEX: Record<CacheMode, number> = { WB: 0, WC: 1, "UC-": 2, UC: 3, WP: 5, WT: 7 };
const PAT_MODE: CacheMode[] = ["WB", "WC", "UC-", "UC", "WB", "WP", "UC-", "WT"];

/** What a leaf entry allows and how it caches. Present is implied. */
export interface Prot {
  write?: boolean;
  user?: boolean;
  /** No-execute (needs EFER.NXE on the CPU, else the bit is reserved). */
  nx?: boolean;
  /** Survives non-global flushes (needs CR4.PGE). */
  global?: boolean;
  /** Protection key 0..15 (needs CR4.PKE; user pages only). */
  pkey?: number;
  cache?: CacheMode;
  accessed?: boolean;
  dirty?: boolean;
  /** Linux's _PAGE_SPECIAL (software bit 9): no struct page behind it. */
  special?: boolean;
}

export type ProtChange = Omit<Prot, "cache">;

const HI_NX = 1 << (X.PTE_BIT_NX - 32);
const HI_PKEY_SHIFT = X.PTE_BIT_PKEY - 32;

/** protWords - [low word, high word] of the entry bits for @p (4 KiB format). */
export function protWords(p: Prot, arg = "prot"): [number, number] {
  let lo = 0;
  let hi = 0;
  if (p.write) lo |= X.PTE_RW;
  if (p.user) lo |= X.PTE_US;
  if (p.global) lo |= X.PTE_G;
  if (p.accessed) lo |= X.PTE_A;
  if (p.dirty) lo |= X.PTE_D;
  if (p.special) lo |= X.PTE_SOFTW1;
  if (p.nx) hi |= HI_NX;
  if (p.pkey !== undefined) {
    if (!Number.isInteger(p.pkey) || p.pkey < 0 || p.pkey > 15) {
      throw einval(`${arg}.pkey`, `${p.pkey} is not a protection key 0..15`);
    }
    hi |= p.pkey << HI_PKEY_SHIFT;
  }
  if (p.cache !== undefined) {
    const idx = PAT_INDEX[p.cache];
    if (idx === undefined) throw einval(`${arg}.cache`, `unknown memory type ${String(p.cache)}`);
    if (idx & 1) lo |= X.PTE_PWT;
    if (idx & 2) lo |= X.PTE_PCD;
    if (idx & 4) lo |= X.PTE_PAT_4K;
  }
  return [lo >>> 0, hi >>> 0];
}

/** changeWords - [setLo, setHi, clearLo, clearHi] for a protection change. */
export function changeWords(c: ProtChange): [number, number, number, number] {
  const on: Prot = {};
  const off: Prot = {};
  for (const key of ["write", "user", "nx", "global", "accessed", "dirty", "special"] as const) {
    const val = c[key];
    if (val === true) on[key] = true;
    else if (val === false) off[key] = true;
  }
  const [setLo, setHi] = protWords(on, "change");
  const [clrLo, clrHi] = protWords(off, "change");
  let clearHi = clrHi;
  let setHi2 = setHi;
  if (c.pkey !== undefined) {
    setHi2 |= protWords({ pkey: c.pkey }, "change")[1];
    clearHi |= 0xf << HI_PKEY_SHIFT;
  }
  return [setLo, setHi2 >>> 0, clrLo, clearHi >>> 0];
}

/** A decoded entry. */
export interface PteInfo {
  present: boolean;
  write: boolean;
  user: boolean;
  accessed: boolean;
  dirty: boolean;
  /** PS: a 2 MiB / 1 GiB leaf (levels 2-3 only). */
  huge: boolean;
  global: boolean;
  nx: boolean;
  pkey: number;
  special: boolean;
  cache: CacheMode;
  /** The frame (4 KiB units) the entry points to. */
  pfn: number;
}

/** decodePte - the fields of entry @pte found at @level. */
export function decodePte(pte: bigint, level: number): PteInfo {
  const lo = Number(pte & 0xffffffffn);
  const huge = level > 1 && level <= 3 && (lo & X.PTE_PS) !== 0;
  const patBit = huge ? (lo & X.PTE_PAT_LARGE) !== 0 : (lo & X.PTE_PAT_4K) !== 0 && level === 1;
  const idx = (lo & X.PTE_PWT ? 1 : 0) | (lo & X.PTE_PCD ? 2 : 0) | (patBit ? 4 : 0);
  let pfn = Number((pte >> 12n) & 0xffffffffffn);
  if (huge) pfn -= pfn % 2; // bit 12 is PAT in a large leaf
  return {
    present: (lo & X.PTE_P) !== 0,
    write: (lo & X.PTE_RW) !== 0,
    user: (lo & X.PTE_US) !== 0,
    accessed: (lo & X.PTE_A) !== 0,
    dirty: (lo & X.PTE_D) !== 0,
    huge,
    global: (lo & X.PTE_G) !== 0,
    nx: (pte >> BigInt(X.PTE_BIT_NX)) & 1n ? true : false,
    pkey: Number((pte >> BigInt(X.PTE_BIT_PKEY)) & 0xfn),
    special: (lo & X.PTE_SOFTW1) !== 0,
    cache: PAT_MODE[idx]!,
    pfn,
  };
}
