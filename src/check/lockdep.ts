/**
 * lockdep-lite: the two checks of the Aug 2019 "hmm & mmu_notifier debug/lockdep annotations"
 * series that catch notifier deadlocks at once instead of as a rare multi-process hang.
 *
 * - Lock order. Each lock belongs to a class (by name). Taking B while holding A records the
 *   order A -> B with where each was taken; taking B while holding A when B -> ... -> A is
 *   already known is an inversion: reported with both call sites ("L1"). Pseudo-locks stand
 *   for what is not a lock but orders like one, as the kernel's lockdep maps do:
 *   - "fs_reclaim": taken for a moment by an allocation that may reclaim (mightAlloc);
 *   - "mmu_notifier_invalidate_range_start": held around every invalidation's callbacks,
 *     primed at notifier registration as taken under fs_reclaim (reclaim invalidates), and
 *     touched by mmuIntervalReadBegin;
 *   - "dma_fence_map": held while a fence's signalling path runs (dmaFenceBeginSignalling)
 *     and touched by dmaFenceWait.
 *   So a driver lock taken in a callback and also held across an allocation, or a fence
 *   waited for in a callback whose signalling path allocates, closes a cycle through
 *   fs_reclaim and is reported the first time both orders have been seen.
 * - Non-block sections ("L2"). nonBlockStart/End mark where the task may not sleep (the
 *   kernel wraps non-blockable invalidation callbacks in them); a sleep inside one (a mutex
 *   that must wait, a fence wait, an allocation that may reclaim) is reported.
 *
 * One task: the emulator's main thread. Locks held are a stack, as lockdep's held_locks; work
 * another context would do (a fence's signalling path) runs inOtherTask.
 * @module
 */
import type { CallSite } from "./report.js";
import { Checker } from "./checker.js";

export const FS_RECLAIM = "fs_reclaim";
export const MMU_NOTIFIER_MAP = "mmu_notifier_invalidate_range_start";
export const DMA_FENCE_MAP = "dma_fence_map";

interface Held {
  cls: string;
  site: CallSite;
}

interface Order {
  /** Where the first lock of the pair was held and the second taken, the first time. */
  first: CallSite;
  second: CallSite;
}

export class Lockdep extends Checker {
  /** held_locks of the one task. */
  readonly held: Held[] = [];
  /** Orders seen: A -> B -> where. */
  readonly #after = new Map<string, Map<string, Order>>();
  /** nonBlockStart depth. */
  nonBlock = 0;
  readonly #reported = new Set<string>();



