/**
 * Differential test of the IOMMU: the WASM core and the TypeScript reference model
 * (test/reference/iommu.ts), driven by the same random operation sequences (fast-check):
 * IO page tables (map, unmap, protect, leaf perturbations), the device table, batched
 * translation, IOTLB and ATC invalidation, root frees, frame allocation and DMA. Every
 * result must agree, the IOMMU state (device table, every IOTLB and ATC entry, ticks, live
 * counts) after every operation, and the machine state (frames, page tables, pool) every 32
 * operations and at the end.
 *
 * DMA bytes are not compared: the reference keeps no frame contents (see iommu.ts); its
 * status, progress, events, addresses, unheld count and backing-slot allocation are.
 * DMA only ever reaches frames that never become page tables (ZONE_MOVABLE, the reserved low
 * frames, the P2PDMA zone) or no RAM at all, so a device never scribbles on a table both
 * models then walk.
 *
 * Two configurations have a P2PDMA zone (a peer's BAR): IO mappings and identity-domain
 * addresses reach its frames, mostly the first few, which the requests' random P2P windows
 * [p2pLo, p2pHi) cover or miss (IODS_P2P); some requests carry IODF_BYPASS and a physical
 * address (RAM, the P2PDMA zone, past RAM, or past 2^32 frames), untranslated.
 *
 * The operations and their arbitraries are in iommu-ops.ts. On failure fast-check prints the
 * seed and path; rerun with DMALAB_SEED=<seed>.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as F from "../../src/abi/frame.js";
import * as I from "../../src/abi/iommu.js";
import * as X from "../../src/abi/x86.js";
import { type MachineConfig, parseMachineOptions } from "../../src/config.js";
import { CoreIommuDriver, type DmaReq, type IoReq, type IommuDriver, RefIommuDriver, translateMax } from "../reference/iommu-driver.js";
import { type DevReq, type DmaOp, IOW, IOW_1G, type Op, opArb, type PfnSel, type VpnSel, type WinSel } from "./iommu-ops.js";

/* ---------- running a sequence on one driver ---------- */

interface Env {
  cfg: MachineConfig;
  movable: number;
  movableEnd: number;
  /** The P2PDMA zone's first frame (nrFrames without one), its frames and its index. */
  p2p: number;
  p2pPages: number;
  p2pIdx: number;
  halfPages: number;
  maxXlate: number;
  /** iommuTranslateIovas through the ring: the most IOVAs (8 bytes each) the entry area holds. */
  maxIovas: number;
}

interface World {
  roots: number[];
  allocs: { pfn: number; order: number }[];
  /** First pages of recent successful maps (the last 32), by root and all together (-1). */
  recent: Map<number, number[]>;
  /** The root each "dev:pasid" walks, as last programmed. */
  ctx: Map<string, number>;
  /** Each device's context entry as last programmed: [flags, type]. */
  devs: [number, number][];
  last: IoReq[];
  /** The last IOVA list, with its device and PASID. */
  lastIovas: { dev: number; pasid: number; iovas: number[] };
}

function vpnOf(env: Env, wd: World, sel: VpnSel, root = -1): number {
  if ("win" in sel) return IOW + sel.win;
  if ("edge" in sel) return [0, IOW - 1, env.halfPages - 1, env.halfPages, 2 ** 52 - 1, IOW_1G, IOW_1G + 2 ** 18 - 1, 1.5][sel.edge]!;
  const list = wd.recent.get(root) ?? wd.recent.get(-1) ?? [IOW];
  return Math.max(0, list[sel.recent % list.length]! + sel.delta);
}

function remember(wd: World, root: number, vpn: number): void {
  for (const k of [root, -1]) wd.recent.set(k, [...(wd.recent.get(k) ?? []).slice(-31), vpn]);
}

