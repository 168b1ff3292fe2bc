/**
 * Differential test of processes and address spaces: the emulator (machine.spawn() and the
 * Process calls) and the reference model (test/reference/mm-model.ts, written from the
 * Linux rules) run the same random sequences of mmap (anonymous private or shared, file
 * shared or private; top-down, hinted, MAP_FIXED, MAP_FIXED_NOREPLACE), munmap, mprotect,
 * madvise, fork, exit, read, write and touch on 1 to 3 processes, plus reads and writes of
 * the files through the page cache. After every operation they must agree on the result
 * (value, or errno and signal) and on every process's /proc/pid/maps; at checkpoints on the
 * bytes of sampled pages of every mapping and on anonymous RSS (without THP).
 *
 * Two strictnesses: "exact" compares /proc/pid/maps entry for entry (so the vma_merge and
 * anon_vma rules must match Linux) and, once every process has exited, that every frame
 * came back except the page cache of regular files; "layout" compares maps with adjacent
 * entries that continue each other coalesced (merge-insensitive), so contents, rights and
 * errors are checked even where merging differs.
 *
 * At least 5,000 operations per test. On failure fast-check prints the seed and the path;
 * rerun with DMALAB_SEED=<seed>. DMALAB_DIFF_STATS=1 prints the operation mix.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createMachine, DmaError, type Machine, type MapsEntry, type Process } from "../../src/index.js";
import { MmModel, ModelError, type ModelMapsEntry, type ModelProt, type ThpMode } from "../reference/mm-model.js";

const PAGE = 4096;

/* ---------- operations ---------- */

/** Pages of one VMA (inside: clamped to it), or a range starting near it and running past. */
type RangeSel = { vma: number; off: number; pages: number; inside: boolean };
type AddrSel = { vma: number; delta: number } | { arena: number };
type ProcSel = { i: number; dead: boolean };

type Op =
  | { k: "mmap"; p: ProcSel; kind: "anon" | "shared" | "fileS" | "fileP"; pages: number; prot: string; place: "top" | "fixed" | "noreplace" | "hint"; at: AddrSel; file: number; off: number; huge: boolean }
  | { k: "munmap"; p: ProcSel; r: RangeSel }
  | { k: "mprotect"; p: ProcSel; r: RangeSel; prot: string }
  | { k: "madvise"; p: ProcSel; r: RangeSel; advice: "dontneed" | "hugepage" }
  | { k: "read"; p: ProcSel; vma: number; off: number; len: number }
  | { k: "write"; p: ProcSel; vma: number; off: number; len: number; seed: number }
  | { k: "touch"; p: ProcSel; r: RangeSel; mode: "r" | "w" }
  | { k: "fork"; p: ProcSel }
  | { k: "exit"; p: ProcSel }
  | { k: "fsRead"; file: number; off: number; len: number }
  | { k: "fsWrite"; file: number; off: number; len: number; seed: number }
  | { k: "fsExtend"; file: number; pages: number; seed: number };

const FILES: [string, number][] = [["/f0", 4], ["/f1", 16], ["/f2", 40]];
const MAX_FILE_PAGES = 64;

