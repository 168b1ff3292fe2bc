/**
 * drivers/dma-buf/st-dma-fence.c, ported: each case keeps its kernel name and checks what
 * the selftest checks. Time is the machine's virtual clock (timeouts in ns).
 * race_signal_callback is played as every interleaving of its two threads' steps.
 *
 * The selftest's mock fence has its own wait hook that answers -ETIME on a timeout; these use
 * the kernel's default wait (dma_fence_default_wait), which answers 0.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, ENOENT } from "../../src/abi/errno.js";
import {
  DmaFence, dmaFenceAddCallback, dmaFenceBeginSignalling, dmaFenceContextAlloc, dmaFenceEndSignalling, dmaFenceEnableSwSignaling,
  dmaFenceGetStatus, dmaFenceGetStub, dmaFenceIsLater, dmaFenceRemoveCallback, dmaFenceSetError, dmaFenceSignal, dmaFenceWait,
  dmaFenceWaitTimeout,
} from "../../src/dma-buf/dma-fence.js";
import { SwSyncTimeline } from "../../src/dma-buf/sw-sync.js";
import type { Kernel } from "../../src/index.js";
import { caught, mmMachine } from "../mm/mm-helpers.js";

async function kernel(): Promise<Kernel> {
  return (await mmMachine()).kernel;
}

const mockFence = (k: Kernel) => new DmaFence(k, { ops: { getDriverName: () => "mock", getTimelineName: () => "mock" } });

describe("st-dma-fence", () => {
  it("sanitycheck", async () => {
    const k = await kernel();
    const f = mockFence(k);
    dmaFenceEnableSwSignaling(f);
    expect(dmaFenceSignal(f)).toBe(0);
  });

  it("test_signaling: not signalled at creation; the first signal returns 0, the second -EINVAL", async () => {
    const f = mockFence(await kernel());
    dmaFenceEnableSwSignaling(f);
    expect(f.isSignaled()).toBe(false);
    expect(dmaFenceSignal(f)).toBe(0);
    expect(f.isSignaled()).toBe(true);
    expect(dmaFenceSignal(f)).toBe(-EINVAL);
  });

  it("test_add_callback: a callback added before the signal runs at the signal", async () => {
    const f = mockFence(await kernel());
    let seen = 0;
    expect(dmaFenceAddCallback(f, () => seen++)).toBe(0);
    expect(seen).toBe(0);
    dmaFenceSignal(f);
    expect(seen).toBe(1);
  });

  it("test_late_add_callback: adding after the signal is -ENOENT and the callback never runs", async () => {
    const f = mockFence(await kernel());
    dmaFenceEnableSwSignaling(f);
    dmaFenceSignal(f);
    let seen = 0;
    expect(dmaFenceAddCallback(f, () => seen++)).toBe(-ENOENT);
    expect(seen).toBe(0);
  });

  it("test_rm_callback: a pending callback removed does not run", async () => {
    const f = mockFence(await kernel());
    let seen = 0;
    const cb = () => seen++;
    dmaFenceAddCallback(f, cb);
    expect(dmaFenceRemoveCallback(f, cb)).toBe(true);
    dmaFenceSignal(f);
    expect(seen).toBe(0);
  });

  it("test_late_rm_callback: a callback that already ran cannot be removed", async () => {
    const f = mockFence(await kernel());
    let seen = 0;
    const cb = () => seen++;
    dmaFenceAddCallback(f, cb);
    dmaFenceSignal(f);
    expect(seen).toBe(1);
    expect(dmaFenceRemoveCallback(f, cb)).toBe(false);
  });

  it("test_status: 0 while pending, 1 once signalled", async () => {
    const f = mockFence(await kernel());
    dmaFenceEnableSwSignaling(f);
    expect(dmaFenceGetStatus(f)).toBe(0);
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toBe(1);
  });

  it("test_error: the error shows only once the fence signals; setting it after is refused", async () => {
    const f = mockFence(await kernel());
    dmaFenceEnableSwSignaling(f);
    dmaFenceSetError(f, -5); // -EIO
    expect(dmaFenceGetStatus(f)).toBe(0);
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toBe(-5);
    expect(caught(() => dmaFenceSetError(f, -22)).code).toBe("EINVAL");
  });

  it("test_wait: a zero-timeout wait reports incomplete before the signal and complete after", async () => {
    const f = mockFence(await kernel());
    dmaFenceEnableSwSignaling(f);
    expect(dmaFenceWaitTimeout(f, false, 0)).toBe(0);
    dmaFenceSignal(f);
    expect(dmaFenceWaitTimeout(f, false, 0)).toBeGreaterThan(0);
  });

  it("test_wait_timeout: a wait shorter than the completion times out; a longer one returns what is left", async () => {
    const k = await kernel();
    const f = mockFence(k);
    dmaFenceEnableSwSignaling(f);
    const t0 = k.clock.now;
    expect(dmaFenceWaitTimeout(f, false, 1000)).toBe(0); // nothing will signal it: the timeout passes
    expect(k.clock.now - t0).toBe(1000);
    f.completesAt = k.clock.now + 1000; // the "timer" fires in one tick
    expect(dmaFenceWaitTimeout(f, false, 2000)).toBe(1000);
    expect(f.isSignaled()).toBe(true);
    expect(f.timestamp).toBe(t0 + 2000);
  });

  it("test_stub: the stub fence is signalled, always the same, context 0", async () => {
    const k = await kernel();
    const s = dmaFenceGetStub(k);
    expect(s.isSignaled()).toBe(true);
    expect(dmaFenceGetStub(k)).toBe(s);
    expect(s.context).toBe(0);
  });
});

describe("dma_fence beyond the selftest", () => {
  it("contexts are fresh numbers from 1; seqnos compare with 32-bit wrap-around on one context only", async () => {
    const k = await kernel();
    const c = dmaFenceContextAlloc(k, 2);
    expect(c).toBeGreaterThanOrEqual(1);
    expect(dmaFenceContextAlloc(k)).toBe(c + 2);
    const a = new DmaFence(k, { context: c, seqno: 0xffffffff });
    const b = new DmaFence(k, { context: c, seqno: 0x100000001 }); // wraps past a
    expect(dmaFenceIsLater(b, a)).toBe(true);
    expect(caught(() => dmaFenceIsLater(a, new DmaFence(k, { context: c + 1 }))).code).toBe("EINVAL");
  });

  it("an infinite wait for a fence nothing will signal is EDEADLK; a device completion is waited for", async () => {
    const k = await kernel();
    expect(caught(() => dmaFenceWait(mockFence(k))).code).toBe("EDEADLK");
    const f = new DmaFence(k, { completesAt: k.clock.now + 5000 });
    expect(dmaFenceWait(f)).toBe(0);
    expect(f.isSignaled()).toBe(true);
  });

  it("sw_sync: inc signals, in order, every point it passes; a point already passed is born signalled", async () => {
    const k = await kernel();
    const tl = new SwSyncTimeline(k);
    const order: number[] = [];
    const fs = [3, 1, 2].map((p) => tl.createFence(p));
    for (const f of fs) dmaFenceAddCallback(f, (x) => order.push(Number(x.seqno)));
    tl.inc(2);
    expect(order).toEqual([1, 2]);
    expect(fs[0]!.isSignaled()).toBe(false);
    tl.inc();
    expect(order).toEqual([1, 2, 3]);
    expect(tl.createFence(2).isSignaled()).toBe(true);
  });

  it("a wait on a fence of a closed (freed) timeline returns at once with -ENOENT as its status; the closed timeline is EBADF", async () => {
    const k = await kernel();
    const tl = new SwSyncTimeline(k);
    const f = tl.createFence(5);
    expect(dmaFenceWaitTimeout(f, true, 1000)).toBe(0); // nothing will signal it: the timeout passes
    tl.release();
    const t0 = k.clock.now;
    expect(dmaFenceWaitTimeout(f, true, 1000)).toBe(1000); // signalled: all the time is left
    expect(k.clock.now).toBe(t0);
    expect(dmaFenceGetStatus(f)).toBe(-ENOENT);
    expect(caught(() => tl.inc()).code).toBe("EBADF");
    expect(caught(() => tl.createFence(6)).code).toBe("EBADF");
    expect(caught(() => tl.release()).code).toBe("EBADF");
  });

  it("[L1] waiting for a fence inside a fence-signalling critical section is reported", async () => {
    const m = await mmMachine();
    const k = m.kernel;
    const f = new DmaFence(k, { completesAt: k.clock.now + 100 });
    const cookie = dmaFenceBeginSignalling(k);
    dmaFenceWait(f, "completion worker: dma_fence_wait");
    dmaFenceEndSignalling(k, cookie);
    const l1 = m.checkReports().filter((r) => r.checker === "lockdep");
    expect(l1.length).toBe(1);
    expect(l1[0]!.message).toMatch(/inside a fence-signalling critical section/);
    // Outside a signalling section the same wait is fine.
    dmaFenceWait(new DmaFence(k, { completesAt: k.clock.now + 100 }), "another wait");
    expect(m.checkReports().filter((r) => r.checker === "lockdep").length).toBe(1);
  });
});

describe("st-dma-fence races", () => {
  /**
   * race_signal_callback. In the kernel two kthreads each make a fence, add a callback to
   * the other thread's fence and signal their own: in pass 0 they add and then signal, in
   * pass 1 they signal and then add. Every add must either return 0, and then its callback
   * runs exactly once when the other fence signals, or return -ENOENT because the other
   * fence had already signalled, and then the callback never runs. A thread whose add
   * returned 0 then waits for the other fence and its callbacks.
   *
   * Here there is one thread, so the race is played as every interleaving of the two
   * threads' two steps (6 per pass, both passes). The wait is the end of the interleaving,
   * when both fences have signalled.
   */
  it("race_signal_callback: in every interleaving each add either gets its callback run exactly once or -ENOENT", async () => {
    const k = await kernel();
    const interleavings = ["0011", "0101", "0110", "1001", "1010", "1100"];
    let hits = 0;
    let misses = 0;
    for (const before of [false, true]) {
      for (const order of interleavings) {
        const f = [mockFence(k), mockFence(k)];
        const seen = [0, 0];
        const added: (number | null)[] = [null, null];
        const step = [0, 0];
        const cbs = [() => seen[0]!++, () => seen[1]!++];
        for (const c of order) {
          const t = Number(c);
          const other = f[1 - t]!;
          const first = step[t] === 0;
          step[t] = 1;
          const signalNow = before === first; // before: signal, then add; after: add, then signal
          if (signalNow) {
            expect(dmaFenceSignal(f[t]!)).toBe(0);
            continue;
          }
          const otherDone = other.isSignaled();
          added[t] = dmaFenceAddCallback(other, cbs[t]!);
          expect(added[t]).toBe(otherDone ? -ENOENT : 0);
          expect(seen[t]).toBe(0); // adding never runs the callback itself
        }
        for (const t of [0, 1]) {
          expect(f[t]!.isSignaled()).toBe(true);
          expect(seen[t]).toBe(added[t] === 0 ? 1 : 0); // seen once, or a miss
          expect(dmaFenceRemoveCallback(f[1 - t]!, cbs[t]!)).toBe(false); // ran or never queued
          if (added[t] === 0) hits++;
          else misses++;
        }
        // A second signal is refused and runs nothing again.
        expect([dmaFenceSignal(f[0]!), dmaFenceSignal(f[1]!)]).toEqual([-EINVAL, -EINVAL]);
        expect(seen.every((n, t) => n === (added[t] === 0 ? 1 : 0))).toBe(true);
      }
    }
    // Both outcomes of the race happened: 24 adds in all.
    expect([hits + misses, hits > 0, misses > 0]).toEqual([24, true, true]);
  });
});
