/**
 * A software timeline (drivers/dma-buf/sw_sync.c): fences at points of a counter that only
 * software moves. sw_sync_timeline_inc advances it and signals, in seqno order, every fence
 * whose point it passed; a fence created at or below the counter is born signalled.
 * Closing the timeline (release, sw_sync_debugfs_release) signals every fence still pending
 * with -ENOENT, so nothing waits forever on a context that is gone; the closed timeline's
 * file is then EBADF.
 * @module
 */
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import { ENOENT } from "../abi/errno.js";
import { DmaFence, dmaFenceContextAlloc, dmaFenceSetError, dmaFenceSignal } from "./dma-fence.js";

export class SwSyncTimeline {
  readonly kernel: Kernel;
  readonly name: string;
  readonly context: number;
  /** The counter (timeline value). */
  value = 0;
  readonly #pending: DmaFence[] = [];
  closed = false;

  constructor(k: Kernel, name = "sw_sync") {
    this.kernel = k;
    this.name = name;
    this.context = dmaFenceContextAlloc(k);
  }

  /** sw_sync_create_fence (SW_SYNC_IOC_CREATE_FENCE): a fence at point @seqno. */
  createFence(seqno: number): DmaFence {
    this.#open("createFence");
    if (!Number.isSafeInteger(seqno) || seqno < 0) throw new DmaError("EINVAL", `sw_sync: point ${seqno}`, { arg: "value" });
    const f = new DmaFence(this.kernel, {
      context: this.context,
      seqno,
      ops: { getDriverName: () => "sw_sync", getTimelineName: () => this.name, signaled: (x) => this.value >= Number(x.seqno) },
    });
    if (!f.isSignaled()) {
      this.#pending.push(f);
      this.#pending.sort((a, b) => Number(a.seqno - b.seqno));
    }
    return f;
  }

  /** sw_sync_timeline_inc (SW_SYNC_IOC_INC): advance by @n, signalling what it passes. */
  inc(n = 1): void {
    this.#open("inc");
    if (!Number.isSafeInteger(n) || n < 0) throw new DmaError("EINVAL", `sw_sync: increment ${n}`, { arg: "value" });
    this.value += n;
    while (this.#pending.length && Number(this.#pending[0]!.seqno) <= this.value) dmaFenceSignal(this.#pending.shift()!);
  }

  /** release - close the timeline: each pending fence signals with -ENOENT. EBADF if already closed. */
  release(): void {
    this.#open("release");
    this.closed = true;
    for (const f of this.#pending.splice(0)) {
      dmaFenceSetError(f, -ENOENT);
      dmaFenceSignal(f);
    }
  }

  #open(fn: string): void {
    if (this.closed) throw new DmaError("EBADF", `sw_sync ${fn}: the timeline ${this.name} was closed`, { arg: "timeline" });
  }
}
