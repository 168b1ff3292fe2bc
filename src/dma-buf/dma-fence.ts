/**
 * struct dma_fence (drivers/dma-buf/dma-fence.c): a point on a device's timeline that
 * signals once, when the work before it is done.
 *
 * - A fence has a context (dmaFenceContextAlloc: fresh numbers from 1; 0 is the stub's) and a
 *   seqno; one context signals in seqno order, so dmaFenceIsLater compares seqnos (32-bit
 *   wrap-around unless ops.use64bitSeqno), never across contexts.
 * - dmaFenceSignal: the first call sets SIGNALED and the timestamp and runs the callbacks in
 *   the order they were added (0); later calls are -EINVAL. dmaFenceSetError only before.
 * - Time is the machine's virtual clock. A fence the device completes at a known time
 *   (completesAt) signals when the clock reaches it: a wait advances the clock to then. A
 *   fence only software signals (a sw_sync timeline) never signals during a wait in this one
 *   thread: a wait with a timeout spends it and returns 0, an infinite wait is EDEADLK (the
 *   kernel would hang).
 * - Lockdep annotations: a wait touches "dma_fence_map" and may sleep; a signalling path
 *   (dmaFenceBeginSignalling .. End, and every fence's onSignal work) holds it.
 * @module
 */
import { EINVAL, ENOENT } from "../abi/errno.js";
import { DMA_FENCE_MAP } from "../check/lockdep.js";
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";

export const DMA_FENCE_FLAG_SIGNALED_BIT = 0;
export const DMA_FENCE_FLAG_TIMESTAMP_BIT = 1;
export const DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT = 2;
export const DMA_FENCE_FLAG_USER_BITS = 3;

/** struct dma_fence_ops (the hooks the emulator runs). */
export interface DmaFenceOps {
  getDriverName?(f: DmaFence): string;
  getTimelineName?(f: DmaFence): string;
  /** Turn on the interrupt that will signal it: false if it cannot (then it is signalled now). */
  enableSignaling?(f: DmaFence): boolean;
  /** Poll: true if done (the fence is then signalled). */
  signaled?(f: DmaFence): boolean;
  use64bitSeqno?: boolean;
}

export type DmaFenceCallback = (f: DmaFence) => void;

const contexts = new WeakMap<Kernel, { next: number }>();

/** dmaFenceContextAlloc - dma_fence_context_alloc: the first of @n fresh contexts. */
export function dmaFenceContextAlloc(k: Kernel, n = 1): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new DmaError("EINVAL", `dmaFenceContextAlloc: ${n} contexts`, { arg: "num" });
  let c = contexts.get(k);
  if (!c) contexts.set(k, (c = { next: 1 }));
  const first = c.next;
  c.next += n;
  return first;
}

export class DmaFence {
  readonly kernel: Kernel;
  readonly ops: DmaFenceOps;
  readonly context: number;
  readonly seqno: bigint;
  /** DMA_FENCE_FLAG_* bits. */
  flags = 0;
  error = 0;
  /** Virtual time it signalled (ns), with TIMESTAMP set. */
  timestamp = 0;
  #completesAt: number | null;
  readonly #callbacks: DmaFenceCallback[] = [];
  readonly #onSignal: (() => void) | null;

  constructor(
    k: Kernel,
    opts: { ops?: DmaFenceOps; context?: number; seqno?: bigint | number; completesAt?: number | null; onSignal?: () => void } = {},
  ) {
    this.kernel = k;
    this.ops = opts.ops ?? {};
    this.context = opts.context ?? dmaFenceContextAlloc(k);
    this.seqno = BigInt(opts.seqno ?? 1);
    this.#completesAt = opts.completesAt ?? null;
    this.#onSignal = opts.onSignal ?? null;
  }

  /** dma_fence_is_signaled: the flag, a device completion whose time has come, or ops.signaled. */
  /** Virtual time the device completes it, or null (software signalled only). A container derives it from its members. */
  get completesAt(): number | null {
    return this.#completesAt;
  }

