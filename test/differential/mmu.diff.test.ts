/**
 * Differential test: the WASM core and the TypeScript reference model, driven by the same
 * random operation sequences (fast-check), must return the same results and end in the
 * same state: free lists, frame records, every page-table entry, every TLB entry.
 *
 * On failure fast-check prints the seed and path; rerun with DMALAB_SEED=<seed>.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as H from "../../src/abi/header.js";
import * as X from "../../src/abi/x86.js";
import { type MachineConfig, parseMachineOptions } from "../../src/config.js";
import { CoreDriver, type Driver, RefDriver, type Req } from "../reference/driver.js";

/* ---------- operations ---------- */

type Op =
  | { k: "alloc"; zl: number; order: number; compound: boolean }
  | { k: "free"; pick: number; order: number }
  | { k: "split"; pick: number; any: boolean; off: number; order: number }
  | { k: "pgdAlloc" }
  | { k: "pgdFree"; root: number }
  | { k: "map"; root: number; vpn: number; n: number; pfn: number; lo: number; hi: number; level: number }
  | { k: "unmap"; root: number; vpn: VpnSel; n: number; cap: number }
  | { k: "protect"; root: number; vpn: VpnSel; n: number; bits: [number, number, number, number] }
  | { k: "get"; root: number; vpn: number; level: number }
  | { k: "range"; root: number; vpn: VpnSel; n: number }
  | { k: "set"; root: number; vpn: number; level: number; lo: number; hi: number; fromGet: boolean }
  | { k: "cr3"; cpu: number; root: number; pcid: number; noflush: boolean }
  | { k: "ctrl"; cpu: number; ctrl: number }
  | { k: "pkru"; cpu: number; v: number }
  | { k: "flush"; cpu: number; vpn: VpnSel; n: number }
  | { k: "invpcid"; cpu: number; type: number; pcid: number; vpn: number }
  | { k: "pcidFlush"; cpu: number; pcid: number; vpn: VpnSel; n: number }
  | { k: "xlate"; cpu: number; reqs: { vpn: VpnSel; off: number; acc: number; wild: number }[]; flags: number }
  | { k: "again"; cpu: number; write: boolean };

/** Windows of virtual pages where operations collide: user low, user near 2^47, kernel half. */
const WINDOWS = [0x7_0000_0000, 0x7_ffff_0000 - 0x800, 2 ** 52 - 2 ** 35 + 0x4_4400_0000];
/** A 1 GiB-aligned window, so 1 GiB leaves have room. */
const GIG_WINDOW = 0x1_0000_0000 * 0 + 2 ** 18 * 40;

const vpnArb = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom(...WINDOWS), fc.integer({ min: 0, max: 3 * 512 })).map(([w, o]) => w + o) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 4 * 512 }).map((o) => GIG_WINDOW + o) },
  { weight: 1, arbitrary: fc.constantFrom(0, 2 ** 35 - 1, 2 ** 35, 2 ** 52 - 2 ** 35, 2 ** 52 - 1, 1.5) },
);

/** A page: a random one, or one near a recent successful map (so translations find pages). */
type VpnSel = { recent: number; delta: number } | number;
const selArb: fc.Arbitrary<VpnSel> = fc.oneof(
  { weight: 2, arbitrary: vpnArb },
  { weight: 5, arbitrary: fc.record({ recent: fc.nat(), delta: fc.integer({ min: -2, max: 24 }) }) },
);

const levelArb = fc.oneof({ weight: 12, arbitrary: fc.constant(1) }, { weight: 4, arbitrary: fc.constant(2) }, { weight: 1, arbitrary: fc.constant(3) }, { weight: 1, arbitrary: fc.constantFrom(0, 4) });

