/**
 * Which invalidation each mm path sends (KERNEL-SPEC 4; mm/mmap.c unmap_vmas, mm/mprotect.c
 * change_protection, mm/madvise.c zap_page_range_single, mm/memory.c copy_page_range and
 * wp_page_copy, mm/rmap.c try_to_unmap_one / try_to_migrate_one / page_mkclean_one,
 * mm/truncate.c, mm/mmap.c exit_mmap, mm/oom_kill.c __oom_reap_task_mm), and that start and
 * end bracket the change: at start the old PTE is still there, at end it is gone.
 */
import { describe, expect, it } from "vitest";
import {
  type Machine, migratePages, mmuNotifierRegister, type MmuNotifierRange, mmuNotifierUnregister, type Process, shrink,
} from "../../src/index.js";
import { oomReapTask } from "../../src/mm/oom.js";
import { leaf, mmap, mmMachine, PAGE, pfnAt } from "../mm/mm-helpers.js";

interface Seen {
  what: "start" | "end";
  event: string;
  start: number;
  end: number;
  blockable: boolean;
  /** Whether the first page of the range was present when the callback ran. */
  present: boolean;
}

/** A notifier that records every start and end, with the first page's PTE at that moment. */
function recorder(p: Process): Seen[] {
  const seen: Seen[] = [];
  const note = (what: Seen["what"], r: MmuNotifierRange) =>
    seen.push({ what, event: r.event, start: Number(r.start), end: Number(r.end), blockable: r.blockable, present: leaf(p, Number(r.start)).present });
  mmuNotifierRegister(p.mm, {
    invalidateRangeStart: (_s, r) => {
      note("start", r);
      return 0;
    },
    invalidateRangeEnd: (_s, r) => note("end", r),
  });
  return seen;
}

const events = (seen: Seen[]) => seen.map((s) => `${s.what}:${s.event}`);

async function setup(): Promise<{ m: Machine; p: Process; a: number; seen: Seen[] }> {
  const m = await mmMachine({ mm: { thp: "never" } });
  const p = m.spawn();
  const a = mmap(p, { length: 8 * PAGE });
  p.touch(a, 8 * PAGE, "w");
  return { m, p, a, seen: recorder(p) };
}

describe("each path that changes PTEs sends its event, start before the change and end after", () => {
  it("munmap: one UNMAP over the range, blockable", async () => {
    const { p, a, seen } = await setup();
    p.munmap(a + 2 * PAGE, 3 * PAGE);
    expect(seen).toEqual([
      { what: "start", event: "unmap", start: a + 2 * PAGE, end: a + 5 * PAGE, blockable: true, present: true },
      { what: "end", event: "unmap", start: a + 2 * PAGE, end: a + 5 * PAGE, blockable: true, present: false },
    ]);
  });

  it("mprotect: PROTECTION_VMA over the VMA it changes; none when nothing changes", async () => {
    const { p, a, seen } = await setup();
    p.mprotect(a, 8 * PAGE, "rw"); // already rw: mprotect_fixup does nothing
    expect(seen).toEqual([]);
    p.mprotect(a, 4 * PAGE, "r");
    expect(events(seen)).toEqual(["start:protection_vma", "end:protection_vma"]);
    expect([seen[0]!.start, seen[0]!.end]).toEqual([a, a + 4 * PAGE]);
    expect(leaf(p, a).write).toBe(false);
  });

  it("madvise(DONTNEED): CLEAR over the range", async () => {
    const { p, a, seen } = await setup();
    p.madvise(a, 2 * PAGE, "dontneed");
    expect(seen.map((s) => [s.what, s.event, s.start, s.end, s.present])).toEqual([
      ["start", "clear", a, a + 2 * PAGE, true],
      ["end", "clear", a, a + 2 * PAGE, false],
    ]);
  });

  it("fork: PROTECTION_PAGE over a private mapping in the parent; the child's COW write: CLEAR of one page", async () => {
    const { p, a, seen } = await setup();
    const child = p.fork();
    expect(events(seen)).toEqual(["start:protection_page", "end:protection_page"]);
    expect([seen[0]!.start, seen[0]!.end]).toEqual([a, a + 8 * PAGE]);
    seen.length = 0;
    p.write(a + PAGE, new Uint8Array([1])); // the parent breaks COW on its own page
    expect(seen.map((s) => [s.what, s.event, s.start, s.end])).toEqual([
      ["start", "clear", a + PAGE, a + 2 * PAGE],
      ["end", "clear", a + PAGE, a + 2 * PAGE],
    ]);
    seen.length = 0;
    child.write(a + PAGE, new Uint8Array([2])); // the child's mm has no subscriber
    expect(seen).toEqual([]);
  });

  it("reclaim (try_to_unmap) and migration (try_to_migrate): CLEAR of each page in each mapping", async () => {
    const { m, p, a, seen } = await setup();
    const pfn = pfnAt(p, a + 3 * PAGE);
    migratePages(m.kernel, [pfn], { zone: "NORMAL" });
    expect(seen.map((s) => [s.what, s.event, s.start, s.end])).toEqual([
      ["start", "clear", a + 3 * PAGE, a + 4 * PAGE],
      ["end", "clear", a + 3 * PAGE, a + 4 * PAGE],
    ]);
    seen.length = 0;
    const r = shrink(m.kernel, 8, { file: false });
    expect(r.swapped).toBeGreaterThan(0);
    expect(seen.filter((s) => s.what === "start").length).toBe(r.swapped);
    expect(seen.every((s) => s.event === "clear" && s.end - s.start === PAGE && s.blockable)).toBe(true);
  });

  it("writeback's page_mkclean: PROTECTION_PAGE; truncate: CLEAR", async () => {
    const m = await mmMachine();
    const p = m.spawn();
    m.fs.create("/f", { size: 4 * PAGE });
    const a = mmap(p, { length: 4 * PAGE, file: "/f", shared: true });
    p.touch(a, 4 * PAGE, "w");
    const seen = recorder(p);
    m.fs.writeback("/f");
    expect(seen.filter((s) => s.what === "start").map((s) => [s.event, s.start - a])).toEqual(
      [0, 1, 2, 3].map((i) => ["protection_page", i * PAGE]),
    );
    seen.length = 0;
    m.fs.truncate("/f", PAGE);
    expect(events(seen)).toEqual(["start:clear", "end:clear"]);
    expect([seen[0]!.start, seen[0]!.end]).toEqual([a + PAGE, a + 4 * PAGE]);
  });

  it("exit: release first (the notifier leaves), so it hears no UNMAP; an unregistered notifier hears nothing", async () => {
    const { p, seen } = await setup();
    const released: number[] = [];
    mmuNotifierRegister(p.mm, { release: (_s, mm) => released.push(mm.pid) });
    const gone = mmuNotifierRegister(p.mm, { invalidateRangeStart: () => { throw new Error("called after unregister"); } });
    mmuNotifierUnregister(gone);
    p.exit();
    expect(released).toEqual([p.pid]);
    expect(seen).toEqual([]);
  });
});

