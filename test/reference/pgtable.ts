/**
 * Reference model: x86-64 page tables, map / unmap / protect / ptep, in plain TypeScript.
 * The twin of assembly/mmu/{pgtable,map,unmap,protect,split,ptep}.ts. An entry is a pair of
 * 32-bit words (lo, hi) in a Uint32Array per table: no BigInt.
 */
import * as E from "../../src/abi/errno.js";
import * as F from "../../src/abi/frame.js";
import * as R from "../../src/abi/reason.js";
import * as X from "../../src/abi/x86.js";
import { fail, type RefPhys } from "./buddy.js";

export const P = X.PTE_P;
export const RW = X.PTE_RW;
export const US = X.PTE_US;
export const PS = X.PTE_PS;
export const A = X.PTE_A;
export const D = X.PTE_D;
export const G = X.PTE_G;
export const PATL = X.PTE_PAT_LARGE;
export const PAT4K = X.PTE_PAT_4K;
const FRAME_LO = 0xfffff000;
const FRAME_HI = 0xfffff;

/** An entry's frame (4 KiB units). */
export function pfnOf(lo: number, hi: number): number {
  return (hi & FRAME_HI) * 2 ** 20 + (lo >>> 12);
}

const SPANS = [0, 1, 512, 2 ** 18, 2 ** 27, 2 ** 36];

/** Pages covered by one entry at @level. */
export function span(level: number): number {
  return SPANS[level]!;
}

export const isLeaf = (lo: number, level: number): boolean => level === 1 || (level <= 3 && (lo & PS) !== 0);

/* Bits a new leaf may carry (4 KiB format), and bits protect may set or clear. */
const SOFT_LO = X.PTE_SOFTW1 | X.PTE_SOFTW2 | X.PTE_SOFTW3;
const HI_OK = (1 << 31) | (0xf << 27) | (1 << (X.PTE_BIT_SOFTW4 - 32)) | (1 << (X.PTE_BIT_SOFTW5 - 32));
const LEAF_OK_LO = RW | US | X.PTE_PWT | X.PTE_PCD | A | D | PAT4K | G | SOFT_LO;
const PROTECT_OK_LO = RW | US | X.PTE_PWT | X.PTE_PCD | A | D | G | SOFT_LO;

export interface LeafRecord {
  lo: number;
  hi: number;
  vpn: number;
  level: number;
}

export class RefPageTables {
  readonly tables = new Map<number, Uint32Array>();
  readonly phys: RefPhys;
  readonly levels: number;
  readonly vaBits: number;
  readonly maxPfn: number;
  /* The operation in progress. */
  lo = 0;
  hi = 0;
  vpnHigh = 0;
  kernel = false;
  opTables = 0;

  constructor(phys: RefPhys, levels: number, physBits: number) {
    this.phys = phys;
    this.levels = levels;
    this.vaBits = levels === 5 ? 57 : 48;
    this.maxPfn = 2 ** (physBits - 12);
  }

  slot(t: number, i: number): [Uint32Array, number] {
    return [this.tables.get(t)!, 2 * i];
  }

  entry(t: number, level: number, lvpn: number): [number, number] {
    const [tab, k] = this.slot(t, Math.floor(lvpn / span(level)) % 512);
    return [tab[k]!, tab[k + 1]!];
  }

  tableNew(level: number): number {
    const pfn = this.phys.allocTablePage();
    if (pfn < 0) throw new Error("reference: table frame reserved but missing");
    if (!this.phys.backed[pfn]) this.phys.poolUsed++; // a slot a DMA left in the free frame is reused
    this.phys.backed[pfn] = 1;
    this.phys.refcount[pfn] = 1;
    this.phys.flags[pfn] = F.PG_pgtable;
    this.phys.mapping[pfn] = level;
    this.phys.index[pfn] = 0;
    this.tables.set(pfn, new Uint32Array(1024));
    this.opTables++;
    return pfn;
  }

  tableFree(pfn: number): void {
    this.tables.delete(pfn);
    this.phys.refcount[pfn] = 0;
    this.phys.freeBlock(pfn, 0);
    this.opTables++;
  }