function pfnOfSel(env: Env, wd: World, sel: PfnSel): number {
  if (sel.z === 3 && env.p2pPages) return env.p2p + (sel.off % 3 ? sel.off % 8 : sel.off % env.p2pPages);
  if (sel.z === 4) return 2 ** 32 + (sel.off % 300);
  if (sel.z === 1 || (sel.z === 2 && !wd.allocs.length)) return sel.off % 200;
  if (sel.z === 2) return wd.allocs[sel.off % wd.allocs.length]!.pfn;
  // The movable zone, or one of the 64 frames past the last (a P2PDMA zone may follow it).
  const mov = env.movableEnd - env.movable;
  const x = sel.off % (mov + 64);
  return x < mov ? env.movable + x : env.cfg.nrFrames + x - mov;
}

/** The P2P window [lo, hi) of @sel, as u32 words. */
function winOf(env: Env, sel: WinSel): [number, number] {
  switch (sel.w) {
    case 0: return [0, 0];
    case 1: return [env.p2p, env.p2p + env.p2pPages];
    case 2: return [env.p2p + sel.a, env.p2p + sel.a + sel.b];
    case 3: return [0, 0xffffffff];
    case 4: return [env.p2p + sel.a + sel.b + 1, env.p2p + sel.a];
  }
}

function rootOf(wd: World, i: number): number {
  if (i === 12) return 5; // a reserved frame, no table
  if (i === 13) return 1.5;
  if (i === 14) return -1;
  if (!wd.roots.length) return 300;
  if (i === 15) return wd.roots[wd.roots.length - 1]!;
  return wd.roots[i < 8 ? i % Math.min(2, wd.roots.length) : i % wd.roots.length]!;
}

function ioReq(env: Env, wd: World, r: DevReq): IoReq {
  const vpn = vpnOf(env, wd, r.vpn, wd.ctx.get(`${r.dev}:${r.pasid}`));
  const lo = ((vpn % 2 ** 20) * 4096 + r.off) >>> 0;
  return { lo, hi: (Math.floor(vpn / 2 ** 20) ^ r.wild) >>> 0, dev: r.dev, pasid: r.pasid, access: r.acc };
}

