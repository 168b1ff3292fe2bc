/**
 * The machine's seeded random numbers (xoroshiro128+ from pure-rand): every random choice
 * the emulator makes goes through here, so a seed reproduces a run.
 * @module
 */
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { einval } from "../errors.js";

export class Rng {
  readonly seed: number;
  #g: ReturnType<typeof xoroshiro128plus>;

  constructor(seed: number) {
    this.seed = seed;
    this.#g = xoroshiro128plus(seed);
  }

  /** An integer in [from, to], both included. */
  int(from: number, to: number): number {
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from > to) {
      throw einval("from", `[${from}, ${to}] is not a range of integers`);
    }
    return uniformInt(this.#g, from, to);
  }

  /** A float in [0, 1). */
  float(): number {
    return uniformFloat64(this.#g);
  }

  /** An independent generator for a sub-system, derived from this one. */
  fork(): Rng {
    return new Rng(this.int(0, 0xffffffff));
  }
}
