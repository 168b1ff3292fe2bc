/**
 * struct dma_fence_array (drivers/dma-buf/dma-fence-array.c): one fence that stands for a
 * set of fences. It signals when all of them have, or with signal-on-any when the first has.
 *
 * - Members are plain fences. An array holding a container (an array or a chain node) would
 *   recurse on every operation; the kernel WARNs, dmalab refuses (EINVAL). Flatten first
 *   with dmaFenceUnwrapMerge.
 * - Until it signals, the array's error reads PENDING_ERROR (1). The first member that
 *   reports an error hands it on; the array then signals with it. Otherwise it signals with 0.
 * - Nothing watches the members until signalling is enabled on the array (a wait, or a
 *   callback added). Then each member gets a callback that counts numPending down (from the
 *   member count, or from 1 with signal-on-any); reaching 0 signals the array. The kernel
 *   signals from an irq_work; here it happens at once, inside the member's signal.
 * - Polled before signalling is enabled, the array counts its signalled members itself.
 *   That path does not copy a member's error, as in released kernels: the array signals
 *   with 0 (a 2026 rework, which also drops signal-on-any, collects the error there).
 * - Virtual time: completesAt is derived from the pending members (the latest completion,
 *   or with signal-on-any the earliest), null when a needed member has none.
 * @module
 */
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import { DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT, DmaFence, type DmaFenceOps, dmaFenceAddCallback, dmaFenceSignal } from "./dma-fence.js";
import { isDmaFenceChain } from "./dma-fence-chain.js";

/** The error an array shows while it has not signalled (the kernel's PENDING_ERROR). */
export const DMA_FENCE_ARRAY_PENDING_ERROR = 1;

const dmaFenceArrayOps: DmaFenceOps = {
  getDriverName: () => "dma_fence_array",
  getTimelineName: () => "unbound",
  enableSignaling: (f) => arrayEnableSignaling(f as DmaFenceArray),
  signaled: (f) => arraySignaled(f as DmaFenceArray),
};

export class DmaFenceArray extends DmaFence {
  /** The members, in the order given. */
  readonly fences: readonly DmaFence[];
  readonly signalOnAny: boolean;
  /** Members still to signal before the array does; counted down once signalling is enabled. */
  numPending: number;

  /** @internal use dmaFenceArrayCreate, which checks the arguments. */
  constructor(k: Kernel, fences: readonly DmaFence[], context: number, seqno: bigint, signalOnAny: boolean) {
    super(k, { ops: dmaFenceArrayOps, context, seqno });
    this.fences = fences;
    this.signalOnAny = signalOnAny;
    this.numPending = signalOnAny ? 1 : fences.length;
    this.error = DMA_FENCE_ARRAY_PENDING_ERROR;
  }

  /** The members' completion: the latest of them, or with signal-on-any the earliest. */
  override get completesAt(): number | null {
    return arrayCompletesAt(this);
  }

  override set completesAt(_at: number | null) {
    throw new DmaError("EINVAL", "dma_fence_array: an array completes when its members do", { arg: "completesAt" });
  }
}

/** toDmaFenceArray - to_dma_fence_array: @f as an array, or null if it is not one. */
export function toDmaFenceArray(f: DmaFence | null): DmaFenceArray | null {
  return f instanceof DmaFenceArray ? f : null;
}

/** isDmaFenceArray - dma_fence_is_array. */
export function isDmaFenceArray(f: DmaFence | null): f is DmaFenceArray {
  return f instanceof DmaFenceArray;
}

/** dmaFenceIsContainer - dma_fence_is_container: an array or a chain node. */
export function dmaFenceIsContainer(f: DmaFence): boolean {
  return isDmaFenceArray(f) || isDmaFenceChain(f);
}

/**
 * dmaFenceArrayCreate - dma_fence_array_create: an array fence of @context at @seqno over
 * @fences (copied), signalling when all of them signal, or any one with @signalOnAny.
 * Signalling is not enabled: the members are not watched until someone waits on the array
 * or adds a callback to it.
 *
 * @throws EINVAL @fences is empty (the kernel WARNs), a member is not a fence of @k or is a
 *   container, @context is not a context number, or @seqno is not a u32 (the kernel's
 *   unsigned). Nothing is created then.
 */
