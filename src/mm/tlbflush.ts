/**
 * flush_tlb_mm_range (arch/x86/mm/tlb.c): after an mm's entries were cleared or lost
 * rights, every CPU that may hold its translations drops them. Up to
 * tlb_single_page_flush_ceiling (33) pages go one INVLPG at a time, more flush the mm's
 * whole PCID. CPUs other than the one doing the change are reached by IPI, and the
 * shootdown's round trip is charged to the clock.
 * @module
 */
import type { MmStruct } from "./mm.js";
import { mmuNotifierArchInvalidateSecondaryTlbs } from "../notifier/mmu-notifier.js";

/** tlb_single_page_flush_ceiling. */
export const TLB_FLUSH_CEILING = 33;

export interface ShootdownResult {
  cpus: number;
  dropped: number;
  ns: number;
}

/**
 * flushTlbMmRange - drop @mm's translations of pages [start, end) on every CPU in its
 * cpumask; @local is the CPU making the change (no IPI for it), or -1 for none.
 */
export function flushTlbMmRange(mm: MmStruct, start: number, end: number, local = -1): ShootdownResult {
  const k = mm.kernel;
  const c = k.core;
  const pages = end - start;
  const whole = pages > TLB_FLUSH_CEILING;
  let dropped = 0;
  let remote = 0;
  for (const cpu of mm.cpumask) {
    dropped += whole
      ? k.check(c.x.tlbInvpcid(cpu, 1, mm.pcid, 0), "tlbInvpcid")
      : k.check(c.x.tlbFlushPcidRange(cpu, mm.pcid, start, pages), "tlbFlushPcidRange");
    if (cpu !== local) remote++;
  }
  const perCpu = whole ? k.costs.tlbFlushAll.ns : pages * k.costs.invlpg.ns;
  const ipi = remote ? k.costs.ipiShootdown.ns + (remote - 1) * k.costs.ipiPerCpu.ns : 0;
  const ns = mm.cpumask.size ? perCpu + ipi : 0;
  const ts = k.clock.now;
  k.clock.advance(ns);
  k.trace.emit("mm.shootdown", { pcid: mm.pcid, start: start * 4096, pages, cpus: mm.cpumask.size, remote, dropped }, ts, ns);
  k.trace.count("mm.shootdowns");
  if (remote) k.trace.count("mm.shootdown_ipis", remote);
  // arch_tlbbatch / flush_tlb_mm_range: the secondary TLBs (an IOMMU's for SVA) too.
  mmuNotifierArchInvalidateSecondaryTlbs(mm, start, end);
  return { cpus: mm.cpumask.size, dropped, ns };
}

/** flushTlbMm - the whole address space (flush_tlb_mm). */
export function flushTlbMm(mm: MmStruct, local = -1): ShootdownResult {
  return flushTlbMmRange(mm, 0, 2 ** 35, local);
}
