/**
 * Reference model: zones, struct frame fields and the buddy allocator, in plain TypeScript.
 * The twin of assembly/phys/{buddy,frame,pool}.ts. Free lists are arrays whose last element
 * is the list head, so push/pop are the core's head insert/remove and removing a buddy keeps
 * the others' order.
 */
import * as F from "../../src/abi/frame.js";
import * as E from "../../src/abi/errno.js";
import * as R from "../../src/abi/reason.js";
import type { MachineConfig } from "../../src/config.js";

export interface RefZone {
  start: number;
  end: number;
  kind: number;
  nrFree: number;
  lists: number[][]; // per order; last = head
}

export class RefFailure {
  constructor(
    readonly errno: number,
    readonly reason: number,
    readonly arg: number,
  ) {}
}

export function fail(errno: number, reason: number, arg = 0): never {
  throw new RefFailure(errno, reason, arg);
}

export class RefPhys {
  readonly nrFrames: number;
  readonly flags: Uint32Array;
  readonly refcount: Int32Array;
  readonly mapcount: Int32Array;
  readonly mapping: Uint32Array;
  readonly index: Uint32Array;
  readonly backed: Uint8Array;
  readonly zones: RefZone[] = [];
  poolUsed = 0;
  readonly poolMax: number;

  constructor(cfg: MachineConfig) {
    this.nrFrames = cfg.nrFrames;
    this.flags = new Uint32Array(cfg.nrFrames);
    this.refcount = new Int32Array(cfg.nrFrames);
    this.mapcount = new Int32Array(cfg.nrFrames);
    this.mapping = new Uint32Array(cfg.nrFrames);
    this.index = new Uint32Array(cfg.nrFrames);
    this.backed = new Uint8Array(cfg.nrFrames);
    this.poolMax = cfg.backingMaxSlots;
    for (const z of cfg.zones) {
      const zone: RefZone = {
        start: z.startPfn,
        end: z.startPfn + z.pages,
        kind: z.kind,
        nrFree: 0,
        lists: Array.from({ length: F.NR_ORDERS }, () => []),
      };
      this.zones.push(zone);
      let lo = zone.start;
      for (; lo < zone.end && lo < F.RESERVED_LOW_PFNS; lo++) {
        this.flags[lo] = F.PG_reserved;
        this.refcount[lo] = 1;
      }
      // Maximal aligned blocks, freed from the top down (lowest block ends at the head).
      for (let hi = zone.end; hi > lo; ) {
        let o = F.MAX_ORDER;
        while (o > 0 && (hi % 2 ** o !== 0 || hi - lo < 2 ** o)) o--;
        hi -= 2 ** o;
        this.#add(zone, o, hi);
        zone.nrFree += 2 ** o;
      }
    }
  }