function step(d: IommuDriver, env: Env, wd: World, op: Op): unknown {
  switch (op.k) {
    case "alloc": {
      const movIdx = env.cfg.zones.findIndex((z) => z.kind === F.ZONE_MOVABLE);
      const r = d.allocPages(0xf0 | (op.p2p && env.p2pPages ? env.p2pIdx : movIdx), op.order, op.compound ? 1 : 0);
      if (r.rc >= 0) wd.allocs.push({ pfn: r.rc, order: op.order });
      return r;
    }
    case "split": {
      // split_page: order-0 allocations from a non-compound one (compound, wrong order: EINVAL).
      if (!wd.allocs.length) return d.splitPage(env.movable, 0);
      const i = op.pick % wd.allocs.length;
      const a = wd.allocs[i]!;
      const r = d.splitPage(a.pfn, a.order + (op.bad ? 1 : 0));
      if (r.rc >= 0) wd.allocs.splice(i, 1, ...Array.from({ length: 2 ** a.order }, (_, j) => ({ pfn: a.pfn + j, order: 0 })));
      return r;
    }
    case "free": {
      if (!wd.allocs.length) return d.freePages(env.movable, 0);
      const i = op.pick % wd.allocs.length;
      const a = wd.allocs[i]!;
      const r = d.freePages(a.pfn, a.order);
      if (r.rc >= 0) wd.allocs.splice(i, 1);
      return r;
    }
    case "pgdAlloc": {
      const r = d.pgdAlloc();
      if (r.rc >= 0) wd.roots.push(r.rc);
      return r;
    }
    case "pgdFree": {
      const rt = rootOf(wd, op.root);
      const r = d.pgdFree(rt);
      if (r.rc >= 0) wd.roots.splice(wd.roots.indexOf(rt), 1);
      return r;
    }
    case "map": {
      const span = 2 ** (9 * (op.level - 1));
      let vpn = IOW + op.win;
      let pfn = pfnOfSel(env, wd, op.pfn);
      let n = op.n;
      if (op.level === 2) {
        vpn -= vpn % span;
        pfn = op.pfn.off % 2 ? env.movable : Math.ceil(env.cfg.nrFrames / 512) * 512;
        // A 2 MiB leaf over the P2PDMA zone, where it is 2 MiB and aligned.
        if (op.pfn.z === 3 && env.p2pPages >= 512 && env.p2p % 512 === 0) pfn = env.p2p;
        n = span * (1 + (op.n % 2));
      } else if (op.level === 3) {
        vpn = IOW_1G;
        pfn = span;
        n = span;
      }
      const root = rootOf(wd, op.root);
      const r = d.ptMap(root, vpn, n, pfn, op.lo, op.hi, op.level);
      if (r.rc >= 0) remember(wd, root, vpn);
      return r;
    }
    case "unmap":
      return d.ptUnmap(rootOf(wd, op.root), vpnOf(env, wd, op.vpn, rootOf(wd, op.root)), op.n, 0);
    case "protect":
      return d.ptProtect(rootOf(wd, op.root), vpnOf(env, wd, op.vpn, rootOf(wd, op.root)), op.n, ...op.bits);
    case "perturb": {
      // Flip bits of a leaf that is there: rights, A/D, NX, a reserved bit (bit 51, or bit
      // 13 of a large leaf; on a 4 KiB leaf bit 13 moves the frame by 2, within its zone).
      const root = rootOf(wd, op.root);
      const vpn = vpnOf(env, wd, op.vpn, root);
      const g = d.ptepGet(root, vpn, 0);
      const lo = g.lo as number;
      if (g.rc <= 0 || !(lo & X.PTE_P) || (g.rc > 1 && !(lo & X.PTE_PS))) return g;
      return [g, d.ptepSet(root, vpn, g.rc, (lo ^ op.lo) >>> 0, ((g.hi as number) ^ op.hi) >>> 0)];
    }
    case "dev": {
      const root = rootOf(wd, op.root);
      const r = d.iommuSetDevice(op.dev, op.flags, op.type, op.domain, root);
      if (r.rc >= 0) wd.devs[op.dev] = [op.flags, op.type];
      if (r.rc >= 0 && op.type === I.IODOM_PAGING) wd.ctx.set(`${op.dev}:0`, root);
      else if (r.rc >= 0) wd.ctx.delete(`${op.dev}:0`);
      return r;
    }
    case "pasid": {
      const root = op.clear ? -1 : rootOf(wd, op.root);
      const r = d.iommuSetPasid(op.dev, op.pasid, op.domain, root);
      if (r.rc >= 0 && root >= 0) wd.ctx.set(`${op.dev}:${op.pasid}`, root);
      else if (r.rc >= 0) wd.ctx.delete(`${op.dev}:${op.pasid}`);
      return r;
    }
    case "xlate": {
      const reqs = op.reqs.map((r) => ioReq(env, wd, r));
      if (op.tooMany) while (reqs.length <= env.maxXlate) reqs.push(reqs[0] ?? { lo: 0, hi: 0, dev: 0, pasid: 0, access: 1 });
      const z = reqs[reqs.length - 1];
      if (z && op.spoil) [() => 0, () => (z.dev = 4), () => (z.pasid = 0x100000), () => (z.access = 16), () => (z.pasid = 0xffffffff), () => (z.dev = 1000)][op.spoil]!();
      wd.last = reqs;
      return d.iommuTranslate(reqs, op.flags);
    }
    case "iovas": {
      // One device's list of IOVAs (doubles: far ones round the same way on both sides), or
      // the last list again with this op's access (cached entries it may not serve).
      const l = op.again ? wd.lastIovas : { dev: op.dev, pasid: op.pasid, iovas: op.reqs.map((r) => {
        const q = ioReq(env, wd, { ...r, dev: op.dev, pasid: op.pasid });
        return q.hi * 2 ** 32 + q.lo;
      }) };
      wd.lastIovas = l;
      const iovas = [...l.iovas];
      if (op.tooMany) while (iovas.length <= env.maxIovas) iovas.push(iovas[0] ?? 0);
      if (op.spoil && iovas.length) iovas[iovas.length >> 1] = [0, 1.5, -4096, NaN, 2 ** 64][op.spoil]!;
      return d.iommuTranslateIovas(l.dev, l.pasid, op.acc, op.flags, iovas, op.place);
    }
    case "again": {
      // The same requests again (as writes, maybe): ATC and IOTLB hits, LRU, D-bit re-walks.
      const reqs = wd.last.slice(0, env.maxXlate).map((q) => ({ ...q, access: op.write ? q.access | I.IOA_WRITE : q.access }));
      return d.iommuTranslate(reqs, op.flags);
    }
    case "iotlbInv":
      return d.iotlbInvalidate(op.domain, op.pasid, vpnOf(env, wd, op.vpn), op.n, op.gran);
    case "atcInv":
      return d.atcInvalidate(op.dev, op.pasid, vpnOf(env, wd, op.vpn), op.n, op.all);
    case "dma": {
      let ops = op.reqs;
      if (op.count >= 0) ops = Array.from({ length: op.count }, (_, i) => op.reqs[i % op.reqs.length]!);
      const room = Math.max(0, env.cfg.ringEntries * 24 - ops.length * I.IODMA_SIZE);
      const reqs: DmaReq[] = ops.map((q) => {
        // An identity domain's IOVA, and a bypass request's address, is the physical address:
        // aim it at DMA-safe frames.
        const dv = wd.devs[q.dev];
        const ident = q.pasid === 0 && dv !== undefined && dv[0] & I.DTE_VALID && dv[1] === I.IODOM_IDENTITY;
        const vpn = ident || q.bypass ? pfnOfSel(env, wd, q.pa) : vpnOf(env, wd, q.vpn, wd.ctx.get(`${q.dev}:${q.pasid}`));
        // IOVAs stay exact doubles: a far page (it faults) gets no offset and one page at most.
        const far = vpn >= 2 ** 40;
        const len = Math.min(q.len, room, far ? 4096 : Infinity);
        const data = Math.floor(q.at * (room - len + 1));
        const [p2pLo, p2pHi] = winOf(env, q.win);
        return { iova: vpn * 4096 + (far ? 0 : q.off), dev: q.dev, pasid: q.pasid, len, dir: q.dir, bypass: q.bypass, data, p2pLo, p2pHi };
      });
      const z = reqs[reqs.length - 1];
      if (z && op.spoil) {
        [
          () => 0, () => (z.dev = 4), () => (z.pasid = 0x100000), () => (z.dir = 2), () => (z.data = room - z.len + 1), () => (z.dev = 1000),
          () => (z.dir = I.IODF_BYPASS | 2), () => (z.dir = 0x200 | I.IODIR_FROM_DEVICE), () => (z.dir = 0x80000000 | I.IODF_BYPASS),
        ][op.spoil]!();
      }
      const bytes = Uint8Array.from({ length: room }, (_, i) => (i * 31 + op.seed) & 255);
      return d.iommuDma(reqs, bytes, op.flags);
    }
    case "burst": {
      // As many one-byte writes to consecutive frames as one batch takes: backing slots
      // run out (ENOMEM) in the configuration with a small pool.
      const n = Math.floor((env.cfg.ringEntries * 24 - 1) / I.IODMA_SIZE);
      const reqs = Array.from({ length: n }, (_, i): DmaOp => ({
        dev: op.dev, pasid: 0, vpn: { recent: i, delta: 0 }, pa: { z: op.pa.z, off: op.pa.off + i }, off: 0, len: 1, dir: I.IODIR_FROM_DEVICE, at: 0,
        bypass: false, win: op.win,
      }));
      return step(d, env, wd, { k: "dma", reqs, flags: 0, count: -1, seed: 0, spoil: 0 });
    }
  }
}

