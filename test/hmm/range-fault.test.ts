/**
 * hmm_range_fault and the sequence protocol around it (mm/hmm.c, lib/test_hmm.c
 * dmirror_range_fault): the flags it reports, EBUSY when an invalidation hit the range, the
 * driver's retry when one slips in before it takes its lock, and EBUSY after the timeout
 * when they never stop.
 */
import { describe, expect, it } from "vitest";
import { Dmirror, HMM_DMIRROR_READ, type HmmDmirrorCmd } from "../../src/drivers/dmirror.js";
import {
  HMM_PFN_ERROR, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_VALID, HMM_PFN_WRITE, type HmmRange, hmmPfnToMapOrder, hmmPfnToPfn,
  hmmRangeFault,
} from "../../src/hmm/hmm.js";
import { mmuIntervalNotifierInsert, mmuIntervalReadBegin, mmuIntervalSetSeq, type Process } from "../../src/index.js";
import { caught, counter, mmap, mmMachine, PAGE, pfnAt } from "../mm/mm-helpers.js";

async function proc(): Promise<Process> {
  const m = await mmMachine({ mm: { thp: "never" } });
  return m.spawn();
}

function rangeOver(p: Process, a: number, n: number, flags: bigint): HmmRange {
  const notifier = mmuIntervalNotifierInsert(p.mm, a, n * PAGE, { invalidate: (s, _r, cur) => (mmuIntervalSetSeq(s, cur), true) });
  return {
    notifier, notifierSeq: mmuIntervalReadBegin(notifier), start: a, end: a + n * PAGE, hmmPfns: new BigUint64Array(n),
    defaultFlags: flags, pfnFlagsMask: 0n, devPrivateOwner: null,
  };
}

const locked = <T>(p: Process, fn: () => T): T => p.mm.mmapLock.with("read", "test", fn);

/** read_begin + hmmRangeFault until it does not come back EBUSY; how many tries it took. */
function faultRetry(p: Process, r: HmmRange): number {
  for (let tries = 1; ; tries++) {
    r.notifierSeq = mmuIntervalReadBegin(r.notifier);
    try {
      locked(p, () => hmmRangeFault(r));
      return tries;
    } catch (e) {
      if ((e as { code?: string }).code !== "EBUSY") throw e;
    }
  }
}