  /** A path from @from to @to in the order graph, or null. */
  #path(from: string, to: string): string[] | null {
    const seen = new Set<string>([from]);
    const prev = new Map<string, string>();
    const queue = [from];
    while (queue.length) {
      const a = queue.shift()!;
      if (a === to) {
        const path = [to];
        for (let x = to; x !== from; ) path.unshift((x = prev.get(x)!));
        return path;
      }
      for (const b of this.#after.get(a)?.keys() ?? []) {
        if (seen.has(b)) continue;
        seen.add(b);
        prev.set(b, a);
        queue.push(b);
      }
    }
    return null;
  }

  /**
   * lock_acquire of class @cls at @fn: checks the order against every lock held, then holds
   * it. As lockdep, the caller's stack is saved only where it will be needed: when an order
   * is seen for the first time, and at an inversion; a held lock keeps where it was taken.
   */
  acquire(cls: string, fn: string): void {
    let site: CallSite | null = null; // the caller's stack, captured only if needed below
    let reported = false;
    // dma_fence_map is taken exclusively: waiting for a fence inside a signalling section
    // (the map held) is the recursion lockdep reports there.
    const again = cls === DMA_FENCE_MAP ? this.held.find((h) => h.cls === cls) : undefined;
    if (again && !this.#reported.has(`L1:recursive:${fn}`)) {
      this.#reported.add(`L1:recursive:${fn}`);
      reported = true;
      this.report({
        checker: "lockdep",
        rule: "L1",
        message: `possible recursive locking: ${fn} takes ${cls} inside a fence-signalling critical section (waiting for a fence while on the path that signals fences can deadlock)`,
        time: this.k.clock.now,
        pfn: -1,
        file: null,
        pids: [],
        sites: { held: again.site, acquire: (site ??= this.site(fn)) },
      });
    }
    for (const h of this.held) {
      if (h.cls === cls) continue; // recursion on a class: not an order
      const m = this.#after.get(h.cls);
      if (m?.has(cls)) continue; // seen before: checked then
      const back = reported ? null : this.#path(cls, h.cls);
      site ??= this.site(fn);
      if (back) {
        this.#inversion(h, cls, site, back); // one report per acquisition, as lockdep splats once
        reported = true;
      }
      if (m) m.set(cls, { first: h.site, second: site });
      else this.#after.set(h.cls, new Map([[cls, { first: h.site, second: site }]]));
    }
    this.held.push({ cls, site: site ?? { fn, pid: null, time: this.k.clock.now, stack: [] } });
  }

  /** lock_release of the newest hold of @cls. */
  release(cls: string): void {
    const last = this.held.length - 1;
    for (let i = last; i >= 0; i--) {
      if (this.held[i]!.cls !== cls) continue;
      if (i === last) this.held.pop();
      else this.held.splice(i, 1);
      return;
    }
  }

  /** lock_map_acquire + lock_map_release: the order check of taking @cls here, without holding it. */
  touch(cls: string, fn: string): void {
    this.acquire(cls, fn);
    this.release(cls);
  }

  /** Record the order @a -> @b as seen once (lockdep priming: fs_reclaim -> the notifier map at registration). */
  prime(a: string, b: string, fn: string): void {
    this.acquire(a, fn);
    this.acquire(b, fn);
    this.release(b);
    this.release(a);
  }

  #inversion(held: Held, cls: string, site: CallSite, back: string[]): void {
    const key = `L1:${held.cls}:${cls}`;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    const known = this.#after.get(back[0]!)?.get(back[1]!);
    this.report({
      checker: "lockdep",
      rule: "L1",
      message:
        `possible circular locking dependency: taking ${cls} while holding ${held.cls}, ` +
        `but ${back.join(" -> ")} was seen before${back.includes(FS_RECLAIM) ? " (a deadlock under memory reclaim)" : ""}`,
      time: this.k.clock.now,
      pfn: -1,
      file: null,
      pids: [],
      sites: { held: held.site, acquire: site, ...(known ? { earlierFirst: known.first, earlierSecond: known.second } : {}) },
    });
  }

  /** might_sleep at @fn: reported inside a non-block section. */
  mightSleep(fn: string, what: string): void {
    if (this.nonBlock === 0) return;
    const key = `L2:${fn}:${what}`;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    const inner = [...this.held].reverse().find((h) => h.cls === MMU_NOTIFIER_MAP);
    this.report({
      checker: "lockdep",
      rule: "L2",
      message: `${what} may sleep inside a non-blocking section (a non-blockable mmu notifier invalidation must return -EAGAIN / false instead)`,
      time: this.k.clock.now,
      pfn: -1,
      file: null,
      pids: [],
      sites: { sleep: this.site(fn), ...(inner ? { section: inner.site } : {}) },
    });
  }

  /** mightAlloc - an allocation that may enter reclaim: might_sleep, and fs_reclaim taken for a moment. */
  mightAlloc(fn: string): void {
    this.mightSleep(fn, "an allocation that may reclaim (GFP_KERNEL)");
    this.touch(FS_RECLAIM, fn);
  }

  /**
   * Run @fn as another task (a worker, an interrupt's completion path): with no locks held
   * and outside any non-block section, as another CPU would run it. The emulator runs it
   * inline, so the held locks of the current task are set aside meanwhile.
   */
  inOtherTask<T>(fn: () => T): T {
    const held = this.held.splice(0);
    const nonBlock = this.nonBlock;
    this.nonBlock = 0;
    try {
      return fn();
    } finally {
      this.held.splice(0, this.held.length, ...held);
      this.nonBlock = nonBlock;
    }
  }

  nonBlockStart(): void {
    this.nonBlock++;
  }

  nonBlockEnd(): void {
    this.nonBlock--;
  }
}
