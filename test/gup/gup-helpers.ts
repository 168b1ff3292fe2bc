/**
 * Helpers of the GUP tests: a machine with processes and THP, a touched buffer, and the
 * struct-page counts the tests follow.
 */
import { createMachine, type CreateOptions, type Machine, type Process } from "../../src/index.js";
import { HPAGE, PAGE, mmap, pfnAt } from "../mm/mm-helpers.js";

export { HPAGE, PAGE, caught, code, fillPages, holdsPattern, leaf, mmap, pfnAt, str, text } from "../mm/mm-helpers.js";

/** 128 MiB NORMAL + 64 MiB MOVABLE + 16 MiB CMA, 2 CPUs, THP on madvise. */
export function gupMachine(options: CreateOptions = {}): Promise<Machine> {
  return createMachine({
    memory: { normal: "128MiB", movable: "64MiB", cma: "16MiB" },
    cpus: 2,
    swap: "16MiB",
    tlb: { sets: 16, ways: 4 },
    ...options,
  });
}

/** A private anonymous buffer of @pages pages, every page written (so present and exclusive). */
export function buffer(p: Process, pages: number, opts: { huge?: boolean } = {}): number {
  const len = pages * PAGE;
  // A THP buffer is 2 MiB aligned: map 2 MiB more and use the aligned part.
  if (opts.huge) {
    const raw = mmap(p, { length: len + HPAGE, hugepage: true });
    const a = Math.ceil(raw / HPAGE) * HPAGE;
    p.touch(a, len, "w");
    return a;
  }
  const a = mmap(p, { length: len });
  p.touch(a, len, "w");
  return a;
}

/** refcount, mapcount and pincount of the folio holding @pfn (its head's). */
export function counts(m: Machine, pfn: number): { ref: number; map: number; pin: number } {
  const pg = m.page(pfn);
  const head = pg.head === null ? pg : m.page(pg.head);
  return { ref: head.refcount, map: pg.mapcount, pin: head.pincount };
}

/** The frames of @n pages from @va, as the page tables map them. */
export function framesOf(p: Process, va: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => pfnAt(p, va + i * PAGE));
}
