/**
 * Reference model: the page walk, the permission check, the TLB and the batched
 * translation, in plain TypeScript. The twin of assembly/mmu/{walk,tlb,cpu}.ts.
 */
import * as E from "../../src/abi/errno.js";
import * as H from "../../src/abi/header.js";
import * as R from "../../src/abi/reason.js";
import * as X from "../../src/abi/x86.js";
import { fail } from "./buddy.js";
import { A, D, G, P, PATL, PAT4K, PS, RW, US, type RefPageTables, isLeaf, pfnOf, span } from "./pgtable.js";

const NX_HI = 0x80000000;
const PKEY_HI = 0x78000000;

export const MATCH_PCID_OR_GLOBAL = 0;
export const MATCH_PCID_NONGLOBAL = 1;
export const MATCH_ALL = 2;
export const MATCH_NONGLOBAL = 3;

/** The permission check on an effective leaf (dataLo, dataHi): 0 or a #PF error code. */
export function permCheck(dlo: number, dhi: number, acc: number, ctrl: number, pkru: number): number {
  const code = X.PF_P | (acc & (X.PF_W | X.PF_U | X.PF_I));
  const write = (acc & H.ACC_WRITE) !== 0;
  const fetch = (acc & H.ACC_FETCH) !== 0;
  const userPage = (dlo & US) !== 0;
  if (acc & H.ACC_USER) {
    if (!userPage) return code;
    if (write && !(dlo & RW)) return code;
  } else {
    if (userPage) {
      if (fetch && ctrl & H.CTRL_SMEP) return code;
      if (!fetch && ctrl & H.CTRL_SMAP && !(acc & H.ACC_AC)) return code;
    }
    if (write && !(dlo & RW) && ctrl & H.CTRL_WP) return code;
  }
  if (fetch && dhi & NX_HI) return code;
  if (ctrl & H.CTRL_PKE && userPage && !fetch) {
    const k = (dhi & PKEY_HI) >>> 27;
    const bits = (pkru >>> (2 * k)) & 3;
    if (bits & 1) return code | X.PF_PK;
    if (write && bits & 2 && (acc & H.ACC_USER || ctrl & H.CTRL_WP)) return code | X.PF_PK;
  }
  return 0;
}

export interface RefCpu {
  cr3: number; // -1 none
  pcid: number;
  ctrl: number;
  pkru: number;
  tick: number;
  live: [number, number, number];
  valid: Uint8Array;
  vpnS: Float64Array;
  size: Uint8Array;
  tpcid: Uint16Array;
  global: Uint8Array;
  dlo: Uint32Array;
  dhi: Uint32Array;
  stamp: Float64Array;
}

function bump(c: RefCpu, size: number, d: number): void {
  c.live[size] = c.live[size]! + d;
}

export interface WalkResult {
  status: number;
  pa: number;
  dlo: number;
  dhi: number;
  size: number;
  loads: number;
}

/* (A closure in the walk would cost a defineProperty per call under esbuild's keepNames.) */
function faulted(code: number, loads: number): WalkResult {
  return { status: (X.X86_TRAP_PF << 16) | code, pa: 0, dlo: 0, dhi: 0, size: 0, loads };
}

export class RefMmu {
  readonly pts: RefPageTables;
  readonly cpus: RefCpu[];
  readonly sets: number;
  readonly ways: number;
  readonly physBits: number;

  constructor(pts: RefPageTables, nrCpus: number, sets: number, ways: number, physBits: number) {
    this.pts = pts;
    this.sets = sets;
    this.ways = ways;
    this.physBits = physBits;
    const n = sets * ways;
    this.cpus = Array.from({ length: nrCpus }, () => ({
      cr3: -1, pcid: 0, ctrl: 0, pkru: 0, tick: 0, live: [0, 0, 0] as [number, number, number],
      valid: new Uint8Array(n), vpnS: new Float64Array(n), size: new Uint8Array(n),
      tpcid: new Uint16Array(n), global: new Uint8Array(n), dlo: new Uint32Array(n),
      dhi: new Uint32Array(n), stamp: new Float64Array(n),
    }));
  }

