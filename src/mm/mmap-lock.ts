/**
 * An emulated mmap_lock (a read-write semaphore): who holds it, in which mode, and who
 * waits, visible to the checkers. The emulator runs one thread of control per machine
 * handle, so a contended acquisition is reported rather than blocking: trylock semantics
 * are the caller's choice.
 * @module
 */
import { DmaError } from "../errors.js";

export type LockMode = "read" | "write";

export interface LockHolder {
  mode: LockMode;
  who: string;
}

/** What lockdep-lite needs to watch a lock (src/check/lockdep.ts). */
export interface LockWatcher {
  acquire(cls: string, fn: string): void;
  release(cls: string): void;
  mightSleep(fn: string, what: string): void;
}

export class RwSemaphore {
  readonly name: string;
  /** The lock class (every mm's mmap_lock is one class, as in lockdep). */
  readonly cls: string;
  readonly holders: LockHolder[] = [];
  readonly waiters: LockHolder[] = [];
  readonly #watch: () => LockWatcher | null;

  constructor(name: string, cls = name, watch: () => LockWatcher | null = () => null) {
    this.name = name;
    this.cls = cls;
    this.#watch = watch;
  }

  get writeLocked(): boolean {
    return this.holders.some((h) => h.mode === "write");
  }

  /** Whether @mode could be taken now. */
  available(mode: LockMode): boolean {
    return mode === "read" ? !this.writeLocked : this.holders.length === 0;
  }

  /** Take the lock; EDEADLK if it is held incompatibly (a single thread would wait forever). */
  lock(mode: LockMode, who: string): LockHolder {
    this.#watch()?.mightSleep(who, `${mode === "read" ? "down_read" : "down_write"}(${this.cls})`);
    return this.#take(mode, who);
  }

  /** down_read_trylock / down_write_trylock: the holder, or null if it is held incompatibly. Never sleeps. */
  tryLock(mode: LockMode, who: string): LockHolder | null {
    return this.available(mode) ? this.#take(mode, who) : null;
  }

  #take(mode: LockMode, who: string): LockHolder {
    if (!this.available(mode)) {
      const held = this.holders.map((h) => `${h.who} (${h.mode})`).join(", ");
      throw new DmaError("EDEADLK", `${this.name}: ${who} wants it for ${mode} while ${held} hold it`);
    }
    this.#watch()?.acquire(this.cls, who);
    const h = { mode, who };
    this.holders.push(h);
    return h;
  }

  unlock(h: LockHolder): void {
    const i = this.holders.indexOf(h);
    if (i < 0) throw new DmaError("EINVAL", `${this.name}: unlock by ${h.who}, who does not hold it`);
    this.holders.splice(i, 1);
    this.#watch()?.release(this.cls);
  }

  /** Run @fn with the lock held. */
  with<T>(mode: LockMode, who: string, fn: () => T): T {
    const h = this.lock(mode, who);
    try {
      return fn();
    } finally {
      this.unlock(h);
    }
  }
}
