/**
 * drivers/dma-buf/st-dma-resv.c, ported: sanitycheck, then test_signaling, test_for_each,
 * test_for_each_unlocked and test_get_fences once per usage (KERNEL..BOOKKEEP); then the
 * rules of dma-resv.c the selftest does not reach: usage ordering, replacement, reservation,
 * and the ww-mutex lock's back-off.
 */
import { describe, expect, it } from "vitest";
import { EALREADY, EDEADLK } from "../../src/abi/errno.js";
import { DmaFence, dmaFenceContextAlloc, dmaFenceSignal } from "../../src/dma-buf/dma-fence.js";
import {
  DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_NAMES, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, dmaResvAddFence,
  dmaResvForEachFence, dmaResvForEachFenceUnlocked, dmaResvGetFences, dmaResvInit, dmaResvLock, dmaResvReserveFences,
  dmaResvTestSignaled, dmaResvUnlock, dmaResvUsageRw, dmaResvWaitTimeout, type DmaResv,
} from "../../src/dma-buf/dma-resv.js";
import { wwAcquireInit } from "../../src/locking/ww-mutex.js";
import type { Kernel } from "../../src/index.js";
import { caught, mmMachine } from "../mm/mm-helpers.js";

async function kernel(): Promise<Kernel> {
  return (await mmMachine()).kernel;
}

/** Publish @fences, each [fence, usage], the way a driver does: lock, reserve, add, unlock. */
function publish(resv: DmaResv, ...fences: [DmaFence, number][]): void {
  dmaResvLock(resv, null);
  dmaResvReserveFences(resv, fences.length);
  for (const [f, usage] of fences) dmaResvAddFence(resv, f, usage);
  dmaResvUnlock(resv);
}

describe("st-dma-resv", () => {
  it("sanitycheck: lock and unlock", async () => {
    const resv = dmaResvInit(await kernel());
    expect(dmaResvLock(resv, null)).toBe(0);
    dmaResvUnlock(resv);
  });

  for (const usage of [DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_WRITE, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_BOOKKEEP]) {
    const name = DMA_RESV_USAGE_NAMES[usage];

    it(`test_signaling (${name}): not signalled with a pending fence, signalled once it signals`, async () => {
      const k = await kernel();
      const f = new DmaFence(k);
      const resv = dmaResvInit(k);
      dmaResvLock(resv, null);
      dmaResvReserveFences(resv, 1);
      dmaResvAddFence(resv, f, usage);
      expect(dmaResvTestSignaled(resv, usage)).toBe(false);
      dmaFenceSignal(f);
      expect(dmaResvTestSignaled(resv, usage)).toBe(true);
      dmaResvUnlock(resv);
    });

    it(`test_for_each (${name}): the one fence, with its usage`, async () => {
      const k = await kernel();
      const f = new DmaFence(k);
      const resv = dmaResvInit(k);
      dmaResvLock(resv, null);
      dmaResvReserveFences(resv, 1);
      dmaResvAddFence(resv, f, usage);
      const seen = [...dmaResvForEachFence(resv, usage)];
      expect(seen).toEqual([{ fence: f, usage }]);
      dmaResvUnlock(resv);
    });

    it(`test_for_each_unlocked (${name}): the one fence, and a change during the walk restarts it`, async () => {
      const k = await kernel();
      const f = new DmaFence(k);
      const resv = dmaResvInit(k);
      publish(resv, [f, usage]);
      expect([...dmaResvForEachFenceUnlocked(resv, usage)].map((e) => e.fence)).toEqual([f]);
      let restarts = 0;
      const seen: DmaFence[] = [];
      for (const e of dmaResvForEachFenceUnlocked(resv, usage, () => restarts++)) {
        seen.push(e.fence);
        if (seen.length === 1) {
          publish(resv, [new DmaFence(k), usage]);
        }
      }
      expect(restarts).toBe(1);
      expect(seen.length).toBe(3); // f, then from the start: f and the new one
    });

    it(`test_get_fences (${name}): exactly the one fence`, async () => {
      const k = await kernel();
      const f = new DmaFence(k);
      const resv = dmaResvInit(k);
      publish(resv, [f, usage]);
      expect(dmaResvGetFences(resv, usage)).toEqual([f]);
    });
  }
});

