/**
 * Physical memory: the buddy allocator's calls (alloc_pages, __free_pages), zone state in
 * the shape of /proc/buddyinfo, and reading and writing frames by physical address.
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import { DmaError, einval } from "../errors.js";
import type { Core } from "../core/core.js";
import type { Clock } from "../sim/clock.js";
import type { Trace } from "../trace/trace.js";
import { ZONE_NAMES, type ZoneName } from "./page.js";

/** Allocation context, as GFP flags pick zones: KERNEL = NORMAL only; HIGHUSER_MOVABLE
 * prefers MOVABLE, then NORMAL, then CMA. */
export type Gfp = "KERNEL" | "HIGHUSER_MOVABLE";

export interface AllocOptions {
  gfp?: Gfp;
  /** Allocate from this zone only. */
  zone?: ZoneName;
  /** Make a compound page (folio): PG_head on the first frame, PG_tail on the rest. */
  compound?: boolean;
}

export interface ZoneInfo {
  index: number;
  name: ZoneName;
  startPfn: number;
  endPfn: number;
  nrFree: number;
  /** Free blocks per order 0..MAX_ORDER, as /proc/buddyinfo prints them. */
  freeBlocks: number[];
}

export class Phys {
  readonly #core: Core;
  readonly #clock: Clock;
  readonly #trace: Trace;
  /** Zone names and pfn ranges: fixed at boot. */
  readonly #ranges: { name: ZoneName; startPfn: number; endPfn: number }[];

  constructor(core: Core, clock: Clock, trace: Trace) {
    this.#core = core;
    this.#clock = clock;
    this.#trace = trace;
    this.#ranges = this.zones().map(({ name, startPfn, endPfn }) => ({ name, startPfn, endPfn }));
  }

  /** The zones, in physical order. */
  zones(): ZoneInfo[] {
    const c = this.#core;
    const base = c.hdr(H.HDR_ZONES_BASE);
    const out: ZoneInfo[] = [];
    for (let i = 0; i < c.hdr(H.HDR_NR_ZONES); i++) {
      const w = (base + i * H.ZONE_SIZE) >>> 2;
      const freeBlocks: number[] = [];
      for (let o = 0; o < F.NR_ORDERS; o++) freeBlocks.push(c.u32[w + H.ZONE_NR_BLOCKS / 4 + o]!);
      out.push({
        index: i,
        name: ZONE_NAMES[c.u32[w + H.ZONE_KIND / 4]!]!,
        startPfn: c.u32[w + H.ZONE_START / 4]!,
        endPfn: c.u32[w + H.ZONE_END / 4]!,
        nrFree: c.u32[w + H.ZONE_NR_FREE / 4]!,
        freeBlocks,
      });
    }
    return out;
  }

  /** zoneOf - the name of the zone holding @pfn, or null. */
  zoneOf(pfn: number): ZoneName | null {
    for (const z of this.#ranges) if (pfn >= z.startPfn && pfn < z.endPfn) return z.name;
    return null;
  }

  #zonelist(opts: AllocOptions): number {
    const zones = this.#ranges.map((z, index) => ({ ...z, index }));
    let names: ZoneName[];
    if (opts.zone !== undefined) {
      if (!zones.some((z) => z.name === opts.zone)) {
        throw einval("zone", `this machine has no ${String(opts.zone)} zone`);
      }
      names = [opts.zone];
    } else if ((opts.gfp ?? "KERNEL") === "KERNEL") {
      names = ["NORMAL"];
    } else if (opts.gfp === "HIGHUSER_MOVABLE") {
      names = ["MOVABLE", "NORMAL", "CMA"];
    } else {
      throw einval("gfp", `unknown GFP context ${String(opts.gfp)}`);
    }
    let list = 0;
    let shift = 0;
    for (const name of names) {
      const z = zones.find((zz) => zz.name === name);
      if (!z) continue;
      list |= z.index << shift;
      shift += 4;
    }
    return (list | (F.ZONELIST_END << shift)) >>> 0;
  }

  /**
   * allocPages - alloc_pages(): 2^@order contiguous frames, refcount 1 on the first.
   * Returns the first pfn. Throws ENOMEM when no zone of the context has such a block,
   * EINVAL for a bad order, zone or context; nothing changes on failure.
   */
  allocPages(order = 0, opts: AllocOptions = {}): number {
    if (!Number.isInteger(order) || order < 0 || order > F.MAX_ORDER) {
      throw einval("order", `${order} is not 0..${F.MAX_ORDER}`);
    }
    const flags = opts.compound ? H.ALLOC_COMPOUND : 0;
    const pfn = this.#core.check(this.#core.x.allocPages(this.#zonelist(opts), order, flags), "allocPages");
    const zone = this.zoneOf(pfn) ?? "?";
    this.#trace.emit("phys.alloc", { pfn, order, zone }, this.#clock.now);
    this.#trace.count("phys.alloc");
    return pfn;
  }

