/**
 * Reference model of the core's GUP (assembly/mm/gup.ts, unpin.ts): gupRange (GUP-fast and
 * the slow path's follow_page over present pages) and unpinPages, over RefPhys and
 * RefPageTables, in plain TypeScript: the same checks in the same order, the same counts,
 * the same race script. One thread: the "concurrent" stores of a race script happen at the
 * points the script names.
 */
import * as E from "../../src/abi/errno.js";
import * as F from "../../src/abi/frame.js";
import * as G from "../../src/abi/gup.js";
import * as R from "../../src/abi/reason.js";
import * as X from "../../src/abi/x86.js";
import { fail, type RefPhys } from "./buddy.js";
import { P, PS, RW, US, D, pfnOf, span, type RefPageTables } from "./pgtable.js";

const SPECIAL = X.PTE_SOFTW1;
const ALLOWED =
  G.FOLL_WRITE | G.FOLL_GET | G.FOLL_PIN | G.FOLL_LONGTERM | G.FOLL_PCI_P2PDMA | G.FOLL_FORCE | G.FOLL_TOUCH |
  G.FOLL_NOFAULT | G.GUPM_LOCKED | G.GUPM_FORCE_WRITE_OK | G.GUPM_COW_VMA | G.GUPM_RACE;

/** One store of a race script. */
export interface Race {
  at: number;
  phase: 0 | 1;
  vpn: number;
  level: number;
  put: boolean;
  lo: number;
  hi: number;
  seq: number;
}

export interface GupResult {
  taken: number;
  pfns: number[];
  stop: number;
  grabs: number;
  hugePages: number;
  loads: number;
  unpinnable: number;
}

class Stop extends Error {
  constructor(readonly why: number) {
    super("stop");
  }
}

export class RefGup {
  readonly p: RefPhys;
  readonly pts: RefPageTables;
  zeroPfn = 0;
  pinAcquired = 0;
  pinReleased = 0;
  /** Pins released by putFolio and not yet added to pinReleased (the core's pinReleased). */
  relPending = 0;
  /* The call in progress. */
  #fl = 0;
  #pkru = 0;
  #root = 0;
  #out: number[] = [];
  #grabs = 0;
  #loads = 0;
  #unpinnable = 0;
  #huge = 0;
  #races: Race[] = [];
  #acq = 0;
  /** The P2PDMA frames this call refuses, [lo, lo + span): none with FOLL_PCI_P2PDMA (the core's p2pLo/p2pSpan). */
  #p2pLo = 0;
  #p2pSpan = 0;

  constructor(p: RefPhys, pts: RefPageTables) {
    this.p = p;
    this.pts = pts;
  }

  maxPages(ringEntries: number): number {
    return Math.floor((ringEntries * 24 - G.RACE_BASE) / 8);
  }

  /* ---- struct page ---- */

  head(pfn: number): number {
    return this.p.flags[pfn]! & F.PG_tail ? this.p.mapping[pfn]! : pfn;
  }

  #order(head: number): number {
    const f = this.p.flags[head]!;
    return f & F.PG_head ? (f >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK : 0;
  }

  #put(head: number, n: number): boolean {
    const left = (this.p.refcount[head]! -= n);
    if (left < 0) throw new Error("reference: refcount below zero");
    if (left !== 0) return false;
    this.p.freeBlock(head, this.#order(head));
    return true;
  }

