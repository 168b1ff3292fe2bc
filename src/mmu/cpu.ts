/**
 * A CPU: its paging state (CR3 with PCID, CR0.WP, CR4.{PGE,PCIDE,SMEP,SMAP,PKE}, EFER.NXE,
 * PKRU), its TLB, and translation. Every translation crosses into the core in batches of up
 * to a ring's worth of addresses; the core counts hits, misses and walk loads, and the host
 * charges them to the virtual clock from the cost table.
 * @module
 */
import * as H from "../abi/header.js";
import { PFN_NONE } from "../abi/frame.js";
import { einval } from "../errors.js";
import { type Address, hex, pageCount, pageNumber, splitAddress } from "../core/addr.js";
import type { Core } from "../core/core.js";
import { coreError } from "../core/reasons.js";
import type { Clock } from "../sim/clock.js";
import type { CostTable } from "../sim/cost.js";
import type { Trace } from "../trace/trace.js";
import { type Access, accessBits, decodeStatus, type Translation } from "./access.js";
import type { PageTable } from "./pgtable.js";
import { Ring } from "./ring.js";
import { readTlb, type TlbEntry } from "./tlb.js";

export interface Control {
  /** CR0.WP: supervisor writes honour read-only pages. */
  wp: boolean;
  /** CR4.PGE: global pages survive non-global flushes. */
  pge: boolean;
  /** CR4.PCIDE: TLB entries are tagged with CR3's PCID. */
  pcide: boolean;
  /** CR4.SMEP: no supervisor fetch from user pages. */
  smep: boolean;
  /** CR4.SMAP: no supervisor data access to user pages unless EFLAGS.AC. */
  smap: boolean;
  /** CR4.PKE: protection keys for user pages. */
  pke: boolean;
  /** EFER.NXE: the NX bit is honoured (else it is a reserved bit). */
  nxe: boolean;
}

const CTRL_BITS: [keyof Control, number][] = [
  ["wp", H.CTRL_WP], ["pge", H.CTRL_PGE], ["pcide", H.CTRL_PCIDE], ["smep", H.CTRL_SMEP],
  ["smap", H.CTRL_SMAP], ["pke", H.CTRL_PKE], ["nxe", H.CTRL_NXE],
];

/** What Linux sets on a current x86-64 CPU. */
export const LINUX_CONTROL: Control = {
  wp: true, pge: true, pcide: true, smep: true, smap: true, pke: true, nxe: true,
};
/** Linux's initial PKRU (init_pkru_value): every key but 0 access-disabled. */
export const LINUX_PKRU = 0x55555554;

export interface CpuStats {
  translations: number;
  hits: number;
  misses: number;
  walks: number;
  /** Paging-structure entries read by walks. */
  loads: number;
  faults: number;
  /** TLB entries whose rights were stale-restrictive: dropped and walked again. */
  spurious: number;
  /** Modeled time charged for translations. */
  modeledNs: number;
}

interface Env {
  core: Core;
  clock: Clock;
  costs: CostTable;
  trace: Trace;
}

export class Cpu {
  readonly index: number;
  readonly stats: CpuStats = {
    translations: 0, hits: 0, misses: 0, walks: 0, loads: 0, faults: 0, spurious: 0, modeledNs: 0,
  };
  readonly #env: Env;
  readonly #ring: Ring;

  constructor(env: Env, index: number) {
    this.#env = env;
    this.index = index;
    this.#ring = new Ring(env.core);
  }