/* ---------- the property ---------- */

const io = (devices: number, iotlb: [number, number], atc: [number, number]) => ({ devices, iotlb: { sets: iotlb[0], ways: iotlb[1] }, atc: { sets: atc[0], ways: atc[1] } });
const CONFIGS: MachineConfig[] = [
  // A 2 MiB P2PDMA zone (2 MiB-aligned: a 2 MiB leaf maps it) after the movable zone.
  parseMachineOptions({ memory: { normal: "8MiB", movable: "2MiB", cma: 0, p2pdma: "2MiB" }, cpus: 1, tlb: { sets: 4, ways: 2 }, ringEntries: 64, backing: { max: "16MiB" }, iommu: io(4, [4, 2], [2, 2]) }),
  parseMachineOptions({ memory: { normal: "4MiB", movable: "2MiB", cma: 0 }, cpus: 1, paging: { levels: 5, physAddrBits: 40 }, tlb: { sets: 4, ways: 2 }, ringEntries: 64, backing: { max: "1MiB" }, iommu: io(4, [2, 3], [1, 3]) }),
  parseMachineOptions({ memory: { normal: "8MiB", movable: "2MiB", cma: 0 }, cpus: 1, tlb: { sets: 4, ways: 2 }, ringEntries: 256, backing: { max: "16MiB" }, iommu: io(4, [16, 4], [4, 2]) }),
  // A 1 MiB backing pool that DMA writes (bursts of 100 frames) exhaust: ENOMEM mid-transfer.
  parseMachineOptions({ memory: { normal: "4MiB", movable: "4MiB", cma: 0, p2pdma: "1MiB" }, cpus: 1, tlb: { sets: 4, ways: 2 }, ringEntries: 256, backing: { max: "1MiB" }, iommu: io(4, [8, 2], [2, 4]) }),
];

