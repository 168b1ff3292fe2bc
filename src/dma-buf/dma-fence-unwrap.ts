/**
 * Fence containers opened up (drivers/dma-buf/dma-fence-unwrap.c): iteration over the plain
 * fences inside chains and arrays, and dma_fence_unwrap_merge, which flattens several fences
 * into the smallest equivalent one.
 *
 * - The walk goes chain node by chain node, newest first (dmaFenceChainWalk, so signalled
 *   nodes are unlinked on the way), and inside each node through the array it wraps, in
 *   array order. A plain fence unwraps to itself.
 * - Merge keeps only the pending leaves, one per context (the latest seqno), sorted by
 *   context. None pending: a new private stub, signalled at the latest timestamp among the
 *   leaves (older kernels returned the global stub, dma_fence_get_stub). One pending: that
 *   fence itself. More: a new signal-on-all array of a fresh context, seqno 1.
 * @module
 */
import { DmaFence, dmaFenceAllocatePrivateStub, dmaFenceContextAlloc, dmaFenceIsLater } from "./dma-fence.js";
import { dmaFenceArrayCreate, dmaFenceArrayFirst, dmaFenceArrayNext } from "./dma-fence-array.js";
import { dmaFenceChainContained, dmaFenceChainWalk } from "./dma-fence-chain.js";
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";

/** struct dma_fence_unwrap: where an unwrap walk is. */
export class DmaFenceUnwrap {
  /** The chain node being walked (or the plain head). */
  chain: DmaFence | null = null;
  /** What that node contains: an array being walked, or a plain fence. */
  array: DmaFence | null = null;
  /** The member of @array returned last. */
  index = 0;
}

function unwrapArray(cursor: DmaFenceUnwrap): DmaFence | null {
  cursor.array = cursor.chain && dmaFenceChainContained(cursor.chain);
  cursor.index = 0;
  return dmaFenceArrayFirst(cursor.array);
}

/** dmaFenceUnwrapFirst - dma_fence_unwrap_first: the first plain fence inside @head (@head itself if plain). */
export function dmaFenceUnwrapFirst(head: DmaFence, cursor: DmaFenceUnwrap): DmaFence | null {
  cursor.chain = head;
  return unwrapArray(cursor);
}

/** dmaFenceUnwrapNext - dma_fence_unwrap_next: the next plain fence, or null at the end. */
export function dmaFenceUnwrapNext(cursor: DmaFenceUnwrap): DmaFence | null {
  const next = dmaFenceArrayNext(cursor.array, ++cursor.index);
  if (next) return next;
  cursor.chain = cursor.chain && dmaFenceChainWalk(cursor.chain);
  return unwrapArray(cursor);
}

/** dmaFenceUnwrapForEach - dma_fence_unwrap_for_each: the plain fences inside @head, in walk order. */
export function* dmaFenceUnwrapForEach(head: DmaFence): Generator<DmaFence> {
  const cursor = new DmaFenceUnwrap();
  for (let f = dmaFenceUnwrapFirst(head, cursor); f; f = dmaFenceUnwrapNext(cursor)) yield f;
}

/** The kernel's fence_cmp: by context, and within one context the later seqno first. */
function fenceCmp(a: DmaFence, b: DmaFence): number {
  if (a.context !== b.context) return a.context < b.context ? -1 : 1;
  if (dmaFenceIsLater(b, a)) return 1;
  if (dmaFenceIsLater(a, b)) return -1;
  return 0;
}

/**
 * dmaFenceDedupArray - dma_fence_dedup_array: @fences sorted by context with only the latest
 * fence of each context kept (a new array; @fences is left alone). Of two fences with the
 * same context and seqno the first given stays (the kernel's sort is not stable: either).
 */
export function dmaFenceDedupArray(fences: readonly DmaFence[]): DmaFence[] {
  const sorted = [...fences].sort(fenceCmp);
  return sorted.filter((f, i) => i === 0 || f.context !== sorted[i - 1]!.context);
}

/**
 * dmaFenceUnwrapMerge - dma_fence_unwrap_merge: one fence that signals when all of @fences
 * have. Containers are flattened, signalled leaves dropped, and of each context only the
 * latest pending leaf kept.
 *
 * @returns a new private stub (signalled, at the latest leaf timestamp, 0 if none) when
 *   nothing is pending; the pending fence itself when only one is; else a new
 *   dma_fence_array (fresh context, seqno 1, signal on all) of the leaves sorted by context.
 * @throws EINVAL an argument is not a fence of @k (nothing is allocated then).
 */
export function dmaFenceUnwrapMerge(k: Kernel, ...fences: DmaFence[]): DmaFence {
  fences.forEach((f, i) => {
    if (!(f instanceof DmaFence) || f.kernel !== k) {
      throw new DmaError("EINVAL", `dma_fence_unwrap_merge: fences[${i}] is not a fence of this machine`, { arg: `fences[${i}]` });
    }
  });
  const pending: DmaFence[] = [];
  let timestamp = 0;
  for (const head of fences) {
    for (const leaf of dmaFenceUnwrapForEach(head)) {
      if (!leaf.isSignaled()) pending.push(leaf);
      else if (leaf.timestamp > timestamp) timestamp = leaf.timestamp;
    }
  }
  // The common cases first: nothing left to wait for, or exactly one fence.
  if (pending.length === 0) return dmaFenceAllocatePrivateStub(k, timestamp);
  if (pending.length === 1) return pending[0]!;
  const unique = dmaFenceDedupArray(pending);
  if (unique.length === 1) return unique[0]!;
  return dmaFenceArrayCreate(k, unique, dmaFenceContextAlloc(k), 1, false);
}
