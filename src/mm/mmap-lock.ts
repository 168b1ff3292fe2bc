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
  /** What might_sleep names for each mode (built once: every fault and GUP call locks). */
  readonly #down: Record<LockMode, string>;
  #writers = 0;

  constructor(name: string, cls = name, watch: () => LockWatcher | null = () => null) {
    this.name = name;
    this.cls = cls;
    this.#watch = watch;
    this.#down = { read: `down_read(${cls})`, write: `down_write(${cls})` };
  }

  get writeLocked(): boolean {
    return this.#writers > 0;
  }

  /** Whether anyone holds it (mmap_assert_locked: the emulator's one thread of control is the caller). */
  get held(): boolean {
    return this.holders.length > 0;
  }

  /** Whether @mode could be taken now. */
  available(mode: LockMode): boolean {
    return mode === "read" ? !this.writeLocked : this.holders.length === 0;
  }

  /** Take the lock; EDEADLK if it is held incompatibly (a single thread would wait forever). */
  lock(mode: LockMode, who: string): LockHolder {
    this.#watch()?.mightSleep(who, this.#down[mode]);
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
    if (mode === "write") this.#writers++;
    return h;
  }

  unlock(h: LockHolder): void {
    const last = this.holders.length - 1;
    const i = this.holders[last] === h ? last : this.holders.indexOf(h);
    if (i < 0) throw new DmaError("EINVAL", `${this.name}: unlock by ${h.who}, who does not hold it`);
    if (i === last) this.holders.pop();
    else this.holders.splice(i, 1);
    if (h.mode === "write") this.#writers--;
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
