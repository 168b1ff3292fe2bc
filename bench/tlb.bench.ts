/**
 * tlb: translations that hit the TLB (1024 distinct pages, 4096 requests, a 1536-entry
 * TLB), core vs reference vs native C. Target: core <= 2x native.
 */
import { type BenchReport, pairedRounds, timeTasks } from "./lib.js";
import { compileNative, runNative } from "./native.js";
import { benchMachine, checkReference, checkRing, sum } from "./setup.js";

const N = 4096;
const PAGES = 1024;

export async function run(): Promise<BenchReport> {
  const s = await benchMachine(N, (i) => (i * 7) % PAGES);
  s.cpu.translateRing(N); // fill the TLB
  s.ref.translate(0, s.reqs, 0);
  const before = s.cpu.stats.hits;
  s.cpu.translateRing(N);
  if (s.cpu.stats.hits - before !== N) throw new Error(`expected ${N} hits, got ${s.cpu.stats.hits - before}`);
  checkRing(s, N);
  checkReference(s, 0);
  const exe = compileNative();
  const memory = new Uint8Array(s.m.memory.buffer);
  const paired = await pairedRounds(
    () => s.cpu.translateRing(N),
    N,
    (iterations) => {
      const nat = runNative(exe, memory, 0, N, 0, iterations);
      if (nat.checksum !== sum(s.pas)) throw new Error(`native checksum ${nat.checksum} != ${sum(s.pas)}`);
      return { min: nat.minNsPerOp, median: nat.medianNsPerOp };
    },
  );
  const t = await timeTasks({ reference: () => s.ref.m.mmu.translateBatch(0, s.reqs, 0) }, 1000);
  const reference = t.reference!.median / N;
  return {
    bench: "tlb",
    cases: [
      { name: "tlb-hit/4096", impl: "core", nsPerOp: paired.core, medianNsPerOp: paired.coreMedian },
      { name: "tlb-hit/4096", impl: "reference", nsPerOp: t.reference!.min / N, medianNsPerOp: reference },
      { name: "tlb-hit/4096", impl: "native", nsPerOp: paired.native, medianNsPerOp: paired.nativeMedian },
    ],
    ratios: { "core / native": paired.ratio, "reference / core": t.reference!.min / N / paired.core },
    targets: { "core / native": "<= 2" },
    notes: [
      `${PAGES} pages in a ${s.m.config.tlb.sets}x${s.m.config.tlb.ways} TLB: every request hits; modeled ${s.m.costs.tlbHit.ns} ns per hit`,
      `core and native in ${paired.rounds} alternating rounds; nsPerOp is the fastest batch (noise only adds time), the ratio the median of per-round ratios`,
    ],
  };
}
