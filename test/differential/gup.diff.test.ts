/**
 * Differential test of GUP: the core's gupRange (GUP-fast and the slow path's follow_page)
 * and unpinPages against the reference model (test/reference/gup.ts, unpin.ts), over random
 * page-table states (4 KiB and 2 MiB leaves of small and compound folios in NORMAL, MOVABLE
 * and CMA, special entries, protection keys, pages flagged anonymous, exclusive, shmem) and
 * random concurrent-modification interleavings: race scripts that store an entry, drop the
 * mapping's reference or bump write_protect_seq between GUP-fast's read of an entry and its
 * grab, or between the grab and the re-check. Same results, same pages, same stop reasons
 * and counts, and the same frames, tables and vmstat at every checkpoint.
 *
 * One configuration has a P2PDMA zone: blocks of it split_page'd into order-0 pages as
 * pciP2pdmaAddResource makes them (or left compound, or not split yet) are mapped like any
 * other, and GUP runs with and without FOLL_PCI_P2PDMA (without it, it stops at such a page:
 * GUP_STOP_P2PDMA). splitPage itself is one of the random operations there.
 *
 * On failure fast-check prints the seed and path; rerun with DMALAB_SEED=<seed>.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as F from "../../src/abi/frame.js";
import * as G from "../../src/abi/gup.js";
import * as X from "../../src/abi/x86.js";
import { type MachineConfig, parseMachineOptions } from "../../src/config.js";
import { readFileSync } from "node:fs";
import { CoreDriver, type Driver, RefDriver, type Result } from "../reference/driver.js";
import { stateDiff } from "../reference/state-diff.js";
import type { Race } from "../reference/gup.js";

const WIN = 0x7_0000_0000; // a user window, 2 MiB aligned (vpn % 512 == 0)

type Op =
  | { k: "alloc"; zl: number; order: number }
  | { k: "free"; pick: number }
  | { k: "p2p"; order: number; mode: number }
  | { k: "split"; pick: number; off: number; order: number }
  | { k: "map"; pick: number; off: number; vpn: number; n: number; lo: number; hi: number; huge: boolean }
  | { k: "unmap"; vpn: number; n: number }
  | { k: "protect"; vpn: number; n: number; set: number; clr: number }
  | { k: "flags"; pick: number; set: number; clr: number }
  | { k: "seq"; twice: boolean }
  | { k: "gup"; at: VpnSel; n: number; flags: number; pkru: number; races: RaceSpec[]; kheapAt: number }
  | { k: "unpin"; pick: number; cut: number; flags: number; mess: number };

interface RaceSpec {
  at: number;
  phase: 0 | 1;
  dv: number;
  huge: boolean;
  how: number;
  put: boolean;
  seq: number;
}

const vpnArb = fc.integer({ min: 0, max: 3 * 512 }).map((o) => WIN + o);
/** A page: a random one, or one near a recent successful map (so GUP finds pages). */
type VpnSel = { recent: number; delta: number } | number;
const selArb: fc.Arbitrary<VpnSel> = fc.oneof(
  { weight: 1, arbitrary: vpnArb },
  { weight: 4, arbitrary: fc.record({ recent: fc.nat(), delta: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: -2, max: 8 }) }) }) },
);
const protLo = fc.oneof(
  { weight: 10, arbitrary: fc.constant(X.PTE_RW | X.PTE_US | X.PTE_A) },
  { weight: 4, arbitrary: fc.constantFrom(X.PTE_US, X.PTE_RW | X.PTE_US | X.PTE_D, X.PTE_RW | X.PTE_US | X.PTE_SOFTW1, X.PTE_RW) },
);
const FOLL = [G.FOLL_WRITE, G.FOLL_LONGTERM, G.FOLL_FORCE, G.FOLL_TOUCH, G.GUPM_LOCKED, G.GUPM_FORCE_WRITE_OK, G.GUPM_COW_VMA];
const flagsArbBase = fc.tuple(fc.boolean(), fc.array(fc.constantFrom(...FOLL), { maxLength: 4 }), fc.oneof({ weight: 30, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(G.FOLL_GET | G.FOLL_PIN, 1 << 30, G.FOLL_DUMP) })).map(
  ([pin, more, bad]) => (pin ? G.FOLL_PIN : G.FOLL_GET) | more.reduce((a, b) => a | b, 0) | bad,
);
/** With a P2PDMA zone: FOLL_PCI_P2PDMA in half the calls. */
const flagsArbP2p = fc.tuple(flagsArbBase, fc.boolean()).map(([f, p2p]) => (p2p ? f | G.FOLL_PCI_P2PDMA : f));
const raceArb: fc.Arbitrary<RaceSpec> = fc.record({
  at: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 8 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }) }),
  phase: fc.constantFrom(0 as const, 1 as const),
  dv: fc.oneof({ weight: 2, arbitrary: fc.constant(-1) }, { weight: 3, arbitrary: fc.integer({ min: -1, max: 40 }) }),
  huge: fc.boolean(),
  how: fc.integer({ min: 0, max: 5 }),
  put: fc.boolean(),
  seq: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 2) }),
});
const PAGE_FLAGS = [F.PG_anon, F.PG_anon_exclusive, F.PG_swapbacked, F.PG_dirty, F.PG_referenced];
const pageFlagsArb = fc.array(fc.constantFrom(...PAGE_FLAGS), { maxLength: 3 }).map((a) => a.reduce((x, y) => x | y, 0));

