/**
 * Shared pieces of the benchmarks: running tinybench tasks side by side, and writing
 * bench/results/NAME.json as {"bench": NAME, "cases": [{name, impl, nsPerOp, ...}], ...}.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { Bench } from "tinybench";

export type Impl = "core" | "reference" | "native";

export interface Case {
  name: string;
  impl: Impl;
  nsPerOp: number;
  [more: string]: unknown;
}

export interface BenchReport {
  bench: string;
  cases: Case[];
  /** Ratios the issue's targets are stated in, e.g. core/native. */
  ratios?: Record<string, number>;
  targets?: Record<string, string>;
  notes?: string[];
  [more: string]: unknown;
}

export interface Timing {
  /** Fastest ns of one call. */
  min: number;
  /** Mean ns of one call. */
  mean: number;
  /** Median ns of one call: what the ratios use, as it shrugs off a noisy neighbour. */
  median: number;
}

/** timeTasks - run each task under tinybench (one after another, in this process). */
export async function timeTasks(tasks: Record<string, () => void>, ms = 1500): Promise<Record<string, Timing>> {
  const bench = new Bench({ time: ms, warmupTime: 300 });
  for (const [name, fn] of Object.entries(tasks)) bench.add(name, fn);
  await bench.run();
  const out: Record<string, Timing> = {};
  for (const t of bench.tasks) {
    const r = t.result;
    if (r.state !== "completed") throw new Error(`bench task ${t.name}: ${r.state}`);
    out[t.name] = { min: r.latency.min * 1e6, mean: r.latency.mean * 1e6, median: r.latency.p50 * 1e6 };
  }
  return out;
}

/** median of @xs. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Paired {
  /** Fastest batch, ns per operation (median over rounds). */
  core: number;
  native: number;
  /** Median batch, ns per operation (median over rounds). */
  coreMedian: number;
  nativeMedian: number;
  /** Median over rounds of core/native fastest batches measured back to back. */
  ratio: number;
  rounds: number;
}

/**
 * pairedRounds - time @core (tinybench, this process) and @native (the C binary) in
 * alternating short rounds and compare them round by round. On a shared machine noise only
 * ever adds time, so each side's fastest batch is its speed, and comparing within a round
 * cancels the machine's drift between rounds.
 */
export async function pairedRounds(
  core: () => void,
  opsPerCall: number,
  native: (iterations: number) => { min: number; median: number },
  rounds = 9,
): Promise<Paired> {
  const c: number[] = [];
  const cm: number[] = [];
  const n: number[] = [];
  const nm: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = (await timeTasks({ core }, 250)).core!;
    const nat = native(Math.max(10, Math.ceil(2.5e8 / (t.median))));
    c.push(t.min / opsPerCall);
    cm.push(t.median / opsPerCall);
    n.push(nat.min);
    nm.push(nat.median);
    r.push(t.min / opsPerCall / nat.min);
  }
  return {
    core: median(c), native: median(n), coreMedian: median(cm), nativeMedian: median(nm), ratio: median(r), rounds,
  };
}

/**
 * alternating - tasks @a and @b timed in alternating rounds (tinybench, @ms each), so load
 * on a shared machine falls on both alike: each one's fastest sample (median over rounds),
 * and the median of the per-round ratios b / a.
 */
export async function alternating(a: () => void, b: () => void, rounds = 9, ms = 250): Promise<{ a: number; b: number; ratio: number }> {
  const ta: number[] = [];
  const tb: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const x = (await timeTasks({ a }, ms)).a!.min;
    const y = (await timeTasks({ b }, ms)).b!.min;
    ta.push(x);
    tb.push(y);
    r.push(y / x);
  }
  return { a: median(ta), b: median(tb), ratio: median(r) };
}

export function writeReport(report: BenchReport): string {
  const dir = new URL("./results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  const path = new URL(`${report.bench}.json`, dir);
  writeFileSync(path, JSON.stringify(report, null, 2) + "\n");
  return path.pathname;
}

export function printReport(report: BenchReport): void {
  console.log(`\n== ${report.bench} ==`);
  console.table(
    report.cases.map((c) => {
      const { name, impl, nsPerOp, ...rest } = c;
      return { name, impl, "ns/op": round(nsPerOp), ...rest };
    }),
  );
  if (report.ratios) {
    for (const [k, v] of Object.entries(report.ratios)) {
      console.log(`  ${k.padEnd(34)} ${round(v)}${report.targets?.[k] ? `   (target ${report.targets[k]})` : ""}`);
    }
  }
  for (const n of report.notes ?? []) console.log(`  note: ${n}`);
}

export function round(x: number): number {
  return Math.abs(x) >= 100 ? Math.round(x) : Math.round(x * 1000) / 1000;
}