  #add(z: RefZone, order: number, pfn: number): void {
    z.lists[order]!.push(pfn);
    this.flags[pfn] = F.PG_buddy | (order << F.FLAGS_ORDER_SHIFT);
  }

  #del(z: RefZone, order: number, pfn: number): void {
    const list = z.lists[order]!;
    list.splice(list.lastIndexOf(pfn), 1);
    this.flags[pfn] = 0;
    this.refcount[pfn] = 0;
    this.mapcount[pfn] = 0;
    this.mapping[pfn] = 0;
    this.index[pfn] = 0;
  }

  zoneOf(pfn: number): RefZone | undefined {
    return this.zones.find((z) => pfn >= z.start && pfn < z.end);
  }

  #rmqueue(z: RefZone, order: number): number {
    for (let k = order; k <= F.MAX_ORDER; k++) {
      const list = z.lists[k]!;
      if (list.length === 0) continue;
      const pfn = list[list.length - 1]!;
      this.#del(z, k, pfn);
      while (k > order) {
        k--;
        this.#add(z, k, pfn + 2 ** k);
      }
      z.nrFree -= 2 ** order;
      return pfn;
    }
    return -1;
  }

  /** alloc_pages over a nibble zonelist, as the core's allocPages export. */
  allocPages(zonelist: number, order: number, flags: number): number {
    if (order > F.MAX_ORDER) fail(E.EINVAL, R.R_ORDER, order);
    if (flags & ~1) fail(E.EINVAL, R.R_FLAGS, flags);
    if ((zonelist & 0xf) === F.ZONELIST_END) fail(E.EINVAL, R.R_ZONE, zonelist);
    for (let zl = zonelist; (zl & 0xf) !== F.ZONELIST_END; zl >>>= 4) {
      if ((zl & 0xf) >= this.zones.length) fail(E.EINVAL, R.R_ZONE, zl & 0xf);
    }
    let pfn = -1;
    for (let zl = zonelist; (zl & 0xf) !== F.ZONELIST_END && pfn < 0; zl >>>= 4) {
      pfn = this.#rmqueue(this.zones[zl & 0xf]!, order);
    }
    if (pfn < 0) fail(E.ENOMEM, R.R_NO_FRAMES, 2 ** order);
    if (flags & 1 && order > 0) {
      this.flags[pfn] = F.PG_head | (order << F.FLAGS_ORDER_SHIFT);
      for (let i = 1; i < 2 ** order; i++) {
        this.flags[pfn + i] = F.PG_tail;
        this.mapping[pfn + i] = pfn;
      }
    } else {
      this.flags[pfn] = order << F.FLAGS_ORDER_SHIFT;
    }
    this.refcount[pfn] = 1;
    return pfn;
  }

  freeBlock(pfn: number, order: number): void {
    for (let i = 0; i < 2 ** order; i++) {
      const p = pfn + i;
      if (this.backed[p]) this.poolUsed--;
      this.backed[p] = 0;
      this.flags[p] = 0;
      this.refcount[p] = 0;
      this.mapcount[p] = 0;
      this.mapping[p] = 0;
      this.index[p] = 0;
    }
    const z = this.zoneOf(pfn)!;
    z.nrFree += 2 ** order;
    while (order < F.MAX_ORDER) {
      const buddy = pfn ^ (2 ** order);
      if (buddy < z.start || buddy >= z.end) break;
      const bf = this.flags[buddy]!;
      if (!(bf & F.PG_buddy) || ((bf >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK) !== order) break;
      this.#del(z, order, buddy);
      pfn = Math.min(pfn, buddy);
      order++;
    }
    this.#add(z, order, pfn);
  }

  /** __free_pages, as the core's freePages export: 1 freed, 0 still referenced. */
  freePages(pfn: number, order: number): number {
    if (!(pfn >= 0) || pfn >= this.nrFrames || !this.zoneOf(pfn)) fail(E.EINVAL, R.R_PFN_NOT_RAM);
    const f = this.flags[pfn]!;
    if (f & (F.PG_buddy | F.PG_tail | F.PG_reserved | F.PG_pgtable)) fail(E.EINVAL, R.R_NOT_ALLOCATED, f);
    if (this.refcount[pfn]! <= 0) fail(E.EINVAL, R.R_NOT_ALLOCATED, f);
    const have = (f >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK;
    if (order > F.MAX_ORDER || have !== order) fail(E.EINVAL, R.R_ORDER, have);
    if (--this.refcount[pfn]! !== 0) return 0;
    this.freeBlock(pfn, order);
    return 1;
  }

  /**
   * split_page, as the core's splitPage export: the non-compound allocation of 2^@order frames
   * at @pfn becomes that many order-0 allocations, each with refcount 1. Returns 0, or fails
   * EINVAL (R_PFN_NOT_RAM, R_NOT_ALLOCATED, R_ORDER) with nothing changed.
   */
  splitPage(pfn: number, order: number): number {
    if (!(pfn >= 0) || pfn !== Math.floor(pfn) || pfn >= this.nrFrames || !this.zoneOf(pfn)) fail(E.EINVAL, R.R_PFN_NOT_RAM);
    const f = this.flags[pfn]!;
    if (f & (F.PG_buddy | F.PG_head | F.PG_tail | F.PG_reserved | F.PG_pgtable)) fail(E.EINVAL, R.R_NOT_ALLOCATED, f);
    if (this.refcount[pfn]! <= 0) fail(E.EINVAL, R.R_NOT_ALLOCATED, f);
    const have = (f >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK;
    if (order > F.MAX_ORDER || have !== order) fail(E.EINVAL, R.R_ORDER, have);
    this.flags[pfn] = f & ~(F.FLAGS_ORDER_MASK << F.FLAGS_ORDER_SHIFT);
    for (let i = 1; i < 2 ** order; i++) this.refcount[pfn + i] = 1;
    return 0;
  }

  /** A NORMAL frame for a page table, or -1. */
  allocTablePage(): number {
    for (const z of this.zones) {
      if (z.kind !== F.ZONE_NORMAL) continue;
      const pfn = this.#rmqueue(z, 0);
      if (pfn >= 0) return pfn;
    }
    return -1;
  }

  tablePagesAvailable(): number {
    return this.zones.filter((z) => z.kind === F.ZONE_NORMAL).reduce((n, z) => n + z.nrFree, 0);
  }

  poolAvailable(): number {
    return this.poolMax - this.poolUsed;
  }
}