const protLoArb = fc.integer({ min: 0, max: 0xfff }).map((b) => b & (X.PTE_RW | X.PTE_US | X.PTE_PWT | X.PTE_PCD | X.PTE_A | X.PTE_D | X.PTE_PAT_4K | X.PTE_G | X.PTE_SOFTW1));
/** Bits protect may set or clear, plus PAT now and then (which it must refuse). */
const protectLoArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 0xfff }).map((b) => b & (X.PTE_RW | X.PTE_US | X.PTE_A | X.PTE_D | X.PTE_G | X.PTE_SOFTW1)) },
  { weight: 1, arbitrary: fc.constant(X.PTE_PAT_4K) },
);
const protHiArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(0, 0x80000000, 0x18000000, 0x80000000 | 0x08000000) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant("alloc" as const), zl: fc.constantFrom(0xf0, 0xf1, 0xf2, 0xf021, 0xff, 0xf9), order: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constantFrom(9, 11, 19)), compound: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("free" as const), pick: fc.nat(), order: fc.oneof({ weight: 5, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }) }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("split" as const), pick: fc.nat(), any: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }), off: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat() }), order: fc.oneof({ weight: 5, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }) }) }) },
  { weight: 1, arbitrary: fc.constant({ k: "pgdAlloc" as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("pgdFree" as const), root: fc.nat() }) },
  { weight: 12, arbitrary: fc.record({ k: fc.constant("map" as const), root: fc.nat(), vpn: vpnArb, n: fc.integer({ min: 1, max: 80 }), pfn: fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.constantFrom(2 ** 18, 2 ** 34 - 1)), lo: protLoArb, hi: protHiArb, level: levelArb }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("unmap" as const), root: fc.nat(), vpn: selArb, n: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 40 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 2000 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 2 ** 18) }), cap: fc.constantFrom(0, 0, 1, 3, 50, 1 << 30) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("protect" as const), root: fc.nat(), vpn: selArb, n: fc.integer({ min: 1, max: 1200 }), bits: fc.tuple(protectLoArb, fc.constantFrom(0, 0x80000000, 0x10000000, 0x10000000, 1), protectLoArb, fc.constantFrom(0, 0x80000000, 0x78000000)) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("get" as const), root: fc.nat(), vpn: vpnArb, level: fc.integer({ min: 0, max: 6 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("range" as const), root: fc.nat(), vpn: selArb, n: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 40 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 1500 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 5000) }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("set" as const), root: fc.nat(), vpn: vpnArb, level: fc.integer({ min: 1, max: 5 }), lo: fc.integer({ min: 0, max: 0xffffffff }), hi: fc.integer({ min: 0, max: 0xffffffff }), fromGet: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("cr3" as const), cpu: fc.integer({ min: 0, max: 2 }), root: fc.nat(), pcid: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(4096)), noflush: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("ctrl" as const), cpu: fc.integer({ min: 0, max: 2 }), ctrl: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 0x7f }) }, { weight: 1, arbitrary: fc.constant(0x80) }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("pkru" as const), cpu: fc.integer({ min: 0, max: 1 }), v: fc.constantFrom(0, 0x55555554, 0xc, 0x4) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("flush" as const), cpu: fc.integer({ min: 0, max: 1 }), vpn: selArb, n: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3000 })) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("pcidFlush" as const), cpu: fc.integer({ min: 0, max: 1 }), pcid: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(4096)), vpn: selArb, n: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3000 })) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("invpcid" as const), cpu: fc.integer({ min: 0, max: 1 }), type: fc.integer({ min: 0, max: 4 }), pcid: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(5000)), vpn: vpnArb }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant("again" as const), cpu: fc.integer({ min: 0, max: 1 }), write: fc.boolean() }) },
  {
    weight: 14,
    arbitrary: fc.record({
      k: fc.constant("xlate" as const),
      cpu: fc.integer({ min: 0, max: 1 }),
      reqs: fc.array(fc.record({ vpn: selArb, off: fc.integer({ min: 0, max: 4095 }), acc: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(H.ACC_USER, H.ACC_USER | H.ACC_WRITE) }, { weight: 6, arbitrary: fc.integer({ min: 0, max: 0x1ff }).map((a) => a & H.ACC_MASK) }, { weight: 1, arbitrary: fc.constant(1) }), wild: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(0x8000, 0xffff0000, 0x100) }) }), { minLength: 1, maxLength: 24 }),
      flags: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.constantFrom(H.XLATE_NOTLB, H.XLATE_NOSIDE, H.XLATE_STOP, H.XLATE_STOP | H.XLATE_NOTLB) }, { weight: 1, arbitrary: fc.constant(8) }),
    }),
  },
);