export function dmaFenceArrayCreate(
  k: Kernel,
  fences: readonly DmaFence[],
  context: number,
  seqno: bigint | number,
  signalOnAny: boolean,
): DmaFenceArray {
  const fn = "dma_fence_array_create";
  if (!Array.isArray(fences) || fences.length === 0) throw new DmaError("EINVAL", `${fn}: no fences`, { arg: "fences" });
  fences.forEach((f, i) => {
    const arg = `fences[${i}]`;
    if (!(f instanceof DmaFence) || f.kernel !== k) throw new DmaError("EINVAL", `${fn}: ${arg} is not a fence of this machine`, { arg });
    // Containers inside an array recurse; the caller flattens them (dmaFenceUnwrapMerge).
    if (dmaFenceIsContainer(f)) throw new DmaError("EINVAL", `${fn}: ${arg} is a container (flatten it first)`, { arg });
  });
  if (!Number.isSafeInteger(context) || context < 0) throw new DmaError("EINVAL", `${fn}: context ${context}`, { arg: "context" });
  const ok = typeof seqno === "bigint" ? seqno >= 0n && seqno <= 0xffffffffn : Number.isInteger(seqno) && seqno >= 0 && seqno <= 0xffffffff;
  if (!ok) throw new DmaError("EINVAL", `${fn}: seqno ${seqno} is not a u32`, { arg: "seqno" });
  return new DmaFenceArray(k, [...fences], context, BigInt(seqno), signalOnAny);
}

/** dmaFenceArrayFirst - dma_fence_array_first: null for null, @head if not an array, else its first member. */
export function dmaFenceArrayFirst(head: DmaFence | null): DmaFence | null {
  if (!head) return null;
  const array = toDmaFenceArray(head);
  if (!array) return head;
  return array.fences[0] ?? null;
}

/** dmaFenceArrayNext - dma_fence_array_next: member @index of @head, or null past the end or if not an array. */
export function dmaFenceArrayNext(head: DmaFence | null, index: number): DmaFence | null {
  const array = toDmaFenceArray(head);
  if (!array) return null;
  return array.fences[index] ?? null;
}

/** dmaFenceMatchContext - dma_fence_match_context: @f (or every member of an array @f) is of @context. */
export function dmaFenceMatchContext(f: DmaFence, context: number): boolean {
  const array = toDmaFenceArray(f);
  if (!array) return f.context === context;
  return array.fences.every((m) => m.context === context);
}

/** The first member error wins, and only while the array has not signalled. */
function setPendingError(array: DmaFenceArray, error: number): void {
  if (error && array.error === DMA_FENCE_ARRAY_PENDING_ERROR) array.error = error;
}

function clearPendingError(array: DmaFenceArray): void {
  if (array.error === DMA_FENCE_ARRAY_PENDING_ERROR) array.error = 0;
}

/** A member's callback: hand on its error, count down, signal at zero (the irq_work). */
function memberSignalled(array: DmaFenceArray, member: DmaFence): void {
  setPendingError(array, member.error);
  if (--array.numPending === 0) {
    clearPendingError(array);
    dmaFenceSignal(array);
  }
}

/** enable_signaling: a callback on each member; a member already signalled counts at once. */
function arrayEnableSignaling(array: DmaFenceArray): boolean {
  for (const m of array.fences) {
    if (dmaFenceAddCallback(m, (f) => memberSignalled(array, f)) === 0) continue;
    setPendingError(array, m.error);
    if (--array.numPending === 0) {
      clearPendingError(array);
      return false;
    }
  }
  return true;
}

/** signaled: with signalling enabled, the count; before, the members polled one by one. */
function arraySignaled(array: DmaFenceArray): boolean {
  if (array.flags & (1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)) {
    // dmalab: the members' completions that virtual time has reached are observed here (the
    // interrupts that would have signalled them by now); their callbacks count down.
    for (const m of array.fences) m.isSignaled();
    if (array.numPending > 0) return false;
  } else {
    let pending = array.numPending;
    if (!array.fences.some((m) => m.isSignaled() && --pending === 0)) return false;
  }
  clearPendingError(array);
  return true;
}

/** The derived completesAt: polls the members, then the completion the array waits for. */
function arrayCompletesAt(array: DmaFenceArray): number | null {
  const times: number[] = [];
  for (const m of array.fences) {
    if (m.isSignaled()) {
      if (array.signalOnAny) return null; // signalled already: the poll decides
      continue;
    }
    if (m.completesAt !== null) times.push(m.completesAt);
    else if (!array.signalOnAny) return null; // waits for a software signal
  }
  if (times.length === 0) return null;
  return array.signalOnAny ? Math.min(...times) : Math.max(...times);
}