describe("dma_resv rules", () => {
  it("a query with usage U sees the fences of usage <= U; usage_rw: writers wait for everyone, readers for writers", async () => {
    const k = await kernel();
    const resv = dmaResvInit(k);
    const fs = [0, 1, 2, 3].map(() => new DmaFence(k));
    publish(resv, ...fs.map((f, usage): [DmaFence, number] => [f, usage]));
    expect(dmaResvGetFences(resv, DMA_RESV_USAGE_KERNEL)).toEqual([fs[0]]);
    expect(dmaResvGetFences(resv, DMA_RESV_USAGE_READ)).toEqual(fs.slice(0, 3));
    expect(dmaResvUsageRw(true)).toBe(DMA_RESV_USAGE_READ);
    expect(dmaResvUsageRw(false)).toBe(DMA_RESV_USAGE_WRITE);
    expect(caught(() => dmaResvGetFences(resv, 4)).code).toBe("EINVAL");
  });

  it("adding needs the lock and a reserved slot; a later fence of the same context replaces the earlier; a signalled entry is reused", async () => {
    const k = await kernel();
    const resv = dmaResvInit(k);
    const ctx = dmaFenceContextAlloc(k);
    const a = new DmaFence(k, { context: ctx, seqno: 1 });
    const b = new DmaFence(k, { context: ctx, seqno: 2 });
    expect(caught(() => dmaResvAddFence(resv, a, DMA_RESV_USAGE_WRITE)).code).toBe("EINVAL"); // not locked
    dmaResvLock(resv, null);
    expect(caught(() => dmaResvAddFence(resv, a, DMA_RESV_USAGE_WRITE)).message).toMatch(/no slot reserved/);
    dmaResvReserveFences(resv, 1);
    dmaResvAddFence(resv, a, DMA_RESV_USAGE_WRITE);
    dmaResvAddFence(resv, b, DMA_RESV_USAGE_WRITE); // replaces a: no new slot needed
    expect(dmaResvGetFences(resv, DMA_RESV_USAGE_BOOKKEEP)).toEqual([b]);
    dmaFenceSignal(b);
    const other = new DmaFence(k);
    dmaResvAddFence(resv, other, DMA_RESV_USAGE_READ); // b signalled: its entry is reused
    expect(dmaResvGetFences(resv, DMA_RESV_USAGE_BOOKKEEP)).toEqual([other]);
    dmaResvUnlock(resv);
  });

  it("wait: the time left once every fence signalled, 0 on timeout", async () => {
    const k = await kernel();
    const resv = dmaResvInit(k);
    publish(
      resv,
      [new DmaFence(k, { completesAt: k.clock.now + 300 }), DMA_RESV_USAGE_WRITE],
      [new DmaFence(k, { completesAt: k.clock.now + 500 }), DMA_RESV_USAGE_READ],
    );
    expect(dmaResvWaitTimeout(resv, DMA_RESV_USAGE_READ, false, 400)).toBe(0); // the second is later than 400
    expect(dmaResvWaitTimeout(resv, DMA_RESV_USAGE_READ, false, 1000)).toBe(1000 - 100);
    expect(dmaResvTestSignaled(resv, DMA_RESV_USAGE_BOOKKEEP)).toBe(true);
  });

  it("the ww lock: -EALREADY for the same context, -EDEADLK for a younger one that holds others (back off)", async () => {
    const k = await kernel();
    const [r1, r2] = [dmaResvInit(k), dmaResvInit(k)];
    const old = wwAcquireInit(k);
    const young = wwAcquireInit(k);
    expect(dmaResvLock(r1, old)).toBe(0);
    expect(dmaResvLock(r1, old)).toBe(-EALREADY);
    expect(dmaResvLock(r2, young)).toBe(0);
    expect(dmaResvLock(r1, young)).toBe(-EDEADLK); // young backs off: drop r2, then lock_slow
    dmaResvUnlock(r2);
    // The older context wanting what the younger holds would wait: in one task, forever.
    dmaResvLock(r2, young);
    expect(caught(() => dmaResvLock(r2, old)).code).toBe("EDEADLK");
  });
});
