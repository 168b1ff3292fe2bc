/**
 * Shared by the fence-container tests: the selftests' mock fences, fence_chains_init, and
 * small checks.
 */
import { expect } from "vitest";
import { DmaFence, dmaFenceContextAlloc, dmaFenceEnableSwSignaling, dmaFenceInit } from "../../src/dma-buf/dma-fence.js";
import { dmaFenceArrayCreate } from "../../src/dma-buf/dma-fence-array.js";
import { DmaFenceChain, dmaFenceChainFindSeqno, dmaFenceChainInit } from "../../src/dma-buf/dma-fence-chain.js";
import type { Kernel, Rng } from "../../src/index.js";
import { mmMachine } from "../mm/mm-helpers.js";

export const CHAIN_SZ = 4 << 10;
export const mockOps = { getDriverName: () => "mock", getTimelineName: () => "mock" };

export async function kernel(): Promise<Kernel> {
  return (await mmMachine()).kernel;
}

/** The chain selftest's mock fence: context 0, seqno 0 (the chain nodes carry the numbers). */
export const chainMock = (k: Kernel): DmaFence => dmaFenceInit(k, mockOps, 0, 0);

/** The unwrap selftest's mock fence: its own context (or @context) at @seqno, signalling enabled. */
export function mock(k: Kernel, context = dmaFenceContextAlloc(k), seqno = 1): DmaFence {
  const f = dmaFenceInit(k, mockOps, context, seqno);
  dmaFenceEnableSwSignaling(f);
  return f;
}

export const mockArray = (k: Kernel, ...fences: DmaFence[]) => dmaFenceArrayCreate(k, fences, dmaFenceContextAlloc(k), 1, false);

export interface FenceChains {
  fences: DmaFence[];
  chains: DmaFenceChain[];
  tail: DmaFenceChain;
}

/** fence_chains_init: @count mock fences, each wrapped by a node after the previous one. */
export function fenceChains(k: Kernel, count: number, seqno: (i: number) => number = (i) => i + 1): FenceChains {
  const fences: DmaFence[] = [];
  const chains: DmaFenceChain[] = [];
  for (let i = 0; i < count; i++) {
    fences.push(chainMock(k));
    chains.push(dmaFenceChainInit(chains[i - 1] ?? null, fences[i]!, seqno(i)));
  }
  return { fences, chains, tail: chains[count - 1]! };
}

/** dma_fence_chain_find_seqno from @from: the return value and where the pointer ended. */
export function find(from: DmaFence | null, seqno: number): { err: number; fence: DmaFence | null } {
  const ref = { fence: from };
  const err = dmaFenceChainFindSeqno(ref, seqno);
  return { err, fence: ref.fence };
}

/** Fisher-Yates with the machine's rng (the selftest's randomise_fences). */
export function shuffle<T>(rng: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/** Expect exactly @expected, in order and by identity. */
export function expectFences(got: Iterable<DmaFence>, expected: DmaFence[]): void {
  const list = [...got];
  expect(list.length).toBe(expected.length);
  list.forEach((f, i) => expect(f).toBe(expected[i]));
}

