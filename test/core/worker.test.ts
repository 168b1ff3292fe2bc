/**
 * One module instance per thread over the shared memory: a Worker attaches to a machine the
 * main thread created, sees its frames, page tables and CPU state, and its own writes and
 * mappings are seen back on the main thread. Each handle claims its own ring (thread slot),
 * a detached ring can be claimed again, and no more handles attach than `threads`.
 *
 * The Worker runs test/fixtures/attach-worker.mjs against dist/ (built by `npm test`).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import * as H from "../../src/abi/header.js";
import { attachMachine, createMachine, DmaError, type Machine } from "../../src/index.js";

const FIXTURE = new URL("../fixtures/attach-worker.mjs", import.meta.url);
const DIST = new URL("../../dist/index.js", import.meta.url);

const VA = 0x4000_0000;
const MAP_VA = 0x4000_1000;

interface Report {
  thread: number;
  page: ReturnType<Machine["page"]>;
  pte: { level: number; pte: string; pfn: number };
  bytes: number[];
  translation: { ok: true; pa: number } | { ok: false; errorCode: number };
  cr3: { pgd: number | null; pcid: number };
  newPfn: number;
}

type Message =
  | { ok: true; report: Report }
  | { ok: false; error: { name: string; code: string | null; arg: string | null; message: string } }
  | { detached: boolean; error?: unknown };

/** A Worker with its messages queued, so each can be awaited in order. */
class Attached {
  readonly worker: Worker;
  readonly #queue: Message[] = [];
  readonly #waiting: ((m: Message) => void)[] = [];
  #failure: Error | undefined;