  #zoneKind(pfn: number): number {
    const z = this.p.zoneOf(pfn);
    return z ? z.kind : -1;
  }

  /** is_pci_p2pdma_page(@pfn) && !(flags & FOLL_PCI_P2PDMA): try_grab_folio refuses the page (-EREMOTEIO). */
  #p2pdmaRefused(pfn: number): boolean {
    return pfn >= this.#p2pLo && pfn < this.#p2pLo + this.#p2pSpan;
  }

  #pinnable(pfn: number): boolean {
    return this.#zoneKind(pfn) === F.ZONE_NORMAL || pfn === this.zeroPfn;
  }

  /** gup_put_folio (the core's gupPutFolio). */
  putFolio(head: number, refs: number, flags: number): boolean {
    if (flags & G.FOLL_PIN) {
      if (head === this.zeroPfn) return false;
      this.relPending += refs;
      if (this.p.flags[head]! & F.PG_head) this.p.index[head + 1] = this.p.index[head + 1]! - refs;
      else refs *= F.GUP_PIN_COUNTING_BIAS;
    }
    return this.#put(head, refs);
  }

  #grab(pfn: number, refs: number): number {
    this.#grabs++;
    const head = this.head(pfn);
    const old = this.p.refcount[head]!;
    if (old <= 0 || old > 0x7fffffff - refs * F.GUP_PIN_COUNTING_BIAS) throw new Stop(G.GUP_STOP_GRAB);
    this.p.refcount[head] = old + refs;
    if (this.#fl & G.FOLL_PIN) {
      if ((this.#fl & (G.FOLL_LONGTERM | G.GUPM_LOCKED)) === G.FOLL_LONGTERM && !this.#pinnable(head)) {
        this.#put(head, refs);
        throw new Stop(G.GUP_STOP_LONGTERM);
      }
      if (this.p.flags[head]! & F.PG_head) this.p.index[head + 1] = this.p.index[head + 1]! + refs;
      else this.p.refcount[head] = this.p.refcount[head]! + refs * (F.GUP_PIN_COUNTING_BIAS - 1);
      this.#acq += refs;
    }
    return head;
  }

  /* ---- page-table access ---- */

  #slot(t: number, level: number, vpn: number): [Uint32Array, number] {
    return [this.pts.tables.get(t)!, 2 * (Math.floor(vpn / span(level)) % 512)];
  }

  #isTable(pfn: number): boolean {
    return pfn < this.p.nrFrames && (this.p.flags[pfn]! & F.PG_pgtable) !== 0;
  }

  /** The slot of @vpn's entry at @level, or null when a table on the way is missing. */
  #entryFor(vpn: number, level: number): [Uint32Array, number] | null {
    let t = this.#root;
    for (let l = this.pts.levels; l >= level; l--) {
      const [tab, k] = this.#slot(t, l, vpn);
      if (l === level) return [tab, k];
      const lo = tab[k]!;
      if (!(lo & P) || (l <= 3 && lo & PS)) return null;
      const next = pfnOf(lo, tab[k + 1]!);
      if (!this.#isTable(next)) return null;
      t = next;
    }
    return null;
  }

  #race(at: number, phase: number): void {
    for (const r of this.#races) {
      if (r.at !== at || r.phase !== phase) continue;
      const slot = this.#entryFor(r.vpn, r.level);
      if (slot) {
        const [tab, k] = slot;
        const olo = tab[k]!;
        const ohi = tab[k + 1]!;
        tab[k] = r.lo >>> 0;
        tab[k + 1] = r.hi >>> 0;
        if (r.put && (r.level === 1 || olo & PS) && olo & P && !(olo & SPECIAL)) {
          const pfn = pfnOf(olo, ohi);
          if (pfn < this.p.nrFrames && !(this.p.flags[pfn]! & F.PG_pgtable) && this.p.refcount[this.head(pfn)]! > 0) {
            this.#put(this.head(pfn), 1);
          }
        }
      }
      this.p.mapcount[this.#root] = (this.p.mapcount[this.#root]! + r.seq) | 0;
    }
  }

  #permitted(lo: number, hi: number, write: boolean): boolean {
    if ((lo & (P | US)) !== (P | US)) return false;
    if (write && !(lo & RW)) return false;
    const key = (hi >>> (X.PTE_BIT_PKEY - 32)) & 0xf;
    const bits = (this.#pkru >>> (2 * key)) & 3;
    return (bits & 1) === 0 && !(write && bits & 2);
  }

  #writeAllowed(lo: number, excl: number, hf: number): boolean {
    const fl = this.#fl;
    if (!(fl & G.FOLL_WRITE) || lo & RW) return true;
    const need = G.GUPM_LOCKED | G.FOLL_FORCE | G.GUPM_FORCE_WRITE_OK;
    if ((fl & need) !== need) return false;
    return (hf & F.PG_anon) !== 0 && (excl & F.PG_anon_exclusive) !== 0;
  }

  #leafChecks(lo: number, head: number, excl: number): void {
    const fl = this.#fl;
    const hf = this.p.flags[head]!;
    const anon = (hf & F.PG_anon) !== 0;
    const locked = (fl & G.GUPM_LOCKED) !== 0;
    const all = G.FOLL_PIN | G.FOLL_LONGTERM | G.FOLL_WRITE;
    if (!locked && (fl & all) === all && !anon && !(hf & F.PG_swapbacked)) throw new Stop(G.GUP_STOP_FILE_PIN);
    if (!(lo & RW) && (fl & (G.FOLL_WRITE | G.FOLL_PIN)) === G.FOLL_PIN) {
      const unshare = anon ? (excl & F.PG_anon_exclusive) === 0 : (fl & G.FOLL_LONGTERM) !== 0 && (!locked || (fl & G.GUPM_COW_VMA) !== 0);
      if (unshare) throw new Stop(G.GUP_STOP_UNSHARE);
    }
    let set = 0;
    if (!(hf & F.PG_referenced)) set |= F.PG_referenced;
    if (locked && (fl & (G.FOLL_TOUCH | G.FOLL_WRITE)) === (G.FOLL_TOUCH | G.FOLL_WRITE) && !(lo & D) && !(hf & F.PG_dirty)) set |= F.PG_dirty;
    this.p.flags[head] = this.p.flags[head]! | set;
  }

  /** A grab undone when a check after it fails; the Stop goes on. */
  #checked(head: number, refs: number, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof Stop) this.putFolio(head, refs, this.#fl);
      throw e;
    }
  }

  #pte(tab: Uint32Array, k: number, pmdTab: Uint32Array, pk: number, v: number, first: number): void {
    const fl = this.#fl;
    const locked = (fl & G.GUPM_LOCKED) !== 0;
    const write = (fl & G.FOLL_WRITE) !== 0;
    const lo = tab[k]!;
    const hi = tab[k + 1]!;
    this.#loads++;
    if (!(lo & P)) throw new Stop(G.GUP_STOP_NOT_PRESENT);
    if (!this.#permitted(lo, hi, write && (!locked || (lo & RW) !== 0))) throw new Stop(G.GUP_STOP_PERM);
    const pfn = pfnOf(lo, hi);
    if (lo & SPECIAL) {
      if (!locked || pfn !== this.zeroPfn) throw new Stop(G.GUP_STOP_SPECIAL);
      if (write) throw new Stop(G.GUP_STOP_PERM);
      if (fl & G.FOLL_GET) {
        this.#grabs++;
        this.p.refcount[pfn] = this.p.refcount[pfn]! + 1;
      }
      this.#out.push(pfn);
      return;
    }
    if (pfn >= this.p.nrFrames) throw new Stop(G.GUP_STOP_NO_PAGE);
    if (this.#p2pdmaRefused(pfn)) throw new Stop(G.GUP_STOP_P2PDMA);
    const pf = this.p.flags[pfn]!;
    if (write && !(lo & RW) && !this.#writeAllowed(lo, pf, this.p.flags[this.head(pfn)]!)) throw new Stop(G.GUP_STOP_PERM);
    if (!locked && fl & G.FOLL_LONGTERM && this.#zoneKind(pfn) === F.ZONE_DEVICE) throw new Stop(G.GUP_STOP_DEVMAP);
    this.#race(v - first, 0);
    const head = this.#grab(pfn, 1);
    // (The checks after the grab, as #checked runs them, written out: this runs per page.)
    try {
      this.#race(v - first, 1);
      if (!locked && (pmdTab[pk] !== this.#pmd[0] || pmdTab[pk + 1] !== this.#pmd[1] || tab[k] !== lo || tab[k + 1] !== hi)) {
        throw new Stop(G.GUP_STOP_CHANGED);
      }
      this.#leafChecks(lo, head, pf);
    } catch (e) {
      if (e instanceof Stop) this.putFolio(head, 1, this.#fl);
      throw e;
    }
    if (locked && fl & G.FOLL_LONGTERM && !this.#pinnable(pfn)) this.#unpinnable++;
    this.#out.push(pfn);
  }

  #pmd: [number, number] = [0, 0];

  #hugeLeaf(tab: Uint32Array, k: number, level: number, lv: number, end: number, first: number): void {
    const fl = this.#fl;
    const locked = (fl & G.GUPM_LOCKED) !== 0;
    const write = (fl & G.FOLL_WRITE) !== 0;
    const lo = tab[k]!;
    const hi = tab[k + 1]!;
    if (!this.#permitted(lo, hi, write && (!locked || (lo & RW) !== 0))) throw new Stop(G.GUP_STOP_PERM);
    if (lo & SPECIAL) throw new Stop(G.GUP_STOP_SPECIAL);
    const sp = span(level);
    const base = pfnOf(lo, hi) - (pfnOf(lo, hi) % sp);
    const pfn = base + (lv % sp);
    if (pfn + (end - lv) > this.p.nrFrames) throw new Stop(G.GUP_STOP_NO_PAGE);
    // The first page's zone only, as the core checks it.
    if (this.#p2pdmaRefused(pfn)) throw new Stop(G.GUP_STOP_P2PDMA);
    const hf0 = this.p.flags[this.head(pfn)]!;
    if (write && !(lo & RW) && !this.#writeAllowed(lo, hf0, hf0)) throw new Stop(G.GUP_STOP_PERM);
    if (!locked && fl & G.FOLL_LONGTERM && this.#zoneKind(pfn) === F.ZONE_DEVICE) throw new Stop(G.GUP_STOP_DEVMAP);
    const nr = end - lv;
    this.#race(lv - first, 0);
    const head = this.#grab(pfn, nr);
    this.#checked(head, nr, () => {
      this.#race(lv - first, 1);
      if (!locked && (tab[k] !== lo || tab[k + 1] !== hi)) throw new Stop(G.GUP_STOP_CHANGED);
      this.#leafChecks(lo, head, this.p.flags[head]!);
    });
    if (locked && fl & G.FOLL_LONGTERM && !this.#pinnable(pfn)) this.#unpinnable += nr;
    for (let i = 0; i < nr; i++) this.#out.push(pfn + i);
    this.#huge += nr;
  }

  #walkRange(lv: number, end: number): void {
    const first = lv;
    while (lv < end) {
      let t = this.#root;
      let level = this.pts.levels;
      for (;;) {
        const [tab, k] = this.#slot(t, level, lv);
        const lo = tab[k]!;
        this.#loads++;
        const sp = span(level);
        const to = Math.min(end, lv - (lv % sp) + sp);
        if (!(lo & P)) throw new Stop(G.GUP_STOP_NOT_PRESENT);
        if (level <= 3 && lo & PS) {
          this.#hugeLeaf(tab, k, level, lv, to, first);
          lv = to;
          break;
        }
        const next = pfnOf(lo, tab[k + 1]!);
        if (!this.#isTable(next)) throw new Stop(G.GUP_STOP_NOT_PRESENT);
        if (level === 2) {
          this.#pmd = [lo, tab[k + 1]!];
          const ptab = this.pts.tables.get(next)!;
          for (let v = lv; v < to; v++) this.#pte(ptab, 2 * (v % 512), tab, k, v, first);
          lv = to;
          break;
        }
        t = next;
        level--;
      }
    }
  }

  /** gupRange, as the core's export. */
  gupRange(root: number, vpn: number, npages: number, flags: number, pkru: number, races: Race[], ringEntries: number): GupResult {
    this.pts.rootCheck(root);
    if (flags & ~ALLOWED) fail(E.EINVAL, R.R_FLAGS, (flags & ~ALLOWED) >>> 0);
    if (((flags & G.FOLL_GET) !== 0) === ((flags & G.FOLL_PIN) !== 0)) fail(E.EINVAL, R.R_FLAGS, flags);
    if (npages === 0) fail(E.EINVAL, R.R_SIZE_ZERO);
    if (npages > this.maxPages(ringEntries)) fail(E.EINVAL, R.R_COUNT, npages);
    const half = 2 ** (this.pts.vaBits - 13);
    if (!(vpn >= 0) || vpn !== Math.floor(vpn) || vpn + npages > half) fail(E.EINVAL, R.R_NONCANONICAL);
    if (flags & G.GUPM_RACE && races.length > G.RACE_MAX) fail(E.EINVAL, R.R_COUNT, races.length);
    this.#fl = flags;
    this.#pkru = pkru >>> 0;
    this.#root = root;
    this.#out = [];
    this.#grabs = 0;
    this.#loads = 0;
    this.#unpinnable = 0;
    this.#huge = 0;
    this.#races = flags & G.GUPM_RACE ? races : [];
    this.#acq = 0;
    this.#p2pLo = 0;
    this.#p2pSpan = 0;
    if (!(flags & G.FOLL_PCI_P2PDMA)) {
      for (const z of this.p.zones) {
        if (z.kind !== F.ZONE_P2PDMA) continue;
        this.#p2pLo = z.start;
        this.#p2pSpan = z.end - z.start;
      }
    }
    let stop: number = G.GUP_STOP_NONE;
    const run = (): void => {
      try {
        this.#walkRange(vpn, vpn + npages);
      } catch (e) {
        if (!(e instanceof Stop)) throw e;
        stop = e.why;
      }
    };
    if (flags & G.GUPM_LOCKED) {
      run();
    } else {
      let seq = 0;
      if (flags & G.FOLL_PIN) {
        seq = this.p.mapcount[root]!;
        this.p.flags[root] = this.p.flags[root]! | F.PG_has_pinned;
      }
      if (flags & G.FOLL_PIN && seq & 1) {
        stop = G.GUP_STOP_SEQ;
      } else {
        run();
        if (flags & G.FOLL_PIN && this.p.mapcount[root] !== seq) {
          this.#undoAll();
          stop = G.GUP_STOP_SEQ;
        }
      }
    }
    this.pinAcquired += this.#acq;
    this.pinReleased += this.relPending;
    this.relPending = 0;
    return {
      taken: this.#out.length, pfns: this.#out, stop, grabs: this.#grabs, hugePages: this.#huge, loads: this.#loads,
      unpinnable: this.#unpinnable,
    };
  }

  #undoAll(): void {
    const out = this.#out;
    for (let i = 0; i < out.length; ) {
      const head = this.head(out[i]!);
      let n = 1;
      while (i + n < out.length && this.head(out[i + n]!) === head) n++;
      this.putFolio(head, n, this.#fl);
      i += n;
    }
    this.#out = [];
    this.#huge = 0;
  }
}
