/**
 * The three coherency models of the Aug 2019 thread (KERNEL-SPEC 6.1), each driven through
 * the same story: the device registers (or mirrors) a buffer, the process replaces the
 * buffer's pages behind the same address (munmap + mmap MAP_FIXED), the device goes on.
 *
 * - registration cache: the callback drops the entry; the next operation pins the new pages;
 * - shadow PTE: the callback clears the device PTEs and waits for the device TLB flush; the
 *   next access faults the new pages in through HMM;
 * - pinned userptr without an end: the device keeps the old pages: the coherency checker
 *   reports it ([C1]).
 */
import { describe, expect, it } from "vitest";
import { UserptrDevice } from "../../src/drivers/userptr.js";
import type { Machine, Process } from "../../src/index.js";
import { mmap, mmMachine, PAGE, pfnAt } from "../mm/mm-helpers.js";

const N = 8;

async function story(): Promise<{ m: Machine; p: Process; a: number; remap: () => void }> {
  const m = await mmMachine({ memory: { normal: "64MiB", movable: 0, cma: 0 }, mm: { thp: "never" } });
  const p = m.spawn();
  const a = mmap(p, { length: N * PAGE });
  p.write(a, new Uint8Array(N * PAGE).fill(1));
  const remap = (): void => {
    p.munmap(a, N * PAGE);
    mmap(p, { addr: a, length: N * PAGE, fixed: true });
    p.write(a, new Uint8Array(N * PAGE).fill(2));
  };
  return { m, p, a, remap };
}

const reports = (m: Machine, checker: string) => m.checkReports().filter((r) => r.checker === checker);

describe("registration cache", () => {
  it("the callback drops the entry and never blocks; the next operation pins the new pages; nothing to report", async () => {
    const { m, p, a, remap } = await story();
    const dev = new UserptrDevice(p, { model: "registration-cache" });
    dev.register(a, N * PAGE);
    expect(dev.dma(a, N * PAGE)[0]).toBe(1);
    const before = m.vmstat();
    remap();
    expect(dev.stats.dropped).toBe(1);
    expect(m.vmstat().nr_foll_pin_released - before.nr_foll_pin_released).toBe(N); // the old pins went with the entry
    expect(dev.dma(a, N * PAGE)[0]).toBe(2); // re-pinned: the new pages
    expect(dev.stats.pinned).toBe(2 * N);
    expect(m.checkReports()).toEqual([]);
  });
});

describe("shadow PTE (HMM mirror)", () => {
  it("device faults fill the mirror; the callback clears it and waits for the device TLB flush; the next access sees the new pages", async () => {
    const { m, p, a, remap } = await story();
    const dev = new UserptrDevice(p, { model: "shadow-pte", tlbFlushNs: 5000 });
    expect(dev.dma(a, N * PAGE)[0]).toBe(1);
    expect(dev.stats.deviceFaults).toBe(N);
    expect(dev.spte.get(a / PAGE)!.pfn).toBe(pfnAt(p, a));
    const t0 = m.clock.now;
    remap();
    expect(dev.spte.size).toBe(0);
    expect(dev.stats.flushes).toBeGreaterThanOrEqual(1);
    expect(m.clock.now - t0).toBeGreaterThanOrEqual(5000);
    expect(dev.dma(a, N * PAGE)[0]).toBe(2);
    expect(dev.stats.deviceFaults).toBe(2 * N);
    expect(m.checkReports()).toEqual([]);
  });

  it("holds no pins: the pages it mirrors are not DMA-pinned", async () => {
    const { m, p, a } = await story();
    const dev = new UserptrDevice(p, { model: "shadow-pte" });
    dev.dma(a, N * PAGE);
    expect(m.vmstat().nr_foll_pin_acquired).toBe(0);
  });
});

describe("pinned userptr without invalidate_range_end", () => {
  it("the device keeps writing the old pages after the CPU's mapping changed: [C1], and the process never sees the write", async () => {
    const { m, p, a, remap } = await story();
    const dev = new UserptrDevice(p, { model: "pinned-no-end", name: "i915-like userptr" });
    dev.register(a, N * PAGE);
    const old = pfnAt(p, a);
    remap();
    const c1 = reports(m, "coherency");
    expect(c1.length).toBe(N);
    expect(c1[0]).toMatchObject({ rule: "C1", pfn: old, pids: [p.pid] });
    expect(c1[0]!.message).toMatch(/i915-like userptr still maps 0x[0-9a-f]+ to frame \d+ after a unmap invalidation/);
    dev.dma(a, PAGE, new Uint8Array(PAGE).fill(9));
    expect(p.read(a, 1)[0]).toBe(2); // the write went to the old page
    expect(dev.releaseStale()).toBe(1); // the deferred worker lets go at last
  });
});

