/**
 * Interval notifiers and their sequence protocol (mm/mmu_notifier.c): invalidate_seq starts
 * at 2, is odd while an invalidation that hit a subscription runs and even after; a
 * subscription's read_begin returns its own seq, read_retry says whether an invalidation
 * hit it since; inserts and removals during an invalidation are deferred to its end.
 */
import { describe, expect, it } from "vitest";
import {
  DmaError, type MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalNotifierRemove, mmuIntervalReadBegin,
  mmuIntervalReadRetry, mmuIntervalSetSeq, type MmuNotifierRange, type Process,
} from "../../src/index.js";
import { oomReapTask } from "../../src/mm/oom.js";
import { subscriptionsOf } from "../../src/notifier/subscriptions.js";
import { caught, leaf, mmap, mmMachine, PAGE } from "../mm/mm-helpers.js";

interface Call {
  sub: MmuIntervalNotifier;
  event: string;
  start: number;
  end: number;
  curSeq: number;
}

/** An interval notifier that records its calls and keeps the protocol (set_seq, always). */
function watch(p: Process, start: number, length: number, calls: Call[], answer: (r: MmuNotifierRange) => boolean = () => true) {
  return mmuIntervalNotifierInsert(p.mm, start, length, {
    invalidate(sub, r, curSeq) {
      calls.push({ sub, event: r.event, start: Number(r.start), end: Number(r.end), curSeq });
      if (!answer(r)) return false;
      mmuIntervalSetSeq(sub, curSeq);
      return true;
    },
  });
}

async function proc(pages = 16): Promise<{ p: Process; a: number }> {
  const m = await mmMachine({ mm: { thp: "never" } });
  const p = m.spawn();
  const a = mmap(p, { length: pages * PAGE });
  p.touch(a, pages * PAGE, "w");
  return { p, a };
}

describe("the sequence protocol", () => {
  it("read_begin, an invalidation, read_retry: the worked example (2 -> 3 -> 4)", async () => {
    const { p, a } = await proc();
    const calls: Call[] = [];
    const sub = watch(p, a, 4 * PAGE, calls);
    const s = subscriptionsOf(p.mm)!;
    expect(s.invalidateSeq).toBe(2);
    const seq = mmuIntervalReadBegin(sub);
    expect(seq).toBe(1); // the subscription's own seq: odd and not the mm's
    expect(mmuIntervalReadRetry(sub, seq)).toBe(false);
    p.madvise(a + PAGE, PAGE, "dontneed");
    expect(calls.map((c) => [c.event, c.start - a, c.end - a, c.curSeq])).toEqual([["clear", PAGE, 2 * PAGE, 3]]);
    expect(s.invalidateSeq).toBe(4);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(true); // what was read may be stale: read again
    const seq2 = mmuIntervalReadBegin(sub);
    expect(seq2).toBe(3);
    expect(mmuIntervalReadRetry(sub, seq2)).toBe(false);
  });

  it("only the subscriptions a range overlaps are called; a miss leaves the seq even", async () => {
    const { p, a } = await proc();
    const calls: Call[] = [];
    const lo = watch(p, a, 4 * PAGE, calls);
    const hi = watch(p, a + 8 * PAGE, 4 * PAGE, calls);
    const s = subscriptionsOf(p.mm)!;
    p.madvise(a + 5 * PAGE, 2 * PAGE, "dontneed"); // between the two
    expect(calls).toEqual([]);
    expect(s.invalidateSeq).toBe(2);
    p.madvise(a + 3 * PAGE, 6 * PAGE, "dontneed"); // the last page of one, the first of the other
    expect(calls.map((c) => c.sub).sort((x, y) => x.first - y.first)).toEqual([lo, hi]);
    expect(new Set(calls.map((c) => c.curSeq))).toEqual(new Set([3])); // one odd epoch
    expect(s.invalidateSeq).toBe(4);
  });

  it("a byte range is watched by the pages it touches", async () => {
    const { p, a } = await proc();
    const calls: Call[] = [];
    const sub = watch(p, a + 100, PAGE, calls); // bytes 100 .. 4195: pages 0 and 1
    expect([sub.first, sub.last]).toEqual([a / PAGE, a / PAGE + 1]);
    p.madvise(a + PAGE, PAGE, "dontneed");
    expect(calls.length).toBe(1);
  });

  it("bad ranges: EOVERFLOW for an empty or wrapping one, EINVAL for an mm that has exited", async () => {
    const { p, a } = await proc();
    expect(caught(() => watch(p, a, 0, [])).code).toBe("EOVERFLOW");
    expect(caught(() => mmuIntervalNotifierInsert(p.mm, 2n ** 64n - 4096n, 8192, { invalidate: () => true })).code).toBe("EOVERFLOW");
    p.exit();
    expect(caught(() => watch(p, a, PAGE, [])).code).toBe("EINVAL");
  });
});

