/**
 * The OOM killer and reaper (mm/oom_kill.c): the reaper frees a victim's private memory
 * under mmap_lock held for read only (a trylock: a writer makes it retry, and after
 * MAX_OOM_REAP_RETRIES it gives up), marks every invalidation non-blockable and skips a VMA
 * whose notifier would have to sleep (KERNEL-SPEC 4.3); the killer picks the process with
 * the highest oom_badness and waits for a victim still releasing memory.
 */
import { describe, expect, it } from "vitest";
import * as E from "../../src/abi/errno.js";
import { createMachine, type Machine, type Process } from "../../src/index.js";
import { isOomVictim, MAX_OOM_REAP_RETRIES, mmOomSkip, oomBadness, oomKill, oomReapTask } from "../../src/mm/oom.js";
import type { MmuNotifierRange } from "../../src/notifier/range.js";
import { swapInfo } from "../../src/mm/swap.js";
import { shrink } from "../../src/mm/vmscan.js";

const PAGE = 4096;

function machine(): Promise<Machine> {
  return createMachine({
    memory: { normal: "64MiB", movable: "32MiB", cma: 0 },
    cpus: 2,
    swap: "4MiB",
    mm: { thp: "never" },
  });
}

function fill(p: Process, a: number, pages: number, byte: number): void {
  for (let i = 0; i < pages; i++) p.write(a + i * PAGE, new Uint8Array(PAGE).fill(byte));
}

const present = (p: Process, va: number): boolean => p.mm.pgd.ptepGet(va).info.present;
const counter = (m: Machine, name: string): number => m.trace.counters.get(name) ?? 0;

describe("oomReapTask", () => {
  it("frees the private memory of a process whose mmap_lock is not write-held, marking each invalidation non-blockable", async () => {
    const m = await machine();
    const p = m.spawn(0);
    const anon = Number(p.mmap({ length: 32 * PAGE }));
    fill(p, anon, 32, 0xaa);
    m.fs.create("/f", { size: 2 * PAGE });
    const priv = Number(p.mmap({ length: 2 * PAGE, file: "/f" }));
    p.read(priv, 2 * PAGE);
    const shm = Number(p.mmap({ length: 2 * PAGE, shared: true }));
    fill(p, shm, 2, 0xbb);
    const shared = Number(p.mmap({ length: 2 * PAGE, shared: true, file: "/f" }));
    p.read(shared, PAGE);
    const free0 = m.phys.nrFreePages();
    // A reader (a fault in progress) does not stop the reaper: the trylock is for read.
    const reader = p.mm.mmapLock.lock("read", "a page fault");
    const r = oomReapTask(p);
    p.mm.mmapLock.unlock(reader);
    expect(r).toMatchObject({ reaped: true, retry: false, gaveUp: false, attempts: 1 });
    expect(r.pages).toBe(32 + 2); // the anonymous pages and the private file mapping's
    expect(r.freed).toBe(32); // the file pages stay in the page cache
    expect(m.phys.nrFreePages()).toBeGreaterThanOrEqual(free0 + 32);
    expect(p.mm.rss).toMatchObject({ anon: 0, file: 1, shmem: 2 });
    for (let i = 0; i < 32; i++) expect(present(p, anon + i * PAGE)).toBe(false);
    // Shared mappings (shmem, a shared file) are left to exit.
    expect(present(p, shm) && present(p, shared)).toBe(true);
    // The VMAs stay: the reaper unmaps pages, exit_mmap removes the VMAs.
    expect(p.maps()).toHaveLength(4);
    expect(r.ranges.map((x) => [x.start, x.end, x.blockable])).toEqual([
      [anon, anon + 32 * PAGE, false],
      [priv, priv + 2 * PAGE, false],
    ].sort((x, y) => Number(x[0]) - Number(y[0])));
    const ev = m.trace.events().filter((e) => e.name === "mm.oom_reap").at(-1)!;
    expect(ev.args).toEqual({ pid: p.pid, pages: 34, nonblock: true });
    expect(mmOomSkip(p.mm)).toBe(true);
    // A reaped mm is not reaped again.
    expect(oomReapTask(p)).toMatchObject({ reaped: false, retry: false, pages: 0 });
  });

  it("retries while the mmap_lock is held for write, changing nothing, and reaps once it is released", async () => {
    const m = await machine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 8 * PAGE }));
    fill(p, a, 8, 1);
    const free0 = m.phys.nrFreePages();
    const writer = p.mm.mmapLock.lock("write", "mmap");
    const r = oomReapTask(p);
    expect(r).toMatchObject({ reaped: false, retry: true, gaveUp: false, pages: 0, attempts: 1 });
    expect(r.ranges).toEqual([]);
    expect(p.mm.rss.anon).toBe(8);
    expect(m.phys.nrFreePages()).toBe(free0);
    expect(counter(m, "mm.oom_reap_lock_busy")).toBe(1);
    p.mm.mmapLock.unlock(writer);
    expect(oomReapTask(p)).toMatchObject({ reaped: true, retry: false, attempts: 2, freed: 8 });
    expect(p.mm.rss.anon).toBe(0);
  });

  it("gives up after MAX_OOM_REAP_RETRIES failed attempts and hides the mm from the OOM killer (MMF_OOM_SKIP)", async () => {
    const m = await machine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: PAGE }));
    fill(p, a, 1, 1);
    const writer = p.mm.mmapLock.lock("write", "a stuck writer");
    for (let i = 1; i < MAX_OOM_REAP_RETRIES; i++) expect(oomReapTask(p)).toMatchObject({ retry: true, gaveUp: false });
    expect(oomReapTask(p)).toMatchObject({ reaped: false, retry: false, gaveUp: true, attempts: MAX_OOM_REAP_RETRIES });
    expect(mmOomSkip(p.mm)).toBe(true);
    p.mm.mmapLock.unlock(writer);
    expect(oomReapTask(p)).toMatchObject({ reaped: false, retry: false, attempts: MAX_OOM_REAP_RETRIES });
    expect(present(p, a)).toBe(true);
  });

  it("skips a VMA whose non-blockable invalidation is refused with -EAGAIN (no range_end for it) and reports a retry", async () => {
    const m = await machine();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 2 * PAGE }));
    const b = Number(p.mmap({ length: 2 * PAGE, prot: "r" })); // a separate VMA below a
    fill(p, a, 2, 5);
    p.read(b, 2 * PAGE); // the zero page
    const starts: MmuNotifierRange[] = [];
    const ends: MmuNotifierRange[] = [];
    const r = oomReapTask(p, {
      invalidateRangeStart: (range) => {
        starts.push(range);
        return range.start === a ? -E.EAGAIN : 0;
      },
      invalidateRangeEnd: (range) => void ends.push(range),
    });
    expect(starts.every((x) => x.blockable === false)).toBe(true);
    expect(r).toMatchObject({ reaped: false, retry: true });
    expect(r.refused.map((x) => x.start)).toEqual([a]);
    expect(r.ranges.map((x) => x.start)).toEqual([b]);
    expect(ends.map((x) => x.start)).toEqual([b]);
    expect(r.warnings).toEqual([]);
    expect(present(p, a) && !present(p, b)).toBe(true);
    // A notifier that fails a non-blockable start with anything but -EAGAIN is a bug.
    const bad = oomReapTask(p, { invalidateRangeStart: (range) => (range.start === a ? -E.ENOMEM : 0) });
    expect(bad.warnings).toHaveLength(1);
    expect(counter(m, "mm.notifier_illegal_nonblock_error")).toBe(1);
    // Once the subscriber can proceed, the next attempt reaps it.
    expect(oomReapTask(p)).toMatchObject({ reaped: true, freed: 2 });
    expect(present(p, a)).toBe(false);
  });

  it("drops the victim's swap entries, and reaps VM_LOCKED VMAs unless told to behave as kernels before 2022", async () => {
    const m = await machine();
    const k = m.kernel;
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 4 * PAGE }));
    fill(p, a, 4, 9);
    expect(shrink(k, 4, { file: false }).swapped).toBe(4);
    const locked = Number(p.mmap({ length: 2 * PAGE }));
    p.mlock(locked, 2 * PAGE);
    const q = m.spawn(1);
    const c = Number(q.mmap({ length: 2 * PAGE }));
    q.mlock(c, 2 * PAGE);
    expect(swapInfo(k).used).toBe(4);
    const r = oomReapTask(p);
    expect(r).toMatchObject({ reaped: true, swap: 4, freed: 2 });
    expect(swapInfo(k).used).toBe(0);
    expect(p.mm.rss).toMatchObject({ anon: 0, swap: 0 });
    expect(oomReapTask(q, { skipLocked: true })).toMatchObject({ reaped: true, pages: 0 });
    expect(present(q, c)).toBe(true);
  });

  it("exit after reaping frees everything the process had", async () => {
    const m = await machine();
    const k = m.kernel;
    const free0 = m.phys.nrFreePages();
    const p = m.spawn(0);
    const a = Number(p.mmap({ length: 64 * PAGE }));
    fill(p, a, 64, 3);
    const b = Number(p.mmap({ length: 4 * PAGE, prot: "r" }));
    p.read(b, 4 * PAGE); // zero-page mappings
    expect(shrink(k, 8, { file: false }).swapped).toBe(8);
    expect(oomReapTask(p).reaped).toBe(true);
    p.exit();
    expect(m.phys.nrFreePages()).toBe(free0);
    expect(swapInfo(k).used).toBe(0);
    expect(k.processes.has(p.pid)).toBe(false);
  });
});

