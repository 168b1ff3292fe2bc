/**
 * mm: page faults and munmap of a process's address space, the emulator ("core": the
 * Process calls over the WASM core) against the reference model (test/reference/mm-model.ts)
 * doing the same logical operation.
 *
 * - fault/demand-zero-4k: process.touch(w) over a fresh anonymous range, THP never: one
 *   do_anonymous_page per 4 KiB page.
 * - fault/thp: the same over a 2 MiB-aligned range with THP always: one 2 MiB folio per fault.
 * - fault/cow: a parent writes every page, forks; the child's touch(w) copies each page.
 * - munmap/1GiB-4k and munmap/1GiB-thp: munmap of a populated 1 GiB range.
 *
 * Each case runs a few rounds on one machine (setup untimed); nsPerOp is the fastest round
 * (noise on a shared machine only adds time), medianNsPerOp the median round. Wall time is
 * per fault (or, for munmap, per page); the modeled time is the machine clock's advance
 * over the operation (the cost table: faults, shootdowns, page-table writes) per fault or
 * page. The reference model has no pages to allocate or tables to walk: its figure is what
 * the bookkeeping alone costs in TypeScript.
 */
import { createMachine, type Machine, type Process } from "../src/index.js";
import { MmModel } from "../test/reference/mm-model.js";
import { type BenchReport, type Case, median } from "./lib.js";

const PAGE = 4096;
const MiB = 1024 * 1024;
const RW = { read: true, write: true, exec: false };

interface Rounds {
  min: number;
  median: number;
}

function rounds(xs: number[]): Rounds {
  return { min: Math.min(...xs), median: median(xs) };
}

async function machine(thp: "never" | "always"): Promise<{ m: Machine; p: Process }> {
  const m = await createMachine({
    memory: { normal: "512MiB", movable: "2GiB", cma: 0 }, cpus: 2, mm: { thp }, trace: false, seed: 11,
  });
  return { m, p: m.spawn(0) };
}

function model(p: Process, thp: "never" | "always"): { ref: MmModel; pid: number } {
  const ref = new MmModel({ taskSizePages: p.kernel.taskSizePages(), mmapBase: p.mm.mmapBase, lowLimit: 256, thp });
  return { ref, pid: ref.spawn() };
}

const count = (m: Machine, name: string): number => m.trace.counters.get(name) ?? 0;

interface Timed {
  ns: number;
  modeled: number;
  /** Faults of the kind measured (mm.fault.anon, mm.fault.thp, mm.fault.cow_copy). */
  faults: number;
  /** Every fault the handler saw (mm.faults.ok), spurious ones included. */
  allFaults: number;
}

/** Time @body on the emulator: wall ns, modeled ns and faults taken. */
function timed(m: Machine, kind: string, body: () => void): Timed {
  const [f0, a0, c0] = [count(m, kind), count(m, "mm.faults.ok"), m.clock.now];
  const t0 = performance.now();
  body();
  const ns = (performance.now() - t0) * 1e6;
  return { ns, modeled: m.clock.now - c0, faults: count(m, kind) - f0, allFaults: count(m, "mm.faults.ok") - a0 };
}

function wall(body: () => void): number {
  const t0 = performance.now();
  body();
  return (performance.now() - t0) * 1e6;
}

/** Anonymous faults over @pages pages per round, THP @thp. */
async function faultCase(name: string, thp: "never" | "always", pages: number, n: number): Promise<Case[]> {
  const { m, p } = await machine(thp);
  const core: number[] = [];
  let last: Timed = { ns: 0, modeled: 0, faults: 0, allFaults: 0 };
  for (let r = 0; r < n; r++) {
    const a = Number(p.mmap({ length: pages * PAGE }));
    last = timed(m, thp === "always" ? "mm.fault.thp" : "mm.fault.anon", () => p.touch(a, pages * PAGE, "w"));
    const expected = thp === "always" ? pages / 512 : pages;
    if (last.faults !== expected) throw new Error(`${name}: ${last.faults} faults, expected ${expected}`);
    core.push(last.ns / last.faults);
    p.munmap(a, pages * PAGE);
  }
  const ref: number[] = [];
  const { ref: mdl, pid } = model(p, thp);
  for (let r = 0; r < n; r++) {
    const a = mdl.mmap(pid, { length: pages * PAGE, prot: RW });
    ref.push(wall(() => mdl.touch(pid, a, pages * PAGE, "w")) / (thp === "always" ? pages / 512 : pages));
    mdl.munmap(pid, a, pages * PAGE);
  }
  const pagesPerFault = thp === "always" ? 512 : 1;
  const c = rounds(core);
  const rf = rounds(ref);
  return [
    {
      name, impl: "core", nsPerOp: c.min, medianNsPerOp: c.median, nsPerPage: c.min / pagesPerFault,
      modeledNsPerFault: last.modeled / last.faults, faults: last.faults, handlerCalls: last.allFaults, pages, rounds: n,
    },
    { name, impl: "reference", nsPerOp: rf.min, medianNsPerOp: rf.median, nsPerPage: rf.min / pagesPerFault, pages, rounds: n },
  ];
}

