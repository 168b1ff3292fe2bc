/**
 * A page-table hierarchy (an mm's pgd): mapping, unmapping and protecting ranges, and
 * reading or writing single entries. Each call is one crossing into the core, whatever the
 * range's size, and is all or nothing.
 * @module
 */
import * as H from "../abi/header.js";
import { einval } from "../errors.js";
import { type Address, addressOf, hex, pageCount, pageNumber } from "../core/addr.js";
import type { Core } from "../core/core.js";
import type { Clock } from "../sim/clock.js";
import type { CostTable } from "../sim/cost.js";
import type { Trace } from "../trace/trace.js";
import { type Prot, type ProtChange, changeWords, decodePte, protWords, type PteInfo } from "./prot.js";

export type PageSize = "4K" | "2M" | "1G";
const LEVEL_OF: Record<PageSize, number> = { "4K": 1, "2M": 2, "1G": 3 };

/** A leaf cleared by unmapPageRange({collect: true}). */
export interface UnmappedLeaf {
  va: Address;
  /** The entry as it was cleared, with the A and D bits the CPUs set. */
  pte: bigint;
  /** 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB. */
  level: number;
  info: PteInfo;
}

export interface UnmapResult {
  /** Leaves cleared. */
  leaves: number;
  /** 4 KiB pages those leaves mapped. */
  pages: number;
  /** Page-table pages allocated (splits) plus freed (emptied). */
  tables: number;
  records: UnmappedLeaf[];
}

export interface PtepResult {
  /** Level of the entry: where the walk found a leaf or an empty entry. */
  level: number;
  pte: bigint;
  info: PteInfo;
}

interface Env {
  core: Core;
  clock: Clock;
  costs: CostTable;
  trace: Trace;
}

export class PageTable {
  /** The root table's frame (CR3's page frame). */
  readonly pfn: number;
  readonly #env: Env;

  constructor(env: Env, pfn: number) {
    this.#env = env;
    this.pfn = pfn;
  }