  /* ---- walk ---- */

  walk(root: number, lvpn: number, vaLo: number, acc: number, ctrl: number, pkru: number, side: boolean): WalkResult {
    const pts = this.pts;
    const accBits = acc & (X.PF_W | X.PF_U | X.PF_I);
    const maxPfn = 2 ** (this.physBits - 12);
    let t = root;
    let level = pts.levels;
    let rights = RW | US;
    let nx = 0;
    let loads = 0;
    let tab!: Uint32Array;
    let k = 0;
    for (;;) {
      tab = pts.tables.get(t)!;
      k = 2 * (Math.floor(lvpn / span(level)) % 512);
      const lo = tab[k]!;
      const hi = tab[k + 1]!;
      loads++;
      if (!(lo & P)) return faulted(accBits, loads);
      const leaf = isLeaf(lo, level);
      let rsvd = pfnOf(lo, hi) >= maxPfn || (!(ctrl & H.CTRL_NXE) && (hi & NX_HI) !== 0);
      if (level >= 4) rsvd ||= (lo & PS) !== 0;
      else if (leaf && level === 2) rsvd ||= (lo & 0x1fe000) !== 0;
      else if (leaf && level === 3) rsvd ||= (lo & 0x3fffe000) !== 0;
      if (rsvd) return faulted(accBits | X.PF_P | X.PF_RSVD, loads);
      rights &= lo;
      nx |= hi & NX_HI;
      if (leaf) break;
      if (side && !(lo & A)) tab[k] = (lo | A) >>> 0;
      t = pfnOf(lo, hi);
      level--;
    }
    const lo = tab[k]!;
    const hi = tab[k + 1]!;
    const size = level - 1;
    const pages = span(level);
    const framePfn = pfnOf(lo & ~0xfff, hi) - (pfnOf(lo & ~0xfff, hi) % pages);
    const pat = level === 1 ? lo & PAT4K : lo & PATL ? PAT4K : 0;
    let dlo = ((framePfn % 2 ** 20) * 4096 + (P | rights | (lo & (X.PTE_PWT | X.PTE_PCD | D | G)) | pat)) >>> 0;
    const dhi = (Math.floor(framePfn / 2 ** 20) | nx | (hi & PKEY_HI)) >>> 0;
    const denied = permCheck(dlo, dhi, acc, ctrl, pkru);
    if (denied) return faulted(denied, loads);
    if (side) {
      const want = A | (acc & H.ACC_WRITE ? D : 0);
      if ((lo & want) !== want) {
        tab[k] = (lo | want) >>> 0;
        dlo = (dlo | (want & D)) >>> 0;
      }
    }
    const offset = (lvpn % pages) * 4096 + (vaLo & 0xfff);
    return { status: 0, pa: framePfn * 4096 + offset, dlo, dhi, size, loads };
  }

  /* ---- TLB ---- */

