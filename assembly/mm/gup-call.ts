/**
 * The GUP call in progress (assembly/mm/gup.ts gupRange): its flags, counts and output, and
 * the small helpers every part of the walk uses. One call at a time per thread.
 */
import {
  FOLL_WRITE, FOLL_GET, FOLL_PIN, FOLL_LONGTERM, FOLL_PCI_P2PDMA, FOLL_FORCE, FOLL_TOUCH,
  FOLL_NOFAULT, GUPM_LOCKED, GUPM_FORCE_WRITE_OK, GUPM_COW_VMA, GUPM_RACE, GUP_STOP_NONE,
} from "../../src/abi/gup";
import { HDR_ADDR, HDR_ZERO_PFN, ZONE_KIND, ZONE_START, ZONE_END } from "../../src/abi/header";
import { FRAME_SIZE, FRAME_BACKING, ZONE_NORMAL, ZONE_P2PDMA } from "../../src/abi/frame";
import { PTE_SOFTW1, PTE_BIT_PKEY } from "../../src/abi/x86";
import { FRAMES, POOL, NR_ZONES } from "../layout";
import { pfnToZone, zone } from "../phys/frame";
import { P, RW, US, PKEY_MASK } from "../mmu/pte";

export const SPECIAL: u64 = PTE_SOFTW1;
export const NONE: u32 = 0xffff_ffff;
export const ALLOWED: u32 =
  FOLL_WRITE | FOLL_GET | FOLL_PIN | FOLL_LONGTERM | FOLL_PCI_P2PDMA | FOLL_FORCE | FOLL_TOUCH |
  FOLL_NOFAULT | GUPM_LOCKED | GUPM_FORCE_WRITE_OK | GUPM_COW_VMA | GUPM_RACE;

/* The call in progress. */
export let fl: u32 = 0;
export let pkru: u32 = 0;
export let rootPfn: u32 = 0;
export let taken: u32 = 0;
export let stopWhy: u32 = 0; // GUP_STOP_NONE
export let grabs: u32 = 0;
export let loads: u32 = 0;
export let unpinnable: u32 = 0;
export let hugePages: u32 = 0;
/** NR_FOLL_PIN_ACQUIRED of this call, added to the shared counter once at its end. */
export let pinAcquired: i64 = 0;
export let out: usize = 0;
/* Race script (tests). */
export let races: u32 = 0;
export let raceBase: usize = 0;

/* The P2PDMA frames this call must refuse (none with FOLL_PCI_P2PDMA): [p2pLo, p2pLo + p2pSpan). */
export let p2pLo: u32 = 0;
export let p2pSpan: u32 = 0;

/** p2pdmaRefusedSet - the frames a call with @flags refuses: the P2PDMA zone, unless FOLL_PCI_P2PDMA. */
export function p2pdmaRefusedSet(flags: u32): void {
  p2pLo = 0;
  p2pSpan = 0;
  if (flags & FOLL_PCI_P2PDMA) return;
  for (let z: u32 = 0; z < NR_ZONES; z++) {
    const zp = zone(z);
    if (load<u32>(zp + ZONE_KIND) != <u32>ZONE_P2PDMA) continue;
    p2pLo = load<u32>(zp + ZONE_START);
    p2pSpan = load<u32>(zp + ZONE_END) - p2pLo;
  }
}

/** is_pci_p2pdma_page(@pfn) && !(flags & FOLL_PCI_P2PDMA): try_grab_folio refuses the page. */
// @ts-ignore: decorator
@inline export function p2pdmaRefused(pfn: u32): bool {
  return pfn - p2pLo < p2pSpan;
}

/** zoneKindOf - ZONE_* of the zone holding @pfn, or -1 for a frame outside every zone. */
// @ts-ignore: decorator
@inline export function zoneKindOf(pfn: u32): i32 {
  const z = pfnToZone(pfn);
  return z < 0 ? -1 : <i32>load<u32>(zone(<u32>z) + ZONE_KIND);
}

/** folio_is_longterm_pinnable: not in MOVABLE, CMA or device memory. The zero page is. */
// @ts-ignore: decorator
@inline export function longtermPinnable(pfn: u32): bool {
  const k = zoneKindOf(pfn);
  return k == ZONE_NORMAL || pfn == load<u32>(HDR_ADDR + HDR_ZERO_PFN);
}

/** pte_access_permitted: present, user, writable for a write, and the protection key allows it. */
// @ts-ignore: decorator
@inline export function accessPermitted(e: u64, write: bool, pk: u32): bool {
  if ((e & (P | US)) != (P | US)) return false;
  if (write && (e & RW) == 0) return false;
  const bits = (pk >> (2 * <u32>((e & PKEY_MASK) >> PTE_BIT_PKEY))) & 3;
  return (bits & 1) == 0 && !(write && (bits & 2) != 0);
}

// @ts-ignore: decorator
@inline export function tableBytes(t: u32): usize {
  return POOL - 4096 + (<usize>load<u32>(FRAMES + <usize>t * FRAME_SIZE + FRAME_BACKING) << 12);
}

/** Record page @pfn as taken. */
// @ts-ignore: decorator
@inline export function emit(pfn: u32): void {
  store<f64>(out + (<usize>taken << 3), <f64>pfn);
  taken++;
}

/**
 * ptesEnd - the end of a PTE loop that kept the call's counts in locals: store @n taken and
 * @g grabs back, count the @read entries read (and the one that stopped the loop, if @why
 * says it stopped). False if it stopped.
 */
// @ts-ignore: decorator
@inline export function ptesEnd(n: u32, g: u32, read: u32, why: u32): bool {
  taken = n;
  grabs = g;
  loads += read + (why != GUP_STOP_NONE ? 1 : 0);
  if (why == GUP_STOP_NONE) return true;
  stopWhy = why;
  return false;
}

// @ts-ignore: decorator
@inline export function stop(why: u32): bool {
  stopWhy = why;
  return false;
}