  /**
   * freePages - __free_pages(): drop the allocation's reference to 2^@order frames at @pfn
   * and free them when it was the last. Returns whether the block was freed.
   * Throws EINVAL for a frame that is not the first of an allocation of that order.
   */
  freePages(pfn: number, order = 0): boolean {
    if (!Number.isSafeInteger(pfn) || pfn < 0) throw einval("pfn", `${pfn} is not a frame number`);
    const freed = this.#core.check(this.#core.x.freePages(pfn, order), "freePages") === 1;
    this.#trace.emit("phys.free", { pfn, order, freed }, this.#clock.now);
    this.#trace.count("phys.free");
    return freed;
  }

  /**
   * splitPage - split_page(): the non-compound allocation of 2^@order frames at @pfn becomes
   * that many order-0 allocations, each with its own reference (freed one by one). EINVAL
   * when @pfn is not the first frame of such an allocation; nothing changes then.
   */
  splitPage(pfn: number, order: number): void {
    if (!Number.isSafeInteger(pfn) || pfn < 0) throw einval("pfn", `${pfn} is not a frame number`);
    if (!Number.isInteger(order) || order < 0 || order > F.MAX_ORDER) throw einval("order", `${order} is not 0..${F.MAX_ORDER}`);
    this.#core.check(this.#core.x.splitPage(pfn, order), "splitPage");
  }

  /** nrFreePages - free frames in @zone, or in all zones. */
  nrFreePages(zone?: ZoneName): number {
    if (zone === undefined) return this.#core.x.nrFreePages(-1);
    const z = this.zones().find((zz) => zz.name === zone);
    if (!z) throw einval("zone", `this machine has no ${zone} zone`);
    return z.nrFree;
  }

  /** Backing pool use: slots hold the bytes of page tables and written frames. */
  backing(): { slotsUsed: number; slotsMax: number; bytesUsed: number } {
    const c = this.#core;
    const used = c.hdr(H.HDR_POOL_USED);
    return { slotsUsed: used, slotsMax: c.hdr(H.HDR_POOL_MAX_SLOTS), bytesUsed: used * 4096 };
  }

  /** Walk [pa, pa + length) frame by frame: (pfn, offset in frame, offset in buffer, bytes). */
  #chunks(pa: number, length: number, fn: (pfn: number, off: number, at: number, n: number) => void): void {
    if (!Number.isSafeInteger(pa) || pa < 0) throw einval("pa", `${pa} is not a physical address`);
    if (!Number.isSafeInteger(length) || length < 0) throw einval("length", `${length} is not a length`);
    const nrFrames = this.#core.hdr(H.HDR_NR_FRAMES);
    if (pa + length > nrFrames * 4096) {
      throw einval("pa", `[0x${pa.toString(16)}, +${length}) runs past the machine's memory`);
    }
    for (let at = 0; at < length; ) {
      const pfn = Math.floor((pa + at) / 4096);
      const off = (pa + at) % 4096;
      const n = Math.min(4096 - off, length - at);
      fn(pfn, off, at, n);
      at += n;
    }
  }

  /** read - @length bytes of physical memory at @pa (frames never written read as zeros). */
  read(pa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.#chunks(pa, length, (pfn, off, at, n) => {
      const addr = this.#core.check(this.#core.x.frameBytes(pfn, 0), "read");
      if (addr !== 0) out.set(this.#core.u8.subarray(addr + off, addr + off + n), at);
    });
    return out;
  }

  /** write - store @bytes at physical address @pa, giving frames backing as needed. */
  write(pa: number, bytes: Uint8Array): void {
    const c = this.#core;
    this.#chunks(pa, bytes.length, (pfn) => c.check(c.x.frameBytes(pfn, 0), "write"));
    const need = this.#newBacking(pa, bytes.length);
    if (need > c.x.poolAvailable()) {
      throw new DmaError("ENOMEM", `write: backing pool exhausted (${need} slots needed)`, { arg: "backing" });
    }
    this.#chunks(pa, bytes.length, (pfn, off, at, n) => {
      const addr = c.check(c.x.frameBytes(pfn, 1), "write");
      c.u8.set(bytes.subarray(at, at + n), addr + off);
    });
  }

  #newBacking(pa: number, length: number): number {
    let n = 0;
    this.#chunks(pa, length, (pfn) => {
      if (this.#core.x.frameBytes(pfn, 0) === 0) n++;
    });
    return n;
  }
}
