/**
 * One interface over the core and the reference model, so a test (or a benchmark) runs the
 * same operations on both and compares results: the conformance pattern of hono's
 * runTest({newRouter}). Every result carries rc (>= 0, or -errno) and, on failure, the
 * reason and its detail word.
 */
import * as F from "../../src/abi/frame.js";
import * as H from "../../src/abi/header.js";
import type { MachineConfig } from "../../src/config.js";
import type { Core } from "../../src/core/core.js";
import { bootCore } from "../../src/machine.js";
import * as G from "../../src/abi/gup.js";
import type { Race } from "./gup.js";

export interface Result {
  rc: number;
  reason?: number;
  arg?: number;
  [more: string]: unknown;
}

export type Req = [vaLo: number, vaHi: number, acc: number];

export interface MachineState {
  zones: { nrFree: number; lists: number[][] }[];
  frames: string[];
  tables: Record<number, number[]>;
  cpus: { cr3: number; pcid: number; ctrl: number; pkru: number; tick: number; live: number[]; tlb: string[] }[];
  poolUsed: number;
  /** nr_foll_pin_acquired, nr_foll_pin_released. */
  pins: [number, number];
}

export interface Driver {
  allocPages(zonelist: number, order: number, flags: number): Result;
  freePages(pfn: number, order: number): Result;
  /** split_page (the core's splitPage export). */
  splitPage(pfn: number, order: number): Result;
  pgdAlloc(): Result;
  pgdFree(root: number): Result;
  ptMap(root: number, vpn: number, n: number, pfn: number, lo: number, hi: number, level: number): Result;
  ptUnmap(root: number, vpn: number, n: number, cap: number): Result;
  ptProtect(root: number, vpn: number, n: number, sLo: number, sHi: number, cLo: number, cHi: number): Result;
  ptepGet(root: number, vpn: number, level: number): Result;
  /** ptepRange: [lo, hi, level] of each page, flattened. */
  ptepRange(root: number, vpn: number, n: number): Result;
  ptepSet(root: number, vpn: number, level: number, lo: number, hi: number): Result;
  cpuWriteCr3(cpu: number, root: number, pcid: number, noflush: boolean): Result;
  cpuSetCtrl(cpu: number, ctrl: number): Result;
  cpuWrpkru(cpu: number, pkru: number): Result;
  tlbFlushRange(cpu: number, vpn: number, n: number): Result;
  tlbInvpcid(cpu: number, type: number, pcid: number, vpn: number): Result;
  tlbFlushPcidRange(cpu: number, pcid: number, vpn: number, n: number): Result;
  translate(cpu: number, reqs: Req[], flags: number): Result;
  /** The shared zero page (the kernel's HDR_ZERO_PFN). */
  setZeroPfn(pfn: number): void;
  /** Set then clear PG_* bits of @pfn (the core's pageFlags export). */
  pageFlags(pfn: number, set: number, clear: number): Result;
  /** One step of @root's write_protect_seq (fork begins or ends write-protecting). */
  seqStep(root: number): void;
  /** The reference count of frame @pfn (0 once its block went back to the allocator). */
  refcount(pfn: number): number;
  /** @kheapAt: >= 0 to have the pages written at that byte offset of the kernel heap instead of the ring. */
  gupRange(root: number, vpn: number, n: number, flags: number, pkru: number, races: Race[], kheapAt?: number): Result;
  /** unpinPages over @entries (f64 frame numbers, written to the ring as they are). */
  unpinPages(entries: number[], flags: number): Result;
  state(): MachineState;
}

/* ---------------- the core ---------------- */

export class CoreDriver implements Driver {
  readonly core: Core;
  readonly cfg: MachineConfig;

  constructor(core: Core, cfg: MachineConfig) {
    this.core = core;
    this.cfg = cfg;
  }

  static async create(cfg: MachineConfig): Promise<CoreDriver> {
    return new CoreDriver((await bootCore(cfg)).core, cfg);
  }

