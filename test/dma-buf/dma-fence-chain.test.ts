/**
 * drivers/dma-buf/st-dma-fence-chain.c, ported: each case keeps its kernel name and checks
 * what the selftest checks, often more. The kernel runs waiters and finders in kthreads; here
 * one thread plays them in turn: a waiter is the callback dma_fence_default_wait would add,
 * and find_race interleaves finds and signals picked by the machine's seeded rng. Time is the
 * machine's virtual clock.
 */
import { describe, expect, it } from "vitest";
import { EINVAL } from "../../src/abi/errno.js";
import { DmaFence, dmaFenceAddCallback, dmaFenceContextAlloc, dmaFenceSignal, dmaFenceWait, dmaFenceWaitTimeout } from "../../src/dma-buf/dma-fence.js";
import { DmaFenceChain, dmaFenceChainInit } from "../../src/dma-buf/dma-fence-chain.js";
import type { Machine } from "../../src/index.js";
import { caught, mmMachine } from "../mm/mm-helpers.js";
import { CHAIN_SZ, chainMock, type FenceChains, fenceChains, find, kernel, mock, shuffle } from "./fence-helpers.js";

describe("st-dma-fence-chain", () => {
  it("sanitycheck: a node with no prev starts a chain on a fresh context and signals with its fence", async () => {
    const k = await kernel();
    const f = chainMock(k);
    const chain = dmaFenceChainInit(null, f, 1);
    expect([chain.seqno, chain.prevSeqno, chain.prev, chainContext(chain)]).toEqual([1n, 0n, null, true]);
    expect(chain.isSignaled()).toBe(false);
    dmaFenceSignal(f);
    expect(chain.isSignaled()).toBe(true);
  });

  function chainContext(c: DmaFenceChain): boolean {
    return c.context !== 0 && c.context !== c.fence.context;
  }

  it("dma_fence_chain_init: later seqno joins prev's context; otherwise a fresh context and seqno >= prev's", async () => {
    const k = await kernel();
    const a = dmaFenceChainInit(null, chainMock(k), 1);
    const b = dmaFenceChainInit(a, chainMock(k), 5);
    expect([b.context, b.seqno, b.prevSeqno]).toEqual([a.context, 5n, 1n]);
    const same = dmaFenceChainInit(b, chainMock(k), 5); // not later: a new timeline, seqno kept
    expect(same.context).not.toBe(b.context);
    expect([same.seqno, same.prevSeqno]).toEqual([5n, 0n]);
    const back = dmaFenceChainInit(b, chainMock(k), 3); // earlier: raised to prev's seqno
    expect([back.seqno, back.prevSeqno]).toEqual([5n, 0n]);
    const plain = mock(k);
    const onPlain = dmaFenceChainInit(plain, chainMock(k), 7); // prev not a chain: fresh context
    expect(onPlain.context).not.toBe(plain.context);
    expect([onPlain.seqno, onPlain.prevSeqno]).toEqual([7n, 0n]);
    // Chain seqnos are 64-bit: 2^32 is later than 1 (a 32-bit compare would say it is not).
    const wide = dmaFenceChainInit(a, chainMock(k), 0x1_0000_0000n);
    expect([wide.context, wide.prevSeqno]).toEqual([a.context, 1n]);
  });

  it("dma_fence_chain_init refuses a chain as the wrapped fence and a bad seqno, allocating nothing", async () => {
    const k = await kernel();
    const a = dmaFenceChainInit(null, chainMock(k), 1);
    const before = dmaFenceContextAlloc(k);
    expect(caught(() => dmaFenceChainInit(null, a, 2)).arg).toBe("fence");
    expect(caught(() => dmaFenceChainInit(a, chainMock(k), -1)).arg).toBe("seqno");
    expect(caught(() => dmaFenceChainInit(a, chainMock(k), 1n << 64n)).arg).toBe("seqno");
    expect(dmaFenceContextAlloc(k)).toBe(before + 1);
    expect(a.isSignaled()).toBe(false);
  });

  it("find_seqno: each point finds its node, finding a node's own point finds itself, a later point is -EINVAL", async () => {
    const k = await kernel();
    const fc = fenceChains(k, 64);
    expect(find(fc.tail, 0)).toEqual({ err: 0, fence: fc.tail }); // seqno 0 is a no-op
    for (let i = 0; i < 64; i++) {
      expect(find(fc.tail, i + 1).fence).toBe(fc.chains[i]);
      expect(find(fc.chains[i]!, i + 1)).toEqual({ err: 0, fence: fc.chains[i] });
      // Not reached yet from this node: -EINVAL, and the pointer stays.
      expect(find(fc.chains[i]!, i + 2)).toEqual({ err: -EINVAL, fence: fc.chains[i] });
      const back = find(fc.chains[i]!, i);
      expect(back.err).toBe(0);
      expect(back.fence).toBe(i > 0 ? fc.chains[i - 1] : fc.chains[0]);
    }
    expect(find(fc.fences[0]!, 1).err).toBe(-EINVAL); // not a chain node
    expect(find(null, 1).err).toBe(-EINVAL);
  });

  it("find_signaled: with point 1 signalled, find(1) collects that node and finds nothing left to wait for", async () => {
    const k = await kernel();
    const fc = fenceChains(k, 2);
    dmaFenceSignal(fc.fences[0]!);
    // The selftest accepts the node or NULL; the kernel's walk unlinks the node, so NULL.
    expect(find(fc.tail, 1)).toEqual({ err: 0, fence: null });
    expect(fc.tail.prev).toBe(null);
  });

  it("find_out_of_order: with point 2 of 1-2-3 signalled, find(2) gives node 1 (point 2 waits for 1 too)", async () => {
    const k = await kernel();
    const fc = fenceChains(k, 3);
    dmaFenceSignal(fc.fences[1]!);
    expect(find(fc.tail, 2)).toEqual({ err: 0, fence: fc.chains[0] });
    // Node 2 was garbage-collected; the tail still remembers it was made after point 2.
    expect(fc.tail.prev).toBe(fc.chains[0]);
    expect(fc.tail.prevSeqno).toBe(2n);
  });

  it("find_gap: on points 2, 4, 6, ... an odd point finds the node above it", async () => {
    const k = await kernel();
    const fc = fenceChains(k, 64, (i) => 2 * i + 2);
    for (let i = 0; i < 64; i++) {
      expect(find(fc.tail, 2 * i + 1)).toEqual({ err: 0, fence: fc.chains[i] });
      expect(find(fc.chains[i]!, 2 * i + 2)).toEqual({ err: 0, fence: fc.chains[i] });
    }
  });

  it("find_race: random finds interleaved with random signals always find a node that covers the point", async () => {
    const m: Machine = await mmMachine();
    const len = 1024;
    const fc = fenceChains(m.kernel, len);
    const signalled = (from: number, to: number) => fc.fences.slice(from, to).every((f) => f.isSignaled());
    let nulls = 0;
    for (let round = 0; round < 4096; round++) {
      const seqno = m.rng.int(1, len);
      const { err, fence } = find(fc.tail, seqno);
      expect(err).toBe(0);
      if (fence === null) {
        nulls++;
        expect(signalled(0, seqno)).toBe(true); // nothing to wait for: every point up to seqno signalled
      } else {
        const node = fence as DmaFenceChain;
        expect(node.prevSeqno < BigInt(seqno)).toBe(true);
        // Points between the node found and seqno were collected because they signalled.
        if (node.seqno < BigInt(seqno)) expect(signalled(Number(node.seqno), seqno)).toBe(true);
        if (node !== fc.tail) expect(node.fence.isSignaled()).toBe(false);
        if (node.seqno === BigInt(seqno)) expect(find(node, seqno)).toEqual({ err: 0, fence: node }); // find self
      }
      dmaFenceSignal(fc.fences[m.rng.int(0, len - 2)]!);
    }
    expect(nulls).toBeGreaterThan(0);
  });

  it("signal_forward: signalling points in order signals each node then, and not the next", async () => {
    const k = await kernel();
    const fc = fenceChains(k, 64);
    for (let i = 0; i < 64; i++) {
      dmaFenceSignal(fc.fences[i]!);
      expect(fc.chains[i]!.isSignaled()).toBe(true);
      if (i + 1 < 64) expect(fc.chains[i + 1]!.isSignaled()).toBe(false);
    }
  });

  it("signal_backward: signalling from the last point down signals no node until point 1 has", async () => {
    const k = await kernel();
    const fc = fenceChains(k, 64);
    for (let i = 63; i >= 0; i--) {
      dmaFenceSignal(fc.fences[i]!);
      if (i > 0) expect(fc.chains[i]!.isSignaled()).toBe(false);
    }
    for (const c of fc.chains) expect(c.isSignaled()).toBe(true);
  });

  /** A waiter on the tail (dma_fence_default_wait's callback); signal in @order; it wakes at the last. */
  async function waitChains(order: (fc: FenceChains, m: Machine) => DmaFence[]): Promise<void> {
    const m = await mmMachine();
    const fc = fenceChains(m.kernel, CHAIN_SZ);
    let woken = 0;
    expect(dmaFenceAddCallback(fc.tail, () => woken++)).toBe(0);
    const fences = order(fc, m);
    fences.forEach((f, i) => {
      if (i === fences.length - 1) expect(dmaFenceWaitTimeout(fc.tail, false, 0)).toBe(0); // still pending
      dmaFenceSignal(f);
      expect(woken).toBe(i === fences.length - 1 ? 1 : 0);
    });
    const t0 = m.kernel.clock.now;
    expect(dmaFenceWait(fc.tail)).toBe(0);
    expect(m.kernel.clock.now).toBe(t0);
  }

  it("wait_forward: a waiter on the tail wakes once, when the last point signals", () => waitChains((fc) => [...fc.fences]));
  it("wait_backward: a waiter on the tail wakes once, when point 1 signals last", () => waitChains((fc) => [...fc.fences].reverse()));
  it("wait_random: a waiter on the tail wakes once, at the last of a random order", () => waitChains((fc, m) => shuffle(m.rng, [...fc.fences])));

  it("device fences in a chain: a wait on a node advances the clock to the latest completion up to it", async () => {
    const m = await mmMachine();
    const k = m.kernel;
    const t0 = k.clock.now;
    const fc = fenceChains(k, 16);
    const times = shuffle(m.rng, fc.fences.map((_, i) => t0 + 1000 * (i + 1)));
    fc.fences.forEach((f, i) => (f.completesAt = times[i]!));
    const upTo8 = Math.max(...times.slice(0, 8));
    expect(fc.chains[7]!.completesAt).toBe(upTo8);
    expect(dmaFenceWaitTimeout(fc.chains[7]!, false, upTo8 - t0 - 1)).toBe(0); // one ns short
    expect(dmaFenceWaitTimeout(fc.chains[7]!, false, 10)).toBe(9);
    expect(k.clock.now).toBe(upTo8);
    expect(dmaFenceWait(fc.tail)).toBe(0);
    expect(k.clock.now).toBe(t0 + 16000);
    expect(fc.chains.every((c) => c.isSignaled())).toBe(true);
    expect(caught(() => (fc.tail.completesAt = 5)).arg).toBe("completesAt");
  });
});