  tablesAvailable(n: number): void {
    if (n === 0) return;
    if (this.phys.tablePagesAvailable() < n) fail(E.ENOMEM, R.R_NO_FRAMES, n);
    if (this.phys.poolAvailable() < n) fail(E.ENOMEM, R.R_NO_POOL, n);
  }

  rootCheck(root: number): number {
    if (!(root >= 0 && root < this.phys.nrFrames) || root !== Math.floor(root)) fail(E.EINVAL, R.R_ROOT);
    if (!(this.phys.flags[root]! & F.PG_pgtable) || this.phys.mapping[root] !== this.levels) fail(E.EINVAL, R.R_ROOT);
    return root;
  }

  rangeCheck(vpn: number, npages: number, level: number): void {
    if (!(vpn >= 0 && vpn < 2 ** 52) || vpn !== Math.floor(vpn)) fail(E.EINVAL, R.R_NONCANONICAL);
    if (!(npages >= 1)) fail(E.EINVAL, R.R_SIZE_ZERO);
    if (npages > 2 ** 52 || npages !== Math.floor(npages)) fail(E.EINVAL, R.R_SIZE_ALIGN);
    const align = span(level);
    if (vpn % align) fail(E.EINVAL, R.R_VA_ALIGN, level);
    if (npages % align) fail(E.EINVAL, R.R_SIZE_ALIGN, level);
    const half = 2 ** (this.vaBits - 13);
    const upper = 2 ** 52 - half;
    if (vpn < half) {
      if (npages > half - vpn) fail(E.EINVAL, R.R_CROSS_HALF);
      this.vpnHigh = 0;
      this.kernel = false;
    } else if (vpn >= upper) {
      if (npages > 2 ** 52 - vpn) fail(E.EINVAL, R.R_CROSS_HALF);
      this.vpnHigh = upper - half;
      this.kernel = true;
    } else {
      fail(E.EINVAL, R.R_NONCANONICAL);
    }
    this.lo = vpn - this.vpnHigh;
    this.hi = this.lo + npages;
  }

  count(t: number, d: number): void {
    this.phys.index[t] = this.phys.index[t]! + d;
  }

  tableEntry(child: number): [number, number] {
    const flags = this.kernel ? X.PTE_TABLE_KERNEL : X.PTE_TABLE_USER;
    return [((child % 2 ** 20) * 4096 + flags) >>> 0, Math.floor(child / 2 ** 20)];
  }

  pgdAlloc(): number {
    this.tablesAvailable(1);
    this.opTables = 0;
    return this.tableNew(this.levels);
  }

  pgdFree(root: number, cr3s: number[]): void {
    this.rootCheck(root);
    if (this.phys.index[root] !== 0) fail(E.EBUSY, R.R_BUSY_TABLES, this.phys.index[root]);
    const cpu = cr3s.indexOf(root);
    if (cpu >= 0) fail(E.EBUSY, R.R_ROOT_IN_USE, cpu);
    this.opTables = 0;
    this.tableFree(root);
  }

  /* ---- map ---- */