  #r(rc: number, more: Record<string, unknown> = {}): Result {
    if (rc < 0) return { rc, reason: this.core.x.coreReason(), arg: this.core.x.coreReasonArg() };
    return { rc, ...more };
  }

  allocPages(zl: number, order: number, flags: number): Result {
    return this.#r(this.core.x.allocPages(zl, order, flags));
  }
  freePages(pfn: number, order: number): Result {
    return this.#r(this.core.x.freePages(pfn, order));
  }
  splitPage(pfn: number, order: number): Result {
    return this.#r(this.core.x.splitPage(pfn, order));
  }
  pgdAlloc(): Result {
    return this.#r(this.core.x.pgdAlloc());
  }
  pgdFree(root: number): Result {
    return this.#r(this.core.x.pgdFree(root));
  }
  ptMap(root: number, vpn: number, n: number, pfn: number, lo: number, hi: number, level: number): Result {
    const rc = this.core.x.ptMap(root, vpn, n, pfn, lo, hi, level);
    return this.#r(rc, rc >= 0 ? { tables: this.core.reg32(H.REG_TABLES) } : {});
  }
  ptUnmap(root: number, vpn: number, n: number, cap: number): Result {
    const c = this.core;
    const rc = c.x.ptUnmap(root, vpn, n, cap);
    if (rc < 0) return this.#r(rc);
    const records: number[][] = [];
    for (let i = 0; i < (cap ? rc : 0); i++) {
      const e = c.entry(i);
      records.push([
        c.u32[(e + H.LEAF_PTE) >>> 2]!, c.u32[(e + H.LEAF_PTE + 4) >>> 2]!,
        c.f64[(e + H.LEAF_VPN) >>> 3]!, c.u32[(e + H.LEAF_LEVEL) >>> 2]!,
      ]);
    }
    return this.#r(rc, {
      records, resume: c.regF64(H.REG_RESUME), pages: c.regF64(H.REG_PAGES), tables: c.reg32(H.REG_TABLES),
    });
  }
  ptProtect(root: number, vpn: number, n: number, sLo: number, sHi: number, cLo: number, cHi: number): Result {
    const c = this.core;
    const rc = c.x.ptProtect(root, vpn, n, sLo, sHi, cLo, cHi);
    return this.#r(rc, rc >= 0 ? { pages: c.regF64(H.REG_PAGES), tables: c.reg32(H.REG_TABLES) } : {});
  }
  ptepGet(root: number, vpn: number, level: number): Result {
    const c = this.core;
    const rc = c.x.ptepGet(root, vpn, level);
    return this.#r(rc, rc >= 0 ? { lo: c.reg32(H.REG_PTE_LO), hi: c.reg32(H.REG_PTE_HI) } : {});
  }
  ptepSet(root: number, vpn: number, level: number, lo: number, hi: number): Result {
    return this.#r(this.core.x.ptepSet(root, vpn, level, lo, hi));
  }
  ptepRange(root: number, vpn: number, n: number): Result {
    const c = this.core;
    const rc = c.x.ptepRange(root, vpn, n);
    return this.#r(rc, rc >= 0 ? { entries: Array.from(c.u32.subarray((c.ring + H.RING_ENTRY0) >>> 2, ((c.ring + H.RING_ENTRY0) >>> 2) + 3 * rc)) } : {});
  }
  cpuWriteCr3(cpu: number, root: number, pcid: number, noflush: boolean): Result {
    return this.#r(this.core.x.cpuWriteCr3(cpu, root, pcid, noflush ? 1 : 0));
  }
  cpuSetCtrl(cpu: number, ctrl: number): Result {
    return this.#r(this.core.x.cpuSetCtrl(cpu, ctrl));
  }
  cpuWrpkru(cpu: number, pkru: number): Result {
    return this.#r(this.core.x.cpuWrpkru(cpu, pkru));
  }
  tlbFlushRange(cpu: number, vpn: number, n: number): Result {
    return this.#r(this.core.x.tlbFlushRange(cpu, vpn, n));
  }
  tlbInvpcid(cpu: number, type: number, pcid: number, vpn: number): Result {
    return this.#r(this.core.x.tlbInvpcid(cpu, type, pcid, vpn));
  }
  tlbFlushPcidRange(cpu: number, pcid: number, vpn: number, n: number): Result {
    return this.#r(this.core.x.tlbFlushPcidRange(cpu, pcid, vpn, n));
  }
  translate(cpu: number, reqs: Req[], flags: number): Result {
    const c = this.core;
    reqs.forEach(([lo, hi, acc], i) => {
      const e = c.entry(i) >>> 2;
      c.u32[e] = lo;
      c.u32[e + 1] = hi;
      c.u32[e + H.TREQ_ACCESS / 4] = acc;
    });
    const rc = c.x.translateBatch(cpu, 0, reqs.length, flags);
    if (rc < 0) return this.#r(rc);
    const out = reqs.slice(0, rc).map((_, i) => {
      const e = c.entry(i);
      const st = c.i32[(e + H.TREQ_STATUS) >>> 2]!;
      const pa = st >= 0 && st < 0x10000 ? c.u32[(e + H.TREQ_PA + 4) >>> 2]! * 2 ** 32 + c.u32[(e + H.TREQ_PA) >>> 2]! : NaN;
      return [st, pa];
    });
    const stats = {
      hits: c.reg32(H.REG_HITS), misses: c.reg32(H.REG_MISSES), walks: c.reg32(H.REG_WALKS),
      loads: c.reg32(H.REG_LOADS), faults: c.reg32(H.REG_FAULTS), spurious: c.reg32(H.REG_SPURIOUS),
    };
    return { rc, out, stats };
  }

  setZeroPfn(pfn: number): void {
    this.core.setHdr(H.HDR_ZERO_PFN, pfn);
  }
  pageFlags(pfn: number, set: number, clear: number): Result {
    return this.#r(this.core.x.pageFlags(pfn, set, clear));
  }
  refcount(pfn: number): number {
    const c = this.core;
    return c.i32[(c.hdr(H.HDR_FRAMES_BASE) + pfn * F.FRAME_SIZE + F.FRAME_REFCOUNT) >>> 2]!;
  }
  seqStep(root: number): void {
    const c = this.core;
    Atomics.add(c.i32, (c.hdr(H.HDR_FRAMES_BASE) + root * F.FRAME_SIZE + F.FRAME_MAPCOUNT) >>> 2, 1);
  }
  gupRange(root: number, vpn: number, n: number, flags: number, pkru: number, races: Race[], kheapAt = -1): Result {
    const c = this.core;
    const base = c.ring + H.RING_ENTRY0 + this.cfg.ringEntries * H.RENT_SIZE - G.RACE_BASE;
    c.u32[base >>> 2] = races.length;
    races.forEach((r, i) => {
      const a = base + G.RACE_RECORDS + i * G.RACE_SIZE;
      c.u32[(a + G.RACE_AT) >>> 2] = r.at;
      c.u32[(a + G.RACE_PHASE) >>> 2] = r.phase;
      c.f64[(a + G.RACE_VPN) >>> 3] = r.vpn;
      c.u32[(a + G.RACE_LEVEL) >>> 2] = r.level;
      c.u32[(a + G.RACE_PUT) >>> 2] = r.put ? 1 : 0;
      c.u32[(a + G.RACE_PTE_LO) >>> 2] = r.lo;
      c.u32[(a + G.RACE_PTE_HI) >>> 2] = r.hi;
      c.u32[(a + G.RACE_SEQ) >>> 2] = r.seq;
    });
    const out = kheapAt >= 0 ? c.hdr(H.HDR_KHEAP_BASE) + kheapAt : 0;
    const rc = c.x.gupRange(root, vpn, n, flags, pkru, out);
    if (rc < 0) return this.#r(rc);
    const first = (out || c.ring + H.RING_ENTRY0) >>> 3;
    return {
      rc, pfns: Array.from(c.f64.subarray(first, first + rc)), stop: c.reg32(G.REG_GUP_STOP), grabs: c.reg32(G.REG_GUP_GRABS),
      hugePages: c.reg32(G.REG_GUP_HUGE_PAGES), loads: c.reg32(G.REG_GUP_LOADS), unpinnable: c.reg32(G.REG_GUP_UNPINNABLE),
    };
  }
  unpinPages(entries: number[], flags: number): Result {
    const c = this.core;
    const first = (c.ring + H.RING_ENTRY0) >>> 3;
    entries.forEach((v, i) => (c.f64[first + i] = v));
    const rc = c.x.unpinPages(entries.length, flags);
    if (rc < 0) return this.#r(rc);
    return { rc, freed: c.reg32(H.REG_FREED), folios: c.reg32(G.REG_GUP_GRABS), dirtied: c.reg32(G.REG_GUP_DIRTIED) };
  }

  state(): MachineState {
    const c = this.core;
    const u32 = c.u32;
    const frames = c.hdr(H.HDR_FRAMES_BASE);
    const rec = (pfn: number, f: number) => u32[(frames + pfn * F.FRAME_SIZE + f) >>> 2]!;
    const zones = [];
    for (let z = 0; z < c.hdr(H.HDR_NR_ZONES); z++) {
      const zb = c.hdr(H.HDR_ZONES_BASE) + z * H.ZONE_SIZE;
      const lists: number[][] = [];
      for (let o = 0; o < F.NR_ORDERS; o++) {
        const list: number[] = [];
        for (let p = u32[(zb + H.ZONE_FREE_HEAD + 4 * o) >>> 2]!; p !== F.PFN_NONE >>> 0; p = rec(p, F.FRAME_MAPPING)) {
          list.push(p);
        }
        lists.push(list);
      }
      zones.push({ nrFree: u32[(zb + H.ZONE_NR_FREE) >>> 2]!, lists });
    }
    const frameList: string[] = [];
    const tables: Record<number, number[]> = {};
    for (let pfn = 0; pfn < this.cfg.nrFrames; pfn++) {
      const flags = rec(pfn, F.FRAME_FLAGS);
      const buddy = (flags & F.PG_buddy) !== 0;
      const backing = rec(pfn, F.FRAME_BACKING);
      frameList.push(frameString(pfn, flags, rec(pfn, F.FRAME_REFCOUNT) | 0, rec(pfn, F.FRAME_MAPCOUNT) | 0, buddy ? 0 : rec(pfn, F.FRAME_MAPPING), buddy ? 0 : rec(pfn, F.FRAME_INDEX), backing !== 0));
      if (flags & F.PG_pgtable) {
        const base = c.hdr(H.HDR_POOL_BASE) + (backing - 1) * 4096;
        tables[pfn] = Array.from(u32.subarray(base >>> 2, (base >>> 2) + 1024));
      }
    }
    const cpus = [];
    const sets = this.cfg.tlb.sets;
    const ways = this.cfg.tlb.ways;
    for (let i = 0; i < this.cfg.cpus; i++) {
      const cb = (c.hdr(H.HDR_CPUS_BASE) + i * H.CPU_SIZE) >>> 2;
      const tb = c.hdr(H.HDR_TLB_BASE) + i * c.hdr(H.HDR_TLB_STRIDE);
      const tlb: string[] = [];
      for (let e = 0; e < sets * ways; e++) {
        const w = (tb + e * H.TLBE_SIZE) >>> 2;
        const lo = u32[w]!;
        if (!(lo & H.TLB_TAG_V)) continue;
        const vpnS = u32[w + 1]! * 2 ** 16 + (lo >>> 16);
        tlb.push(tlbString(e, vpnS, (lo >>> 14) & 3, (lo >>> 2) & 0xfff, (lo & 2) !== 0, u32[w + 2]!, u32[w + 3]!, u32[w + 5]! * 2 ** 32 + u32[w + 4]!));
      }
      const cr3 = u32[cb + H.CPU_CR3_PFN / 4]!;
      cpus.push({
        cr3: cr3 === F.PFN_NONE >>> 0 ? -1 : cr3, pcid: u32[cb + H.CPU_PCID / 4]!, ctrl: u32[cb + H.CPU_CTRL / 4]!,
        pkru: u32[cb + H.CPU_PKRU / 4]!, tick: u32[cb + H.CPU_TICK / 4 + 1]! * 2 ** 32 + u32[cb + H.CPU_TICK / 4]!,
        live: [0, 1, 2].map((s) => u32[cb + H.CPU_LIVE / 4 + s]!), tlb,
      });
    }
    const at = (off: number): number => u32[(H.HDR_ADDR + off) >>> 2]! + u32[(H.HDR_ADDR + off + 4) >>> 2]! * 2 ** 32;
    const pins: [number, number] = [at(H.HDR_FOLL_PIN_ACQUIRED), at(H.HDR_FOLL_PIN_RELEASED)];
    return { zones, frames: frameList, tables, cpus, poolUsed: c.hdr(H.HDR_POOL_USED), pins };
  }
}

export function frameString(pfn: number, flags: number, ref: number, map: number, mapping: number, index: number, backed: boolean): string {
  return `${pfn}:${flags.toString(16)}:${ref}:${map}:${mapping}:${index}:${backed ? 1 : 0}`;
}

export function tlbString(e: number, vpnS: number, size: number, pcid: number, g: boolean, dlo: number, dhi: number, stamp: number): string {
  return `${e}:${vpnS}:${size}:${pcid}:${g ? 1 : 0}:${dlo.toString(16)}:${dhi.toString(16)}:${stamp}`;
}

export { RefDriver } from "./ref-driver.js";