describe("insert and remove while an invalidation runs", () => {
  it("an insert from a callback is deferred to the end; its first read_begin would wait, after the end it returns", async () => {
    const { p, a } = await proc();
    const calls: Call[] = [];
    let late: MmuIntervalNotifier | null = null;
    let inside: unknown = null;
    watch(p, a, 4 * PAGE, calls, () => {
      if (!late) {
        late = watch(p, a, 4 * PAGE, calls);
        inside = caught(() => mmuIntervalReadBegin(late!));
      }
      return true;
    });
    p.madvise(a, PAGE, "dontneed");
    expect(calls.length).toBe(1); // the late one was not in the tree for this invalidation
    expect((inside as DmaError).code).toBe("EDEADLK");
    expect(late!.inTree).toBe(true);
    const seq = mmuIntervalReadBegin(late!);
    expect(seq).toBe(3); // the odd seq of the epoch it was inserted in
    expect(mmuIntervalReadRetry(late!, seq)).toBe(false);
    p.madvise(a, PAGE, "dontneed");
    expect(calls.length).toBe(3);
    expect(mmuIntervalReadRetry(late!, seq)).toBe(true);
  });

  it("read_begin or remove from inside the subscription's own callback would wait forever: EDEADLK, and the mm stays usable", async () => {
    const { p, a } = await proc();
    const s0: { sub: MmuIntervalNotifier | null } = { sub: null };
    s0.sub = mmuIntervalNotifierInsert(p.mm, a, 4 * PAGE, {
      invalidate(sub, _r, cur) {
        mmuIntervalSetSeq(sub, cur);
        mmuIntervalReadBegin(sub);
        return true;
      },
    });
    expect(caught(() => p.madvise(a, PAGE, "dontneed")).code).toBe("EDEADLK");
    expect(leaf(p, a).present).toBe(true); // the change did not happen
    const s = subscriptionsOf(p.mm)!;
    expect([s.invalidateSeq % 2, s.activeInvalidateRanges]).toEqual([0, 0]);
    mmuIntervalNotifierRemove(s0.sub);
    p.madvise(a, PAGE, "dontneed");
    expect(leaf(p, a).present).toBe(false);
  });

  it("a removed subscription is never called again; removing twice is harmless", async () => {
    const { p, a } = await proc();
    const calls: Call[] = [];
    const sub = watch(p, a, 4 * PAGE, calls);
    mmuIntervalNotifierRemove(sub);
    mmuIntervalNotifierRemove(sub);
    p.munmap(a, 4 * PAGE);
    expect(calls).toEqual([]);
  });
});

describe("non-blockable invalidations and teardown", () => {
  it("the OOM reaper: a subscription that cannot take its lock without sleeping returns false: -EAGAIN, seq even again", async () => {
    const { p, a } = await proc();
    const calls: Call[] = [];
    let busy = true;
    watch(p, a, 4 * PAGE, calls, (r) => r.blockable || !busy);
    const r = oomReapTask(p);
    expect(r.retry).toBe(true);
    expect(calls.map((c) => c.event)).toEqual(["unmap"]);
    const s = subscriptionsOf(p.mm)!;
    expect([s.invalidateSeq, s.activeInvalidateRanges]).toEqual([4, 0]);
    expect(leaf(p, a).present).toBe(true);
    busy = false;
    expect(oomReapTask(p).reaped).toBe(true);
    expect(leaf(p, a).present).toBe(false);
  });

  it("exit: RELEASE over everything, then the UNMAP of exit_mmap (interval notifiers stay in the tree)", async () => {
    const { p, a } = await proc();
    const calls: Call[] = [];
    watch(p, a, 4 * PAGE, calls);
    p.exit();
    expect(calls.map((c) => c.event)).toEqual(["release", "unmap"]);
    expect(calls[0]!.start).toBe(0);
  });

  it("10,000 subscriptions: an invalidation calls only the ones it overlaps", async () => {
    const { p, a } = await proc(16);
    const calls: Call[] = [];
    const base = a + 64 * PAGE; // beyond the mapping: watching need not be over mapped memory
    for (let i = 0; i < 10_000; i++) watch(p, base + i * 2 * PAGE, PAGE, calls);
    const hit = watch(p, a + 2 * PAGE, PAGE, calls);
    p.madvise(a, 4 * PAGE, "dontneed");
    expect(calls.map((c) => c.sub)).toEqual([hit]);
    expect(subscriptionsOf(p.mm)!.inTree).toBe(10_001);
  });
});
