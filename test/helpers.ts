/**
 * Test helpers: small machines, and a snapshot of everything a failed call must not change.
 */
import { createMachine, type CreateOptions, type Machine, type PageTable } from "../src/index.js";

/** A small machine: 64 MiB NORMAL, 16 MiB MOVABLE, 8 MiB CMA, 2 CPUs, a small TLB. */
export function smallMachine(options: CreateOptions = {}): Promise<Machine> {
  return createMachine({
    memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB" },
    cpus: 2,
    tlb: { sets: 16, ways: 4 },
    ...options,
  });
}

/** Every mapped leaf reachable from @pt, by walking ptepGet over @ranges. */
function leaves(pt: PageTable, ranges: [number, number][]): string[] {
  const out: string[] = [];
  for (const [start, end] of ranges) {
    for (let va = start; va < end; va += 4096) {
      const p = pt.ptepGet(va);
      if (p.pte !== 0n) out.push(`${va.toString(16)}:${p.level}:${p.pte.toString(16)}`);
    }
  }
  return out;
}

/**
 * snapshot - a string describing the machine state a failing call must leave alone: zones
 * and their free lists, backing pool use, every CPU's TLB and control state, and the
 * entries mapping @ranges in each page table of @pts.
 */
export function snapshot(m: Machine, pts: PageTable[] = [], ranges: [number, number][] = []): string {
  return JSON.stringify({
    zones: m.phys.zones(),
    backing: m.phys.backing(),
    cpus: m.cpus.map((c) => ({ cr3: c.cr3, control: c.control, pkru: c.pkru, tlb: c.tlbEntries() })),
    pts: pts.map((pt) => ({ root: m.page(pt.pfn), leaves: leaves(pt, ranges) })),
  });
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