  set completesAt(at: number | null) {
    this.#completesAt = at;
  }

  isSignaled(): boolean {
    if (this.flags & (1 << DMA_FENCE_FLAG_SIGNALED_BIT)) return true;
    if ((this.completesAt !== null && this.kernel.clock.now >= this.completesAt) || this.ops.signaled?.(this)) {
      dmaFenceSignal(this);
      return true;
    }
    return false;
  }

  /** @internal the callbacks, for add/remove. */
  get callbacks(): DmaFenceCallback[] {
    return this.#callbacks;
  }

  /** @internal the fence's own signalling work (an IRQ's completion), in another task. */
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
    const ld = this.kernel.checkers.lockdep;
    if (ld) ld.inOtherTask(run);
    else run();
  }
}

/** dmaFenceInit - dma_fence_init: a fence of @context at @seqno (a fresh context if omitted). */
export function dmaFenceInit(k: Kernel, ops: DmaFenceOps, context: number, seqno: bigint | number): DmaFence {
  return new DmaFence(k, { ops, context, seqno });
}

/** dmaFenceSignal - dma_fence_signal: 0, or -EINVAL if it had signalled already. */
export function dmaFenceSignal(f: DmaFence): number {
  if (f.flags & (1 << DMA_FENCE_FLAG_SIGNALED_BIT)) return -EINVAL;
  f.flags |= (1 << DMA_FENCE_FLAG_SIGNALED_BIT) | (1 << DMA_FENCE_FLAG_TIMESTAMP_BIT);
  f.timestamp = f.kernel.clock.now;
  f.runSignalPath();
  for (const cb of f.callbacks.splice(0)) cb(f);
  f.kernel.trace.count("dma_fence.signaled");
  return 0;
}

/** dmaFenceSetError - dma_fence_set_error: @error < 0, before the fence signals. */
export function dmaFenceSetError(f: DmaFence, error: number): void {
  if (!(error < 0) || !Number.isInteger(error)) throw new DmaError("EINVAL", `dmaFenceSetError: ${error} is not a negative errno`, { arg: "error" });
  if (f.flags & (1 << DMA_FENCE_FLAG_SIGNALED_BIT)) throw new DmaError("EINVAL", "dmaFenceSetError: the fence already signalled", { arg: "fence" });
  f.error = error;
}

/** dmaFenceGetStatus - 0 pending, 1 signalled, or the error it signalled with. */
export function dmaFenceGetStatus(f: DmaFence): number {
  if (!f.isSignaled()) return 0;
  return f.error < 0 ? f.error : 1;
}

/** dmaFenceEnableSwSignaling - dma_fence_enable_sw_signaling. */
export function dmaFenceEnableSwSignaling(f: DmaFence): void {
  enableSignaling(f);
}

function enableSignaling(f: DmaFence): boolean {
  if (f.flags & (1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)) return !f.isSignaled();
  f.flags |= 1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT;
  if (f.isSignaled()) return false;
  if (f.ops.enableSignaling && !f.ops.enableSignaling(f)) {
    dmaFenceSignal(f);
    return false;
  }
  return true;
}

/** dmaFenceAddCallback - 0 (@cb runs when it signals), or -ENOENT: already signalled, @cb never runs. */
export function dmaFenceAddCallback(f: DmaFence, cb: DmaFenceCallback): number {
  if (!enableSignaling(f)) return -ENOENT;
  f.callbacks.push(cb);
  return 0;
}

/** dmaFenceRemoveCallback - true if @cb was still pending (and is removed), false if it ran. */
export function dmaFenceRemoveCallback(f: DmaFence, cb: DmaFenceCallback): boolean {
  const i = f.callbacks.indexOf(cb);
  if (i < 0) return false;
  f.callbacks.splice(i, 1);
  return true;
}

