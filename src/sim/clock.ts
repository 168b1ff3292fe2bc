/**
 * The virtual clock: modeled nanoseconds since the machine started. Actions advance it by
 * their cost from the cost table; nothing reads the wall clock, so a run with the same seed
 * gives the same times.
 * @module
 */
export class Clock {
  #now = 0;

  /** Modeled nanoseconds since start. */
  get now(): number {
    return this.#now;
  }

  /** advance - move time forward by @ns (>= 0); returns the new time. */
  advance(ns: number): number {
    if (!(ns >= 0)) throw new RangeError(`clock cannot move by ${ns} ns`);
    this.#now += ns;
    return this.#now;
  }
}
