/**
 * Helpers of the hmm-tests.c ports: the machine, the buffer size, the dmirror command, int
 * patterns.
 */
import { Dmirror, type HmmDmirrorCmd } from "../../src/drivers/dmirror.js";
import type { Process } from "../../src/index.js";
import { mmap, mmMachine, PAGE } from "../mm/mm-helpers.js";

export const NPAGES = 1024; // HMM_BUFFER_SIZE (1024 << 12) / page size
export const SIZE = NPAGES * PAGE;

/** struct hmm_buffer's command: the mirror buffer and the counters. */
export function cmd(addr: number, npages: number, mirror: Uint8Array = new Uint8Array(npages * PAGE)): HmmDmirrorCmd {
  return { addr, ptr: mirror, npages, cpages: 0, faults: 0 };
}

export const ints = (b: Uint8Array) => new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2);

/** Bytes holding ints [from, from + n) with value f(i). */
export function pattern(n: number, f: (i: number) => number, from = 0): Uint8Array {
  const b = new Uint8Array(n * 4);
  const v = ints(b);
  for (let i = 0; i < n; i++) v[i] = f(from + i);
  return b;
}

/** Whether the ints of @b from index @from on equal f(i). */
export function holds(b: Uint8Array, f: (i: number) => number, from = 0, to = b.byteLength >> 2): boolean {
  const v = ints(b);
  for (let i = from; i < to; i++) if (v[i] !== f(i)) return false;
  return true;
}


/** hmm_open: a process on a machine built from @opts, and a dmirror device file. */
export async function dmirrorSetup(opts: Parameters<typeof mmMachine>[0]): Promise<{ p: Process; fd: Dmirror }> {
  const p = (await mmMachine(opts)).spawn();
  return { p, fd: new Dmirror(p) };
}

/** The test buffer: SIZE bytes mapped in @p holding ptr[i] = i. */
export function filledBuffer(p: Process, shared = false): number {
  const a = mmap(p, { length: SIZE, shared });
  p.write(a, pattern(SIZE / 4, (i) => i));
  return a;
}
