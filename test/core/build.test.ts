/**
 * Properties of build/core.wasm that keep the shared memory safe, and the loader's promise
 * that a trap or a failed assertion inside the core reaches the caller as a DmaError.
 *
 * - No start section: a start function runs on every instantiation, i.e. on every thread
 *   that attaches, and would write to the memory the other threads are using.
 * - The memory is imported and shared (every thread's instance runs over the same one).
 * - The only function import is env.coreAbort: the core calls nothing else on the host.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as F from "../../src/abi/frame.js";
import * as H from "../../src/abi/header.js";
import { CORE_URL, instantiateCore } from "../../src/core/loader.js";
import { createMachine, DmaError } from "../../src/index.js";

const bytes = new Uint8Array(readFileSync(CORE_URL));

/** A cursor over the binary with LEB128 and name readers. */
class Reader {
  constructor(readonly b: Uint8Array, public at = 0) {}

  byte(): number {
    if (this.at >= this.b.length) throw new Error(`read past the end at ${this.at}`);
    return this.b[this.at++]!;
  }

  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
      if (shift > 35) throw new Error("LEB128 too long");
    }
  }

  name(): string {
    const n = this.u32();
    const s = new TextDecoder().decode(this.b.subarray(this.at, this.at + n));
    this.at += n;
    return s;
  }
}

interface Section {
  id: number;
  start: number;
  size: number;
}

function sections(b: Uint8Array): Section[] {
  const r = new Reader(b);
  const magic = [r.byte(), r.byte(), r.byte(), r.byte()];
  expect(magic).toEqual([0x00, 0x61, 0x73, 0x6d]);
  const version = [r.byte(), r.byte(), r.byte(), r.byte()];
  expect(version).toEqual([1, 0, 0, 0]);
  const out: Section[] = [];
  while (r.at < b.length) {
    const id = r.byte();
    const size = r.u32();
    out.push({ id, start: r.at, size });
    r.at += size;
  }
  expect(r.at).toBe(b.length); // the last section ends exactly at the end of the file
  return out;
}

type Import =
  | { module: string; name: string; kind: "func"; type: number }
  | { module: string; name: string; kind: "memory"; flags: number; min: number; max?: number }
  | { module: string; name: string; kind: "table" | "global" };

function imports(b: Uint8Array, s: Section): Import[] {
  const r = new Reader(b, s.start);
  const n = r.u32();
  const out: Import[] = [];
  for (let i = 0; i < n; i++) {
    const module = r.name();
    const name = r.name();
    const kind = r.byte();
    if (kind === 0) {
      out.push({ module, name, kind: "func", type: r.u32() });
    } else if (kind === 2) {
      const flags = r.byte();
      const min = r.u32();
      const imp: Import = { module, name, kind: "memory", flags, min };
      if (flags & 1) imp.max = r.u32();
      out.push(imp);
    } else if (kind === 1) {
      r.byte(); // element type
      const flags = r.byte();
      r.u32();
      if (flags & 1) r.u32();
      out.push({ module, name, kind: "table" });
    } else if (kind === 3) {
      r.byte(); // value type
      r.byte(); // mutability
      out.push({ module, name, kind: "global" });
    } else {
      throw new Error(`unknown import kind ${kind}`);
    }
  }
  expect(r.at).toBe(s.start + s.size);
  return out;
}

const SECTION_START = 8;
const SECTION_IMPORT = 2;