/* ---------- running a sequence on one driver ---------- */

interface World {
  roots: number[];
  allocs: { pfn: number; order: number; compound: boolean }[];
  /** First pages of recent successful maps, by root (the last 32 each). */
  recent: Map<number, number[]>;
  /** The root each CPU runs on (-1: none). */
  cr3: number[];
  /** The last batch translated, for "again". */
  last: Req[];
}

function vpnOf(w: World, sel: VpnSel, root: number): number {
  if (typeof sel === "number") return sel;
  const list = w.recent.get(root) ?? [];
  if (!list.length) return WINDOWS[0]!;
  return Math.max(0, list[sel.recent % list.length]! + sel.delta);
}

function vaWords(vpn: number, off: number, wild: number): [number, number] {
  // The full 64-bit VA of page vpn (52 bits) + off, sign-extended for the upper half.
  let hi = Math.floor(vpn / 2 ** 20);
  const lo = ((vpn % 2 ** 20) * 4096 + off) >>> 0;
  if (hi & 0x80000) hi |= 0xfff00000; // bit 51 set: the kernel half
  return [lo, (hi ^ wild) >>> 0];
}


function step(d: Driver, w: World, op: Op): unknown {
  // Mostly the two roots the CPUs run on, so their TLBs and walks see the changes.
  const root = (i: number) => (w.roots.length ? w.roots[i % 4 < 3 ? i % Math.min(2, w.roots.length) : i % w.roots.length]! : 300);
  switch (op.k) {
    case "alloc": {
      const r = d.allocPages(op.zl, op.order, op.compound ? 1 : 0);
      if (r.rc >= 0) w.allocs.push({ pfn: r.rc, order: op.order, compound: op.compound && op.order > 0 });
      return r;
    }
    case "free": {
      if (!w.allocs.length) return d.freePages(7, 0);
      const i = op.pick % w.allocs.length;
      const a = w.allocs[i]!;
      const r = d.freePages(a.pfn, op.order < 0 ? a.order : op.order);
      if (r.rc >= 0) w.allocs.splice(i, 1);
      return r;
    }
    case "split": {
      // Mostly the first frame of a non-compound block of order > 0 at its own order; now and
      // then any allocation, a frame inside it or another order (compound, tail, order
      // mismatch: EINVAL, nothing changes).
      const splittable = w.allocs.filter((x) => !x.compound && x.order > 0);
      const from = op.any || !splittable.length ? w.allocs : splittable;
      if (!from.length) return d.splitPage(7, 0);
      const a = from[op.pick % from.length]!;
      const i = w.allocs.indexOf(a);
      const pfn = a.pfn + (op.off % 2 ** a.order);
      const order = op.order < 0 ? a.order : op.order;
      const r = d.splitPage(pfn, order);
      // 2^order order-0 allocations, each freed on its own.
      if (r.rc >= 0 && pfn === a.pfn) w.allocs.splice(i, 1, ...Array.from({ length: 2 ** order }, (_, j) => ({ pfn: pfn + j, order: 0, compound: false })));
      return r;
    }
    case "pgdAlloc": {
      const r = d.pgdAlloc();
      if (r.rc >= 0) w.roots.push(r.rc);
      return r;
    }
    case "pgdFree": {
      const rt = root(op.root);
      const r = d.pgdFree(rt);
      if (r.rc >= 0) w.roots.splice(w.roots.indexOf(rt), 1);
      return r;
    }
    case "map": {
      const span = 2 ** (9 * (Math.max(1, Math.min(3, op.level)) - 1));
      const vpn = op.level >= 2 ? op.vpn - (op.vpn % span) : op.vpn;
      const pfn = op.level >= 2 ? op.pfn - (op.pfn % span) : op.pfn;
      const r = d.ptMap(root(op.root), vpn, op.level >= 2 ? span * Math.min(op.n, 3) : op.n, pfn, op.lo, op.hi, op.level);
      const rt = root(op.root);
      if (r.rc >= 0) w.recent.set(rt, [...(w.recent.get(rt) ?? []).slice(-31), vpn]);
      return r;
    }
    case "unmap":
      return unmapAll(d, root(op.root), vpnOf(w, op.vpn, root(op.root)), op.n, op.cap);
    case "protect":
      return d.ptProtect(root(op.root), vpnOf(w, op.vpn, root(op.root)), op.n, ...op.bits);
    case "get":
      return d.ptepGet(root(op.root), op.vpn, op.level);
    case "range":
      return d.ptepRange(root(op.root), vpnOf(w, op.vpn, root(op.root)), op.n);
    case "set": {
      let { lo, hi } = op;
      if (op.fromGet) {
        // Perturb the entry that is there, so most writes are legal.
        const g = d.ptepGet(root(op.root), op.vpn, op.level);
        if (g.rc >= 0) {
          lo = ((g.lo as number) ^ (op.lo & 0x1ff)) >>> 0;
          hi = ((g.hi as number) ^ (op.hi & 0x80000000)) >>> 0;
        }
      }
      return d.ptepSet(root(op.root), op.vpn, op.level, lo, hi);
    }
    case "cr3": {
      const rt = op.root % 7 === 6 ? -1 : root(op.root);
      const r = d.cpuWriteCr3(op.cpu, rt, op.pcid, op.noflush);
      if (r.rc >= 0) w.cr3[op.cpu] = rt;
      return r;
    }
    case "ctrl":
      return d.cpuSetCtrl(op.cpu, op.ctrl);
    case "pkru":
      return d.cpuWrpkru(op.cpu, op.v);
    case "flush":
      return d.tlbFlushRange(op.cpu, vpnOf(w, op.vpn, w.cr3[op.cpu] ?? -1), op.n);
    case "invpcid":
      return d.tlbInvpcid(op.cpu, op.type, op.pcid, op.vpn);
    case "pcidFlush":
      return d.tlbFlushPcidRange(op.cpu, op.pcid, vpnOf(w, op.vpn, w.cr3[op.cpu] ?? -1), op.n);
    case "xlate": {
      const rt = w.cr3[op.cpu] ?? -1;
      const reqs: Req[] = op.reqs.map((r) => [...vaWords(Math.floor(vpnOf(w, r.vpn, rt)), r.off, r.wild), r.acc]);
      w.last = reqs;
      return d.translate(op.cpu, reqs, op.flags);
    }
    case "again": {
      // The same pages again (as writes, maybe): TLB hits, LRU order, D-bit re-walks.
      const reqs: Req[] = w.last.map(([lo, hi, acc]) => [lo, hi, op.write ? acc | H.ACC_WRITE : acc]);
      return reqs.length ? d.translate(op.cpu, reqs, 0) : d.translate(op.cpu, [[0, 0, H.ACC_USER]], 0);
    }
  }
}