/** Selectors (which process, VMA, offset) are taken modulo what exists when the op runs. */
const sel = fc.nat(0xffff);
const procArb: fc.Arbitrary<ProcSel> = fc.record({ i: sel, dead: fc.oneof({ weight: 30, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) });
const protArb = fc.constantFrom("rw", "rw", "rw", "rw", "rw", "rw", "r", "r", "", "rwx", "rx", "w", "x");
const rangeArb: fc.Arbitrary<RangeSel> = fc.record({
  vma: sel, off: sel, pages: sel, inside: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
});
const addrArb: fc.Arbitrary<AddrSel> = fc.oneof(
  { weight: 7, arbitrary: fc.record({ vma: sel, delta: fc.integer({ min: -8, max: 24 }) }) },
  { weight: 3, arbitrary: fc.record({ arena: fc.integer({ min: 0, max: 4127 }) }) },
);
const pagesArb = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1, max: 8 }) },
  { weight: 4, arbitrary: fc.integer({ min: 9, max: 40 }) },
  { weight: 2, arbitrary: fc.integer({ min: 512, max: 1100 }) },
);
const lenArb = fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 1, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 65, max: 9000 }) });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({
      k: fc.constant("mmap" as const), p: procArb,
      kind: fc.constantFrom("anon", "anon", "anon", "anon", "shared", "fileS", "fileP", "fileP"),
      pages: pagesArb, prot: protArb,
      place: fc.constantFrom("top", "top", "top", "fixed", "fixed", "fixed", "noreplace", "hint"),
      at: addrArb, file: fc.nat(2), off: fc.nat(12), huge: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    }),
  },
  { weight: 8, arbitrary: fc.record({ k: fc.constant("munmap" as const), p: procArb, r: rangeArb }) },
  { weight: 10, arbitrary: fc.record({ k: fc.constant("mprotect" as const), p: procArb, r: rangeArb, prot: protArb }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("madvise" as const), p: procArb, r: rangeArb, advice: fc.constantFrom("dontneed", "dontneed", "hugepage") }) },
  { weight: 16, arbitrary: fc.record({ k: fc.constant("read" as const), p: procArb, vma: sel, off: sel, len: lenArb }) },
  { weight: 18, arbitrary: fc.record({ k: fc.constant("write" as const), p: procArb, vma: sel, off: sel, len: lenArb, seed: fc.nat(255) }) },
  { weight: 7, arbitrary: fc.record({ k: fc.constant("touch" as const), p: procArb, r: rangeArb, mode: fc.constantFrom("r", "w") }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("fork" as const), p: procArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("exit" as const), p: procArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("fsRead" as const), file: fc.nat(2), off: sel, len: fc.integer({ min: 0, max: 5000 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("fsWrite" as const), file: fc.nat(2), off: sel, len: fc.integer({ min: 1, max: 300 }), seed: fc.nat(255) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("fsExtend" as const), file: fc.nat(2), pages: fc.integer({ min: 1, max: 4 }), seed: fc.nat(255) }) },
);

/* ---------- one sequence ---------- */

type Outcome = { ok: true; value: unknown } | { ok: false; code: string; arg: string | null; signal: string | null };

/** The emulator's last error message, for the failure report. */
let lastCoreError = "";

function coreOutcome(fn: () => unknown): Outcome {
  try {
    return { ok: true, value: normalize(fn()) };
  } catch (e) {
    if (!(e instanceof DmaError)) throw e;
    lastCoreError = e.message;
    const sig = /^EFAULT: (SIG[A-Z]+)/.exec(e.message);
    return { ok: false, code: e.code, arg: e.arg ?? null, signal: sig ? sig[1]! : null };
  }
}

function modelOutcome(fn: () => unknown): Outcome {
  try {
    return { ok: true, value: normalize(fn()) };
  } catch (e) {
    if (!(e instanceof ModelError)) throw e;
    return { ok: false, code: e.code, arg: e.arg, signal: e.signal };
  }
}

function normalize(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
  if (typeof v === "bigint") return Number(v);
  return v ?? null;
}

function protOf(s: string): ModelProt {
  return { read: s.includes("r"), write: s.includes("w"), exec: s.includes("x") };
}

function bytesOf(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 31 + (i >> 8)) & 0xff;
  return b;
}

interface Handle {
  core: Process;
  pid: number;
}

type Mode = "exact" | "layout";

interface Row {
  start: number;
  end: number;
  perms: string;
  offset: number;
  kind: string;
  path: string | null;
  /** Backing identity for coalescing (not compared). */
  obj: string;
}

function coreRows(p: Process): Row[] {
  return p.maps().map((e: MapsEntry) => ({
    start: Number(e.start), end: Number(e.end), perms: e.perms, offset: e.offset, kind: e.kind,
    path: e.kind === "file" ? e.path : null, obj: e.path ?? "anon",
  }));
}

function modelRows(model: MmModel, pid: number): Row[] {
  const vmas = model.vmas(pid);
  return model.maps(pid).map((e: ModelMapsEntry, i) => ({ ...e, obj: vmas[i]!.obj ? `#${vmas[i]!.obj!.id}` : "anon" }));
}

/** Coalesce entries that continue each other (same rights, backing and offsets). */
function coalesce(rows: Row[]): Omit<Row, "obj">[] {
  const out: Row[] = [];
  for (const r of rows) {
    const last = out[out.length - 1];
    if (
      last && last.end === r.start && last.perms === r.perms && last.kind === r.kind && last.obj === r.obj &&
      (r.kind === "anon" || r.offset === last.offset + (last.end - last.start))
    ) {
      out[out.length - 1] = { ...last, end: r.end };
    } else out.push({ ...r });
  }
  return out.map(({ obj: _obj, ...rest }) => rest);
}