describe("hmmRangeFault", () => {
  it("reports each page: pfn with VALID and WRITE, the zero page read-only, holes 0 without a fault request", async () => {
    const p = await proc();
    const a = mmap(p, { length: 4 * PAGE });
    p.touch(a, PAGE, "w");
    p.read(a + PAGE, 1); // the zero page
    const r = rangeOver(p, a, 4, 0n);
    locked(p, () => hmmRangeFault(r));
    const [w, z, none] = [r.hmmPfns[0]!, r.hmmPfns[1]!, r.hmmPfns[2]!];
    expect(w & (HMM_PFN_VALID | HMM_PFN_WRITE)).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    expect(hmmPfnToPfn(w)).toBe(pfnAt(p, a));
    expect(hmmPfnToMapOrder(w)).toBe(0);
    expect(z & HMM_PFN_WRITE).toBe(0n);
    expect(hmmPfnToPfn(z)).toBe(p.kernel.zeroPfn);
    expect(none).toBe(0n);
  });

  it("REQ_FAULT faults in what is missing, REQ_WRITE breaks the zero page; a hole with a request is EFAULT, without one ERROR", async () => {
    const p = await proc();
    const a = mmap(p, { length: 4 * PAGE });
    p.read(a, 1);
    const r = rangeOver(p, a, 4, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    // Copying the zero page is a COW (an invalidation of the range): the first try is EBUSY.
    expect(faultRetry(p, r)).toBe(2);
    expect([...r.hmmPfns].every((e) => (e & (HMM_PFN_VALID | HMM_PFN_WRITE)) === (HMM_PFN_VALID | HMM_PFN_WRITE))).toBe(true);
    expect(hmmPfnToPfn(r.hmmPfns[0]!)).not.toBe(p.kernel.zeroPfn);
    // Past the mapping: no VMA.
    const hole = rangeOver(p, a + 4 * PAGE, 2, HMM_PFN_REQ_FAULT);
    expect(caught(() => locked(p, () => hmmRangeFault(hole))).code).toBe("EFAULT");
    const look = rangeOver(p, a + 4 * PAGE, 2, 0n);
    locked(p, () => hmmRangeFault(look));
    expect([...look.hmmPfns]).toEqual([HMM_PFN_ERROR, HMM_PFN_ERROR]);
  });

  it("per-page requests: pfnFlagsMask lets each entry ask for itself", async () => {
    const p = await proc();
    const a = mmap(p, { length: 4 * PAGE });
    const r = rangeOver(p, a, 4, 0n);
    r.pfnFlagsMask = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
    r.hmmPfns.set([0n, HMM_PFN_REQ_FAULT, 0n, 0n]);
    locked(p, () => hmmRangeFault(r));
    expect(r.hmmPfns[0]).toBe(0n);
    expect(r.hmmPfns[1]! & HMM_PFN_VALID).toBe(HMM_PFN_VALID);
  });

  it("EBUSY once an invalidation hit the range since read_begin; the caller starts again", async () => {
    const p = await proc();
    const a = mmap(p, { length: 4 * PAGE });
    p.touch(a, 4 * PAGE, "w");
    const r = rangeOver(p, a, 4, 0n);
    p.madvise(a, PAGE, "dontneed");
    expect(caught(() => locked(p, () => hmmRangeFault(r))).code).toBe("EBUSY");
    r.notifierSeq = mmuIntervalReadBegin(r.notifier);
    locked(p, () => hmmRangeFault(r));
    expect(r.hmmPfns[0]).toBe(0n);
  });

  it("a write fault that breaks COW invalidates the range itself: EBUSY, and the next try sees the new page writable", async () => {
    const p = await proc();
    const a = mmap(p, { length: PAGE });
    p.touch(a, PAGE, "w");
    p.fork();
    const old = pfnAt(p, a);
    const r = rangeOver(p, a, 1, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    expect(caught(() => locked(p, () => hmmRangeFault(r))).code).toBe("EBUSY");
    r.notifierSeq = mmuIntervalReadBegin(r.notifier);
    locked(p, () => hmmRangeFault(r));
    expect(r.hmmPfns[0]! & HMM_PFN_WRITE).toBe(HMM_PFN_WRITE);
    expect(hmmPfnToPfn(r.hmmPfns[0]!)).not.toBe(old);
  });

  it("without the mmap lock: EINVAL (mmap_assert_locked)", async () => {
    const p = await proc();
    const a = mmap(p, { length: PAGE });
    expect(caught(() => hmmRangeFault(rangeOver(p, a, 1, 0n))).code).toBe("EINVAL");
  });
});

describe("the driver's retry loop (dmirror_range_fault)", () => {
  const cmd = (a: number, n: number): HmmDmirrorCmd => ({ addr: a, ptr: new Uint8Array(n * PAGE), npages: n, cpages: 0, faults: 0 });

  it("an invalidation between the fault and the driver lock: read_retry says so, the driver goes round once more and commits", async () => {
    const p = await proc();
    const a = mmap(p, { length: 8 * PAGE });
    p.write(a, new Uint8Array(8 * PAGE).fill(7));
    let races = 1;
    const fd = new Dmirror(p, { betweenFaultAndLock: () => races-- > 0 && p.madvise(a + 3 * PAGE, PAGE, "dontneed") });
    const c = cmd(a, 8);
    fd.ioctl(HMM_DMIRROR_READ, c);
    expect(counter(p.kernel.machine!, "dmirror.retry")).toBe(1);
    expect(c.cpages).toBe(8);
    // Page 3 was dropped by the race and faulted in again (zero-filled): the device read that.
    expect(c.ptr.subarray(3 * PAGE, 4 * PAGE).every((b) => b === 0)).toBe(true);
    expect(c.ptr.subarray(0, 3 * PAGE).every((b) => b === 7)).toBe(true);
  });

  it("invalidations that never stop: EBUSY after the timeout, the command left as it was", async () => {
    const p = await proc();
    const a = mmap(p, { length: 8 * PAGE });
    p.touch(a, 8 * PAGE, "w");
    const fd = new Dmirror(p, { timeoutMs: 0.05, betweenFaultAndLock: () => p.madvise(a, PAGE, "dontneed") });
    const c = cmd(a, 8);
    expect(caught(() => fd.ioctl(HMM_DMIRROR_READ, c)).code).toBe("EBUSY");
    expect([c.cpages, c.faults]).toEqual([0, 0]);
    expect(counter(p.kernel.machine!, "dmirror.retry")).toBeGreaterThan(3);
  });
});