/** dmaFenceIsLater - dma_fence_is_later: @f after @g on their (one) timeline. */
export function dmaFenceIsLater(f: DmaFence, g: DmaFence): boolean {
  if (f.context !== g.context) throw new DmaError("EINVAL", "dmaFenceIsLater: fences of different contexts are not comparable", { arg: "f2" });
  if (f.ops.use64bitSeqno) return f.seqno > g.seqno;
  return ((Number(f.seqno & 0xffffffffn) - Number(g.seqno & 0xffffffffn)) | 0) > 0;
}

/**
 * dmaFenceWaitTimeout - dma_fence_wait_timeout with @timeout in ns of virtual time: the time
 * left (> 0) once it signals (1 if it already had, as the kernel returns for a zero wait),
 * 0 on timeout; EINVAL for a negative timeout. Advances the clock to the completion or the
 * timeout. May sleep (reported inside a non-block section).
 */
export function dmaFenceWaitTimeout(f: DmaFence, intr: boolean, timeout: number, fn = "dma_fence_wait_timeout"): number {
  void intr;
  if (!(timeout >= 0)) throw new DmaError("EINVAL", `${fn}: timeout ${timeout} is negative`, { arg: "timeout" });
  const k = f.kernel;
  const ld = k.checkers.lockdep;
  ld?.mightSleep(fn, "dma_fence_wait");
  ld?.touch(DMA_FENCE_MAP, fn);
  if (f.isSignaled()) return timeout === 0 ? 1 : timeout;
  if (timeout === 0) return 0;
  enableSignaling(f);
  if (f.completesAt !== null && f.completesAt - k.clock.now <= timeout) {
    const left = timeout - (f.completesAt - k.clock.now);
    k.clock.advance(f.completesAt - k.clock.now);
    f.isSignaled();
    return Math.max(1, left);
  }
  if (!Number.isFinite(timeout)) throw new DmaError("EDEADLK", `${fn}: waits for a fence nothing will signal`, { arg: "fence" });
  k.clock.advance(timeout);
  return 0;
}

/** dmaFenceWait - dma_fence_wait: until it signals. EDEADLK for a fence nothing will signal. */
export function dmaFenceWait(f: DmaFence, fn = "dma_fence_wait"): number {
  dmaFenceWaitTimeout(f, true, Infinity, fn);
  return 0;
}

const stubs = new WeakMap<Kernel, DmaFence>();

/** dmaFenceGetStub - the global always-signalled fence (context 0). */
export function dmaFenceGetStub(k: Kernel): DmaFence {
  let s = stubs.get(k);
  if (!s) {
    stubs.set(k, (s = new DmaFence(k, { context: 0, seqno: 0 })));
    dmaFenceSignal(s);
  }
  return s;
}

/** dma_fence_begin_signalling: the start of a path that signals fences (it may not wait on them or allocate with reclaim). */
export function dmaFenceBeginSignalling(k: Kernel): boolean {
  k.checkers.lockdep?.acquire(DMA_FENCE_MAP, "dma_fence_begin_signalling");
  return true;
}

export function dmaFenceEndSignalling(k: Kernel, _cookie: boolean): void {
  k.checkers.lockdep?.release(DMA_FENCE_MAP);
}

/**
 * dmaFenceAllocatePrivateStub - dma_fence_allocate_private_stub: a new fence, signalled, with
 * @timestamp as its signal time (context 0, seqno 0, like the global stub but its own).
 */
export function dmaFenceAllocatePrivateStub(k: Kernel, timestamp: number): DmaFence {
  const name = () => "stub";
  const f = new DmaFence(k, { ops: { getDriverName: name, getTimelineName: name }, context: 0, seqno: 0 });
  f.flags |= 1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT;
  dmaFenceSignal(f);
  f.timestamp = timestamp; // dma_fence_signal_timestamp
  return f;
}