function strip(rows: Row[]): Omit<Row, "obj">[] {
  return rows.map(({ obj: _obj, ...rest }) => rest);
}

const stats = new Map<string, number>();
const coreCounters = new Map<string, number>();
function tally(key: string): void {
  if (process.env.DMALAB_DIFF_STATS) stats.set(key, (stats.get(key) ?? 0) + 1);
}

class Runner {
  readonly m: Machine;
  readonly model: MmModel;
  readonly mode: Mode;
  readonly thp: ThpMode;
  readonly handles: Handle[] = [];
  readonly free0: number;
  ops = 0;

  constructor(m: Machine, mode: Mode, thp: ThpMode) {
    this.m = m;
    this.mode = mode;
    this.thp = thp;
    for (const [path, pages] of FILES) m.fs.create(path, { size: pages * PAGE });
    this.free0 = m.phys.nrFreePages();
    const first = m.spawn(0);
    this.model = new MmModel({ taskSizePages: m.kernel.taskSizePages(), mmapBase: first.mm.mmapBase, lowLimit: 256, thp });
    for (const [path, pages] of FILES) this.model.createFile(path, pages * PAGE);
    this.handles.push({ core: first, pid: this.model.spawn() });
  }

  live(): Handle[] {
    return this.handles.filter((h) => !h.core.exited);
  }

  proc(sel: ProcSel): Handle {
    const dead = this.handles.filter((h) => h.core.exited);
    if (sel.dead && dead.length) return dead[sel.i % dead.length]!;
    const live = this.live();
    return live[sel.i % live.length]!;
  }

  /** A page range in (or around) one of @h's VMAs, in pages. */
  /**
   * One of @h's VMAs by selector; for a write, three times in four one that may be
   * written (so most writes do something rather than fault).
   */
  pick(h: Handle, sel: number, write: boolean) {
    const all = this.model.vmas(h.pid);
    const writable = write && sel % 4 !== 0 ? all.filter((v) => v.prot.write) : [];
    const from = writable.length ? writable : all;
    return from.length ? from[(sel >> 2) % from.length]! : null;
  }

  range(h: Handle, r: RangeSel, clamp: boolean, cap = Infinity, write = false): [number, number] | null {
    const v = this.pick(h, r.vma, write);
    if (!v) return null;
    const n = v.end - v.start;
    let start = v.start + (r.off % (n + 3)) - 2;
    let pages = Math.min(cap, 1 + (r.pages % (n + 2)));
    if (clamp) {
      start = Math.max(v.start, Math.min(start, v.end - 1));
      pages = Math.min(pages, v.end - start);
    }
    return [start, pages];
  }

  /** A byte address in (or just around) one of @h's VMAs. */
  byteAddr(h: Handle, vma: number, off: number, write = false): number {
    const v = this.pick(h, vma, write);
    if (!v) return (this.model.cfg.mmapBase - 64) * PAGE + (off % PAGE);
    const bytes = (v.end - v.start) * PAGE;
    return v.start * PAGE + (off % (bytes + 64)) - 32;
  }

