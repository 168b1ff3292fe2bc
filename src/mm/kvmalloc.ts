/**
 * The kernel heap (kvcalloc / kvfree of mm/util.c, for arrays of frames): f64 arrays in the
 * core's memory, in the region the layout reserves for them (config `kheap`). The core fills
 * them in place: GUP writes pages[] straight into one instead of into its ring for the host to
 * copy out, as the kernel's gup_fast_pte_range stores into the caller's array.
 *
 * First fit over a free list kept in address order, neighbours merged on free. A request the
 * heap cannot hold gets an ordinary Float64Array: every caller works with either (the core's
 * output is then copied), so running out of heap costs time, never a failure.
 * @module
 */
import * as H from "../abi/header.js";
import type { Core } from "../core/core.js";
import { DmaError } from "../errors.js";

/** Allocation granule: a cache line. */
const GRANULE = 64;

export class Kheap {
  readonly #core: Core;
  /** [start, end) of the region, byte addresses in the core's memory. */
  readonly base: number;
  readonly end: number;
  /** Free extents [start, bytes], in address order, never adjacent. */
  readonly #free: [number, number][] = [];
  /** Live arrays: byte address -> bytes reserved. */
  readonly #live = new Map<number, number>();

  constructor(core: Core) {
    this.#core = core;
    this.base = core.hdr(H.HDR_KHEAP_BASE);
    this.end = this.base + core.hdr(H.HDR_KHEAP_BYTES);
    if (this.end > this.base) this.#free.push([this.base, this.end - this.base]);
  }

  /** Bytes free in the heap (not necessarily in one piece). */
  get available(): number {
    return this.#free.reduce((a, [, b]) => a + b, 0);
  }

  /**
   * kvcalloc - a zeroed array of @n f64 entries: in the heap when it fits, else an ordinary
   * Float64Array.
   */
  kvcalloc(n: number): Float64Array {
    if (!Number.isSafeInteger(n) || n < 0) throw new DmaError("EINVAL", `kvcalloc: n: ${n} is not an entry count`, { arg: "n" });
    const bytes = Math.max(GRANULE, Math.ceil((n * 8) / GRANULE) * GRANULE);
    const i = this.#free.findIndex(([, b]) => b >= bytes);
    if (i < 0) return new Float64Array(n);
    const ext = this.#free[i]!;
    const at = ext[0];
    if (ext[1] === bytes) this.#free.splice(i, 1);
    else {
      ext[0] += bytes;
      ext[1] -= bytes;
    }
    this.#live.set(at, bytes);
    const a = new Float64Array(this.#core.u8.buffer, at, n);
    a.fill(0);
    return a;
  }

  /** kvfree - give back an array kvcalloc returned (an ordinary one is left to the GC). EINVAL for a heap array that is not live. */
  kvfree(a: Float64Array): void {
    if (!this.holds(a)) return;
    const at = a.byteOffset;
    const bytes = this.#live.get(at);
    if (bytes === undefined) throw new DmaError("EINVAL", `kvfree: ${at} is not an array kvcalloc handed out (or is freed already)`, { arg: "a" });
    this.#live.delete(at);
    let i = this.#free.findIndex(([s]) => s > at);
    if (i < 0) i = this.#free.length;
    this.#free.splice(i, 0, [at, bytes]);
    // Merge with the next extent, then with the previous one.
    const cur = this.#free[i]!;
    const next = this.#free[i + 1];
    if (next && cur[0] + cur[1] === next[0]) {
      cur[1] += next[1];
      this.#free.splice(i + 1, 1);
    }
    const prev = this.#free[i - 1];
    if (prev && prev[0] + prev[1] === cur[0]) {
      prev[1] += cur[1];
      this.#free.splice(i, 1);
    }
  }

  /** holds - whether @a is a view on this heap (the core can write it in place). */
  holds(a: Float64Array): boolean {
    return this.#core.kheapAddr(a, 0, a.length) !== 0;
  }
}