/** The operations; @p2p: the machine has a P2PDMA zone (P2PDMA blocks, splitPage, FOLL_PCI_P2PDMA). */
const opArbOf = (p2p: boolean): fc.Arbitrary<Op> => fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant("alloc" as const), zl: fc.constantFrom(0xf0, 0xf1, 0xf2, 0xf0), order: fc.constantFrom(0, 0, 1, 2, 3, 4, 9) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("free" as const), pick: fc.nat() }) },
  { weight: 8, arbitrary: fc.record({ k: fc.constant("map" as const), pick: fc.nat(), off: fc.nat(), vpn: vpnArb, n: fc.integer({ min: 1, max: 24 }), lo: protLo, hi: fc.constantFrom(0, 0, 0, 0x80000000, 0x08000000), huge: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("unmap" as const), vpn: vpnArb, n: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.constant(512)) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("protect" as const), vpn: vpnArb, n: fc.integer({ min: 1, max: 64 }), set: fc.constantFrom(0, X.PTE_RW, X.PTE_US), clr: fc.constantFrom(0, X.PTE_RW, X.PTE_US) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("flags" as const), pick: fc.nat(), set: pageFlagsArb, clr: pageFlagsArb }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("seq" as const), twice: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }) }) },
  {
    weight: 20,
    arbitrary: fc.record({
      k: fc.constant("gup" as const), at: selArb,
      n: fc.oneof({ weight: 24, arbitrary: fc.integer({ min: 1, max: 24 }) }, { weight: 4, arbitrary: fc.integer({ min: 25, max: 170 }) }, { weight: 1, arbitrary: fc.integer({ min: 171, max: 700 }) }, { weight: 1, arbitrary: fc.constant(0) }),
      flags: p2p ? flagsArbP2p : flagsArbBase, pkru: fc.constantFrom(0, 0, 0x55555554, 0xc, 0x1, 0x4),
      races: fc.oneof({ weight: 2, arbitrary: fc.constant<RaceSpec[]>([]) }, { weight: 3, arbitrary: fc.array(raceArb, { minLength: 1, maxLength: 3 }) }),
      // The pages written into the ring (-1) or in place in the kernel heap (a byte offset).
      kheapAt: fc.oneof(fc.constant(-1), fc.nat(4096).map((x) => x * 8)),
    }),
  },
  { weight: 10, arbitrary: fc.record({ k: fc.constant("unpin" as const), pick: fc.nat(), cut: fc.nat(), flags: fc.constantFrom(0, 0, G.UNPIN_DIRTY, G.UNPIN_CHECK, G.UNPIN_PUT, 8), mess: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }) }) }) },
  ...(p2p
    ? [
      // mode 0: split at once (pciP2pdmaAddResource), 1: a compound folio, 2: not split yet.
      { weight: 4, arbitrary: fc.record({ k: fc.constant("p2p" as const), order: fc.constantFrom(0, 0, 1, 2, 3, 4, 9), mode: fc.constantFrom(0, 0, 0, 1, 2) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant("split" as const), pick: fc.nat(), off: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat() }), order: fc.oneof({ weight: 5, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }) }) }) },
    ]
    : []),
);