  step(op: Op): void {
    const { m, model } = this;
    let core: Outcome;
    let ref: Outcome;
    const both = (c: () => unknown, r: () => unknown) => {
      core = coreOutcome(c);
      ref = modelOutcome(r);
    };
    let detail = "";
    switch (op.k) {
      case "mmap": {
        const h = this.proc(op.p);
        const file = op.kind === "fileS" || op.kind === "fileP" ? FILES[op.file]![0] : undefined;
        let addr: number | undefined;
        if (op.place !== "top") {
          const vmas = model.vmas(h.pid);
          if ("vma" in op.at && vmas.length) addr = (vmas[op.at.vma % vmas.length]!.start + op.at.delta) * PAGE;
          else addr = (model.cfg.mmapBase - 4096 + ("arena" in op.at ? op.at.arena : 0)) * PAGE;
        }
        // Layout mode leaves the placement of hinted THP-sized mappings to exact mode.
        if (this.mode === "layout" && op.place === "hint" && op.pages >= 512) addr = undefined;
        const req = {
          addr, length: op.pages * PAGE, shared: op.kind === "shared" || op.kind === "fileS",
          fixed: op.place === "fixed", fixedNoReplace: op.place === "noreplace", hugepage: op.huge,
          file, offset: file ? op.off * PAGE : 0,
        };
        both(() => h.core.mmap({ ...req, prot: op.prot }), () => model.mmap(h.pid, { ...req, prot: protOf(op.prot) }));
        detail = `${op.kind}.${op.place}${op.pages >= 512 ? ".big" : ""}`;
        break;
      }
      case "munmap":
      case "mprotect":
      case "madvise":
      case "touch": {
        const h = this.proc(op.p);
        if (op.k === "madvise" && !model.vmas(h.pid).length) {
          // madvise of an unmapped range (ENOMEM) is the unit tests' business (badinput).
          both(() => null, () => null);
          detail = "skipped";
          break;
        }
        const clamp = op.r.inside || op.k === "madvise" || op.k === "touch";
        const write = op.k === "touch" && op.mode === "w";
        const r = this.range(h, op.r, clamp, op.k === "touch" ? 48 : Infinity, write) ?? [model.cfg.mmapBase - 8, 2];
        const [va, len] = [r[0] * PAGE, r[1] * PAGE];
        if (op.k === "munmap") both(() => h.core.munmap(va, len), () => model.munmap(h.pid, va, len));
        else if (op.k === "mprotect") both(() => h.core.mprotect(va, len, op.prot), () => model.mprotect(h.pid, va, len, protOf(op.prot)));
        else if (op.k === "madvise") {
          both(() => h.core.madvise(va, len, op.advice), () => model.madvise(h.pid, va, len, op.advice));
          detail = op.advice;
        } else {
          both(() => h.core.touch(va, len, op.mode), () => model.touch(h.pid, va, len, op.mode));
          detail = op.mode;
        }
        break;
      }
      case "read": {
        const h = this.proc(op.p);
        const va = this.byteAddr(h, op.vma, op.off);
        both(() => h.core.read(va, op.len), () => model.read(h.pid, va, op.len));
        detail = Math.floor(va / PAGE) !== Math.floor((va + op.len - 1) / PAGE) ? "cross" : "";
        break;
      }
      case "write": {
        const h = this.proc(op.p);
        const va = this.byteAddr(h, op.vma, op.off, true);
        const data = bytesOf(op.len, op.seed);
        both(() => h.core.write(va, data), () => model.write(h.pid, va, data));
        detail = Math.floor(va / PAGE) !== Math.floor((va + op.len - 1) / PAGE) ? "cross" : "";
        break;
      }
      case "fork": {
        const h = this.proc(op.p);
        if (this.live().length >= 3 || h.core.exited) {
          both(() => null, () => null);
          detail = "skipped";
          break;
        }
        const made: { core?: Process; pid?: number } = {};
        both(() => void (made.core = h.core.fork()), () => void (made.pid = model.fork(h.pid)));
        if (made.core && made.pid !== undefined) this.handles.push({ core: made.core, pid: made.pid });
        break;
      }
      case "exit": {
        const h = this.proc(op.p);
        if (this.live().length <= 1 && !h.core.exited) {
          both(() => null, () => null);
          detail = "skipped";
          break;
        }
        both(() => h.core.exit(), () => model.exit(h.pid));
        break;
      }
      case "fsRead": {
        const [path, size] = [FILES[op.file]![0], model.files.get(FILES[op.file]![0])!.size];
        const off = op.off % (size + 100);
        both(() => m.fs.read(path, off, op.len), () => model.fsRead(path, off, op.len));
        break;
      }
      case "fsWrite": {
        const [path, size] = [FILES[op.file]![0], model.files.get(FILES[op.file]![0])!.size];
        const off = op.off % size;
        const data = bytesOf(Math.min(op.len, size - off), op.seed);
        both(() => m.fs.write(path, off, data), () => model.fsWrite(path, off, data));
        break;
      }
      case "fsExtend": {
        const [path, size] = [FILES[op.file]![0], model.files.get(FILES[op.file]![0])!.size];
        const pages = Math.min(op.pages, MAX_FILE_PAGES - size / PAGE);
        if (pages <= 0) {
          both(() => null, () => null);
          detail = "skipped";
          break;
        }
        // Whole pages appended: the size stays page-aligned (no partial last page).
        const data = bytesOf(pages * PAGE, op.seed);
        both(() => m.fs.write(path, size, data), () => model.fsWrite(path, size, data));
        break;
      }
    }
    this.ops++;
    const c = core!;
    const r = ref!;
    tally(`${op.k}${detail ? `.${detail}` : ""}:${c.ok ? "ok" : `${c.code}${c.signal ? `/${c.signal}` : ""}`}`);
    expect(c, `result of ${JSON.stringify(op)}${c.ok ? "" : ` (emulator: ${lastCoreError})`}`).toEqual(r);
    this.compareMaps(`after ${JSON.stringify(op)}`);
  }

