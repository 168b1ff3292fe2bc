/**
 * dma_fence_array (signal-on-all, signal-on-any, error propagation) and
 * drivers/dma-buf/st-dma-fence-unwrap.c, ported: each case keeps its kernel name and checks
 * what the selftest checks, often more.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, EIO, ENOENT } from "../../src/abi/errno.js";
import { DmaFence, dmaFenceAddCallback, dmaFenceContextAlloc, dmaFenceEnableSwSignaling, dmaFenceGetStatus, dmaFenceGetStub, dmaFenceSetError, dmaFenceSignal, dmaFenceWait, dmaFenceWaitTimeout } from "../../src/dma-buf/dma-fence.js";
import { DMA_FENCE_ARRAY_PENDING_ERROR, dmaFenceArrayCreate, dmaFenceArrayFirst, dmaFenceArrayNext, dmaFenceMatchContext, isDmaFenceArray, toDmaFenceArray } from "../../src/dma-buf/dma-fence-array.js";
import { dmaFenceChainContained, dmaFenceChainInit } from "../../src/dma-buf/dma-fence-chain.js";
import { DmaFenceUnwrap, dmaFenceUnwrapFirst, dmaFenceUnwrapForEach, dmaFenceUnwrapMerge, dmaFenceUnwrapNext } from "../../src/dma-buf/dma-fence-unwrap.js";
import { caught } from "../mm/mm-helpers.js";
import { expectFences, kernel, mock, mockArray } from "./fence-helpers.js";

describe("dma_fence_array", () => {
  it("signal on all: a callback on the array runs once, when the last member signals; status 1", async () => {
    const k = await kernel();
    const fs = [mock(k), mock(k), mock(k)];
    const a = dmaFenceArrayCreate(k, fs, dmaFenceContextAlloc(k), 7, false);
    expect([a.seqno, a.numPending, a.error, a.ops.getDriverName?.(a)]).toEqual([7n, 3, DMA_FENCE_ARRAY_PENDING_ERROR, "dma_fence_array"]);
    let seen = 0;
    expect(dmaFenceAddCallback(a, () => seen++)).toBe(0);
    dmaFenceSignal(fs[2]!);
    dmaFenceSignal(fs[0]!);
    expect([seen, a.numPending, a.isSignaled(), dmaFenceGetStatus(a)]).toEqual([0, 1, false, 0]);
    dmaFenceSignal(fs[1]!);
    expect([seen, a.isSignaled(), dmaFenceGetStatus(a), a.error]).toEqual([1, true, 1, 0]);
  });

  it("signal on any: the first member to signal signals the array; later ones change nothing", async () => {
    const k = await kernel();
    const fs = [mock(k), mock(k), mock(k)];
    const a = dmaFenceArrayCreate(k, fs, dmaFenceContextAlloc(k), 1, true);
    let seen = 0;
    dmaFenceAddCallback(a, () => seen++);
    dmaFenceSignal(fs[1]!);
    expect([seen, a.isSignaled(), a.numPending, dmaFenceGetStatus(a)]).toEqual([1, true, 0, 1]);
    dmaFenceSetError(fs[0]!, -EIO);
    dmaFenceSignal(fs[0]!);
    expect([seen, a.numPending, dmaFenceGetStatus(a)]).toEqual([1, -1, 1]);
  });

  it("error propagation: the first member to signal with an error gives the array its error", async () => {
    const k = await kernel();
    const fs = [mock(k), mock(k), mock(k)];
    const a = dmaFenceArrayCreate(k, fs, dmaFenceContextAlloc(k), 1, false);
    dmaFenceEnableSwSignaling(a);
    dmaFenceSetError(fs[1]!, -EIO);
    dmaFenceSetError(fs[2]!, -EINVAL);
    dmaFenceSignal(fs[0]!);
    expect([a.error, dmaFenceGetStatus(a)]).toEqual([DMA_FENCE_ARRAY_PENDING_ERROR, 0]);
    dmaFenceSignal(fs[2]!);
    expect([a.error, dmaFenceGetStatus(a)]).toEqual([-EINVAL, 0]); // taken, shown once signalled
    dmaFenceSignal(fs[1]!);
    expect(dmaFenceGetStatus(a)).toBe(-EINVAL);
  });

  it("error propagation: a member signalled with an error before enabling counts (and passes its error) at enable time", async () => {
    const k = await kernel();
    const fs = [mock(k), mock(k)];
    dmaFenceSetError(fs[0]!, -EIO);
    dmaFenceSignal(fs[0]!);
    const any = dmaFenceArrayCreate(k, fs, dmaFenceContextAlloc(k), 1, true);
    expect(dmaFenceAddCallback(any, () => {})).toBe(-ENOENT); // enabling found it done
    expect(dmaFenceGetStatus(any)).toBe(-EIO);
    const all = dmaFenceArrayCreate(k, fs, dmaFenceContextAlloc(k), 1, false);
    expect(dmaFenceAddCallback(all, () => {})).toBe(0);
    dmaFenceSignal(fs[1]!);
    expect(dmaFenceGetStatus(all)).toBe(-EIO);
  });

  it("polled without signalling enabled, the array signals once its members have, but without their error", async () => {
    const k = await kernel();
    const fs = [mock(k), mock(k)];
    const all = dmaFenceArrayCreate(k, fs, dmaFenceContextAlloc(k), 1, false);
    const any = dmaFenceArrayCreate(k, fs, dmaFenceContextAlloc(k), 1, true);
    dmaFenceSetError(fs[0]!, -EIO);
    dmaFenceSignal(fs[0]!);
    expect([all.isSignaled(), any.isSignaled()]).toEqual([false, true]);
    dmaFenceSignal(fs[1]!);
    expect(all.isSignaled()).toBe(true);
    // The kernel's dma_fence_array_signaled clears PENDING_ERROR without looking at members.
    expect([dmaFenceGetStatus(all), dmaFenceGetStatus(any)]).toEqual([1, 1]);
  });

  it("dma_fence_array_create refuses no fences, a container member, a bad seqno or context, touching no member", async () => {
    const k = await kernel();
    const f = mock(k);
    const inner = mockArray(k, mock(k));
    const chain = dmaFenceChainInit(null, mock(k), 1);
    const ctx = dmaFenceContextAlloc(k);
    expect(caught(() => dmaFenceArrayCreate(k, [], ctx, 1, false)).arg).toBe("fences");
    expect(caught(() => dmaFenceArrayCreate(k, [f, inner], ctx, 1, false)).arg).toBe("fences[1]");
    expect(caught(() => dmaFenceArrayCreate(k, [chain], ctx, 1, false)).arg).toBe("fences[0]");
    expect(caught(() => dmaFenceArrayCreate(k, [f], ctx, 0x1_0000_0000, false)).arg).toBe("seqno");
    expect(caught(() => dmaFenceArrayCreate(k, [f], -1, 1, false)).arg).toBe("context");
    const other = await kernel(); // another machine's kernel
    expect(caught(() => dmaFenceArrayCreate(other, [f], ctx, 1, false)).arg).toBe("fences[0]");
    expect(f.callbacks.length).toBe(0);
  });

  it("dma_fence_array_first/next and match_context: members in order; a plain fence is its own first", async () => {
    const k = await kernel();
    const ctx = dmaFenceContextAlloc(k);
    const fs = [mock(k, ctx, 1), mock(k, ctx, 2)];
    const a = mockArray(k, ...fs);
    expect([dmaFenceArrayFirst(a), dmaFenceArrayNext(a, 1), dmaFenceArrayNext(a, 2)]).toEqual([fs[0], fs[1], null]);
    expect([dmaFenceArrayFirst(fs[0]!), dmaFenceArrayNext(fs[0]!, 0), dmaFenceArrayFirst(null)]).toEqual([fs[0], null, null]);
    expect([dmaFenceMatchContext(a, ctx), dmaFenceMatchContext(a, a.context), dmaFenceMatchContext(fs[0]!, ctx)]).toEqual([true, false, true]);
    expect([isDmaFenceArray(a), isDmaFenceArray(fs[0]!), toDmaFenceArray(fs[0]!)]).toEqual([true, false, null]);
  });

  it("device members: a wait advances the clock to the last completion (all) or the first (any)", async () => {
    const k = await kernel();
    const t0 = k.clock.now;
    const dev = (at: number) => new DmaFence(k, { completesAt: t0 + at });
    const all = dmaFenceArrayCreate(k, [dev(100), dev(300), dev(200)], dmaFenceContextAlloc(k), 1, false);
    const any = dmaFenceArrayCreate(k, [dev(1000), mock(k), dev(500)], dmaFenceContextAlloc(k), 1, true);
    expect([all.completesAt, any.completesAt]).toEqual([t0 + 300, t0 + 500]);
    expect(dmaFenceWait(all)).toBe(0);
    expect([k.clock.now, all.timestamp, dmaFenceGetStatus(all)]).toEqual([t0 + 300, t0 + 300, 1]);
    expect(dmaFenceWaitTimeout(any, false, 1000)).toBe(800);
    expect(k.clock.now).toBe(t0 + 500);
    // A member only software signals: waiting for all of them cannot end.
    const stuck = dmaFenceArrayCreate(k, [dev(600), mock(k)], dmaFenceContextAlloc(k), 1, false);
    expect(stuck.completesAt).toBe(null);
    expect(caught(() => dmaFenceWait(stuck)).code).toBe("EDEADLK");
  });
});

describe("st-dma-fence-unwrap", () => {
  it("sanitycheck: a chain node may wrap an array; it signals when the array's member does", async () => {
    const k = await kernel();
    const f = mock(k);
    const chain = dmaFenceChainInit(null, mockArray(k, f), 1);
    expect(chain.isSignaled()).toBe(false);
    dmaFenceSignal(f);
    expect(chain.isSignaled()).toBe(true);
  });

  it("unwrap_array: the members, in array order", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    expectFences(dmaFenceUnwrapForEach(mockArray(k, f1, f2)), [f1, f2]);
  });

  it("unwrap_chain: the node's fence first, then prev (a plain fence)", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    expectFences(dmaFenceUnwrapForEach(dmaFenceChainInit(f1, f2, 1)), [f2, f1]);
  });

  it("unwrap_chain_array: into the array a chain node wraps", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    const chain = dmaFenceChainInit(null, mockArray(k, f1, f2), 1);
    expect(dmaFenceChainContained(chain)).toBe(chain.fence);
    expectFences(dmaFenceUnwrapForEach(chain), [f1, f2]);
  });

  it("unwrap cursor: a plain fence unwraps to itself; a chain walk skips (and unlinks) signalled nodes", async () => {
    const k = await kernel();
    const f = mock(k);
    const cursor = new DmaFenceUnwrap();
    expect([dmaFenceUnwrapFirst(f, cursor), dmaFenceUnwrapNext(cursor)]).toEqual([f, null]);
    const [f1, f2] = [mock(k), mock(k)];
    const c2 = dmaFenceChainInit(dmaFenceChainInit(null, f1, 1), f2, 2);
    dmaFenceSignal(f1);
    expectFences(dmaFenceUnwrapForEach(c2), [f2]);
    expect(c2.prev).toBe(null);
  });

  it("unwrap_merge: two pending fences merge into a new signal-on-all array of both", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    const f3 = dmaFenceUnwrapMerge(k, f1, f2);
    const a = toDmaFenceArray(f3)!;
    expect([a.signalOnAny, a.seqno, a.context > f2.context]).toEqual([false, 1n, true]);
    expectFences(dmaFenceUnwrapForEach(f3), [f1, f2]);
  });

  it("unwrap_merge_duplicate: a fence merged with itself is that fence", async () => {
    const k = await kernel();
    const f1 = mock(k);
    expect(dmaFenceUnwrapMerge(k, f1, f1)).toBe(f1);
  });

  it("unwrap_merge_seqno: per context only the latest seqno stays, sorted by context", async () => {
    const k = await kernel();
    const ctx = [dmaFenceContextAlloc(k), dmaFenceContextAlloc(k)];
    const f1 = mock(k, ctx[1], 1);
    const f2 = mock(k, ctx[1], 2);
    const f3 = mock(k, ctx[0], 1);
    expectFences(dmaFenceUnwrapForEach(dmaFenceUnwrapMerge(k, f1, f2, f3)), [f3, f2]);
  });

  it("unwrap_merge_order: the same fences in opposite orders (array vs chain) merge in context order", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    const a1 = mockArray(k, f1, f2);
    const c2 = dmaFenceChainInit(dmaFenceChainInit(null, f1, 1), f2, 1);
    expectFences(dmaFenceUnwrapForEach(c2), [f2, f1]);
    expectFences(dmaFenceUnwrapForEach(dmaFenceUnwrapMerge(k, a1, c2)), [f1, f2]);
  });

  it("unwrap_merge_complex: merged and reversed arrays plus the stub give the two fences once each", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    const f3 = dmaFenceUnwrapMerge(k, f1, f2);
    const f4 = mockArray(k, f2, f1);
    expectFences(dmaFenceUnwrapForEach(dmaFenceUnwrapMerge(k, f3, f4, dmaFenceGetStub(k))), [f1, f2]);
  });

  it("unwrap_merge_complex_seqno: across two arrays the latest of each context is kept", async () => {
    const k = await kernel();
    const ctx = [dmaFenceContextAlloc(k), dmaFenceContextAlloc(k)];
    const f1 = mock(k, ctx[0], 2);
    const f2 = mock(k, ctx[1], 1);
    const f3 = mock(k, ctx[0], 1);
    const f4 = mock(k, ctx[1], 2);
    expectFences(dmaFenceUnwrapForEach(dmaFenceUnwrapMerge(k, mockArray(k, f1, f2), mockArray(k, f3, f4))), [f1, f4]);
  });

  it("merge drops signalled leaves: one pending left is returned itself", async () => {
    const k = await kernel();
    const [f1, f2, f3] = [mock(k), mock(k), mock(k)];
    dmaFenceSignal(f1);
    dmaFenceSignal(f3);
    expect(dmaFenceUnwrapMerge(k, mockArray(k, f1, f2), f3)).toBe(f2);
  });

  it("merge with nothing pending: a new private stub signalled at the latest leaf timestamp", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    dmaFenceSignal(f1);
    k.clock.advance(250);
    dmaFenceSignal(f2);
    const s = dmaFenceUnwrapMerge(k, f2, f1);
    expect(s).not.toBe(dmaFenceGetStub(k));
    expect([s.isSignaled(), s.context, s.seqno, s.timestamp, s.ops.getDriverName?.(s)]).toEqual([true, 0, 0n, f2.timestamp, "stub"]);
    k.clock.advance(100);
    expect(dmaFenceUnwrapMerge(k).timestamp).toBe(0); // no leaves at all
  });

  it("merge refuses a non-fence, allocating nothing", async () => {
    const k = await kernel();
    const [f1, f2] = [mock(k), mock(k)];
    const before = dmaFenceContextAlloc(k);
    expect(caught(() => dmaFenceUnwrapMerge(k, f1, f2, null as unknown as DmaFence)).arg).toBe("fences[2]");
    expect(dmaFenceContextAlloc(k)).toBe(before + 1);
  });
});