/**
 * A block the sequence allocated: compound (a folio, order > 0) or not; split: split_page'd
 * into order-0 pages, each with its own reference.
 */
interface Alloc {
  pfn: number;
  order: number;
  maps: [number, number][];
  compound: boolean;
  split: boolean;
}

interface World {
  root: number;
  /** The zonelist of the P2PDMA zone alone (0 if the machine has none). */
  p2pZl: number;
  /** First pages of recent successful maps (the last 16). */
  recent: number[];
  allocs: Alloc[];
  /** What successful gup calls took and nobody released yet. */
  taken: { pfns: number[]; pin: boolean }[];
}

function raceOf(d: Driver, w: World, r: RaceSpec, vpn: number): Race {
  const at = vpn + (r.dv < 0 ? r.at : r.dv);
  const level = r.huge ? 2 : 1;
  const g = d.ptepGet(w.root, at, level);
  const [lo, hi] = g.rc >= 0 ? [g.lo as number, g.hi as number] : [0, 0];
  // Another CPU changes leaves; a table entry (or an empty PMD slot) it leaves alone, as no
  // kernel path rewrites a table pointer under a walker except to free the table.
  if (level === 2 && (lo & (X.PTE_P | X.PTE_PS)) !== (X.PTE_P | X.PTE_PS)) {
    return { at: r.at, phase: r.phase, vpn: at, level, put: false, lo: lo >>> 0, hi: hi >>> 0, seq: r.seq };
  }
  // What another CPU stores: clear it, flip P / RW / US, or move it to the next frame (never
  // onto a page-table page: no kernel path points a leaf at one).
  let h = r.how;
  if (h === 4 && level === 1) {
    const next = d.pageFlags(((hi & 0xfffff) * 2 ** 20) + (lo >>> 12) + 1, 0, 0);
    if (next.rc >= 0 && next.rc & F.PG_pgtable) h = 5;
  }
  const how = [
    [0, 0], [lo ^ X.PTE_P, hi], [lo ^ X.PTE_RW, hi], [lo ^ X.PTE_US, hi], [(lo + (level === 1 ? 4096 : 0)) >>> 0, hi], [lo, hi],
  ][h]!;
  return { at: r.at, phase: r.phase, vpn: at, level, put: r.put && h === 0, lo: how[0]! >>> 0, hi: how[1]! >>> 0, seq: r.seq };
}

/**
 * A block whose last reference went (a race's put, then the release of what GUP took) is back
 * in the allocator while entries may still point into it: as the kernel's zap would have, take
 * those entries down, and forget the block, so that nothing maps a frame the allocator hands
 * out again (as a page table, say).
 */
function forgetFreed(d: Driver, w: World): void {
  for (const a of [...w.allocs]) {
    // A split block: any of its pages (the others stay allocated, out of the test's sight).
    let gone = d.refcount(a.pfn) === 0;
    for (let i = 1; a.split && !gone && i < 2 ** a.order; i++) gone = d.refcount(a.pfn + i) === 0;
    if (!gone) continue;
    for (const [vpn, n] of a.maps) d.ptUnmap(w.root, vpn, n, 0);
    w.allocs.splice(w.allocs.indexOf(a), 1);
  }
}


function step(d: Driver, w: World, op: Op): unknown {
  const r = step1(d, w, op);
  if (op.k === "gup" || op.k === "unpin") forgetFreed(d, w);
  return r;
}

