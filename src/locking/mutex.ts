/**
 * struct mutex for driver models: a sleeping lock that lockdep-lite watches (its class is its
 * name). One task runs everything, so a lock() of a mutex this task already holds would wait
 * forever: EDEADLK, as the kernel would hang.
 * @module
 */
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";

export class Mutex {
  readonly name: string;
  readonly #k: Kernel;
  #locked = false;

  constructor(k: Kernel, name: string) {
    this.#k = k;
    this.name = name;
  }

  get isLocked(): boolean {
    return this.#locked;
  }

  /** mutex_lock: may sleep (reported inside a non-block section), takes the lock. */
  lock(fn = `mutex_lock(${this.name})`): void {
    const ld = this.#k.checkers.lockdep;
    ld?.mightSleep(fn, `mutex_lock(${this.name})`);
    if (this.#locked) throw new DmaError("EDEADLK", `${this.name}: ${fn} waits for a mutex this task already holds`, { arg: "mutex" });
    ld?.acquire(this.name, fn);
    this.#locked = true;
  }

  /** mutex_trylock: true if taken; never sleeps. */
  trylock(fn = `mutex_trylock(${this.name})`): boolean {
    if (this.#locked) return false;
    this.#k.checkers.lockdep?.acquire(this.name, fn);
    this.#locked = true;
    return true;
  }

  unlock(): void {
    if (!this.#locked) throw new DmaError("EINVAL", `${this.name}: unlock of a mutex not held`, { arg: "mutex" });
    this.#locked = false;
    this.#k.checkers.lockdep?.release(this.name);
  }

  /** Run @body with the mutex held. */
  with<T>(fn: string, body: () => T): T {
    this.lock(fn);
    try {
      return body();
    } finally {
      this.unlock();
    }
  }
}