  compareMaps(when: string): void {
    for (const h of this.handles) {
      const a = coreRows(h.core);
      const b = modelRows(this.model, h.pid);
      if (this.mode === "exact") expect(strip(a), `maps of pid ${h.core.pid} ${when}`).toEqual(strip(b));
      else expect(coalesce(a), `maps (coalesced) of pid ${h.core.pid} ${when}`).toEqual(coalesce(b));
    }
  }

  /**
   * Every live process: sampled pages of every VMA read in full, and anonymous RSS. Only
   * pages the emulator has mapped are read, so a checkpoint faults nothing in (a read fault
   * would map the zero page and keep later writes from getting a THP); explicit read ops
   * cover the faulting path.
   */
  checkpoint(salt: number): void {
    for (const h of this.live()) {
      for (const [i, v] of this.model.vmas(h.pid).entries()) {
        const n = v.end - v.start;
        const picks = new Set(n <= 8 ? Array.from({ length: n }, (_, k) => k) : [0, n - 1, (salt * 7 + i) % n, (salt * 13 + 3 * i) % n, (salt + 5 * i) % n]);
        for (const k of picks) {
          const va = (v.start + k) * PAGE;
          if (!h.core.mm.pgd.ptepGet(va).info.present) continue;
          const a = coreOutcome(() => h.core.read(va, PAGE));
          const b = modelOutcome(() => this.model.read(h.pid, va, PAGE));
          expect(a, `checkpoint: pid ${h.core.pid} page 0x${va.toString(16)}`).toEqual(b);
        }
      }
      if (this.thp === "never") expect(h.core.mm.rss.anon, `checkpoint: rss.anon of pid ${h.core.pid}`).toBe(this.model.rssAnon(h.pid));
    }
  }

  /** Exit everything: every frame comes back but the page cache of regular files. */
  finish(): void {
    for (const h of this.live()) {
      h.core.exit();
      this.model.exit(h.pid);
    }
    for (const [k, v] of this.m.trace.counters) if (k.startsWith("mm.")) coreCounters.set(k, (coreCounters.get(k) ?? 0) + v);
    if (this.mode !== "exact") return;
    const cached = this.m.fs.list().reduce((n, f) => n + f.pages.size, 0);
    expect(this.m.phys.nrFreePages(), "free pages after every process exited").toBe(this.free0 - cached);
  }
}

async function runSequence(mode: Mode, thp: ThpMode, ops: Op[]): Promise<number> {
  const m = await createMachine({
    memory: { normal: "64MiB", movable: "256MiB", cma: 0 }, cpus: 2, swap: "16MiB", mm: { thp }, trace: false,
  });
  const run = new Runner(m, mode, thp);
  ops.forEach((op, i) => {
    run.step(op);
    if (i % 40 === 39) run.checkpoint(i);
  });
  run.checkpoint(ops.length);
  run.finish();
  return run.ops;
}

const seed = process.env.DMALAB_SEED ? Number(process.env.DMALAB_SEED) : undefined;

describe("processes and address spaces: emulator vs reference model", () => {
  for (const mode of ["exact", "layout"] as const) {
    for (const thp of ["never", "always"] as const) {
      it(`agree on random operation sequences (${mode} maps, THP ${thp})`, async () => {
        let ops = 0;
        await fc.assert(
          fc.asyncProperty(fc.array(opArb, { minLength: 200, maxLength: 500, size: "max" }), async (seq) => {
            ops += await runSequence(mode, thp, seq);
          }),
          // Shrinking a failure stops after a minute (the seed and the smallest case so far are reported).
          { numRuns: 32, seed, interruptAfterTimeLimit: 150_000 },
        );
        expect(ops).toBeGreaterThanOrEqual(5000);
        if (process.env.DMALAB_DIFF_STATS) {
          console.log(`[${mode}, THP ${thp}] ${[...stats].sort().map(([k, v]) => `${k}=${v}`).join(" ")}`);
          console.log(`[${mode}, THP ${thp}] core: ${[...coreCounters].sort().map(([k, v]) => `${k}=${v}`).join(" ")}`);
          stats.clear();
          coreCounters.clear();
        }
      }, 300_000);
    }
  }
});
