/**
 * hmm: hmmRangeFault throughput, in pages per second of emulator wall time and modeled ns
 * per page, over 64 MiB (16,384 pages) of anonymous memory, 512 pages per call under one
 * interval notifier:
 *
 * - snapshot/4K and snapshot/THP: present pages, nothing requested (a device snapshot);
 * - fault/4K: fresh memory, REQ_FAULT | REQ_WRITE: every page faulted in (demand-zero);
 * - present/4K: the same again once present (the common steady state of a mirror).
 *
 * The reference model has no HMM walk of its own (it lives in the host over the core's
 * ptepRange, whose twin the differential test checks), so there is no reference column.
 */
import {
  createMachine, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, type HmmRange, hmmRangeFault, mmuIntervalNotifierInsert,
  mmuIntervalReadBegin, mmuIntervalSetSeq, type Process,
} from "../src/index.js";
import { type BenchReport, type Case, median } from "./lib.js";

const PAGE = 4096;
const HPAGE = 2 * 1024 * 1024;
const BYTES = 64 * 1024 * 1024;
const PER_CALL = 512;

async function proc(thp: boolean): Promise<Process> {
  const m = await createMachine({ memory: { normal: "512MiB", movable: 0, cma: 0 }, cpus: 2, mm: { thp: thp ? "always" : "never" }, trace: false });
  return m.spawn(0);
}

function buffer(p: Process): number {
  const raw = Number(p.mmap({ length: BYTES + HPAGE }));
  return Math.ceil(raw / HPAGE) * HPAGE;
}

/** One pass of hmmRangeFault over [@a, +BYTES), PER_CALL pages a call: wall and modeled ns per page. */
function pass(p: Process, a: number, flags: bigint): { wall: number; modeled: number } {
  const k = p.kernel;
  const notifier = mmuIntervalNotifierInsert(p.mm, a, BYTES, { invalidate: (s, _r, cur) => (mmuIntervalSetSeq(s, cur), true) });
  const pfns = new BigUint64Array(PER_CALL);
  const pages = BYTES / PAGE;
  const c0 = k.clock.now;
  const t0 = performance.now();
  p.mm.mmapLock.with("read", "bench", () => {
    for (let v = 0; v < pages; v += PER_CALL) {
      const r: HmmRange = {
        notifier, notifierSeq: mmuIntervalReadBegin(notifier), start: a + v * PAGE, end: a + (v + PER_CALL) * PAGE,
        hmmPfns: pfns, defaultFlags: flags, pfnFlagsMask: 0n, devPrivateOwner: null,
      };
      hmmRangeFault(r);
    }
  });
  return { wall: ((performance.now() - t0) * 1e6) / pages, modeled: (k.clock.now - c0) / pages };
}

async function steady(name: string, thp: boolean, flags: bigint): Promise<Case> {
  const p = await proc(thp);
  const a = buffer(p);
  p.touch(a, BYTES, "w");
  const runs = Array.from({ length: 6 }, () => pass(p, a, flags)).slice(1);
  const wall = runs.map((r) => r.wall);
  const best = Math.min(...wall);
  return { name, impl: "core", nsPerOp: best, nsPerPage: best, medianNsPerPage: median(wall), pagesPerSec: 1e9 / best, modeledNsPerPage: runs[0]!.modeled, rounds: 5 };
}

async function faultIn(): Promise<Case> {
  const wall: number[] = [];
  let modeled = 0;
  for (let r = 0; r < 3; r++) {
    const p = await proc(false);
    const a = buffer(p);
    const t = pass(p, a, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    wall.push(t.wall);
    modeled = t.modeled;
  }
  const best = Math.min(...wall);
  return { name: "fault/4K", impl: "core", nsPerOp: best, nsPerPage: best, medianNsPerPage: median(wall), pagesPerSec: 1e9 / best, modeledNsPerPage: modeled, rounds: 3 };
}

export async function run(): Promise<BenchReport> {
  const cases = [
    await steady("snapshot/4K", false, 0n),
    await steady("snapshot/THP", true, 0n),
    await steady("present/4K", false, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE),
    await faultIn(),
  ];
  return {
    bench: "hmm",
    cases,
    notes: [
      "machine: 512 MiB NORMAL, 2 CPUs, trace off; 64 MiB of anonymous memory (16,384 pages), 512 pages per hmmRangeFault call under one interval notifier",
      "nsPerPage: wall ns per page, best of 5 passes (fault/4K: of 3 fresh machines); pagesPerSec = 1e9 / nsPerPage",
      "modeledNsPerPage: the machine clock's advance per page: the faults' modeled cost (the walk itself is not charged)",
    ],
  };
}
