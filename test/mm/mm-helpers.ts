/**
 * Helpers of the process and address-space tests (test/mm/{vma,cow,thp,process,badinput}):
 * a small machine with processes, errors as values, page-table and struct-page look-ups,
 * and a snapshot of everything a failed system call must leave alone.
 */
import { createMachine, DmaError, type CreateOptions, type Machine, type MmapOptions, type Process } from "../../src/index.js";
import { snapshot } from "../helpers.js";

export const PAGE = 4096;
export const HPAGE = 2 * 1024 * 1024;

/** A small machine for process tests: 64 MiB NORMAL + 64 MiB MOVABLE, 2 CPUs, 16 MiB swap. */
export function mmMachine(options: CreateOptions = {}): Promise<Machine> {
  return createMachine({
    memory: { normal: "64MiB", movable: "64MiB", cma: 0 },
    cpus: 2,
    swap: "16MiB",
    tlb: { sets: 16, ways: 4 },
    ...options,
  });
}

/** mmap - @p.mmap(@o), as a number (the tests' addresses are all below 2^53). */
export function mmap(p: Process, o: MmapOptions): number {
  return Number(p.mmap(o));
}

/** What @fn threw, as "CODE:arg", or "ok". Anything but a DmaError is rethrown. */
export function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return `${e.code}:${e.arg}`;
    throw e;
  }
  return "ok";
}

/** The DmaError @fn threw (fails the test if it returned or threw something else). */
export function caught(fn: () => unknown): DmaError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return e;
    throw e;
  }
  throw new Error("expected a DmaError, the call returned");
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** The leaf mapping @va in @p's page tables: level, pfn (of the 4 KiB page), rights. */
export function leaf(p: Process, va: number): { level: number; pfn: number; present: boolean; write: boolean; special: boolean } {
  const g = p.mm.pgd.ptepGet(va - (va % PAGE));
  const span = g.level === 2 ? 512 : 1;
  const inLeaf = g.level === 2 ? Math.floor((va % HPAGE) / PAGE) : 0;
  return {
    level: g.level,
    pfn: g.info.present ? g.info.pfn - (g.info.pfn % span) + inLeaf : -1,
    present: g.info.present,
    write: g.info.write,
    special: g.info.special,
  };
}

/** The frame mapping @va in @p (throws if none). */
export function pfnAt(p: Process, va: number): number {
  const l = leaf(p, va);
  if (!l.present) throw new Error(`nothing mapped at 0x${va.toString(16)}`);
  return l.pfn;
}

/** A counter of the trace (0 if never counted). */
export function counter(m: Machine, name: string): number {
  return m.trace.counters.get(name) ?? 0;
}

/**
 * procSnapshot - the machine snapshot (zones, backing, CPUs and TLBs, page-table entries of
 * @ranges) plus each process's maps, RSS and mm flags: what a failed call must not change.
 * With tlb false the TLB contents are left out.
 */
export function procSnapshot(m: Machine, procs: Process[], ranges: [number, number][], opts: { tlb?: boolean } = {}): string {
  const machine = JSON.parse(snapshot(m, procs.filter((p) => !p.exited).map((p) => p.mm.pgd), ranges)) as {
    cpus: { tlb?: unknown }[];
  };
  // A page fault invalidates the TLB entries of the faulting address (SDM 4.10.4.1): a
  // failed access may drop one, which is the CPU's doing, not a change of kernel state.
  if (opts.tlb === false) for (const c of machine.cpus) delete c.tlb;
  return JSON.stringify({
    machine,
    procs: procs.map((p) => ({
      pid: p.pid,
      exited: p.exited,
      maps: p.maps(),
      rss: p.mm.rss,
      cpumask: [...p.mm.cpumask],
      hasPinned: p.mm.hasPinned,
    })),
    processes: [...m.kernel.processes.keys()],
    files: m.fs.list().map((f) => ({ path: f.path, size: f.size, cached: [...f.pages] })),
  });
}

/** Fill @n pages from @va with a per-page pattern: page i holds bytes (tag + i) & 0xff. */
export function fillPages(p: Process, va: number, n: number, tag: number): void {
  for (let i = 0; i < n; i++) p.write(va + i * PAGE, new Uint8Array(PAGE).fill((tag + i) & 0xff));
}

/** Whether page i of @n from @va holds the fillPages pattern for @tag (reading through @p). */
export function holdsPattern(p: Process, va: number, i: number, tag: number): boolean {
  const b = p.read(va + i * PAGE, PAGE);
  const want = (tag + i) & 0xff;
  return b.every((x) => x === want);
}