  #lookup(c: RefCpu, lvpn: number, pcid: number): number {
    for (let size = 0; size < 3; size++) {
      if (c.live[size] === 0) continue;
      const vpnS = Math.floor(lvpn / 2 ** (9 * size));
      const base = (vpnS % this.sets) * this.ways;
      for (let w = 0; w < this.ways; w++) {
        const e = base + w;
        if (c.valid[e] && c.size[e] === size && c.vpnS[e] === vpnS && (c.global[e] || c.tpcid[e] === pcid)) return e;
      }
    }
    return -1;
  }

  #fill(c: RefCpu, lvpn: number, pcid: number, size: number, dlo: number, dhi: number, global: boolean, stamp: number): void {
    const vpnS = Math.floor(lvpn / 2 ** (9 * size));
    const base = (vpnS % this.sets) * this.ways;
    let victim = -1;
    let oldest = Infinity;
    for (let w = 0; w < this.ways; w++) {
      const e = base + w;
      if (!c.valid[e]) {
        victim = e;
        break;
      }
      if (c.stamp[e]! < oldest) {
        oldest = c.stamp[e]!;
        victim = e;
      }
    }
    if (c.valid[victim]) bump(c, c.size[victim]!, -1);
    c.valid[victim] = 1;
    c.vpnS[victim] = vpnS;
    c.size[victim] = size;
    c.tpcid[victim] = pcid;
    c.global[victim] = global ? 1 : 0;
    c.dlo[victim] = dlo;
    c.dhi[victim] = dhi;
    c.stamp[victim] = stamp;
    bump(c, size, 1);
  }

  #drop(c: RefCpu, e: number): void {
    c.valid[e] = 0;
    bump(c, c.size[e]!, -1);
  }

  invalidate(c: RefCpu, lo: number, hi: number, pcid: number, mode: number): number {
    let dropped = 0;
    for (let e = 0; e < this.sets * this.ways; e++) {
      if (!c.valid[e]) continue;
      const first = c.vpnS[e]! * 2 ** (9 * c.size[e]!);
      const last = first + 2 ** (9 * c.size[e]!);
      const g = c.global[e] === 1;
      const same = c.tpcid[e] === pcid;
      const match =
        mode === MATCH_ALL ? true : mode === MATCH_NONGLOBAL ? !g : mode === MATCH_PCID_OR_GLOBAL ? same || g : same && !g;
      if (first < hi && lo < last && match) {
        this.#drop(c, e);
        dropped++;
      }
    }
    return dropped;
  }

  /* ---- CPU state ---- */

  cpuCheck(cpu: number): RefCpu {
    const c = this.cpus[cpu];
    if (!c) fail(E.EINVAL, R.R_CPU, cpu);
    return c;
  }

  curPcid(c: RefCpu): number {
    return c.ctrl & H.CTRL_PCIDE ? c.pcid : 0;
  }

  writeCr3(cpu: number, root: number, pcid: number, noflush: boolean): void {
    const c = this.cpuCheck(cpu);
    const pfn = root === -1 ? -1 : this.pts.rootCheck(root);
    const pcide = (c.ctrl & H.CTRL_PCIDE) !== 0;
    if (pcid > 0xfff || (!pcide && pcid !== 0)) fail(E.EINVAL, R.R_PCID, pcid);
    c.cr3 = pfn;
    c.pcid = pcid;
    if (!pcide || !noflush) this.invalidate(c, 0, 2 ** 45, pcid, MATCH_PCID_NONGLOBAL);
  }

  setCtrl(cpu: number, ctrl: number): void {
    const c = this.cpuCheck(cpu);
    if (ctrl & ~H.CTRL_ALL) fail(E.EINVAL, R.R_CTRL, ctrl);
    const old = c.ctrl;
    if (ctrl & H.CTRL_PCIDE && !(old & H.CTRL_PCIDE) && c.pcid !== 0) fail(E.EINVAL, R.R_PCID, 0);
    c.ctrl = ctrl;
    if (!(ctrl & H.CTRL_PCIDE)) c.pcid = 0;
    if ((old ^ ctrl) & (H.CTRL_PGE | H.CTRL_PCIDE)) this.invalidate(c, 0, 2 ** 45, 0, MATCH_ALL);
  }

  flushRange(cpu: number, vpn: number, n: number): number {
    const c = this.cpuCheck(cpu);
    this.pts.rangeCheck(vpn, n, 1);
    return this.invalidate(c, this.pts.lo, this.pts.hi, this.curPcid(c), MATCH_PCID_OR_GLOBAL);
  }

  flushPcidRange(cpu: number, pcid: number, vpn: number, n: number): number {
    const c = this.cpuCheck(cpu);
    if (pcid > 0xfff) fail(E.EINVAL, R.R_PCID, pcid);
    this.pts.rangeCheck(vpn, n, 1);
    return this.invalidate(c, this.pts.lo, this.pts.hi, pcid, MATCH_PCID_NONGLOBAL);
  }

  invpcid(cpu: number, type: number, pcid: number, vpn: number): number {
    const c = this.cpuCheck(cpu);
    if (type > H.INVPCID_ALL_NONGLOBAL) fail(E.EINVAL, R.R_INVPCID_TYPE, type);
    if (pcid > 0xfff) fail(E.EINVAL, R.R_PCID, pcid);
    if (type === H.INVPCID_ADDR) {
      this.pts.rangeCheck(vpn, 1, 1);
      return this.invalidate(c, this.pts.lo, this.pts.hi, pcid, MATCH_PCID_NONGLOBAL);
    }
    if (type === H.INVPCID_SINGLE) return this.invalidate(c, 0, 2 ** 45, pcid, MATCH_PCID_NONGLOBAL);
    return this.invalidate(c, 0, 2 ** 45, 0, type === H.INVPCID_ALL_GLOBAL ? MATCH_ALL : MATCH_NONGLOBAL);
  }

  /* ---- batched translation ---- */

  /** Translate requests [vaLo, vaHi, acc]: per request [status, pa]; plus the batch's counts. */
  translateBatch(cpu: number, reqs: [number, number, number][], flags: number) {
    const c = this.cpuCheck(cpu);
    if (flags & ~(H.XLATE_NOTLB | H.XLATE_NOSIDE | H.XLATE_STOP)) fail(E.EINVAL, R.R_FLAGS, flags);
    const stop = (flags & H.XLATE_STOP) !== 0;
    if (c.cr3 < 0) fail(E.EINVAL, R.R_ROOT, cpu);
    const pcid = this.curPcid(c);
    const useTlb = (flags & (H.XLATE_NOTLB | H.XLATE_NOSIDE)) === 0;
    const side = (flags & H.XLATE_NOSIDE) === 0;
    const vaBits = this.pts.vaBits;
    const hiBits = vaBits - 32; // VA bits held in the high word
    const stats = { hits: 0, misses: 0, walks: 0, loads: 0, faults: 0, spurious: 0 };
    const out: [number, number][] = [];
    for (const [vaLo, vaHi, acc] of reqs) {
      if (acc & ~H.ACC_MASK) {
        out.push([-E.EINVAL, NaN]);
        continue;
      }
      // Canonical: bits 63..vaBits-1 all equal.
      const top = vaHi >>> (hiBits - 1);
      if (top !== 0 && top !== 2 ** (33 - hiBits) - 1) {
        out.push([X.X86_TRAP_GP << 16, NaN]);
        stats.faults++;
        if (stop) break;
        continue;
      }
      const lvpn = (vaHi & (2 ** hiBits - 1)) * 2 ** 20 + (vaLo >>> 12);
      let stale = false;
      if (useTlb) {
        const e = this.#lookup(c, lvpn, pcid);
        if (e >= 0) {
          const dlo = c.dlo[e]!;
          const dhi = c.dhi[e]!;
          const denied = permCheck(dlo, dhi, acc, c.ctrl, c.pkru);
          if (denied === 0 && (!(acc & H.ACC_WRITE) || dlo & D)) {
            const size = c.size[e]!;
            c.stamp[e] = ++c.tick;
            const pages = 2 ** (9 * size);
            const frame = pfnOf(dlo & ~0xfff, dhi);
            out.push([size | H.XLATE_HIT, frame * 4096 + (lvpn % pages) * 4096 + (vaLo & 0xfff)]);
            stats.hits++;
            continue;
          }
          stale = denied !== 0;
          this.#drop(c, e);
        }
        stats.misses++;
      }
      const w = this.walk(c.cr3, lvpn, vaLo, acc, c.ctrl, c.pkru, side);
      stats.walks++;
      stats.loads += w.loads;
      if (w.status) {
        out.push([w.status, NaN]);
        stats.faults++;
        if (stop) break;
        continue;
      }
      if (stale) stats.spurious++;
      out.push([w.size, w.pa]);
      if (useTlb) {
        const global = (w.dlo & G) !== 0 && (c.ctrl & H.CTRL_PGE) !== 0;
        this.#fill(c, lvpn, pcid, w.size, w.dlo, w.dhi, global, ++c.tick);
      }
    }
    return { out, stats };
  }
}
