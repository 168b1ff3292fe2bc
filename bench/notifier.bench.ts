/**
 * notifier: what an invalidation costs as interval notifiers pile up on an mm (1 to 10,000),
 * the lookup being an interval tree (O(log n + hits)).
 *
 * - invalidate/N-miss: an invalidation of one page that none of N subscriptions overlaps:
 *   the lookup alone;
 * - invalidate/N-hit1: the same with one more subscription over the page;
 * - invalidate/N-hitall: one page that all N subscriptions cover (O(hits));
 * - madvise-dontneed/1-page: a whole madvise(DONTNEED) of a present page, for scale.
 *
 * The reference model has no notifiers (they live in the host only), so there is no
 * reference column.
 */
import {
  createMachine, type MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalSetSeq, mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart, mmuNotifierRangeInit, type Process,
} from "../src/index.js";
import { type BenchReport, type Case, median } from "./lib.js";

const PAGE = 4096;
const CALLS = 20000;

async function proc(): Promise<Process> {
  const m = await createMachine({ memory: { normal: "256MiB", movable: 0, cma: 0 }, cpus: 2, mm: { thp: "never" }, trace: false });
  return m.spawn(0);
}

const ops = { invalidate: (sub: MmuIntervalNotifier, _r: unknown, cur: number) => (mmuIntervalSetSeq(sub, cur), true) };

/**
 * Time @CALLS invalidations of one page at @va (range init, start, end: what each mm path
 * adds when the mm has subscriptions): per-call ns, best and median of 5 rounds.
 */
function time(p: Process, va: number): { best: number; med: number } {
  const per: number[] = [];
  const vpn = va / PAGE;
  for (let r = 0; r < 6; r++) {
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) {
      const range = mmuNotifierRangeInit("clear", true, p.mm, vpn, vpn + 1);
      mmuNotifierInvalidateRangeStart(range);
      mmuNotifierInvalidateRangeEnd(range);
    }
    if (r > 0) per.push(((performance.now() - t0) * 1e6) / CALLS); // the first round warms up
  }
  return { best: Math.min(...per), med: median(per) };
}

/** One madvise(DONTNEED) of a present page, for scale: best per-call ns of 5 rounds. */
function madviseNs(p: Process, va: number): number {
  const per: number[] = [];
  for (let r = 0; r < 6; r++) {
    let ns = 0;
    for (let i = 0; i < 500; i++) {
      p.touch(va, PAGE, "w");
      const t0 = performance.now();
      p.madvise(va, PAGE, "dontneed");
      ns += (performance.now() - t0) * 1e6;
    }
    if (r > 0) per.push(ns / 500);
  }
  return Math.min(...per);
}

async function scenario(n: number, kind: "miss" | "hit1" | "hitall"): Promise<Case> {
  const p = await proc();
  const va = Number(p.mmap({ length: 64 * PAGE }));
  const far = va + 1024 * PAGE; // subscriptions off the timed page
  if (kind === "hitall") {
    for (let i = 0; i < n; i++) mmuIntervalNotifierInsert(p.mm, va, PAGE, ops);
  } else {
    for (let i = 0; i < n; i++) mmuIntervalNotifierInsert(p.mm, far + i * 2 * PAGE, PAGE, ops);
    if (kind === "hit1") mmuIntervalNotifierInsert(p.mm, va, PAGE, ops);
  }
  const t = time(p, va);
  return {
    name: `invalidate/${n}-${kind}`, impl: "core", nsPerOp: t.best, medianNsPerOp: t.med,
    subscriptions: n + (kind === "hit1" ? 1 : 0), hits: kind === "miss" ? 0 : kind === "hit1" ? 1 : n, calls: CALLS,
  };
}

export async function run(): Promise<BenchReport> {
  const cases: Case[] = [];
  for (const n of [1, 10, 100, 1000, 10000]) cases.push(await scenario(n, "miss"), await scenario(n, "hit1"));
  for (const n of [1, 10, 100, 1000, 10000]) cases.push(await scenario(n, "hitall"));
  const p = await proc();
  const va = Number(p.mmap({ length: 4 * PAGE }));
  cases.push({ name: "madvise-dontneed/1-page (no subscriptions, for scale)", impl: "core", nsPerOp: madviseNs(p, va) });
  const ns = (name: string) => cases.find((c) => c.name === name)!.nsPerOp;
  const ratios: Record<string, number> = {
    "miss: 10,000 / 10 subscriptions": ns("invalidate/10000-miss") / ns("invalidate/10-miss"),
    "hit1: 10,000 / 10 subscriptions": ns("invalidate/10000-hit1") / ns("invalidate/10-hit1"),
    "hitall: 10,000 / 1,000 hits": ns("invalidate/10000-hitall") / ns("invalidate/1000-hitall"),
  };
  return {
    bench: "notifier",
    cases,
    ratios,
    targets: { lookup: "O(log n + hits): miss and hit1 grow with log n (10,000 vs 10: a few times at most), hitall with n (~10x per 10x)" },
    notes: [
      "machine: 256 MiB NORMAL, 2 CPUs, trace off; one process",
      "nsPerOp: wall ns of one invalidation of one page (mmuNotifierRangeInit, start, end), best of 5 rounds of 20,000",
      "N-miss: N interval notifiers of one page each, two pages apart, none over the page; N-hit1: plus one over it; N-hitall: N over the page",
      "each hit calls the subscriber's invalidate (mmu_interval_set_seq and return true)",
      "the reference model has no notifiers (they live in the host only): no reference column",
    ],
  };
}
