/**
 * walk: the 4-level page walk with the TLB off, 4096 addresses per batch, in the core
 * (WASM), the reference model (TypeScript) and the same algorithm in C (gcc -O2) over a
 * dump of the core's memory. Targets: core <= 1.5x native, >= 2x faster than reference.
 */
import * as H from "../src/abi/header.js";
import { type BenchReport, pairedRounds, timeTasks } from "./lib.js";
import { compileNative, runNative } from "./native.js";
import { benchMachine, checkReference, checkRing, sum } from "./setup.js";

const N = 4096;

export async function run(): Promise<BenchReport> {
  const s = await benchMachine(N, (_, rand) => Math.floor(rand() * 1e9));
  s.cpu.translateRing(N, { tlb: false });
  checkRing(s, N);
  checkReference(s, H.XLATE_NOTLB);
  const exe = compileNative();
  const memory = new Uint8Array(s.m.memory.buffer);
  const paired = await pairedRounds(
    () => s.cpu.translateRing(N, { tlb: false }),
    N,
    (iterations) => {
      const nat = runNative(exe, memory, 0, N, H.XLATE_NOTLB, iterations);
      if (nat.checksum !== sum(s.pas)) throw new Error(`native checksum ${nat.checksum} != ${sum(s.pas)}`);
      return { min: nat.minNsPerOp, median: nat.medianNsPerOp };
    },
  );
  const t = await timeTasks({ reference: () => s.ref.m.mmu.translateBatch(0, s.reqs, H.XLATE_NOTLB) }, 1000);
  const reference = t.reference!.median / N;
  const loadsPerWalk = s.cpu.stats.loads / s.cpu.stats.walks;
  return {
    bench: "walk",
    cases: [
      { name: "walk4/notlb/4096", impl: "core", nsPerOp: paired.core, medianNsPerOp: paired.coreMedian, loadsPerWalk },
      { name: "walk4/notlb/4096", impl: "reference", nsPerOp: t.reference!.min / N, medianNsPerOp: reference, loadsPerWalk },
      { name: "walk4/notlb/4096", impl: "native", nsPerOp: paired.native, medianNsPerOp: paired.nativeMedian, loadsPerWalk },
    ],
    ratios: { "core / native": paired.ratio, "reference / core": t.reference!.min / N / paired.core },
    targets: { "core / native": "<= 1.5", "reference / core": ">= 2" },
    notes: [
      `${N} user reads of random pages in 32 x 2 MiB regions 2 GiB apart; modeled cost ${s.m.costs.walkLevel.ns} ns per level`,
      "native = bench/native/walk.c (gcc -O2) over a dump of the core's memory; checksums of the physical addresses agree",
      `core and native in ${paired.rounds} alternating rounds; nsPerOp is the fastest batch (noise only adds time), the ratio the median of per-round ratios`,
    ],
  };
}