describe("oomKill", () => {
  it("kills the process with the highest oom_badness (resident + swap) and reaps it; a pending victim aborts the next selection", async () => {
    const m = await machine();
    const k = m.kernel;
    const small = m.spawn(0);
    fill(small, Number(small.mmap({ length: 10 * PAGE })), 10, 1);
    const big = m.spawn(1);
    fill(big, Number(big.mmap({ length: 30 * PAGE })), 30, 2);
    const swapper = m.spawn(0);
    fill(swapper, Number(swapper.mmap({ length: 40 * PAGE })), 40, 3);
    // Push most of every process to swap: badness still counts the swapped pages.
    shrink(k, 60, { file: false });
    expect(oomBadness(swapper)).toBe(40);
    expect(oomBadness(big)).toBe(30);
    const writer = swapper.mm.mmapLock.lock("write", "mmap");
    const first = oomKill(k);
    expect(first.victim).toBe(swapper);
    expect(first.points).toBe(40);
    expect(isOomVictim(swapper)).toBe(true);
    expect(first.reap).toMatchObject({ reaped: false, retry: true });
    // The victim is still releasing memory: nobody else is killed meanwhile.
    const second = oomKill(k);
    expect(second).toMatchObject({ victim: null, pending: swapper });
    swapper.mm.mmapLock.unlock(writer);
    expect(oomReapTask(swapper).reaped).toBe(true);
    // Reaped (MMF_OOM_SKIP): the next OOM picks the next largest.
    const third = oomKill(k);
    expect(third.victim).toBe(big);
    expect(third.reap).toMatchObject({ reaped: true });
    expect(big.mm.rss).toMatchObject({ anon: 0, swap: 0 });
    expect(counter(m, "mm.oom_kill")).toBe(2);
    for (const p of [small, big, swapper]) p.exit();
    expect(oomKill(k)).toMatchObject({ victim: null, pending: null });
  });
});