describe("build/core.wasm", () => {
  const secs = sections(bytes);

  it("has no start section: instantiating on another thread writes nothing to shared memory", () => {
    expect(secs.length).toBeGreaterThan(3);
    expect(secs.filter((s) => s.id === SECTION_START)).toEqual([]);
  });

  it("imports its memory as env.memory, shared with a 4 GiB maximum, and defines none of its own", () => {
    const imp = imports(bytes, secs.find((s) => s.id === SECTION_IMPORT)!);
    const mems = imp.filter((i) => i.kind === "memory");
    expect(mems.map((m) => `${m.module}.${m.name}`)).toEqual(["env.memory"]);
    const mem = mems[0] as Extract<Import, { kind: "memory" }>;
    expect(mem.flags & 0x02).toBe(0x02); // shared
    expect(mem.flags & 0x01).toBe(0x01); // a shared memory must declare its maximum
    expect(mem.max).toBe(65536); // 4 GiB: the backing pool grows into it
    // And no memory section defines one of its own: a module-local memory is not shared.
    expect(secs.filter((s) => s.id === 5)).toEqual([]);
  });

  it("imports exactly one function, env.coreAbort, and nothing else but the memory", () => {
    const imp = imports(bytes, secs.find((s) => s.id === SECTION_IMPORT)!);
    expect(imp.filter((i) => i.kind === "func").map((i) => `${i.module}.${i.name}`)).toEqual(["env.coreAbort"]);
    expect(imp.filter((i) => i.kind === "table" || i.kind === "global")).toEqual([]);
    // The engine agrees with the hand parser.
    const mod = new WebAssembly.Module(bytes);
    expect(WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`).sort()).toEqual([
      "env.coreAbort:function",
      "env.memory:memory",
    ]);
  });

  it("exports, as a function, every name of the CoreExports interface in src/core/loader.ts", () => {
    const src = readFileSync(new URL("../../src/core/loader.ts", import.meta.url), "utf8");
    const body = /export interface CoreExports \{([\s\S]*?)\n\}/.exec(src)?.[1];
    expect(body, "CoreExports interface not found in src/core/loader.ts").toBeDefined();
    const names = [...body!.matchAll(/^\s+(\w+)\(/gm)].map((m) => m[1]!);
    expect(names).toContain("coreInit");
    expect(names).toContain("translateBatch");
    const exported = new Map(
      WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => [e.name, e.kind]),
    );
    const missing = names.filter((n) => exported.get(n) !== "function");
    expect(missing, `CoreExports names the core does not export as functions`).toEqual([]);
  });
});

describe("traps and assertions inside the core", () => {
  /** Catch what @fn throws (or fail if it returns). */
  function thrown(fn: () => unknown): unknown {
    try {
      fn();
    } catch (e) {
      return e;
    }
    throw new Error("expected a throw");
  }

  it("turn an out-of-bounds access into DmaError EFAULT (not a bare RuntimeError)", async () => {
    // A core over a fresh 64 KiB memory, laid out for a machine whose frame records need
    // far more than that, and never grown or initialised (coreInit is skipped): the first
    // call that touches a zone record reads past the end of the memory.
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
    const x = await instantiateCore(new WebAssembly.Module(bytes), memory);
    const u32 = new Uint32Array(memory.buffer);
    const set = (off: number, v: number): void => {
      u32[(H.HDR_ADDR + off) >>> 2] = v;
    };
    const nrFrames = 1 << 20; // 4 GiB of RAM: 24 MiB of frame records
    set(H.HDR_MAGIC, H.HDR_MAGIC_VALUE);
    set(H.HDR_ABI, H.ABI_VERSION);
    set(H.HDR_NR_ZONES, 1);
    set(H.HDR_NR_CPUS, 1);
    set(H.HDR_LEVELS, 4);
    set(H.HDR_TLB_SETS, 16);
    set(H.HDR_TLB_WAYS, 4);
    set(H.HDR_THREADS, 2);
    set(H.HDR_RING_ENTRIES, 64);
    set(H.HDR_PHYS_BITS, 46);
    set(H.HDR_POOL_MAX_SLOTS, 256);
    set(H.HDR_NR_FRAMES, nrFrames);
    set(H.HDR_POOL_GROW_SLOTS, 256);
    set(H.HDR_IOMMU_DEVS, 4);
    set(H.HDR_IOTLB_SETS, 4);
    set(H.HDR_IOTLB_WAYS, 2);
    set(H.HDR_ATC_SETS, 2);
    set(H.HDR_ATC_WAYS, 2);
    set(H.HDR_ZONE_CFG + H.ZCFG_START, 0);
    set(H.HDR_ZONE_CFG + H.ZCFG_PAGES, nrFrames);
    set(H.HDR_ZONE_CFG + H.ZCFG_KIND, F.ZONE_NORMAL);
    expect(x.coreLayout()).toBe(0);
    expect(u32[(H.HDR_ADDR + H.HDR_MEM_PAGES) >>> 2]!).toBeGreaterThan(1);
    set(H.HDR_INIT_DONE, 1); // pretend coreInit ran, so that coreAttach loads the layout
    expect(x.coreAttach()).toBe(0);
    const e = thrown(() => x.nrFreePages(-1));
    expect(e).not.toBeInstanceOf(WebAssembly.RuntimeError);
    expect(e).toBeInstanceOf(DmaError);
    expect((e as DmaError).code).toBe("EFAULT");
    expect((e as DmaError).errno).toBe(14);
    expect((e as DmaError).message).toMatch(/^EFAULT: core trap in nrFreePages/);
    expect((e as DmaError).cause).toBeInstanceOf(WebAssembly.RuntimeError);
  });

  it("turn a failed assertion (coreAbort) into DmaError EFAULT naming the core's file", async () => {
    // Corrupt the shared memory the way only a bug could: NORMAL's free counter says frames
    // are free while its free lists are empty. pgdAlloc() checks the counter, then
    // tableNew() asserts the allocation it was promised succeeded.
    const m = await createMachine({ memory: { normal: "4MiB", movable: 0, cma: 0 }, cpus: 1 });
    for (let order = F.MAX_ORDER; order >= 0; order--) {
      for (;;) {
        try {
          m.phys.allocPages(order);
        } catch {
          break;
        }
      }
    }
    expect(m.phys.nrFreePages("NORMAL")).toBe(0);
    const u32 = new Uint32Array(m.memory.buffer);
    const zones = u32[(H.HDR_ADDR + H.HDR_ZONES_BASE) >>> 2]!;
    u32[(zones + H.ZONE_NR_FREE) >>> 2] = 10;
    const e = thrown(() => m.pgdAlloc());
    expect(e).not.toBeInstanceOf(WebAssembly.RuntimeError);
    expect(e).toBeInstanceOf(DmaError);
    expect((e as DmaError).code).toBe("EFAULT");
    expect((e as DmaError).message).toMatch(/^EFAULT: core assertion failed: .* at assembly\/mmu\/pgtable\.ts:\d+:\d+/);
  });
});
