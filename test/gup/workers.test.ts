/**
 * GUP-fast on real threads: two Workers pin (or get) a range of a process lock-free while
 * the main thread unmaps and maps it again in a loop, freeing its pages and its page table
 * each time. The kernel's guarantees, checked:
 *
 * - no frame is freed while a Worker holds a reference or pin on it (each page a Worker
 *   took is checked while held);
 * - no Worker walks a page-table page after it was freed: freed tables come back as data
 *   pages filled with entries that point at a canary frame, which a stale walk would return;
 * - every frame a Worker returned was one the range mapped;
 * - every reference is accounted for at the end: pins acquired equal pins released, and the
 *   free page count is back where it started.
 *
 * The Workers run test/fixtures/gup-worker.mjs against dist/ (built by `npm test`).
 */
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { createMachine } from "../../src/index.js";
import { PAGE, framesOf, mmap } from "./gup-helpers.js";

const FIXTURE = new URL("../fixtures/gup-worker.mjs", import.meta.url);
const HOLD = new URL("../fixtures/gup-hold-worker.mjs", import.meta.url);

interface Report {
  ok: boolean;
  calls: number;
  pages: number;
  nbad: number;
  bad: { pfn: number; why: string }[];
  seen: number[];
  error?: { message: string; stack: string };
}

function run(workerData: unknown): { worker: Worker; done: Promise<Report> } {
  const worker = new Worker(FIXTURE, { workerData });
  const done = new Promise<Report>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return { worker, done };
}

/** A page of entries that each map @pfn present, writable, user: what a stale walk would follow. */
function canaryTable(pfn: number): Uint8Array {
  const b = new BigUint64Array(512).fill((BigInt(pfn) << 12n) | 0x67n);
  return new Uint8Array(b.buffer);
}

describe("GUP-fast from two Workers while the main thread unmaps and remaps the range", () => {
  for (const mode of ["pin", "get"] as const) {
    it(`${mode}: no held frame is freed, no freed table is walked, every reference comes back`, async () => {
      const m = await createMachine({ memory: { normal: "128MiB", movable: 0, cma: 0 }, cpus: 2, threads: 4, mm: { thp: "never" } });
      const p = m.spawn();
      const canary = m.phys.allocPages(0);
      const n = 512; // one whole PTE table: munmap frees the table too
      const free0 = m.phys.nrFreePages();
      // Far from other mappings, 2 MiB aligned: the range has a PTE table (and PMD table) to itself.
      const va = 0x7e00_0000_0000;
      const map = (): number[] => {
        mmap(p, { addr: va, length: n * PAGE, fixed: true });
        p.touch(va, n * PAGE, "w");
        return framesOf(p, va, n);
      };
      const mapped = new Set<number>(map());
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const data = { shared: m.share(), mm: p.mm.share(), va, pages: n, mode, stop, canary, check: true };
      const workers = [run(data), run(data)];
      const filler = canaryTable(canary);
      for (let i = 0; i < 150; i++) {
        p.munmap(va, n * PAGE);
        // Freed frames (the range's pages and its page tables) come back as data pages that
        // hold canary entries: a walk through a freed table would find them.
        const junk = mmap(p, { length: 64 * PAGE });
        for (let j = 0; j < 64; j++) p.write(junk + j * PAGE, filler);
        for (const pfn of map()) mapped.add(pfn);
        p.munmap(junk, 64 * PAGE);
      }
      Atomics.store(stop, 0, 1);
      const reports = await Promise.all(workers.map((w) => w.done));
      for (const r of reports) {
        expect(r.error?.stack ?? "").toBe("");
        expect(r.ok).toBe(true);
        expect(r.bad).toEqual([]);
        expect(r.calls).toBeGreaterThan(0);
        for (const pfn of r.seen) expect(mapped.has(pfn)).toBe(true);
      }
      // The Workers did race with the unmaps: some of their calls came back short.
      const total = reports.reduce((s, r) => s + r.pages, 0);
      const calls = reports.reduce((s, r) => s + r.calls, 0);
      expect(total).toBeGreaterThan(0);
      expect(total).toBeLessThan(calls * n);
      // Every reference is back: the pins balance, and once the range goes, so does every frame.
      expect(m.vmstat().nr_foll_pin_acquired).toBe(m.vmstat().nr_foll_pin_released);
      if (mode === "pin") expect(m.vmstat().nr_foll_pin_acquired).toBeGreaterThanOrEqual(total); // plus undone grabs
      for (const pfn of framesOf(p, va, n)) expect(m.page(pfn).refcount).toBe(1);
      p.munmap(va, n * PAGE);
      expect(m.phys.nrFreePages()).toBe(free0);
    }, 60_000);
  }
});

describe("the table-freeing handshake (what the shootdown IPI waits for)", () => {
  it("munmap does not free a page-table page while another thread is inside a GUP-fast walk; it frees it after", async () => {
    const m = await createMachine({ memory: { normal: "64MiB", movable: 0, cma: 0 }, cpus: 2, threads: 3, mm: { thp: "never" } });
    const p = m.spawn();
    const va = 0x7e00_0000_0000;
    mmap(p, { addr: va, length: 512 * PAGE, fixed: true });
    p.touch(va, 512 * PAGE, "w");
    const table = p.mm.pgd.ptepGet(va, 2).info.pfn; // the PTE table the PMD entry points to
    expect(m.page(table).flags).toContain("pgtable");
    const inside = new Int32Array(new SharedArrayBuffer(4));
    const holdMs = 300;
    const w = new Worker(HOLD, { workerData: { shared: m.share(), inside, holdMs, table } });
    const report = new Promise<{ during: { flags: string[]; refcount: number } }>((resolve, reject) => {
      w.once("message", resolve);
      w.once("error", reject);
    });
    Atomics.wait(inside, 0, 0, 10_000);
    expect(Atomics.load(inside, 0)).toBe(1);
    const t0 = performance.now();
    p.munmap(va, 512 * PAGE); // unlinks the table, then waits for the walker before freeing it
    const waited = performance.now() - t0;
    const { during } = await report;
    expect(during.flags).toContain("pgtable"); // still a table the whole time the walker was inside
    expect(during.refcount).toBe(1);
    expect(waited).toBeGreaterThan(holdMs * 0.5);
    expect(m.page(table)).toMatchObject({ refcount: 0 }); // freed once the walker left
    expect(m.page(table).flags).not.toContain("pgtable");
  });
});