describe("the OOM reaper's non-blockable invalidations", () => {
  it("a notifier that would sleep answers -EAGAIN: the VMA is skipped, every end op runs at once, the reaper retries", async () => {
    const m = await mmMachine({ mm: { thp: "never" } });
    const p = m.spawn();
    const a = mmap(p, { length: 4 * PAGE });
    p.touch(a, 4 * PAGE, "w");
    const log: string[] = [];
    // A registration cache: never blocks, has no end (it can fail).
    let refuse = true;
    mmuNotifierRegister(p.mm, { invalidateRangeStart: (_s, r) => (log.push(`cache:${r.blockable}`), refuse ? -11 : 0) });
    // A mirror with an end op, registered later, so it runs first.
    mmuNotifierRegister(p.mm, {
      invalidateRangeStart: () => (log.push("mirror:start"), 0),
      invalidateRangeEnd: () => log.push("mirror:end"),
    });
    const r = oomReapTask(p);
    expect(r.retry).toBe(true);
    expect(r.refused.length).toBe(1);
    expect(log).toEqual(["mirror:start", "cache:false", "mirror:end"]);
    expect(leaf(p, a).present).toBe(true); // nothing zapped
    expect(m.kernel.notifierWarnings).toEqual([expect.stringMatching(/failed with -11 in non-blockable context/)]);
    refuse = false;
    log.length = 0;
    const r2 = oomReapTask(p);
    expect(r2.reaped).toBe(true);
    expect(log).toEqual(["mirror:start", "cache:false", "mirror:end"]);
    expect(leaf(p, a).present).toBe(false);
  });

  it("a blockable start that fails is a WARN, and the change goes ahead", async () => {
    const m = await mmMachine();
    const p = m.spawn();
    const a = mmap(p, { length: 2 * PAGE });
    p.touch(a, 2 * PAGE, "w");
    mmuNotifierRegister(p.mm, { invalidateRangeStart: () => -11 });
    p.munmap(a, 2 * PAGE);
    expect(m.kernel.notifierWarnings.some((w) => /blockable start failed/.test(w))).toBe(true);
    expect(leaf(p, a).present).toBe(false);
  });
});

describe("registration", () => {
  it("refuses invalidateSecondaryTlbs with start/end, and an mm that has exited (EINVAL)", async () => {
    const m = await mmMachine();
    const p = m.spawn();
    expect(() => mmuNotifierRegister(p.mm, { invalidateSecondaryTlbs: () => {}, invalidateRangeStart: () => 0 })).toThrow(/EINVAL/);
    p.exit();
    expect(() => mmuNotifierRegister(p.mm, {})).toThrow(/EINVAL.*exited/);
  });
});

describe("secondary MMUs", () => {
  it("invalidateSecondaryTlbs runs with each TLB flush of the mm (an IOMMU sharing the page table)", async () => {
    const { p, a } = await setup();
    const flushed: [number, number][] = [];
    mmuNotifierRegister(p.mm, { invalidateSecondaryTlbs: (_s, _mm, s, e) => void flushed.push([Number(s), Number(e)]) });
    p.munmap(a, 2 * PAGE);
    expect(flushed).toContainEqual([a, a + 2 * PAGE]);
  });

  it("clearFlushYoung: a page the device used counts as referenced, so reclaim keeps it for another round", async () => {
    for (const deviceUsed of [false, true]) {
      const m = await mmMachine({ mm: { thp: "never" } });
      const p = m.spawn();
      const a = mmap(p, { length: PAGE });
      p.touch(a, PAGE, "w");
      const pfn = pfnAt(p, a);
      const asked: number[] = [];
      mmuNotifierRegister(p.mm, { clearFlushYoung: (_s, _mm, s) => (asked.push(Number(s)), deviceUsed) });
      const { folioReferenced } = await import("../../src/mm/vmscan.js");
      const { rmapWalk } = await import("../../src/mm/rmap.js");
      folioReferenced(m.kernel, pfn, rmapWalk(m.kernel, pfn)); // the first look clears the CPU's A bit
      expect(folioReferenced(m.kernel, pfn, rmapWalk(m.kernel, pfn))).toBe(deviceUsed);
      expect(asked).toContain(a);
    }
  });
});