function step1(d: Driver, w: World, op: Op): unknown {
  switch (op.k) {
    case "alloc": {
      const r = d.allocPages(op.zl, op.order, op.order > 0 ? 1 : 0);
      if (r.rc >= 0) w.allocs.push({ pfn: r.rc, order: op.order, maps: [], compound: op.order > 0, split: false });
      return r;
    }
    case "p2p": {
      const compound = op.mode === 1 && op.order > 0;
      const r = d.allocPages(w.p2pZl, op.order, compound ? 1 : 0);
      if (r.rc < 0) return r;
      const a: Alloc = { pfn: r.rc, order: op.order, maps: [], compound, split: false };
      w.allocs.push(a);
      if (op.mode !== 0) return r;
      const s = d.splitPage(r.rc, op.order);
      if (s.rc >= 0) a.split = true;
      return [r, s];
    }
    case "split": {
      // Mostly a block's first page at its own order; now and then a page inside it or
      // another order (a compound head or tail, an order mismatch: EINVAL, nothing changes).
      if (!w.allocs.length) return d.splitPage(600, 0);
      const a = w.allocs[op.pick % w.allocs.length]!;
      const pfn = a.pfn + (op.off % 2 ** a.order);
      const r = d.splitPage(pfn, op.order < 0 ? a.order : op.order);
      if (r.rc >= 0 && pfn === a.pfn) a.split = true;
      return r;
    }
    case "free": {
      // Only a block never mapped: ptMap takes no reference, so freeing a mapped block would
      // leave entries pointing at a frame the allocator may hand out again (as a page table).
      const free = w.allocs.filter((a) => !a.maps.length);
      if (!free.length) return null;
      const a = free[op.pick % free.length]!;
      w.allocs.splice(w.allocs.indexOf(a), 1);
      if (a.split) return Array.from({ length: 2 ** a.order }, (_, i) => d.freePages(a.pfn + i, 0));
      return d.freePages(a.pfn, a.order);
    }
    case "map": {
      const a: Alloc = w.allocs.length ? w.allocs[op.pick % w.allocs.length]! : { pfn: 600, order: 0, maps: [], compound: false, split: false };
      const remember = (r: { rc: number }, vpn: number, n: number) => {
        if (r.rc >= 0) w.recent = [...w.recent.slice(-15), vpn];
        if (r.rc >= 0) a.maps.push([vpn, n]);
        return r;
      };
      // 2 MiB leaves of folios only (a PMD maps one folio; P2PDMA pages are inserted one by one).
      if (op.huge && a.order === 9 && a.compound) return remember(d.ptMap(w.root, op.vpn - (op.vpn % 512), 512, a.pfn, op.lo, op.hi, 2), op.vpn - (op.vpn % 512), 512);
      const pages = 2 ** a.order;
      const n = Math.min(op.n, pages);
      return remember(d.ptMap(w.root, op.vpn, n, a.pfn + (op.off % pages) - ((op.off % pages) + n > pages ? (op.off % pages) + n - pages : 0), op.lo, op.hi, 1), op.vpn, n);
    }
    case "unmap":
      return d.ptUnmap(w.root, op.vpn, op.n, 0);
    case "protect":
      return d.ptProtect(w.root, op.vpn, op.n, op.set, 0, op.clr, 0);
    case "flags": {
      if (!w.allocs.length) return null;
      const a = w.allocs[op.pick % w.allocs.length]!;
      return d.pageFlags(a.pfn + (op.pick % 2 ** a.order), op.set, op.clr);
    }
    case "seq":
      d.seqStep(w.root);
      if (op.twice) d.seqStep(w.root);
      return null;
    case "gup": {
      const vpn = typeof op.at === "number" ? op.at : w.recent.length ? Math.max(WIN, w.recent[op.at.recent % w.recent.length]! + op.at.delta) : WIN;
      const races = op.races.map((r) => raceOf(d, w, r, vpn));
      const r = d.gupRange(w.root, vpn, op.n, op.flags | (races.length ? G.GUPM_RACE : 0), op.pkru, races, op.kheapAt);
      if (r.rc > 0) w.taken.push({ pfns: r.pfns as number[], pin: (op.flags & G.FOLL_PIN) !== 0 });
      return r;
    }
    case "unpin": {
      if (!w.taken.length) return d.unpinPages([], 0);
      const i = op.pick % w.taken.length;
      const t = w.taken[i]!;
      let entries = t.pfns.slice(0, 1 + (op.cut % t.pfns.length));
      // Now and then a release that does not match what was taken.
      // A page listed twice, released twice: only where the caller holds a second reference
      // (another record of the same kind took it), which the release then uses up. Releasing
      // more than was taken would free a page still mapped, which the kernel does not survive
      // either.
      let twice: { t: World["taken"][number]; at: number } | null = null;
      if (op.mess === 1) {
        for (const o of w.taken) {
          const at = o !== t && o.pin === t.pin ? o.pfns.indexOf(entries[0]!) : -1;
          if (at >= 0) {
            twice = { t: o, at };
            break;
          }
        }
        if (twice) entries = [...entries, entries[0]!];
      }
      if (op.mess === 2) entries = [1.5, ...entries];
      if (op.mess === 3) entries = [...entries, 2 ** 40];
      if (op.mess === 4) entries = [...entries].reverse();
      const flags = op.flags === G.UNPIN_PUT ? (t.pin ? G.UNPIN_PUT : 0) : op.flags | (t.pin ? 0 : G.UNPIN_PUT);
      const r = d.unpinPages(entries, flags);
      if (r.rc >= 0 && !(flags & G.UNPIN_CHECK)) {
        t.pfns = t.pfns.slice(entries.length - (twice ? 1 : 0));
        if (twice) twice.t.pfns.splice(twice.at, 1);
        w.taken = w.taken.filter((o) => o.pfns.length > 0);
      }
      return r;
    }
  }
}

