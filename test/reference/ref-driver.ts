/**
 * The reference model behind the Driver interface (test/reference/driver.ts): each call on
 * the plain-TypeScript model, with the core's return conventions.
 */
import * as E from "../../src/abi/errno.js";
import * as F from "../../src/abi/frame.js";
import * as R from "../../src/abi/reason.js";
import type { MachineConfig } from "../../src/config.js";
import { fail } from "./buddy.js";
import { type Driver, type MachineState, type Req, type Result, frameString, tlbString } from "./driver.js";
import type { Race } from "./gup.js";
import { RefMachine } from "./machine.js";
import { refUnpinPages } from "./unpin.js";

export class RefDriver implements Driver {
  readonly m: RefMachine;
  readonly cfg: MachineConfig;

  constructor(cfg: MachineConfig) {
    this.cfg = cfg;
    this.m = new RefMachine(cfg);
  }

  #r(fn: () => Result | number): Result {
    const v = this.m.call(fn);
    if (typeof v === "number") return v < 0 ? { rc: v, reason: this.m.reason, arg: this.m.arg } : { rc: v };
    return v;
  }

  allocPages(zl: number, order: number, flags: number): Result {
    return this.#r(() => this.m.phys.allocPages(zl, order, flags));
  }
  freePages(pfn: number, order: number): Result {
    return this.#r(() => this.m.phys.freePages(pfn, order));
  }
  splitPage(pfn: number, order: number): Result {
    return this.#r(() => this.m.phys.splitPage(pfn, order));
  }
  pgdAlloc(): Result {
    return this.#r(() => this.m.pts.pgdAlloc());
  }
  pgdFree(root: number): Result {
    return this.#r(() => (this.m.pts.pgdFree(root, this.m.mmu.cpus.map((c) => c.cr3)), 0));
  }
  ptMap(root: number, vpn: number, n: number, pfn: number, lo: number, hi: number, level: number): Result {
    return this.#r(() => ({ rc: this.m.pts.ptMap(root, vpn, n, pfn, lo, hi, level), tables: this.m.pts.opTables }));
  }
  ptUnmap(root: number, vpn: number, n: number, cap: number): Result {
    return this.#r(() => {
      const r = this.m.pts.ptUnmap(root, vpn, n, cap, this.m.ringEntries);
      return { rc: r.leaves, records: r.records.map((x) => [x.lo, x.hi, x.vpn, x.level]), resume: r.resume, pages: r.pages, tables: r.tables };
    });
  }
  ptProtect(root: number, vpn: number, n: number, sLo: number, sHi: number, cLo: number, cHi: number): Result {
    return this.#r(() => {
      const r = this.m.pts.ptProtect(root, vpn, n, sLo, sHi, cLo, cHi);
      return { rc: r.changed, pages: r.pages, tables: r.tables };
    });
  }
  ptepGet(root: number, vpn: number, level: number): Result {
    return this.#r(() => {
      const r = this.m.pts.ptepGet(root, vpn, level);
      return { rc: r.level, lo: r.lo, hi: r.hi };
    });
  }
  ptepSet(root: number, vpn: number, level: number, lo: number, hi: number): Result {
    return this.#r(() => (this.m.pts.ptepSet(root, vpn, level, lo, hi, this.m.ringEntries), 0));
  }
  ptepRange(root: number, vpn: number, n: number): Result {
    return this.#r(() => {
      const pts = this.m.pts;
      pts.rootCheck(root);
      if (n > Math.floor((this.m.ringEntries * 24) / 12)) fail(E.EINVAL, R.R_COUNT, n);
      pts.rangeCheck(vpn, n, 1);
      const entries: number[] = [];
      for (let i = 0; i < n; i++) {
        const g = pts.ptepGet(root, vpn + i, 0);
        entries.push(g.lo >>> 0, g.hi >>> 0, g.level);
      }
      return { rc: n, entries };
    });
  }
  cpuWriteCr3(cpu: number, root: number, pcid: number, noflush: boolean): Result {
    return this.#r(() => (this.m.mmu.writeCr3(cpu, root, pcid, noflush), 0));
  }
  cpuSetCtrl(cpu: number, ctrl: number): Result {
    return this.#r(() => (this.m.mmu.setCtrl(cpu, ctrl), 0));
  }
  cpuWrpkru(cpu: number, pkru: number): Result {
    return this.#r(() => (this.m.mmu.cpuCheck(cpu).pkru = pkru >>> 0, 0));
  }
  tlbFlushRange(cpu: number, vpn: number, n: number): Result {
    return this.#r(() => this.m.mmu.flushRange(cpu, vpn, n));
  }
  tlbInvpcid(cpu: number, type: number, pcid: number, vpn: number): Result {
    return this.#r(() => this.m.mmu.invpcid(cpu, type, pcid, vpn));
  }
  tlbFlushPcidRange(cpu: number, pcid: number, vpn: number, n: number): Result {
    return this.#r(() => this.m.mmu.flushPcidRange(cpu, pcid, vpn, n));
  }
  translate(cpu: number, reqs: Req[], flags: number): Result {
    return this.#r(() => {
      const r = this.m.mmu.translateBatch(cpu, reqs, flags);
      return { rc: r.out.length, out: r.out, stats: r.stats };
    });
  }

  setZeroPfn(pfn: number): void {
    this.m.gup.zeroPfn = pfn;
  }
  pageFlags(pfn: number, set: number, clear: number): Result {
    return this.#r(() => {
      const p = this.m.phys;
      if (!(pfn >= 0 && pfn < p.nrFrames) || pfn !== Math.floor(pfn) || !p.zoneOf(pfn)) fail(E.EINVAL, R.R_PFN_NOT_RAM, 0);
      const old = p.flags[pfn]!;
      p.flags[pfn] = ((old | set) & ~clear) >>> 0;
      return old;
    });
  }
  refcount(pfn: number): number {
    return this.m.phys.refcount[pfn]!;
  }
  seqStep(root: number): void {
    this.m.phys.mapcount[root] = (this.m.phys.mapcount[root]! + 1) | 0;
  }
  gupRange(root: number, vpn: number, n: number, flags: number, pkru: number, races: Race[]): Result {
    return this.#r(() => {
      const r = this.m.gup.gupRange(root, vpn, n, flags, pkru, races, this.cfg.ringEntries);
      return { rc: r.taken, pfns: r.pfns, stop: r.stop, grabs: r.grabs, hugePages: r.hugePages, loads: r.loads, unpinnable: r.unpinnable };
    });
  }
  unpinPages(entries: number[], flags: number): Result {
    return this.#r(() => ({ rc: 0, ...refUnpinPages(this.m.gup, entries, flags, this.cfg.ringEntries) }));
  }

  state(): MachineState {
    const p = this.m.phys;
    const zones = p.zones.map((z) => ({ nrFree: z.nrFree, lists: z.lists.map((l) => [...l].reverse()) }));
    const frames: string[] = [];
    for (let pfn = 0; pfn < p.nrFrames; pfn++) {
      const buddy = (p.flags[pfn]! & F.PG_buddy) !== 0;
      frames.push(frameString(pfn, p.flags[pfn]!, p.refcount[pfn]!, p.mapcount[pfn]!, buddy ? 0 : p.mapping[pfn]!, buddy ? 0 : p.index[pfn]!, p.backed[pfn] === 1));
    }
    const tables: Record<number, number[]> = {};
    for (const [pfn, t] of this.m.pts.tables) tables[pfn] = Array.from(t);
    const cpus = this.m.mmu.cpus.map((c) => {
      const tlb: string[] = [];
      for (let e = 0; e < c.valid.length; e++) {
        if (c.valid[e]) tlb.push(tlbString(e, c.vpnS[e]!, c.size[e]!, c.tpcid[e]!, c.global[e] === 1, c.dlo[e]!, c.dhi[e]!, c.stamp[e]!));
      }
      return { cr3: c.cr3, pcid: c.pcid, ctrl: c.ctrl, pkru: c.pkru, tick: c.tick, live: [...c.live], tlb };
    });
    return { zones, frames, tables, cpus, poolUsed: p.poolUsed, pins: [this.m.gup.pinAcquired, this.m.gup.pinReleased] };
  }
}