/** COW: the parent writes @pages pages, forks; the child's touch(w) copies each. */
async function cowCase(pages: number, n: number): Promise<Case[]> {
  const name = "fault/cow";
  const { m, p } = await machine("never");
  const fill = new Uint8Array(PAGE).fill(0x5a);
  const a = Number(p.mmap({ length: pages * PAGE }));
  for (let i = 0; i < pages; i++) p.write(a + i * PAGE, fill);
  const core: number[] = [];
  let last: Timed = { ns: 0, modeled: 0, faults: 0, allFaults: 0 };
  for (let r = 0; r < n; r++) {
    const c = p.fork();
    last = timed(m, "mm.fault.cow_copy", () => c.touch(a, pages * PAGE, "w"));
    if (last.faults !== pages) throw new Error(`${name}: ${last.faults} faults, expected ${pages}`);
    if (c.read(a + (pages - 1) * PAGE, 1)[0] !== 0x5a) throw new Error(`${name}: the child's copy lost its bytes`);
    core.push(last.ns / last.faults);
    c.exit();
  }
  const { ref: mdl, pid } = model(p, "never");
  const ra = mdl.mmap(pid, { length: pages * PAGE, prot: RW });
  for (let i = 0; i < pages; i++) mdl.write(pid, ra + i * PAGE, fill);
  const ref: number[] = [];
  for (let r = 0; r < n; r++) {
    const child = mdl.fork(pid);
    ref.push(wall(() => mdl.touch(child, ra, pages * PAGE, "w")) / pages);
    mdl.exit(child);
  }
  const c = rounds(core);
  const rf = rounds(ref);
  return [
    { name, impl: "core", nsPerOp: c.min, medianNsPerOp: c.median, nsPerPage: c.min, modeledNsPerFault: last.modeled / last.faults, faults: pages, handlerCalls: last.allFaults, pages, rounds: n },
    { name, impl: "reference", nsPerOp: rf.min, medianNsPerOp: rf.median, nsPerPage: rf.min, pages, rounds: n },
  ];
}

/** munmap of a populated 1 GiB anonymous range (4 KiB pages or THPs). */
async function munmapCase(thp: "never" | "always", n: number): Promise<Case[]> {
  const name = `munmap/1GiB-${thp === "always" ? "thp" : "4k"}`;
  const pages = 262144;
  const { m, p } = await machine(thp);
  const core: number[] = [];
  let modeled = 0;
  let freed = 0;
  for (let r = 0; r < n; r++) {
    const a = Number(p.mmap({ length: pages * PAGE }));
    p.touch(a, pages * PAGE, "w");
    const free = m.phys.nrFreePages();
    const t = timed(m, "mm.faults.ok", () => p.munmap(a, pages * PAGE));
    freed = m.phys.nrFreePages() - free;
    if (freed < pages) throw new Error(`${name}: only ${freed} frames came back`);
    core.push(t.ns);
    modeled = t.modeled;
  }
  const { ref: mdl, pid } = model(p, thp);
  const ref: number[] = [];
  for (let r = 0; r < n; r++) {
    const a = mdl.mmap(pid, { length: pages * PAGE, prot: RW });
    mdl.touch(pid, a, pages * PAGE, "w");
    ref.push(wall(() => mdl.munmap(pid, a, pages * PAGE)));
  }
  const c = rounds(core);
  const rf = rounds(ref);
  return [
    {
      name, impl: "core", nsPerOp: c.min, medianNsPerOp: c.median, nsPerPage: c.min / pages, modeledNs: modeled,
      modeledNsPerPage: modeled / pages, framesFreed: freed, pages, rounds: n,
    },
    { name, impl: "reference", nsPerOp: rf.min, medianNsPerOp: rf.median, nsPerPage: rf.min / pages, pages, rounds: n },
  ];
}

export async function run(): Promise<BenchReport> {
  const cases = [
    ...(await faultCase("fault/demand-zero-4k", "never", 65536, 5)),
    ...(await faultCase("fault/thp", "always", (512 * MiB) / PAGE, 5)),
    ...(await cowCase(16384, 5)),
    ...(await munmapCase("never", 3)),
    ...(await munmapCase("always", 3)),
  ];
  const ratios: Record<string, number> = {};
  for (const c of cases.filter((x) => x.impl === "core")) {
    const r = cases.find((x) => x.impl === "reference" && x.name === c.name)!;
    ratios[`${c.name}: core / reference`] = c.nsPerOp / r.nsPerOp;
  }
  return {
    bench: "mm",
    cases,
    ratios,
    notes: [
      "machine: 512 MiB NORMAL + 2 GiB MOVABLE, 2 CPUs, trace off; sizes: 256 MiB of 4 KiB faults, 512 MiB of THP faults (256 faults), 64 MiB of COW faults, 1 GiB munmaps",
      "nsPerOp: wall ns per fault (fault/*) or per munmap call (munmap/*), the fastest of the rounds; nsPerPage divides by the pages each covers",
      "modeledNsPerFault / modeledNsPerPage: the machine clock's advance over the operation (cost table) divided by faults or pages",
      "faults: faults of the kind measured (mm.fault.anon / thp / cow_copy); handlerCalls: every call of the fault handler (mm.faults.ok), spurious ones included",
      "reference = test/reference/mm-model.ts doing the same logical operation (per-page bookkeeping, no frames, tables or TLBs; a THP is 512 of its pages)",
    ],
  };
}
