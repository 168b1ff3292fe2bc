/**
 * struct dma_fence, as much as lockdep-lite and the driver models need: a completion a device
 * signals, that others wait for. A fence is signalled by dmaFenceSignal, or by the device at a
 * modeled time (completesAt): a wait for it advances the clock to then. A wait for a fence
 * nobody will signal would never return: EDEADLK.
 *
 * The lockdep annotations of drivers/dma-buf/dma-fence.c: dmaFenceWait touches
 * "dma_fence_map" (and may sleep); dmaFenceBeginSignalling / dmaFenceEndSignalling hold it
 * around a signalling path, so an allocation there (fs_reclaim) is ordered after it.
 * @module
 */
import { DMA_FENCE_MAP } from "../check/lockdep.js";
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";

export class DmaFence {
  readonly kernel: Kernel;
  /** Modeled time the device signals it (null: only dmaFenceSignal does). */
  readonly completesAt: number | null;
  #signaled = false;
  /** Run when the fence signals: the signalling path (a completion IRQ's work). */
  readonly #onSignal: (() => void) | null;

  constructor(k: Kernel, opts: { completesAt?: number; onSignal?: () => void } = {}) {
    this.kernel = k;
    this.completesAt = opts.completesAt ?? null;
    this.#onSignal = opts.onSignal ?? null;
  }

  /** dma_fence_is_signaled: also signals it once its device time has come. */
  isSignaled(): boolean {
    if (!this.#signaled && this.completesAt !== null && this.kernel.clock.now >= this.completesAt) dmaFenceSignal(this);
    return this.#signaled;
  }

  /** @internal whether dmaFenceSignal already ran. */
  isSignaledRaw(): boolean {
    return this.#signaled;
  }

  /** @internal */
  markSignaled(): void {
    this.#signaled = true;
  }

  /** @internal the signalling path, under the signalling annotation. */
  runSignalPath(): void {
    const onSignal = this.#onSignal;
    if (!onSignal) return;
    const run = (): void => {
      const cookie = dmaFenceBeginSignalling(this.kernel);
      try {
        onSignal();
      } finally {
        dmaFenceEndSignalling(this.kernel, cookie);
      }
    };
    // The device's completion work runs in its own context, not the waiter's.
    const ld = this.kernel.checkers.lockdep;
    if (ld) ld.inOtherTask(run);
    else run();
  }
}

/** dma_fence_signal: signal @f (once) and run its signalling path. */
export function dmaFenceSignal(f: DmaFence): void {
  if (f.isSignaledRaw()) return;
  f.markSignaled();
  f.runSignalPath();
}

/** dma_fence_begin_signalling: the start of a path that signals fences (may not wait on them or allocate with reclaim). */
export function dmaFenceBeginSignalling(k: Kernel): boolean {
  k.checkers.lockdep?.acquire(DMA_FENCE_MAP, "dma_fence_begin_signalling");
  return true;
}

export function dmaFenceEndSignalling(k: Kernel, _cookie: boolean): void {
  k.checkers.lockdep?.release(DMA_FENCE_MAP);
}

/**
 * dmaFenceWait - dma_fence_wait: may sleep; returns once @f is signalled, advancing the
 * modeled clock to its completion. EDEADLK for a fence nothing will ever signal.
 */
export function dmaFenceWait(f: DmaFence, fn = "dma_fence_wait"): void {
  const k = f.kernel;
  const ld = k.checkers.lockdep;
  ld?.mightSleep(fn, "dma_fence_wait");
  ld?.touch(DMA_FENCE_MAP, fn);
  if (f.isSignaled()) return;
  if (f.completesAt === null) throw new DmaError("EDEADLK", `${fn}: waits for a fence nothing will signal`, { arg: "fence" });
  k.clock.advance(f.completesAt - k.clock.now);
  f.isSignaled();
}