/** Unmap in chunks of @cap leaves, as the host does, collecting every chunk's result. */
function unmapAll(d: Driver, root: number, vpn: number, n: number, cap: number): unknown[] {
  const out = [];
  for (let guard = 0; guard < 100000; guard++) {
    const r = d.ptUnmap(root, vpn, n, cap);
    out.push(r);
    if (r.rc < 0 || !cap || (r.resume as number) < 0) break;
    n -= (r.resume as number) - vpn;
    vpn = r.resume as number;
  }
  return out;
}

/* ---------- the property ---------- */

const CONFIGS: MachineConfig[] = [
  parseMachineOptions({ memory: { normal: "8MiB", movable: "2MiB", cma: "1MiB" }, cpus: 3, tlb: { sets: 8, ways: 2 }, ringEntries: 64, backing: { max: "16MiB" } }),
  parseMachineOptions({ memory: { normal: "4MiB", movable: 0, cma: "2MiB" }, cpus: 3, paging: { levels: 5, physAddrBits: 40 }, tlb: { sets: 4, ways: 3 }, ringEntries: 64, backing: { max: "2MiB" } }),
];

let opsRun = 0;
/** Outcomes by operation kind (DMALAB_DIFF_STATS=1 prints them): how much each path ran. */
const outcomes = new Map<string, number>();

