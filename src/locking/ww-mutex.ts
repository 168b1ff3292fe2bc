/**
 * Wound/wait mutexes (kernel/locking/ww_mutex.h, the wait-die flavour dma_resv uses): locks
 * taken in any order under an acquire context. A context that wants a lock another context
 * holds either backs off (-EDEADLK: it is the younger, it must drop what it holds and retry
 * with ww_mutex_lock_slow) or waits for the older holder. The same context asking again
 * gets -EALREADY. One task runs everything, so a wait can never end: EDEADLK (thrown), as the
 * kernel would hang.
 *
 * All ww mutexes of a class are one lockdep class (reservation_ww_class_mutex for dma_resv);
 * taking several under one context is not an inversion (lockdep's nest_lock).
 * @module
 */
import { EALREADY, EDEADLK } from "../abi/errno.js";
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";

/** struct ww_acquire_ctx: its stamp orders contexts (smaller: older, wins). */
export class WwAcquireCtx {
  readonly stamp: number;
  readonly cls: string;
  /** Locks held under this context. */
  acquired = 0;
  done = false;

  constructor(stamp: number, cls: string) {
    this.stamp = stamp;
    this.cls = cls;
  }
}

const stamps = new WeakMap<Kernel, { next: number }>();

/** wwAcquireInit - ww_acquire_init: a new context, younger than every earlier one. */
export function wwAcquireInit(k: Kernel, cls = "reservation_ww_class"): WwAcquireCtx {
  let s = stamps.get(k);
  if (!s) stamps.set(k, (s = { next: 1 }));
  return new WwAcquireCtx(s.next++, cls);
}

/** wwAcquireDone - ww_acquire_done: no more locks will be taken under @ctx. */
export function wwAcquireDone(ctx: WwAcquireCtx): void {
  ctx.done = true;
}

/** wwAcquireFini - ww_acquire_fini: EINVAL if locks are still held under @ctx. */
export function wwAcquireFini(ctx: WwAcquireCtx): void {
  if (ctx.acquired) throw new DmaError("EINVAL", `ww_acquire_fini: ${ctx.acquired} locks still held`, { arg: "ctx" });
}

export class WwMutex {
  readonly kernel: Kernel;
  /** The lockdep class: "<class>_mutex". */
  readonly cls: string;
  #owner: WwAcquireCtx | "no-ctx" | null = null;

  constructor(k: Kernel, cls = "reservation_ww_class") {
    this.kernel = k;
    this.cls = `${cls}_mutex`;
  }

  get isLocked(): boolean {
    return this.#owner !== null;
  }

  /** The context holding it ("no-ctx" when locked without one). */
  get owner(): WwAcquireCtx | "no-ctx" | null {
    return this.#owner;
  }

  /**
   * ww_mutex_lock: 0, -EALREADY (@ctx holds it), -EDEADLK (@ctx is younger than the holder:
   * back off). A wait that could never end throws EDEADLK.
   */
  lock(ctx: WwAcquireCtx | null, fn = "ww_mutex_lock"): number {
    const ld = this.kernel.checkers.lockdep;
    if (ctx?.done) throw new DmaError("EINVAL", `${fn}: the acquire context is done`, { arg: "ctx" });
    if (this.#owner !== null) {
      if (ctx && this.#owner === ctx) return -EALREADY;
      if (ctx && this.#owner !== "no-ctx" && ctx.stamp > this.#owner.stamp && ctx.acquired > 0) return -EDEADLK;
      ld?.mightSleep(fn, `${fn}(${this.cls})`);
      throw new DmaError("EDEADLK", `${fn}: ${this.cls} is held${this.#owner === "no-ctx" ? "" : " by an older or idle context"} and this task would wait for it forever`, { arg: "lock" });
    }
    ld?.mightSleep(fn, `${fn}(${this.cls})`);
    ld?.acquire(this.cls, fn);
    this.#owner = ctx ?? "no-ctx";
    if (ctx) ctx.acquired++;
    return 0;
  }

  /** ww_mutex_trylock: true if taken. */
  trylock(ctx: WwAcquireCtx | null = null, fn = "ww_mutex_trylock"): boolean {
    if (this.#owner !== null) return false;
    this.kernel.checkers.lockdep?.acquire(this.cls, fn);
    this.#owner = ctx ?? "no-ctx";
    if (ctx) ctx.acquired++;
    return true;
  }

  unlock(): void {
    if (this.#owner === null) throw new DmaError("EINVAL", `${this.cls}: unlock of a mutex not held`, { arg: "lock" });
    if (this.#owner !== "no-ctx") this.#owner.acquired--;
    this.#owner = null;
    this.kernel.checkers.lockdep?.release(this.cls);
  }
}

