/**
 * This thread's request ring, for callers that batch translations themselves (benchmarks,
 * device models): fill entries, run them with Cpu.translateRing(), read the results. Any
 * other call of the same machine handle may reuse the ring, so fill and run back to back.
 * @module
 */
import * as H from "../abi/header.js";
import { type Address, addressWords } from "../core/addr.js";
import type { Core } from "../core/core.js";
import { type Access, accessBits } from "./access.js";

export class Ring {
  readonly #core: Core;
  /** Entries the ring holds: the largest batch one call takes. */
  readonly capacity: number;

  constructor(core: Core) {
    this.#core = core;
    this.capacity = core.hdr(H.HDR_RING_ENTRIES);
  }

  /** setTranslate - make entry @i the request "translate @va for @access". */
  setTranslate(i: number, va: Address, access: Access | number = {}): void {
    const e = this.#core.entry(i) >>> 2;
    const [lo, hi] = addressWords(va);
    const u32 = this.#core.u32;
    u32[e] = lo;
    u32[e + 1] = hi;
    u32[e + H.TREQ_ACCESS / 4] = typeof access === "number" ? access : accessBits(access);
  }

  /** The status the last run left in entry @i (see TREQ_* in src/abi/header.ts). */
  status(i: number): number {
    return this.#core.i32[(this.#core.entry(i) + H.TREQ_STATUS) >>> 2]!;
  }

  /** The physical address entry @i translated to (valid when its status is below 0x10000). */
  pa(i: number): number {
    const e = (this.#core.entry(i) + H.TREQ_PA) >>> 2;
    const u32 = this.#core.u32;
    return u32[e + 1]! * 4294967296 + u32[e]!;
  }
}