describe("lockdep-lite", () => {
  it("[L1] a driver lock held across a GFP_KERNEL allocation and taken in the notifier: a cycle through fs_reclaim", async () => {
    const { m, p, a, remap } = await story();
    const dev = new UserptrDevice(p, { model: "pinned-no-end", name: "gpu", allocUnderLock: true });
    dev.register(a, N * PAGE);
    expect(reports(m, "lockdep")).toEqual([]); // one order seen: gpu lock -> fs_reclaim
    remap(); // the callback takes the gpu lock under the notifier map
    const l1 = reports(m, "lockdep").filter((r) => r.rule === "L1");
    expect(l1.length).toBe(1);
    expect(l1[0]!.message).toMatch(/taking gpu lock while holding mmu_notifier_invalidate_range_start/);
    expect(l1[0]!.message).toMatch(/gpu lock -> fs_reclaim -> mmu_notifier_invalidate_range_start/);
    expect(Object.keys(l1[0]!.sites).sort()).toEqual(["acquire", "earlierFirst", "earlierSecond", "held"]);
    expect(l1[0]!.sites.acquire!.stack.join("\n")).toMatch(/coherency\.test\.ts/);
  });

  it("[L1] the same driver allocating without its lock held: no report", async () => {
    const { m, p, a, remap } = await story();
    const dev = new UserptrDevice(p, { model: "pinned-no-end", name: "gpu" });
    dev.register(a, N * PAGE);
    remap();
    expect(reports(m, "lockdep")).toEqual([]);
  });

  it("[L1] a fence waited for in the callback whose signalling path allocates (dma_fence_wait from a notifier)", async () => {
    const { m, p, a, remap } = await story();
    const { DmaFence } = await import("../../src/dma-buf/dma-fence.js");
    const k = p.kernel;
    const fence = new DmaFence(k, { completesAt: k.clock.now + 10_000, onSignal: () => k.checkers.lockdep!.mightAlloc("gpu completion work: kmalloc") });
    const dev = new UserptrDevice(p, { model: "shadow-pte", name: "amdgpu-like", fenceInCallback: fence });
    dev.dma(a, PAGE);
    remap(); // waits for the fence: it signals, its path allocates under dma_fence_map
    const l1 = reports(m, "lockdep").filter((r) => r.rule === "L1");
    expect(l1.length).toBe(1);
    expect(l1[0]!.message).toMatch(/fs_reclaim/);
    expect(l1[0]!.message).toMatch(/dma_fence_map/);
  });

  it("[L1] a fence waited for in the callback whose signalling path does not allocate: no report", async () => {
    const { m, p, a, remap } = await story();
    const { DmaFence } = await import("../../src/dma-buf/dma-fence.js");
    const k = p.kernel;
    const fence = new DmaFence(k, { completesAt: k.clock.now + 10_000, onSignal: () => {} });
    const dev = new UserptrDevice(p, { model: "shadow-pte", name: "amdgpu-like", fenceInCallback: fence });
    dev.dma(a, PAGE);
    remap();
    expect(fence.isSignaled()).toBe(true); // the callback waited for the GPU's work
    expect(k.clock.now).toBeGreaterThanOrEqual(fence.completesAt!);
    expect(reports(m, "lockdep")).toEqual([]);
  });

  it("[L1] the driver mutex held across the device fault's mmap_lock, and taken in the notifier under munmap's mmap_lock", async () => {
    for (const wrong of [true, false]) {
      const { m, p, a, remap } = await story();
      const dev = new UserptrDevice(p, { model: "shadow-pte", name: "gpu", faultUnderLock: wrong });
      dev.dma(a, PAGE);
      remap();
      const l1 = reports(m, "lockdep").filter((r) => r.rule === "L1");
      if (!wrong) {
        expect(l1).toEqual([]);
        continue;
      }
      expect(l1.length).toBe(1);
      // munmap holds mmap_lock, and the callback takes the lock the fault path holds around it.
      expect(l1[0]!.message).toMatch(/taking gpu lock while holding mmap_lock, but gpu lock -> mmap_lock was seen before/);
    }
  });

  it("[L2] mutex_lock in a non-blockable invalidation (the OOM reaper); with trylock and -EAGAIN, nothing", async () => {
    for (const wrong of [true, false]) {
      const { m, p, a } = await story();
      const { oomReapTask } = await import("../../src/mm/oom.js");
      const dev = new UserptrDevice(p, { model: "shadow-pte", name: "gpu", lockInNonblock: wrong });
      dev.dma(a, PAGE);
      oomReapTask(p);
      const l2 = reports(m, "lockdep").filter((r) => r.rule === "L2");
      if (wrong) {
        expect(l2.length).toBe(1);
        expect(l2[0]!.message).toMatch(/mutex_lock\(gpu lock\) may sleep inside a non-blocking section/);
      } else {
        expect(l2).toEqual([]);
      }
    }
  });
});