  get #core(): Core {
    return this.#env.core;
  }

  #charge(ptes: number): number {
    const ns = ptes * this.#env.costs.pteWrite.ns;
    this.#env.clock.advance(ns);
    return ns;
  }

  /**
   * remapPfnRange - map @size bytes at @va to the frames from @pfn on, with leaves of
   * @pageSize (the page-table work of remap_pfn_range / vmap_range).
   * Throws EINVAL (alignment, range, bits), EEXIST (something mapped there) or ENOMEM
   * (no frames for the tables); nothing changes on failure.
   */
  remapPfnRange(va: Address, pfn: number, size: Address, prot: Prot = {}, pageSize: PageSize = "4K"): void {
    const level = LEVEL_OF[pageSize];
    if (level === undefined) throw einval("pageSize", `${String(pageSize)} is not 4K, 2M or 1G`);
    if (!Number.isSafeInteger(pfn) || pfn < 0) throw einval("pfn", `${pfn} is not a frame number`);
    const vpn = pageNumber(va, "va");
    const n = pageCount(size, "size");
    const [lo, hi] = protWords(prot);
    const c = this.#core;
    c.check(c.x.ptMap(this.pfn, vpn, n, pfn, lo, hi, level), "remapPfnRange");
    const leaves = n / 2 ** (9 * (level - 1));
    const ts = this.#env.clock.now;
    const dur = this.#charge(leaves);
    const tables = c.reg32(H.REG_TABLES);
    this.#env.trace.emit("pt.map", { pgd: this.pfn, va: hex(va), size: n * 4096, pfn, pageSize, tables }, ts, dur);
    this.#env.trace.count("pt.leaves_mapped", leaves);
  }

  /**
   * unmapPageRange - clear every entry in [@va, @va + @size), splitting huge leaves the
   * range cuts and freeing tables that empty (zap_page_range + free_pgtables). TLBs are not
   * flushed: a CPU may keep using a stale translation until the caller flushes it.
   * @collect: return each cleared leaf (with its A/D bits), so the caller can account
   * for the frames.
   */
  unmapPageRange(va: Address, size: Address, opts: { collect?: boolean } = {}): UnmapResult {
    const c = this.#core;
    let vpn = pageNumber(va, "va");
    let n = pageCount(size, "size");
    const total = n;
    const end = vpn + n;
    const cap = opts.collect ? c.hdr(H.HDR_RING_ENTRIES) : 0;
    const out: UnmapResult = { leaves: 0, pages: 0, tables: 0, records: [] };
    for (;;) {
      const leaves = c.check(c.x.ptUnmap(this.pfn, vpn, n, cap), "unmapPageRange");
      out.leaves += leaves;
      out.pages += c.regF64(H.REG_PAGES);
      out.tables += c.reg32(H.REG_TABLES);
      for (let i = 0; i < (cap ? leaves : 0); i++) {
        const e = c.entry(i);
        const pte = (BigInt(c.u32[(e + H.LEAF_PTE + 4) >>> 2]!) << 32n) | BigInt(c.u32[(e + H.LEAF_PTE) >>> 2]!);
        const level = c.u32[(e + H.LEAF_LEVEL) >>> 2]!;
        out.records.push({ va: addressOf(c.f64[(e + H.LEAF_VPN) >>> 3]!), pte, level, info: decodePte(pte, level) });
      }
      const resume = c.regF64(H.REG_RESUME);
      if (resume < 0) break;
      vpn = resume;
      n = end - resume;
    }
    const ts = this.#env.clock.now;
    const dur = this.#charge(out.leaves);
    this.#env.trace.emit(
      "pt.unmap",
      { pgd: this.pfn, va: hex(va), size: total * 4096, leaves: out.leaves, pages: out.pages, tables: out.tables },
      ts,
      dur,
    );
    this.#env.trace.count("pt.leaves_unmapped", out.leaves);
    return out;
  }

  /**
   * changeProtection - set (true) or clear (false) the named bits of every present leaf in
   * [@va, @va + @size); bits not named stay. Huge leaves the range cuts are split. TLBs are
   * not flushed. Returns the number of leaves whose entry changed.
   */
  changeProtection(va: Address, size: Address, change: ProtChange): number {
    const c = this.#core;
    const vpn = pageNumber(va, "va");
    const n = pageCount(size, "size");
    const [sLo, sHi, cLo, cHi] = changeWords(change);
    const changed = c.check(c.x.ptProtect(this.pfn, vpn, n, sLo, sHi, cLo, cHi), "changeProtection");
    const ts = this.#env.clock.now;
    const dur = this.#charge(changed);
    this.#env.trace.emit(
      "pt.protect",
      { pgd: this.pfn, va: hex(va), size: n * 4096, changed, tables: c.reg32(H.REG_TABLES) },
      ts,
      dur,
    );
    return changed;
  }

  /**
   * ptepGet - the entry for @va at @level (1 = PTE ... 4/5 = root), or, without @level,
   * the first leaf or empty entry the walk meets. A walk that meets a leaf or an empty
   * entry above @level stops there: the result's level says where.
   */
  ptepGet(va: Address, level = 0): PtepResult {
    return this.ptepGetVpn(pageNumber(va, "va"), level);
  }

  /** ptepGetVpn - ptepGet by page number (exact for every address, for the kernel's own use). */
  ptepGetVpn(vpn: number, level = 0): PtepResult {
    if (!Number.isInteger(level) || level < 0) throw einval("level", `${level} is not a level`);
    const c = this.#core;
    const got = c.check(c.x.ptepGet(this.pfn, vpn, level), "ptepGet");
    const pte = (BigInt(c.reg32(H.REG_PTE_HI)) << 32n) | BigInt(c.reg32(H.REG_PTE_LO));
    return { level: got, pte, info: decodePte(pte, got) };
  }

  /**
   * setPteAt - write a raw entry at @level for @va (set_pte_at / set_pmd_at), e.g. to show
   * the hardware a reserved bit. An entry pointing to a table may change only its flags;
   * no table is created; writing 0 unmaps (freeing emptied tables).
   */
  setPteAt(va: Address, level: number, value: bigint): void {
    if (typeof value !== "bigint" || value < 0n || value >= 1n << 64n) {
      throw einval("value", "must be a 64-bit bigint");
    }
    if (!Number.isInteger(level)) throw einval("level", `${level} is not a level`);
    const c = this.#core;
    const vpn = pageNumber(va, "va");
    c.check(c.x.ptepSet(this.pfn, vpn, level, Number(value & 0xffffffffn), Number(value >> 32n)), "setPteAt");
    this.#env.trace.emit("pt.set", { pgd: this.pfn, va: hex(va), level, value: "0x" + value.toString(16) }, this.#env.clock.now);
  }

  /** pgdFree - free the root table. Throws EBUSY while it still maps anything. */
  free(): void {
    this.#core.check(this.#core.x.pgdFree(this.pfn), "pgdFree");
    this.#env.trace.emit("pt.free", { pgd: this.pfn }, this.#env.clock.now);
  }
}

