/**
 * struct dma_fence_chain (drivers/dma-buf/dma-fence-chain.c): a timeline point made of
 * fences. Each node wraps one fence and links to the previous point; the node signals once
 * its own fence and every earlier one have signalled (drm_syncobj timelines are built so).
 *
 * - dmaFenceChainInit: a node whose seqno is later than its chain-node prev joins prev's
 *   context and remembers prev's seqno (prevSeqno); otherwise it starts a fresh context, and
 *   on a chain prev its seqno is raised to prev's so the numbers never go back. Seqnos are
 *   64-bit (no 32-bit wrap-around).
 * - A node may not contain a chain: chains link only through prev (the kernel WARNs; dmalab
 *   refuses). A node may contain a dma_fence_array.
 * - dmaFenceChainWalk steps to the previous node and unlinks (garbage-collects) the nodes
 *   whose own fence has signalled, so later walks skip them. prevSeqno keeps the number the
 *   node was made after, which dmaFenceChainFindSeqno compares.
 * - Signalling: the node watches one pending fence at a time (the newest one not yet
 *   signalled); when it signals, the node re-arms on the next, and signals itself when none
 *   is left. The kernel re-arms from an irq_work; here it runs at once, inside the signal.
 * - Virtual time: completesAt is derived, the latest completion among the pending fences of
 *   the node and its predecessors, or null if one of them has none (software signalled).
 * @module
 */
import { EINVAL } from "../abi/errno.js";
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import {
  DmaFence, type DmaFenceCallback, type DmaFenceOps, dmaFenceAddCallback, dmaFenceContextAlloc, dmaFenceSignal,
} from "./dma-fence.js";

const U64_MAX = (1n << 64n) - 1n;

const dmaFenceChainOps: DmaFenceOps = {
  getDriverName: () => "dma_fence_chain",
  getTimelineName: () => "unbound",
  enableSignaling: (f) => chainEnableSignaling(f as DmaFenceChain),
  signaled: (f) => chainSignaled(f),
  use64bitSeqno: true,
};

export class DmaFenceChain extends DmaFence {
  /** The previous point: a chain node, any other fence (the start), or null. Walks unlink signalled nodes. */
  prev: DmaFence | null;
  /** prev's seqno when this node joined prev's context, else 0 (kept through garbage collection). */
  readonly prevSeqno: bigint;
  /** The fence this point wraps. */
  readonly fence: DmaFence;
  /** @internal the node's one callback (struct dma_fence_chain.cb), armed on one fence at a time. */
  readonly cb: DmaFenceCallback;

  /** @internal use dmaFenceChainInit, which picks the context and seqno. */
  constructor(k: Kernel, prev: DmaFence | null, fence: DmaFence, context: number, seqno: bigint, prevSeqno: bigint) {
    super(k, { ops: dmaFenceChainOps, context, seqno });
    this.prev = prev;
    this.prevSeqno = prevSeqno;
    this.fence = fence;
    this.cb = () => chainIrqWork(this);
  }

  /** When its fence and every earlier node's have completed. */
  override get completesAt(): number | null {
    return chainCompletesAt(this);
  }

  override set completesAt(_at: number | null) {
    throw new DmaError("EINVAL", "dma_fence_chain: a node completes when its fences do", { arg: "completesAt" });
  }
}

/** toDmaFenceChain - to_dma_fence_chain: @f as a chain node, or null if it is not one. */
export function toDmaFenceChain(f: DmaFence | null): DmaFenceChain | null {
  return f instanceof DmaFenceChain ? f : null;
}

/** isDmaFenceChain - dma_fence_is_chain. */
export function isDmaFenceChain(f: DmaFence | null): f is DmaFenceChain {
  return f instanceof DmaFenceChain;
}

/** dmaFenceChainContained - dma_fence_chain_contained: the fence a chain node wraps, or @f itself. */
export function dmaFenceChainContained(f: DmaFence): DmaFence {
  return f instanceof DmaFenceChain ? f.fence : f;
}

function toSeqno(seqno: bigint | number, fn: string): bigint {
  const ok = typeof seqno === "bigint" ? seqno >= 0n && seqno <= U64_MAX : Number.isSafeInteger(seqno) && seqno >= 0;
  if (!ok) throw new DmaError("EINVAL", `${fn}: seqno ${seqno} is not a u64`, { arg: "seqno" });
  return BigInt(seqno);
}

/**
 * dmaFenceChainInit - dma_fence_chain_init: a new node for point @seqno wrapping @fence after
 * @prev (null to start a chain).
 *
 * Joins @prev's context when @prev is a chain node and @seqno is later than its seqno (then
 * prevSeqno = prev.seqno); otherwise allocates a fresh context and, on a chain @prev, takes
 * max(prev.seqno, @seqno) as the seqno.
 *
 * @returns the node, not yet signalled unless all its fences are.
 * @throws EINVAL @fence is a chain node (link chains through @prev), @prev or @fence belongs
 *   to another machine, or @seqno is not a u64. Nothing is allocated then.
 */