  constructor(workerData: unknown) {
    this.worker = new Worker(FIXTURE, { workerData });
    this.worker.on("message", (m: Message) => {
      const w = this.#waiting.shift();
      if (w) w(m);
      else this.#queue.push(m);
    });
    this.worker.on("error", (e) => {
      this.#failure = e;
      for (const w of this.#waiting.splice(0)) w({ ok: false, error: { name: e.name, code: null, arg: null, message: e.message } });
    });
  }

  next(): Promise<Message> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  async report(): Promise<Report> {
    const m = await this.next();
    if (!("ok" in m)) throw new Error(`unexpected message ${JSON.stringify(m)}`);
    if (!m.ok) throw new Error(`worker failed: ${JSON.stringify(m.error)}`);
    return m.report;
  }

  async detach(): Promise<void> {
    this.worker.postMessage("detach");
    const m = await this.next();
    expect(m).toEqual({ detached: true });
    await new Promise<void>((resolve) => {
      this.worker.once("exit", () => resolve());
    });
  }
}

const workers: Attached[] = [];

afterEach(async () => {
  for (const w of workers.splice(0)) await w.worker.terminate();
});

beforeAll(() => {
  if (!existsSync(fileURLToPath(DIST))) {
    throw new Error("dist/index.js is missing: run `npm run build` (npm test does) before this test");
  }
});

interface Setup {
  m: Machine;
  pfn: number;
  root: number;
  data: number[];
}

/** A machine with frame @pfn mapped at VA, bytes written in it, and CPU 0 running on it. */
async function setup(threads = 8): Promise<Setup> {
  const m = await createMachine({ memory: { normal: "16MiB", movable: 0, cma: 0 }, cpus: 2, threads });
  const pt = m.pgdAlloc();
  const pfn = m.phys.allocPages(0);
  pt.remapPfnRange(VA, pfn, 4096, { write: true, user: true });
  const data = [1, 2, 3, 4, 5, 6, 7, 8];
  m.phys.write(pfn * 4096, Uint8Array.from(data));
  m.cpu(0).writeCr3(pt, { pcid: 1 });
  return { m, pfn, root: pt.pfn, data };
}

function spawn(s: Setup, mapVa = MAP_VA): Attached {
  const w = new Attached({
    shared: s.m.share(),
    pfn: s.pfn,
    va: VA,
    root: s.root,
    readLength: s.data.length,
    write: { offset: 100, bytes: [0xde, 0xad, 0xbe, 0xef] },
    mapVa,
  });
  workers.push(w);
  return w;
}

describe("a Worker attached to the main thread's machine", () => {
  it("reads the same frames, entries, bytes and CPU state, and translates to the same PA", async () => {
    const s = await setup();
    const before = s.m.pageTable(s.root).ptepGet(VA);
    expect(before.info.accessed).toBe(false);
    const r = await spawn(s).report();
    expect(r.page).toEqual(s.m.page(s.pfn));
    expect(r.page.refcount).toBe(1);
    expect(r.pte).toEqual({ level: 1, pte: before.pte.toString(16), pfn: s.pfn });
    // The Worker's walk set the Accessed bit in the shared entry: visible here.
    expect(s.m.pageTable(s.root).ptepGet(VA).info.accessed).toBe(true);
    expect(r.bytes).toEqual(s.data);
    expect(r.cr3).toEqual({ pgd: s.root, pcid: 1 });
    expect(r.translation).toEqual({ ok: true, pa: s.pfn * 4096 + 0x10 });
    const here = s.m.cpu(0).translate(VA + 0x10);
    expect(here.ok && here.pa).toBe(s.pfn * 4096 + 0x10);
  });

  it("writes and maps through the shared memory: the main thread sees both", async () => {
    const s = await setup();
    const r = await spawn(s).report();
    expect(Array.from(s.m.phys.read(s.pfn * 4096 + 100, 4))).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(Array.from(s.m.phys.read(s.pfn * 4096, s.data.length))).toEqual(s.data);
    // The frame the Worker allocated is allocated here too, with its bytes and mapping.
    expect(r.newPfn).not.toBe(s.pfn);
    const page = s.m.page(r.newPfn);
    expect(page.refcount).toBe(1);
    expect(page.flags).not.toContain("buddy");
    expect(Array.from(s.m.phys.read(r.newPfn * 4096, 2))).toEqual([0xca, 0xfe]);
    const pte = s.m.pageTable(s.root).ptepGet(MAP_VA);
    expect(pte.level).toBe(1);
    expect(pte.info).toMatchObject({ present: true, write: true, user: true, pfn: r.newPfn });
    const t0 = s.m.cpu(0).translate(MAP_VA + 0x20);
    expect(t0.ok && t0.pa).toBe(r.newPfn * 4096 + 0x20);
  });

  it("gives each handle its own thread slot: creator 0, then one per attachment", async () => {
    const s = await setup();
    expect(s.m.thread).toBe(0);
    const r = await spawn(s).report();
    const local = await attachMachine(s.m.share());
    const slots = [s.m.thread, r.thread, local.thread];
    expect(new Set(slots).size).toBe(3);
    for (const t of slots) expect(t >= 0 && t < s.m.config.threads).toBe(true);
    local.detach();
  });

  it("lets a detached Worker's ring be claimed again (threads: 2 holds creator + one Worker)", async () => {
    const s = await setup(2);
    const first = spawn(s);
    const r1 = await first.report();
    expect(r1.thread).toBe(1);
    await first.detach();
    const second = spawn(s, MAP_VA + 0x1000);
    const r2 = await second.report();
    expect(r2.thread).toBe(1);
    // Both Workers' mappings are in the one page table.
    const pt = s.m.pageTable(s.root);
    expect(pt.ptepGet(MAP_VA).info.pfn).toBe(r1.newPfn);
    expect(pt.ptepGet(MAP_VA + 0x1000).info.pfn).toBe(r2.newPfn);
    await second.detach();
  });
});

describe("thread slots", () => {
  it("refuses more attached handles than `threads` with EBUSY, and frees the slot on detach", async () => {
    const s = await setup(2);
    const second = await attachMachine(s.m.share());
    expect(second.thread).toBe(1);
    let err: unknown;
    try {
      await attachMachine(s.m.share());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DmaError);
    expect((err as DmaError).code).toBe("EBUSY");
    expect((err as DmaError).errno).toBe(16);
    expect((err as DmaError).arg).toBe("threads");
    second.detach();
    const third = await attachMachine(s.m.share());
    expect(third.thread).toBe(1);
    third.detach();
  });

  it("makes a detached handle refuse calls: it no longer owns a ring, so it writes nothing shared", async () => {
    const s = await setup(2);
    const u8 = new Uint8Array(s.m.memory.buffer);
    const header = (): number[] => Array.from(u8.subarray(H.HDR_ADDR, H.HDR_ADDR + H.HDR_SIZE));
    const before = header();
    const other = await attachMachine(s.m.share());
    other.detach();
    const vas = Array.from({ length: 16 }, (_, i) => VA + i * 8);
    let err: unknown;
    try {
      other.cpu(0).translateMany(vas);
    } catch (e) {
      err = e;
    }
    // Without a ring, the core's batch would land at address 0 and run into the header.
    expect(header()).toEqual(before);
    expect(err).toBeInstanceOf(DmaError);
    const t = s.m.cpu(0).translate(VA);
    expect(t.ok && t.pa).toBe(s.pfn * 4096);
  });

  it("refuses a Worker beyond `threads` with EBUSY, reported from inside the Worker", async () => {
    const s = await setup(2);
    const local = await attachMachine(s.m.share());
    const w = spawn(s);
    const m = await w.next();
    expect(m).toMatchObject({ ok: false, error: { name: "DmaError", code: "EBUSY", arg: "threads" } });
    local.detach();
  });
});