const CONFIGS: MachineConfig[] = [
  parseMachineOptions({ memory: { normal: "8MiB", movable: "4MiB", cma: "4MiB" }, cpus: 1, tlb: { sets: 4, ways: 2 }, ringEntries: 64, backing: { max: "16MiB" } }),
  parseMachineOptions({ memory: { normal: "8MiB", movable: "4MiB", cma: 0 }, cpus: 1, paging: { levels: 5, physAddrBits: 40 }, tlb: { sets: 4, ways: 2 }, ringEntries: 96, backing: { max: "16MiB" } }),
  // The P2PDMA zone is zone 2 (so "alloc" from 0xf2 makes compound folios there too), and
  // starts off a 2 MiB boundary (pfn 2304; order-9 blocks at 2560 and 3072).
  parseMachineOptions({ memory: { normal: "7MiB", movable: "2MiB", cma: 0, p2pdma: "6MiB" }, cpus: 1, tlb: { sets: 4, ways: 2 }, ringEntries: 64, backing: { max: "16MiB" } }),
];

let gups = 0;
/**
 * gupRange calls that stopped at a P2PDMA page, that took one (FOLL_PCI_P2PDMA), and that
 * took one through a 2 MiB leaf. A run of the P2PDMA configuration makes some 750, 650 and
 * 140 of them; it must make at least these many.
 */
const p2p = { refused: 0, took: 0, tookHuge: 0 };
const P2P_MIN = { refused: 200, took: 200, tookHuge: 30 };
/** Outcomes (DMALAB_DIFF_STATS=1 prints them): how often each stop reason and error came up. */
const outcomes = new Map<string, number>();