function envOf(cfg: MachineConfig): Env {
  const mov = cfg.zones.find((z) => z.kind === F.ZONE_MOVABLE)!;
  const p2pIdx = cfg.zones.findIndex((z) => z.kind === F.ZONE_P2PDMA);
  const p2p = cfg.zones[p2pIdx];
  return {
    cfg, movable: mov.startPfn, movableEnd: mov.startPfn + mov.pages, p2p: p2p?.startPfn ?? cfg.nrFrames, p2pPages: p2p?.pages ?? 0, p2pIdx,
    halfPages: 2 ** ((cfg.levels === 5 ? 57 : 48) - 13), maxXlate: translateMax(cfg), maxIovas: (cfg.ringEntries * 24) / 8,
  };
}

let opsRun = 0;
let seqRun = 0;
/** Operations (and requests or pages) that ran a bypass request, stopped at IODS_P2P, reached a P2PDMA frame in the window. */
const p2pOps = { bypass: 0, bypassReqs: 0, bypassPages: 0, p2pStop: 0, p2pStops: 0, window: 0, windowPages: 0 };
/** Outcomes by operation kind (DMALAB_DIFF_STATS=1 prints them): how much each path ran. */
const outcomes = new Map<string, number>();

function tally(op: Op, r: unknown): void {
  if (!process.env.DMALAB_DIFF_STATS) return;
  const add = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  for (const x of (Array.isArray(r) ? r : [r]) as { rc: number; reason?: number; out?: number[][] }[]) {
    add(`${op.k}:${x.rc < 0 ? `err${x.rc}/${x.reason}` : "ok"}`);
    if (op.k === "iovas" && x.rc >= 0) add(`iovas.${(x as { stop?: number }).stop ? `stopped${((x as unknown as { stop: number }).stop >>> 16)}` : "all"}`);
    if (op.k === "iovas") continue;
    for (const o of x.out ?? []) {
      const st = o[0]!;
      if (op.k === "dma" || op.k === "burst") add(`${op.k}.${st === 0 ? "done" : st === I.IODS_MMIO ? "mmio" : st === I.IODS_P2P ? "p2p" : st < 0 ? `err${st}` : `fault${st >>> 16}`}${o[2] ? `.ev${o[2]}` : ""}`);
      else if (op.k === "xlate" || op.k === "again") add(`io.${st >= 0x10000 ? `fault${st >>> 16}` : `src${(st >> 2) & 3}.size${st & 3}${st & I.IOST_STALE ? ".stale" : ""}`}`);
    }
  }
}