  #emptyTables(level: number, leafLevel: number, lo: number, hi: number): number {
    let n = 0;
    for (let m = level; m >= leafLevel; m--) {
      const s = 2 ** (9 * m);
      n += Math.floor((hi - 1) / s) - Math.floor(lo / s) + 1;
    }
    return n;
  }

  #mapCount(t: number, level: number, base: number, lo: number, hi: number, leafLevel: number): number {
    const sp = span(level);
    const tab = this.tables.get(t)!;
    let need = 0;
    for (let i = Math.floor((lo - base) / sp); i <= Math.floor((hi - 1 - base) / sp); i++) {
      const elo = tab[2 * i]!;
      const ehi = tab[2 * i + 1]!;
      const s = base + i * sp;
      const sLo = Math.max(lo, s);
      const sHi = Math.min(hi, s + sp);
      if (level === leafLevel) {
        if (elo || ehi) return -1;
      } else if (!elo && !ehi) {
        need += this.#emptyTables(level - 1, leafLevel, sLo, sHi);
      } else if (isLeaf(elo, level)) {
        return -1;
      } else {
        const r = this.#mapCount(pfnOf(elo, ehi), level - 1, s, sLo, sHi, leafLevel);
        if (r < 0) return r;
        need += r;
      }
    }
    return need;
  }

  #mapFill(t: number, level: number, base: number, lo: number, hi: number, leaf: LeafSpec): void {
    const sp = span(level);
    const tab = this.tables.get(t)!;
    for (let i = Math.floor((lo - base) / sp); i <= Math.floor((hi - 1 - base) / sp); i++) {
      const s = base + i * sp;
      if (level === leaf.level) {
        const pfn = leaf.pfn + (s - this.lo);
        tab[2 * i] = ((pfn % 2 ** 20) * 4096 + leaf.lo) >>> 0;
        tab[2 * i + 1] = (Math.floor(pfn / 2 ** 20) | leaf.hi) >>> 0;
        this.count(t, 1);
        continue;
      }
      if (!tab[2 * i] && !tab[2 * i + 1]) {
        const [clo, chi] = this.tableEntry(this.tableNew(level - 1));
        tab[2 * i] = clo;
        tab[2 * i + 1] = chi;
        this.count(t, 1);
      }
      this.#mapFill(pfnOf(tab[2 * i]!, tab[2 * i + 1]!), level - 1, s, Math.max(lo, s), Math.min(hi, s + sp), leaf);
    }
  }

  ptMap(root: number, vpn: number, npages: number, pfn: number, protLo: number, protHi: number, level: number): number {
    this.rootCheck(root);
    if (level < 1 || level > 3) fail(E.EINVAL, R.R_PAGE_SIZE, level);
    this.rangeCheck(vpn, npages, level);
    if (protLo & ~LEAF_OK_LO || protHi & ~HI_OK) fail(E.EINVAL, R.R_PROT_BITS);
    if (!(pfn >= 0) || pfn !== Math.floor(pfn)) fail(E.EINVAL, R.R_PFN_RANGE);
    if (pfn % span(level)) fail(E.EINVAL, R.R_PFN_ALIGN, level);
    if (pfn + npages > this.maxPfn) fail(E.EINVAL, R.R_PFN_RANGE);
    let lo = (protLo | P) >>> 0;
    if (level > 1) lo = ((lo & ~PAT4K) | PS | (protLo & PAT4K ? PATL : 0)) >>> 0;
    const need = this.#mapCount(root, this.levels, 0, this.lo, this.hi, level);
    if (need < 0) fail(E.EEXIST, R.R_MAPPED);
    this.tablesAvailable(need);
    this.opTables = 0;
    this.#mapFill(root, this.levels, 0, this.lo, this.hi, { level, pfn, lo, hi: protHi >>> 0 });
    if (this.opTables !== need) throw new Error("reference: table count mismatch");
    return 0;
  }

  /* ---- splitting ---- */

  /** [level, table, index, leaf base] of the leaf mapping @lvpn, or level 0. */
  leafAt(root: number, lvpn: number): [number, number, number, number] {
    let t = root;
    for (let level = this.levels; level >= 1; level--) {
      const i = Math.floor(lvpn / span(level)) % 512;
      const [tab] = this.slot(t, i);
      const elo = tab[2 * i]!;
      const ehi = tab[2 * i + 1]!;
      if (!(elo & P)) return [0, 0, 0, 0];
      if (isLeaf(elo, level)) return [level, t, i, lvpn - (lvpn % span(level))];
      t = pfnOf(elo, ehi);
    }
    return [0, 0, 0, 0];
  }

  splitTablesNeeded(root: number, lo: number, hi: number, end: number): number {
    let n = 0;
    const [la, , , baseA] = this.leafAt(root, lo);
    const loCut1G = la === 3 && lo % span(3) !== 0;
    const loCut2M = (la === 3 || la === 2) && lo % 512 !== 0;
    if (loCut1G) n++;
    if (loCut2M) n++;
    if (hi >= end) return n;
    const [lb, , , baseB] = this.leafAt(root, hi);
    if (lb === 3 && hi % span(3) !== 0) {
      const sameGig = loCut1G && baseA === baseB;
      if (!sameGig) n++;
      if (hi % 512 !== 0 && !(sameGig && loCut2M && Math.floor(lo / 512) === Math.floor(hi / 512))) n++;
    } else if (lb === 2 && hi % 512 !== 0) {
      if (!(la === 2 && loCut2M && baseA === baseB)) n++;
    }
    return n;
  }

  splitAt(root: number, lvpn: number): void {
    for (;;) {
      const [level, t, i] = this.leafAt(root, lvpn);
      if (level < 2 || lvpn % span(level) === 0) return;
      const tab = this.tables.get(t)!;
      const olo = tab[2 * i]!;
      const ohi = tab[2 * i + 1]!;
      const c = this.tableNew(level - 1);
      const child = this.tables.get(c)!;
      let bitsLo = olo & 0xfff;
      if (level - 1 === 1) bitsLo = (bitsLo & ~PS) | (olo & PATL ? PAT4K : 0);
      else bitsLo |= olo & PATL;
      const bitsHi = ohi & ~FRAME_HI;
      const first = pfnOf(olo & ~PATL, ohi) - (pfnOf(olo & ~PATL, ohi) % span(level));
      const step = span(level - 1);
      for (let k = 0; k < 512; k++) {
        const pfn = first + k * step;
        child[2 * k] = ((pfn % 2 ** 20) * 4096 + bitsLo) >>> 0;
        child[2 * k + 1] = (Math.floor(pfn / 2 ** 20) | bitsHi) >>> 0;
      }
      this.phys.index[c] = 512;
      const [tlo, thi] = this.tableEntry(c);
      tab[2 * i] = tlo;
      tab[2 * i + 1] = thi;
    }
  }

  #prepareEdges(root: number): void {
    const end = 2 ** (this.vaBits - 12);
    this.tablesAvailable(this.splitTablesNeeded(root, this.lo, this.hi, end));
    this.opTables = 0;
    this.splitAt(root, this.lo);
    if (this.hi < end) this.splitAt(root, this.hi);
  }

  /* ---- unmap ---- */

  ptUnmap(root: number, vpn: number, npages: number, cap: number, ringEntries: number) {
    this.rootCheck(root);
    this.rangeCheck(vpn, npages, 1);
    if (cap > ringEntries) fail(E.EINVAL, R.R_COUNT, cap);
    this.#prepareEdges(root);
    const st = { cap, records: [] as LeafRecord[], leaves: 0, stopped: false, resume: 0, pages: 0 };
    this.#unmap(root, this.levels, 0, this.lo, this.hi, st);
    return {
      leaves: st.leaves,
      records: st.records,
      resume: st.stopped ? st.resume + this.vpnHigh : -1,
      pages: st.pages,
      tables: this.opTables,
    };
  }

  #unmap(
    t: number,
    level: number,
    base: number,
    lo: number,
    hi: number,
    st: { cap: number; records: LeafRecord[]; leaves: number; stopped: boolean; resume: number; pages: number },
  ): void {
    const sp = span(level);
    const tab = this.tables.get(t)!;
    for (let i = Math.floor((lo - base) / sp); i <= Math.floor((hi - 1 - base) / sp); i++) {
      const elo = tab[2 * i]!;
      const ehi = tab[2 * i + 1]!;
      if (!elo && !ehi) continue;
      const s = base + i * sp;
      if (isLeaf(elo, level)) {
        if (st.cap && st.leaves === st.cap) {
          st.stopped = true;
          st.resume = s;
          return;
        }
        tab[2 * i] = 0;
        tab[2 * i + 1] = 0;
        this.count(t, -1);
        st.pages += sp;
        if (st.cap) st.records.push({ lo: elo, hi: ehi, vpn: s + this.vpnHigh, level });
        st.leaves++;
        continue;
      }
      const c = pfnOf(elo, ehi);
      this.#unmap(c, level - 1, s, Math.max(lo, s), Math.min(hi, s + sp), st);
      if (this.phys.index[c] === 0) {
        tab[2 * i] = 0;
        tab[2 * i + 1] = 0;
        this.count(t, -1);
        this.tableFree(c);
      }
      if (st.stopped) return;
    }
  }

  /* ---- protect ---- */

  ptProtect(root: number, vpn: number, npages: number, setLo: number, setHi: number, clrLo: number, clrHi: number) {
    this.rootCheck(root);
    this.rangeCheck(vpn, npages, 1);
    if ((setLo | clrLo) & ~PROTECT_OK_LO || (setHi | clrHi) & ~HI_OK) fail(E.EINVAL, R.R_PROT_BITS);
    this.#prepareEdges(root);
    const st = { changed: 0, pages: 0 };
    this.#protect(root, this.levels, 0, this.lo, this.hi, [setLo, setHi, clrLo, clrHi], st);
    return { changed: st.changed, pages: st.pages, tables: this.opTables };
  }

  #protect(t: number, level: number, base: number, lo: number, hi: number, bits: number[], st: { changed: number; pages: number }): void {
    const sp = span(level);
    const tab = this.tables.get(t)!;
    const [setLo, setHi, clrLo, clrHi] = bits as [number, number, number, number];
    for (let i = Math.floor((lo - base) / sp); i <= Math.floor((hi - 1 - base) / sp); i++) {
      const elo = tab[2 * i]!;
      const ehi = tab[2 * i + 1]!;
      if (!(elo & P)) continue;
      const s = base + i * sp;
      if (isLeaf(elo, level)) {
        st.pages += sp;
        const nlo = ((elo & ~clrLo) | setLo) >>> 0;
        const nhi = ((ehi & ~clrHi) | setHi) >>> 0;
        if (nlo !== elo || nhi !== ehi) {
          tab[2 * i] = nlo;
          tab[2 * i + 1] = nhi;
          st.changed++;
        }
        continue;
      }
      this.#protect(pfnOf(elo, ehi), level - 1, s, Math.max(lo, s), Math.min(hi, s + sp), bits, st);
    }
  }

  /* ---- single entries ---- */

  ptepGet(root: number, vpn: number, want: number): { level: number; lo: number; hi: number } {
    this.rootCheck(root);
    if (want > this.levels) fail(E.EINVAL, R.R_LEVEL, want);
    this.rangeCheck(vpn, 1, 1);
    let t = root;
    let level = this.levels;
    for (;;) {
      const [lo, hi] = this.entry(t, level, this.lo);
      if (level === want || !(lo & P) || isLeaf(lo, level)) return { level, lo, hi };
      t = pfnOf(lo, hi);
      level--;
    }
  }

  ptepSet(root: number, vpn: number, level: number, lo: number, hi: number, ringEntries: number): void {
    this.rootCheck(root);
    if (level < 1 || level > this.levels) fail(E.EINVAL, R.R_LEVEL, level);
    this.rangeCheck(vpn, 1, 1);
    let t = root;
    for (let l = this.levels; l > level; l--) {
      const [elo, ehi] = this.entry(t, l, this.lo);
      if (!(elo & P) || isLeaf(elo, l)) fail(E.ENOENT, R.R_NOT_MAPPED, l);
      t = pfnOf(elo, ehi);
    }
    const i = Math.floor(this.lo / span(level)) % 512;
    const tab = this.tables.get(t)!;
    const olo = tab[2 * i]!;
    const ohi = tab[2 * i + 1]!;
    const oldTable = level > 1 && (olo & P) !== 0 && !isLeaf(olo, level);
    if (oldTable) {
      const keepLo = (P | FRAME_LO | (level <= 3 ? PS : 0)) >>> 0;
      if (((lo & keepLo) >>> 0) !== ((olo & keepLo) >>> 0) || (hi & FRAME_HI) !== (ohi & FRAME_HI)) {
        fail(E.EINVAL, R.R_TABLE_ENTRY, level);
      }
    } else if (level >= 4) {
      if (lo || hi) fail(E.EINVAL, R.R_TABLE_ENTRY, level);
    } else if (level >= 2) {
      if ((lo || hi) && (lo & (P | PS)) !== (P | PS)) fail(E.EINVAL, R.R_TABLE_ENTRY, level);
    }
    if (!lo && !hi) {
      if (!olo && !ohi) return;
      const sp = span(level);
      this.ptUnmap(root, this.lo - (this.lo % sp) + this.vpnHigh, sp, 0, ringEntries);
      return;
    }
    tab[2 * i] = lo >>> 0;
    tab[2 * i + 1] = hi >>> 0;
    if (!olo && !ohi) this.count(t, 1);
  }
}

interface LeafSpec {
  level: number;
  pfn: number;
  lo: number;
  hi: number;
}