function tally(op: Op, r: unknown): void {
  if (!process.env.DMALAB_DIFF_STATS) return;
  const list = (Array.isArray(r) ? r : [r]) as { rc: number; out?: [number, number][] }[];
  for (const x of list) {
    let key = `${op.k}:${x.rc < 0 ? `err${x.rc}` : "ok"}`;
    if ((op.k === "xlate" || op.k === "again") && x.out) {
      for (const [st] of x.out) {
        const kind = st < 0 ? "bad" : st < 0x10000 ? (st & 4 ? "hit" : "walk") : st >>> 16 === 13 ? "gp" : st & 8 ? "pf-rsvd" : st & 1 ? "pf-prot" : "pf-np";
        outcomes.set(`xlate.${kind}`, (outcomes.get(`xlate.${kind}`) ?? 0) + 1);
      }
    }
    if (op.k === "unmap" && x.rc > 0) key = "unmap:leaves";
    if (op.k === "protect" && x.rc > 0) key = "protect:changed";
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
}

async function runSequence(cfg: MachineConfig, ops: Op[]): Promise<void> {
  const core = await CoreDriver.create(cfg);
  const ref = new RefDriver(cfg);
  const wc: World = { roots: [], allocs: [], recent: new Map(), cr3: [], last: [] };
  const wr: World = { roots: [], allocs: [], recent: new Map(), cr3: [], last: [] };
  // Start both with two address spaces and CPUs running Linux's control bits.
  for (const [d, w] of [[core, wc], [ref, wr]] as const) {
    step(d, w, { k: "pgdAlloc" });
    step(d, w, { k: "pgdAlloc" });
    for (let c = 0; c < cfg.cpus; c++) {
      d.cpuSetCtrl(c, 0x7f);
      d.cpuWrpkru(c, 0);
      d.cpuWriteCr3(c, w.roots[c % 2]!, c, false);
      w.cr3[c] = w.roots[c % 2]!;
    }
  }
  ops.forEach((op, i) => {
    const a = step(core, wc, op);
    const b = step(ref, wr, op);
    expect(a, `op ${i} ${JSON.stringify(op)}`).toEqual(b);
    tally(op, a);
    opsRun++;
    if (i % 64 === 63) expect(core.state(), `state after op ${i}`).toEqual(ref.state());
  });
  expect(core.state()).toEqual(ref.state());
}

const seed = process.env.DMALAB_SEED ? Number(process.env.DMALAB_SEED) : undefined;

describe("core vs reference model", () => {
  for (const [i, cfg] of CONFIGS.entries()) {
    it(`agrees on random operation sequences (config ${i}: ${cfg.levels}-level, ${cfg.tlb.sets}x${cfg.tlb.ways} TLB)`, async () => {
      const before = opsRun;
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 450, maxLength: 800 }), (ops) => runSequence(cfg, ops)),
        { numRuns: 14, seed, interruptAfterTimeLimit: 90_000 },
      );
      // At least 5,000 operations per configuration, 10,000 per run of this file.
      expect(opsRun - before).toBeGreaterThanOrEqual(5000);
      if (process.env.DMALAB_DIFF_STATS) console.log([...outcomes].sort().map(([k, v]) => `${k}=${v}`).join(" "));
    });
  }
});