async function runSequence(cfg: MachineConfig, ops: Op[]): Promise<void> {
  const env = envOf(cfg);
  const core = await CoreIommuDriver.create(cfg);
  const ref = new RefIommuDriver(cfg);
  const world = (): World => ({ roots: [], allocs: [], recent: new Map(), ctx: new Map(), devs: [], last: [], lastIovas: { dev: 0, pasid: 0, iovas: [] } });
  const wc = world();
  const wr = world();
  // Start both with three IO page tables; devices 0 and 2 (with ATS) share domain 1, device
  // 1 has domain 2, device 3 passes through; device 0's PASIDs 1 and 2 walk the other tables.
  const V = I.DTE_VALID;
  const setup: Op[] = [
    { k: "pgdAlloc" }, { k: "pgdAlloc" }, { k: "pgdAlloc" },
    { k: "dev", dev: 0, flags: V | I.DTE_ATS | I.DTE_PASID, type: I.IODOM_PAGING, domain: 1, root: 0 },
    { k: "dev", dev: 1, flags: V, type: I.IODOM_PAGING, domain: 2, root: 1 },
    { k: "dev", dev: 2, flags: V | I.DTE_ATS, type: I.IODOM_PAGING, domain: 1, root: 0 },
    { k: "dev", dev: 3, flags: V | I.DTE_PASID, type: I.IODOM_IDENTITY, domain: 0, root: 0 },
    { k: "pasid", dev: 0, pasid: 1, domain: 2, root: 1, clear: false },
    { k: "pasid", dev: 0, pasid: 2, domain: 3, root: 11, clear: false },
  ];
  for (const op of setup) expect(step(core, env, wc, op)).toEqual(step(ref, env, wr, op));
  const st = ref.iommu.stats;
  ops.forEach((op, i) => {
    const s0 = { ...st };
    const a = step(core, env, wc, op);
    const b = step(ref, env, wr, op);
    if (st.bypassReqs > s0.bypassReqs) p2pOps.bypass++;
    if (st.p2pStops > s0.p2pStops) p2pOps.p2pStop++;
    if (st.windowPages > s0.windowPages) p2pOps.window++;
    expect(a, `op ${i} ${JSON.stringify(op)}`).toEqual(b);
    expect(core.iommuState(), `iommu state after op ${i}`).toEqual(ref.iommuState());
    tally(op, a);
    opsRun++;
    if (i % 32 === 31) expect(core.state(), `machine state after op ${i}`).toEqual(ref.state());
  });
  expect(core.state()).toEqual(ref.state());
  p2pOps.bypassReqs += st.bypassReqs;
  p2pOps.bypassPages += st.bypassPages;
  p2pOps.p2pStops += st.p2pStops;
  p2pOps.windowPages += st.windowPages;
  seqRun++;
}

const seed = process.env.DMALAB_SEED ? Number(process.env.DMALAB_SEED) : undefined;

describe("IOMMU: core vs reference model", () => {
  for (const [i, cfg] of CONFIGS.entries()) {
    const io = cfg.iommu;
    it(`agrees on random operation sequences (config ${i}: ${cfg.levels}-level, IOTLB ${io.iotlb.sets}x${io.iotlb.ways}, ATC ${io.atc.sets}x${io.atc.ways})`, async () => {
      const before = opsRun;
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 250, maxLength: 450 }), (ops) => runSequence(cfg, ops)),
        { numRuns: 16, seed, interruptAfterTimeLimit: 60_000 },
      );
      // At least 4,000 operations per configuration (16 sequences of 250..450), 16,000 per run of this file.
      expect(opsRun - before).toBeGreaterThanOrEqual(4000);
      if (process.env.DMALAB_DIFF_STATS) console.log(`${seqRun} sequences, ${opsRun} ops, P2P ${JSON.stringify(p2pOps)}\n${[...outcomes].sort().map(([k, v]) => `${k}=${v}`).join(" ")}`);
    });
  }
});
