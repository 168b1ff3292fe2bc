/**
 * npm run bench [-- NAME ...]: run the named benchmarks (all without a name). Each prints a
 * table and writes bench/results/NAME.json. `npm start` runs the headline one (walk).
 */
import { parseArgs } from "node:util";
import { type BenchReport, printReport, writeReport } from "./lib.js";

const BENCHES: Record<string, () => Promise<{ run(): Promise<BenchReport> }>> = {
  walk: () => import("./walk.bench.js"),
  tlb: () => import("./tlb.bench.js"),
  memory: () => import("./memory.bench.js"),
  mm: () => import("./mm.bench.js"),
  gup: () => import("./gup.bench.js"),
  notifier: () => import("./notifier.bench.js"),
  hmm: () => import("./hmm.bench.js"),
  dmabuf: () => import("./dmabuf.bench.js"),
  pcie: () => import("./pcie.bench.js"),
  iommu: () => import("./iommu.bench.js"),
  p2p: () => import("./p2p.bench.js"),
};

const { positionals } = parseArgs({ allowPositionals: true });
const names = positionals.length ? positionals : Object.keys(BENCHES);
for (const name of names) {
  const load = BENCHES[name];
  if (!load) {
    console.error(`unknown benchmark ${name}; have: ${Object.keys(BENCHES).join(", ")}`);
    process.exit(2);
  }
  const report = await (await load()).run();
  printReport(report);
  console.log(`  wrote ${writeReport(report)}`);
}