export function dmaFenceChainInit(prev: DmaFence | null, fence: DmaFence, seqno: bigint | number): DmaFenceChain {
  const fn = "dma_fence_chain_init";
  if (!(fence instanceof DmaFence)) throw new DmaError("EINVAL", `${fn}: no fence to wrap`, { arg: "fence" });
  // Chains nest only through prev; a chain inside a node would recurse on every walk.
  if (fence instanceof DmaFenceChain) {
    throw new DmaError("EINVAL", `${fn}: the fence is itself a chain node (link it as prev, or flatten into an array)`, { arg: "fence" });
  }
  if (prev !== null && (!(prev instanceof DmaFence) || prev.kernel !== fence.kernel)) {
    throw new DmaError("EINVAL", `${fn}: prev is not a fence of this machine`, { arg: "prev" });
  }
  let point = toSeqno(seqno, fn);
  const k = fence.kernel;
  const prevChain = toDmaFenceChain(prev);
  if (prevChain && point > prevChain.seqno) {
    return new DmaFenceChain(k, prev, fence, prevChain.context, point, prevChain.seqno);
  }
  // A fresh context; never let the seqno run backwards behind a chain prev.
  if (prevChain && prevChain.seqno > point) point = prevChain.seqno;
  return new DmaFenceChain(k, prev, fence, dmaFenceContextAlloc(k), point, 0n);
}

/**
 * dmaFenceChainWalk - dma_fence_chain_walk: the node before @fence, or null at the end (or if
 * @fence is not a chain node). On the way it unlinks every previous node whose own fence has
 * signalled (and a signalled non-chain start), so @fence.prev may change.
 */
export function dmaFenceChainWalk(fence: DmaFence): DmaFence | null {
  const chain = toDmaFenceChain(fence);
  if (!chain) return null;
  let prev: DmaFence | null;
  while ((prev = chain.prev) !== null) {
    const prevChain = toDmaFenceChain(prev);
    if (prevChain) {
      if (!prevChain.fence.isSignaled()) break;
      chain.prev = prevChain.prev;
    } else {
      if (!prev.isSignaled()) break;
      chain.prev = null;
    }
  }
  return prev;
}

/** dmaFenceChainForEach - dma_fence_chain_for_each: @head, then each node dmaFenceChainWalk gives. */
export function* dmaFenceChainForEach(head: DmaFence): Generator<DmaFence> {
  for (let it: DmaFence | null = head; it; it = dmaFenceChainWalk(it)) yield it;
}

/** A fence pointer that a call may move (the kernel's struct dma_fence **pfence). */
export interface DmaFenceRef {
  fence: DmaFence | null;
}

/**
 * dmaFenceChainFindSeqno - dma_fence_chain_find_seqno: moves @pfence.fence from a chain node
 * to the node that will signal point @seqno, walking (and garbage-collecting) backwards.
 *
 * The node found is the one whose prevSeqno is below @seqno; when the nodes in between have
 * signalled it may be an earlier node (wait for it: the points before must signal too), and
 * null when everything up to @seqno has signalled. @seqno 0 is a no-op.
 *
 * @returns 0; or -EINVAL, @pfence unchanged, when @pfence.fence is not a chain node or its
 *   seqno is below @seqno (that point has not been added yet).
 * @throws EINVAL @seqno is not a u64.
 */
export function dmaFenceChainFindSeqno(pfence: DmaFenceRef, seqno: bigint | number): number {
  const point = toSeqno(seqno, "dma_fence_chain_find_seqno");
  if (point === 0n) return 0;
  const chain = toDmaFenceChain(pfence.fence);
  if (!chain || chain.seqno < point) return -EINVAL;
  let it: DmaFence | null = chain;
  for (; it; it = dmaFenceChainWalk(it)) {
    const node = toDmaFenceChain(it);
    if (!node || node.context !== chain.context || node.prevSeqno < point) break;
  }
  pfence.fence = it;
  return 0;
}

/** enable_signaling: arm the callback on the newest fence still pending; false if none is. */
function chainEnableSignaling(head: DmaFenceChain): boolean {
  for (const it of dmaFenceChainForEach(head)) {
    if (dmaFenceAddCallback(dmaFenceChainContained(it), head.cb) === 0) return true;
  }
  return false;
}

/** The callback's irq_work: re-arm on the next pending fence, or signal the node. */
function chainIrqWork(chain: DmaFenceChain): void {
  if (!chainEnableSignaling(chain)) dmaFenceSignal(chain);
}

/** signaled: every fence from this node back has signalled (polls each, collecting garbage). */
function chainSignaled(f: DmaFence): boolean {
  for (const it of dmaFenceChainForEach(f)) if (!dmaFenceChainContained(it).isSignaled()) return false;
  return true;
}

/** The derived completesAt: walks prev links without unlinking anything. */
function chainCompletesAt(chain: DmaFenceChain): number | null {
  let at = -Infinity;
  for (let it: DmaFence | null = chain; it; it = it instanceof DmaFenceChain ? it.prev : null) {
    const f = dmaFenceChainContained(it);
    if (f.isSignaled()) continue;
    if (f.completesAt === null) return null;
    at = Math.max(at, f.completesAt);
  }
  return at === -Infinity ? null : at;
}