  get #core(): Core {
    return this.#env.core;
  }

  #word(off: number): number {
    const c = this.#core;
    return c.u32[(c.hdr(H.HDR_CPUS_BASE) + this.index * H.CPU_SIZE + off) >>> 2]!;
  }

  /** CR3: the root table's frame (null when none) and the PCID. */
  get cr3(): { pgd: number | null; pcid: number } {
    const pfn = this.#word(H.CPU_CR3_PFN);
    return { pgd: pfn === PFN_NONE >>> 0 ? null : pfn, pcid: this.#word(H.CPU_PCID) };
  }

  /**
   * writeCr3 - MOV to CR3: run on @pgd (null: none) with @pcid. Without @noflush, or with
   * PCIDs off, the PCID's non-global TLB entries are dropped.
   */
  writeCr3(pgd: PageTable | null, opts: { pcid?: number; noflush?: boolean } = {}): void {
    const pcid = opts.pcid ?? 0;
    if (!Number.isInteger(pcid)) throw einval("pcid", `${pcid} is not a PCID`);
    const c = this.#core;
    c.check(c.x.cpuWriteCr3(this.index, pgd ? pgd.pfn : -1, pcid, opts.noflush ? 1 : 0), "writeCr3");
    this.#env.trace.emit(
      "cpu.cr3",
      { cpu: this.index, pgd: pgd ? pgd.pfn : -1, pcid, noflush: !!opts.noflush },
      this.#env.clock.now,
      undefined,
      this.index,
    );
  }

  get control(): Control {
    const w = this.#word(H.CPU_CTRL);
    const out = {} as Control;
    for (const [k, bit] of CTRL_BITS) out[k] = (w & bit) !== 0;
    return out;
  }

  /**
   * setControl - change control bits (those not named stay). Toggling PGE or PCIDE flushes
   * the whole TLB; turning PCIDE on needs PCID 0 (EINVAL otherwise, where the CPU raises #GP).
   */
  setControl(change: Partial<Control>): void {
    const next = { ...this.control, ...change };
    let w = 0;
    for (const [k, bit] of CTRL_BITS) if (next[k]) w |= bit;
    const c = this.#core;
    c.check(c.x.cpuSetCtrl(this.index, w), "setControl");
    const on = CTRL_BITS.filter(([k]) => next[k]).map(([k]) => k).join(",");
    this.#env.trace.emit("cpu.control", { cpu: this.index, control: on }, this.#env.clock.now, undefined, this.index);
  }

  get pkru(): number {
    return this.#word(H.CPU_PKRU);
  }

  /** wrpkru - WRPKRU: bit 2k disables access, bit 2k+1 writes, for protection key k. */
  wrpkru(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw einval("value", `${value} is not a 32-bit PKRU`);
    }
    this.#core.check(this.#core.x.cpuWrpkru(this.index, value >>> 0), "wrpkru");
  }

  /** The ring this CPU's batches go through (this thread's). */
  get ring(): Ring {
    return this.#ring;
  }

  /**
   * translateRing - translate @n requests already in the ring (see Ring) from entry
   * @opts.first (default 0), charge their cost, and return how many were processed.
   * @opts.tlb false bypasses the TLB; @opts.sideEffects false is a walk that neither sets
   * A/D bits nor fills the TLB (a debugger's view); @opts.stopAtFault stops after the first
   * fault, as a CPU executing the accesses in order (the rest are not translated or
   * charged).
   */
  translateRing(
    n: number,
    opts: { tlb?: boolean; sideEffects?: boolean; first?: number; stopAtFault?: boolean } = {},
  ): number {
    const c = this.#core;
    let flags = 0;
    if (opts.tlb === false) flags |= H.XLATE_NOTLB;
    if (opts.sideEffects === false) flags |= H.XLATE_NOSIDE;
    if (opts.stopAtFault) flags |= H.XLATE_STOP;
    n = c.check(c.x.translateBatch(this.index, opts.first ?? 0, n, flags), "translate");
    const hits = c.reg32(H.REG_HITS);
    const misses = c.reg32(H.REG_MISSES);
    const walks = c.reg32(H.REG_WALKS);
    const loads = c.reg32(H.REG_LOADS);
    const faults = c.reg32(H.REG_FAULTS);
    const spurious = c.reg32(H.REG_SPURIOUS);
    const k = this.#env.costs;
    const ns = hits * k.tlbHit.ns + misses * k.tlbMiss.ns + loads * k.walkLevel.ns;
    const s = this.stats;
    s.translations += n;
    s.hits += hits;
    s.misses += misses;
    s.walks += walks;
    s.loads += loads;
    s.faults += faults;
    s.spurious += spurious;
    s.modeledNs += ns;
    const ts = this.#env.clock.now;
    this.#env.clock.advance(ns);
    this.#env.trace.emit(
      "cpu.translate",
      { cpu: this.index, n, hits, misses, walks, loads, faults, spurious },
      ts,
      ns,
      this.index,
    );
    return n;
  }

  /** translate - what this CPU's MMU does with one access to @va. */
  translate(va: Address, access: Access = {}, opts: { tlb?: boolean; sideEffects?: boolean } = {}): Translation {
    splitAddress(va, "va");
    this.#ring.setTranslate(0, va, access);
    this.translateRing(1, opts);
    return this.#result(0, va);
  }

  /** translateMany - translate every address of @vas with one @access, a ring at a time. */
  translateMany(
    vas: readonly Address[],
    access: Access = {},
    opts: { tlb?: boolean; sideEffects?: boolean } = {},
  ): Translation[] {
    for (const va of vas) splitAddress(va, "va");
    const bits = accessBits(access);
    const out: Translation[] = [];
    for (let at = 0; at < vas.length; at += this.#ring.capacity) {
      const n = Math.min(this.#ring.capacity, vas.length - at);
      for (let i = 0; i < n; i++) this.#ring.setTranslate(i, vas[at + i]!, bits);
      this.translateRing(n, opts);
      for (let i = 0; i < n; i++) out.push(this.#result(i, vas[at + i]!));
    }
    return out;
  }

  #result(i: number, va: Address): Translation {
    const st = this.#ring.status(i);
    if (st < 0) throw coreError("translate", st, this.#core.x.coreReason(), this.#core.x.coreReasonArg());
    return decodeStatus(st, va, this.#ring.pa(i));
  }

  #flushed(scope: string, va: Address, size: number, dropped: number, cost: number): number {
    const ts = this.#env.clock.now;
    this.#env.clock.advance(cost);
    this.#env.trace.emit("tlb.flush", { cpu: this.index, scope, va: hex(va), size, dropped }, ts, cost, this.index);
    this.#env.trace.count("tlb.flush");
    return dropped;
  }

  /** invlpg - INVLPG: drop @va's entries for the current PCID, and global ones. */
  invlpg(va: Address): number {
    const [vpn] = splitAddress(va, "va");
    const c = this.#core;
    const dropped = c.check(c.x.tlbFlushRange(this.index, vpn, 1), "invlpg");
    return this.#flushed("invlpg", va, 4096, dropped, this.#env.costs.invlpg.ns);
  }

  /**
   * flushTlbRange - INVLPG for every page of [@va, @va + @size) (current PCID and global
   * entries), as flush_tlb_func() does below tlb_single_page_flush_ceiling.
   */
  flushTlbRange(va: Address, size: Address): number {
    const vpn = pageNumber(va, "va");
    const n = pageCount(size, "size");
    const c = this.#core;
    const dropped = c.check(c.x.tlbFlushRange(this.index, vpn, n), "flushTlbRange");
    return this.#flushed("range", va, n * 4096, dropped, n * this.#env.costs.invlpg.ns);
  }

  /**
   * invpcid - INVPCID: type 0 one address of @pcid (not global), 1 all of @pcid (not
   * global), 2 everything, 3 everything but global entries.
   */
  invpcid(type: 0 | 1 | 2 | 3, pcid = 0, va: Address = 0): number {
    if (!Number.isInteger(pcid)) throw einval("pcid", `${pcid} is not a PCID`);
    const [vpn] = splitAddress(va, "va");
    const c = this.#core;
    const dropped = c.check(c.x.tlbInvpcid(this.index, type, pcid, vpn), "invpcid");
    const cost = type === 0 ? this.#env.costs.invlpg.ns : this.#env.costs.tlbFlushAll.ns;
    return this.#flushed(`invpcid${type}`, va, type === 0 ? 4096 : 0, dropped, cost);
  }

  /** flushTlbAll - __flush_tlb_all(): every entry, global ones too (INVPCID type 2). */
  flushTlbAll(): number {
    return this.invpcid(2);
  }

  /** The valid TLB entries, for inspection. */
  tlbEntries(): TlbEntry[] {
    return readTlb(this.#core, this.index);
  }
}