function tally(op: Op, r: unknown): void {
  if (!process.env.DMALAB_DIFF_STATS || !r || typeof r !== "object") return;
  if (Array.isArray(r)) return r.forEach((x) => tally(op, x));
  const x = r as { rc: number; stop?: number; reason?: number };
  const key = x.rc < 0 ? `${op.k}:err${x.rc}:r${x.reason}` : op.k === "gup" ? `gup:stop${x.stop}${x.rc > 0 ? ":took" : ""}${(op as { races: unknown[] }).races.length ? ":race" : ""}` : `${op.k}:ok`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

/**
 * What a gupRange result says about P2PDMA pages: it stops at one only without
 * FOLL_PCI_P2PDMA, and takes one only with it (whatever the reference says: both could be wrong).
 */
function p2pCheck(cfg: MachineConfig, op: Op, r: Result): void {
  const z = cfg.zones.find((x) => x.name === "P2PDMA");
  if (op.k !== "gup" || !z || r.rc < 0) return;
  const allowed = (op.flags & G.FOLL_PCI_P2PDMA) !== 0;
  const took = (r.pfns as number[]).some((pfn) => pfn >= z.startPfn && pfn < z.startPfn + z.pages);
  if (r.stop === G.GUP_STOP_P2PDMA) {
    expect(allowed, "GUP_STOP_P2PDMA with FOLL_PCI_P2PDMA").toBe(false);
    p2p.refused++;
  }
  if (took) {
    expect(allowed, "a P2PDMA page taken without FOLL_PCI_P2PDMA").toBe(true);
    p2p.took++;
    if ((r.hugePages as number) > 0) p2p.tookHuge++;
  }
}

async function runSequence(cfg: MachineConfig, ops: Op[]): Promise<void> {
  const core = await CoreDriver.create(cfg);
  const ref = new RefDriver(cfg);
  const worlds = new Map<Driver, World>();
  const p2pZone = cfg.zones.findIndex((z) => z.name === "P2PDMA");
  for (const d of [core, ref] as Driver[]) {
    const root = d.pgdAlloc().rc;
    const zero = d.allocPages(0xf0, 0, 0).rc;
    d.setZeroPfn(zero);
    const w: World = { root, p2pZl: p2pZone < 0 ? 0 : 0xf0 | p2pZone, recent: [], allocs: [], taken: [] };
    // The zero page, mapped special and read-only in the window's last pages.
    d.ptMap(root, WIN + 3 * 512 - 8, 8, zero, X.PTE_US | X.PTE_SOFTW1, 0, 1);
    if (p2pZone >= 0) {
      // A 2 MiB P2PDMA folio mapped by a PMD (the huge-leaf path; random maps rarely get one).
      const pfn = d.allocPages(w.p2pZl, 9, 1).rc;
      d.ptMap(root, WIN + 512, 512, pfn, X.PTE_RW | X.PTE_US | X.PTE_A, 0, 2);
      w.allocs.push({ pfn, order: 9, maps: [[WIN + 512, 512]], compound: true, split: false });
      w.recent.push(WIN + 512);
    }
    worlds.set(d, w);
  }
  ops.forEach((op, i) => {
    const a = step(core, worlds.get(core)!, op);
    const b = step(ref, worlds.get(ref)!, op);
    expect(a, `op ${i} ${JSON.stringify(op)}`).toEqual(b);
    if (op.k === "gup") gups++;
    p2pCheck(cfg, op, a as Result);
    tally(op, a);
    if (i % (process.env.DMALAB_DIFF_EVERY ? 1 : 32) === 31 % (process.env.DMALAB_DIFF_EVERY ? 1 : 32)) {
      const [x, y] = [core.state(), ref.state()];
      expect(stateDiff(x, y), `state after op ${i} (core vs reference)`).toBe("");
    }
  });
  expect(stateDiff(core.state(), ref.state()), "final state (core vs reference)").toBe("");
}

const seed = process.env.DMALAB_SEED ? Number(process.env.DMALAB_SEED) : undefined;

describe("GUP: core vs reference model", () => {
  // DMALAB_DIFF_REPLAY=<file of a counterexample's ops> DMALAB_DIFF_CONFIG=<i> replays one sequence.
  const replay = process.env.DMALAB_DIFF_REPLAY;
  if (replay) {
    it("replays a recorded sequence", () => runSequence(CONFIGS[Number(process.env.DMALAB_DIFF_CONFIG ?? 0)]!, JSON.parse(readFileSync(replay, "utf8")) as Op[]));
    return;
  }
  for (const [i, cfg] of CONFIGS.entries()) {
    const hasP2p = cfg.zones.some((z) => z.name === "P2PDMA");
    const opArb = opArbOf(hasP2p);
    it(`agree on random page tables, gup and unpin calls and race interleavings (config ${i}: ${cfg.levels}-level${hasP2p ? ", P2PDMA zone" : ""})`, async () => {
      const before = gups;
      const p2pBefore = { ...p2p };
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 200, maxLength: 400 }), (ops) => runSequence(cfg, ops)),
        { numRuns: 60, seed, interruptAfterTimeLimit: 150_000 },
      );
      // At least 5,000 gupRange calls per configuration: 15,000 per run of this file.
      // (Checking the state after every op, DMALAB_DIFF_EVERY, is slower and may stop early.)
      if (!process.env.DMALAB_DIFF_EVERY) expect(gups - before).toBeGreaterThanOrEqual(5000);
      if (hasP2p && !process.env.DMALAB_DIFF_EVERY) {
        // P2PDMA pages reached both ways: refused without FOLL_PCI_P2PDMA, taken with it.
        for (const k of ["refused", "took", "tookHuge"] as const) expect(p2p[k] - p2pBefore[k], `P2PDMA gup calls (${k})`).toBeGreaterThanOrEqual(P2P_MIN[k]);
      }
      if (process.env.DMALAB_DIFF_STATS && hasP2p) console.log(`p2pdma: refused=${p2p.refused - p2pBefore.refused} took=${p2p.took - p2pBefore.took} tookHuge=${p2p.tookHuge - p2pBefore.tookHuge}`);
      if (process.env.DMALAB_DIFF_STATS) console.log([...outcomes].sort().map(([k, v]) => `${k}=${v}`).join(" "));
    }, 300_000);
  }
});
