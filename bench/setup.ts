/**
 * The machine the walk and TLB benchmarks translate on, built twice: in the core (through
 * the public API) and in the reference model (the same calls), so both walk identical
 * page tables.
 */
import * as H from "../src/abi/header.js";
import { createMachine, LINUX_PKRU, type Cpu, type Machine } from "../src/index.js";
import { RefDriver, type Req } from "../test/reference/driver.js";

export interface Setup {
  m: Machine;
  cpu: Cpu;
  ref: RefDriver;
  /** Requests as the reference takes them. */
  reqs: Req[];
  /** The physical addresses the requests translate to. */
  pas: number[];
}

const REGIONS = 32;
const REGION_BYTES = 2 * 1024 * 1024;

/**
 * benchMachine - a 1 GiB machine whose CPU 0 runs an address space of @REGIONS 2 MiB
 * regions of 4 KiB pages, 2 GiB apart (so walks go through different PDPT, PD and PT
 * entries), and @n requests in ring 0: user reads of pages chosen by @pick.
 */
export async function benchMachine(n: number, pick: (i: number, rand: () => number) => number): Promise<Setup> {
  const m = await createMachine({ memory: { normal: "1GiB", movable: 0, cma: 0 }, cpus: 1, trace: false, seed: 7 });
  const ref = new RefDriver(m.config);
  const pt = m.pgdAlloc();
  if (ref.pgdAlloc().rc !== pt.pfn) throw new Error("core and reference disagree on the root");
  for (let i = 0; i < REGIONS; i++) {
    const va = 0x10_0000_0000 + i * 0x8000_0000;
    const pfn = 0x10000 + i * 512;
    pt.remapPfnRange(va, pfn, REGION_BYTES, { user: true, write: true });
    ref.ptMap(pt.pfn, va / 4096, REGION_BYTES / 4096, pfn, H.ACC_WRITE | H.ACC_USER, 0, 1);
  }
  const cpu = m.cpu(0);
  cpu.writeCr3(pt, { pcid: 1 });
  ref.cpuSetCtrl(0, H.CTRL_ALL);
  ref.cpuWrpkru(0, LINUX_PKRU);
  ref.cpuWriteCr3(0, pt.pfn, 1, false);
  const rand = () => m.rng.float();
  const reqs: Req[] = [];
  const pas: number[] = [];
  for (let i = 0; i < n; i++) {
    const page = pick(i, rand) % (REGIONS * 512);
    const off = Math.floor(rand() * 4096);
    const va = 0x10_0000_0000 + Math.floor(page / 512) * 0x8000_0000 + (page % 512) * 4096 + off;
    cpu.ring.setTranslate(i, va, { user: true });
    reqs.push([va >>> 0, Math.floor(va / 2 ** 32), H.ACC_USER]);
    pas.push((0x10000 + page) * 4096 + off);
  }
  return { m, cpu, ref, reqs, pas };
}

/** Check that ring 0's first @n results are the expected physical addresses. */
export function checkRing(s: Setup, n: number): void {
  for (let i = 0; i < n; i++) {
    if (s.cpu.ring.pa(i) !== s.pas[i]) throw new Error(`request ${i}: core gave 0x${s.cpu.ring.pa(i).toString(16)}`);
  }
}

export function checkReference(s: Setup, flags: number): void {
  const out = s.ref.translate(0, s.reqs, flags).out as [number, number][];
  out.forEach(([, pa], i) => {
    if (pa !== s.pas[i]) throw new Error(`request ${i}: reference gave ${pa}`);
  });
}

export const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
