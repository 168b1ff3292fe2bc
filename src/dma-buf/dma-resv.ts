/**
 * struct dma_resv (drivers/dma-buf/dma-resv.c): a buffer's reservation object. A ww mutex and
 * the fences of the work on the buffer, each with a usage:
 *
 *   KERNEL (0)   memory management: moves, clears
 *   WRITE (1)    implicitly synchronised writers
 *   READ (2)     implicitly synchronised readers
 *   BOOKKEEP (3) tracked only, never waited for implicitly
 *
 * A query with usage U sees every fence of usage <= U; dmaResvUsageRw(write) is what an
 * access must wait for (a writer: READ, everyone; a reader: WRITE, the writers).
 * Adding needs the lock and a slot reserved before (dmaResvReserveFences); a fence of a
 * context already present replaces that entry when the old one is signalled, or is of the
 * same context with a usage at least as strong and an earlier-or-equal seqno.
 * @module
 */
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import { type WwAcquireCtx, WwMutex } from "../locking/ww-mutex.js";
import { type DmaFence, dmaFenceIsLater, dmaFenceWaitTimeout } from "./dma-fence.js";

export const DMA_RESV_USAGE_KERNEL = 0;
export const DMA_RESV_USAGE_WRITE = 1;
export const DMA_RESV_USAGE_READ = 2;
export const DMA_RESV_USAGE_BOOKKEEP = 3;
export const DMA_RESV_USAGE_NAMES = ["KERNEL", "WRITE", "READ", "BOOKKEEP"] as const;

export interface DmaResvEntry {
  fence: DmaFence;
  usage: number;
}

export class DmaResv {
  readonly kernel: Kernel;
  readonly lock: WwMutex;
  readonly entries: DmaResvEntry[] = [];
  /** Slots reserved and not yet used by dmaResvAddFence. */
  reserved = 0;
  /** Bumped at every change (what the unlocked iterator checks to restart). */
  seq = 0;

  constructor(k: Kernel) {
    this.kernel = k;
    this.lock = new WwMutex(k, "reservation_ww_class");
  }
}

function checkUsage(usage: number): void {
  if (!(usage >= DMA_RESV_USAGE_KERNEL && usage <= DMA_RESV_USAGE_BOOKKEEP && Number.isInteger(usage))) {
    throw new DmaError("EINVAL", `dma_resv: usage ${usage} is not KERNEL..BOOKKEEP (0..3)`, { arg: "usage" });
  }
}

function assertHeld(obj: DmaResv, fn: string): void {
  if (!obj.lock.isLocked) throw new DmaError("EINVAL", `${fn}: the reservation lock is not held (dma_resv_assert_held)`, { arg: "obj" });
}

/** dmaResvInit - dma_resv_init. */
export function dmaResvInit(k: Kernel): DmaResv {
  return new DmaResv(k);
}

/** dmaResvLock - dma_resv_lock: 0, -EALREADY, or -EDEADLK (back off, as ww_mutex). */
export function dmaResvLock(obj: DmaResv, ctx: WwAcquireCtx | null): number {
  return obj.lock.lock(ctx, "dma_resv_lock");
}

export function dmaResvTrylock(obj: DmaResv): boolean {
  return obj.lock.trylock(null, "dma_resv_trylock");
}

export function dmaResvUnlock(obj: DmaResv): void {
  // Unused reservations go with the lock (dma_resv_reset_max_fences).
  obj.reserved = 0;
  obj.lock.unlock();
}

/** dmaResvUsageRw - dma_resv_usage_rw: the usage an access must wait for. */
export function dmaResvUsageRw(write: boolean): number {
  return write ? DMA_RESV_USAGE_READ : DMA_RESV_USAGE_WRITE;
}

/** dmaResvReserveFences - room for @num more fences (the lock held). */
export function dmaResvReserveFences(obj: DmaResv, num: number): number {
  assertHeld(obj, "dma_resv_reserve_fences");
  if (!Number.isSafeInteger(num) || num < 0) throw new DmaError("EINVAL", `dma_resv_reserve_fences: ${num}`, { arg: "num_fences" });
  obj.reserved += num;
  return 0;
}

/** dmaResvAddFence - dma_resv_add_fence: @fence with @usage, into a reserved slot (the lock held). */
export function dmaResvAddFence(obj: DmaResv, fence: DmaFence, usage: number): void {
  assertHeld(obj, "dma_resv_add_fence");
  checkUsage(usage);
  for (const e of obj.entries) {
    const same = e.fence.context === fence.context && e.usage >= usage && !dmaFenceIsLater(e.fence, fence);
    if (same || e.fence.isSignaled()) {
      e.fence = fence;
      e.usage = usage;
      obj.seq++;
      return;
    }
  }
  if (obj.reserved < 1) throw new DmaError("EINVAL", "dma_resv_add_fence: no slot reserved (call dmaResvReserveFences first)", { arg: "obj" });
  obj.reserved--;
  obj.entries.push({ fence, usage });
  obj.seq++;
}

/** dmaResvForEachFence - dma_resv_for_each_fence (the lock held): entries of usage <= @usage. */
export function* dmaResvForEachFence(obj: DmaResv, usage: number): Generator<DmaResvEntry> {
  assertHeld(obj, "dma_resv_for_each_fence");
  checkUsage(usage);
  for (const e of obj.entries) if (e.usage <= usage) yield { fence: e.fence, usage: e.usage };
}

/**
 * dmaResvForEachFenceUnlocked - dma_resv_iter_first_unlocked / next_unlocked: without the
 * lock; if the object changes meanwhile the walk restarts, and @restarted is told.
 */
export function* dmaResvForEachFenceUnlocked(obj: DmaResv, usage: number, restarted?: () => void): Generator<DmaResvEntry> {
  checkUsage(usage);
  for (;;) {
    const seq = obj.seq;
    let changed = false;
    for (const e of [...obj.entries]) {
      if (e.usage > usage) continue;
      yield { fence: e.fence, usage: e.usage };
      if (obj.seq !== seq) {
        changed = true;
        break;
      }
    }
    if (!changed) return;
    restarted?.();
  }
}

/** dmaResvGetFences - dma_resv_get_fences: the fences of usage <= @usage. */
export function dmaResvGetFences(obj: DmaResv, usage: number): DmaFence[] {
  checkUsage(usage);
  return obj.entries.filter((e) => e.usage <= usage).map((e) => e.fence);
}

/** dmaResvTestSignaled - dma_resv_test_signaled: every fence of usage <= @usage signalled. */
export function dmaResvTestSignaled(obj: DmaResv, usage: number): boolean {
  return dmaResvGetFences(obj, usage).every((f) => f.isSignaled());
}

/** dmaResvWaitTimeout - dma_resv_wait_timeout: as dmaFenceWaitTimeout, over every fence of usage <= @usage. */
export function dmaResvWaitTimeout(obj: DmaResv, usage: number, intr: boolean, timeout: number): number {
  let left = timeout === 0 ? 0 : timeout;
  let ret = 1;
  for (const f of dmaResvGetFences(obj, usage)) {
    ret = dmaFenceWaitTimeout(f, intr, left, "dma_resv_wait_timeout");
    if (ret === 0) return 0;
    if (timeout !== 0) left = ret;
  }
  return timeout === 0 ? ret : left;
}
