/**
 * Loading the WASM core: compile once, instantiate once per thread over the machine's
 * shared memory, and check that every export the host uses exists (a missing one is an
 * error at load time, not a TypeError later).
 * @module
 */
import { DmaError } from "../errors.js";

/** Every export of assembly/index.ts. Page and frame numbers are f64, never i64. */
export interface CoreExports {
  coreLayout(): number;
  coreInit(): number;
  coreAttach(): number;
  coreDetach(): void;
  coreReason(): number;
  coreReasonArg(): number;
  allocPages(zonelist: number, order: number, flags: number): number;
  freePages(pfn: number, order: number): number;
  splitPage(pfn: number, order: number): number;
  nrFreePages(zone: number): number;
  poolAvailable(): number;
  frameBytes(pfn: number, alloc: number): number;
  pgdAlloc(): number;
  pgdFree(root: number): number;
  ptMap(root: number, vpn: number, npages: number, pfn: number, lo: number, hi: number, level: number): number;
  ptUnmap(root: number, vpn: number, npages: number, cap: number): number;
  ptProtect(root: number, vpn: number, npages: number, setLo: number, setHi: number, clrLo: number, clrHi: number): number;
  ptepGet(root: number, vpn: number, level: number): number;
  ptepSet(root: number, vpn: number, level: number, lo: number, hi: number): number;
  ptepRange(root: number, vpn: number, n: number): number;
  ptepRangeMax(): number;
  pcieRoute(nnodes: number, nreq: number): number;
  pcieRouteMax(nnodes: number): number;
  iommuSetDevice(dev: number, flags: number, type: number, domain: number, root: number): number;
  iommuSetPasid(dev: number, pasid: number, domain: number, root: number): number;
  iommuTranslate(n: number, flags: number): number;
  iommuTranslateMax(): number;
  iommuTranslateIovas(dev: number, pasid: number, access: number, flags: number, n: number, inAddr: number, outAddr: number): number;
  iommuTranslateIovasMax(): number;
  iotlbInvalidate(domain: number, pasid: number, vpn: number, npages: number, gran: number): number;
  atcInvalidate(dev: number, pasid: number, vpn: number, npages: number, allPasids: number): number;
  iommuDma(n: number, flags: number): number;
  cpuWriteCr3(cpu: number, root: number, pcid: number, noflush: number): number;
  cpuSetCtrl(cpu: number, ctrl: number): number;
  cpuWrpkru(cpu: number, pkru: number): number;
  tlbFlushRange(cpu: number, vpn: number, npages: number): number;
  tlbInvpcid(cpu: number, type: number, pcid: number, vpn: number): number;
  tlbFlushPcidRange(cpu: number, pcid: number, vpn: number, npages: number): number;
  translateBatch(cpu: number, first: number, n: number, flags: number): number;
  zapRange(root: number, vpn: number, npages: number, cap: number): number;
  copyPageRange(src: number, dst: number, vpn: number, npages: number, flags: number, mapping: number, zones: number): number;
  folioRef(pfn: number, delta: number): number;
  pageMapcount(pfn: number, delta: number): number;
  folioEntireMapcount(pfn: number, delta: number): number;
  folioPincount(pfn: number, delta: number): number;
  pageFlags(pfn: number, set: number, clear: number): number;
  pageSetMapping(pfn: number, mapping: number, index: number): number;
  copyHighpage(dst: number, src: number): number;
  splitHugePmd(root: number, vpn: number): number;
  swapOut(pfn: number, count: number): number;
  swapIn(slot: number, pfn: number): number;
  swapPut(slot: number): number;
  swapCount(slot: number): number;
  gupRange(root: number, vpn: number, npages: number, flags: number, pkru: number, outAddr: number): number;
  gupMaxPages(): number;
  unpinPages(n: number, flags: number): number;
}

const EXPORTS: readonly (keyof CoreExports)[] = [
  "coreLayout", "coreInit", "coreAttach", "coreDetach", "coreReason", "coreReasonArg",
  "allocPages", "freePages", "splitPage", "nrFreePages", "poolAvailable", "frameBytes", "pgdAlloc", "pgdFree",
  "ptMap", "ptUnmap", "ptProtect", "ptepGet", "ptepSet", "cpuWriteCr3", "cpuSetCtrl",
  "cpuWrpkru", "tlbFlushRange", "tlbFlushPcidRange", "tlbInvpcid", "translateBatch", "zapRange", "copyPageRange",
  "folioRef", "pageMapcount", "folioEntireMapcount", "folioPincount", "pageFlags", "pageSetMapping",
  "copyHighpage", "splitHugePmd", "swapOut", "swapIn", "swapPut", "swapCount", "gupRange", "gupMaxPages",
  "unpinPages", "ptepRange", "ptepRangeMax", "pcieRoute", "pcieRouteMax",
  "iommuSetDevice", "iommuSetPasid", "iommuTranslate", "iommuTranslateMax", "iommuTranslateIovas", "iommuTranslateIovasMax", "iotlbInvalidate", "atcInvalidate", "iommuDma",
];

/** Where the build puts the core, relative to this file in src/ and in dist/ alike. */
export const CORE_URL = new URL("../../build/core.wasm", import.meta.url);

export type CoreSource = WebAssembly.Module | URL | string | ArrayBuffer | Uint8Array;

let cached: Promise<WebAssembly.Module> | undefined;

/**
 * compileCore - the core's WebAssembly.Module: from @source, or from the build next to this
 * package (read from disk in Node, fetched with compileStreaming in a browser). The default
 * module is compiled once per thread and reused.
 */
export function compileCore(source?: CoreSource): Promise<WebAssembly.Module> {
  if (source instanceof WebAssembly.Module) return Promise.resolve(source);
  if (source instanceof ArrayBuffer || source instanceof Uint8Array) {
    return WebAssembly.compile(source as BufferSource);
  }
  // A relative string names a file next to the page (a browser) or the package build (Node).
  const base = typeof location === "undefined" ? CORE_URL : new URL(location.href);
  if (source !== undefined) return compileUrl(new URL(source, base));
  cached ??= compileUrl(CORE_URL);
  return cached;
}

async function compileUrl(url: URL): Promise<WebAssembly.Module> {
  try {
    if (url.protocol === "file:") {
      const { readWasmFile } = await import("../platform/node.js");
      return await WebAssembly.compile((await readWasmFile(url)) as BufferSource);
    }
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    // compileStreaming needs Content-Type application/wasm; a server that sends another
    // type still serves the right bytes.
    if (res.headers.get("content-type")?.startsWith("application/wasm")) {
      return await WebAssembly.compileStreaming(res);
    }
    return await WebAssembly.compile(await res.arrayBuffer());
  } catch (e) {
    throw new DmaError("ENOENT", `cannot load the core from ${url.href}: ${(e as Error).message}`, {
      arg: "wasm",
      cause: e,
    });
  }
}

/** Decode an AssemblyScript string (UTF-16, byte length in the word before it). */
function readString(memory: WebAssembly.Memory, ptr: number): string {
  if (ptr === 0) return "";
  const bytes = new Uint32Array(memory.buffer, ptr - 4, 1)[0]!;
  const units = new Uint16Array(memory.buffer.slice(ptr, ptr + bytes) as ArrayBuffer);
  return String.fromCharCode(...units);
}

/**
 * instantiateCore - one instance of the core over @memory. A trap inside it surfaces as a
 * DmaError (EFAULT, naming the export), never as a bare WebAssembly.RuntimeError.
 */
export async function instantiateCore(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
): Promise<CoreExports> {
  const env = {
    memory,
    coreAbort(msg: number, file: number, line: number, col: number): never {
      throw new DmaError(
        "EFAULT",
        `core assertion failed: ${readString(memory, msg) || "(no message)"} at ` +
          `${readString(memory, file)}:${line}:${col} (a dmalab bug; please report it)`,
      );
    },
  };
  const instance = await WebAssembly.instantiate(module, { env });
  const raw = instance.exports as unknown as Record<string, unknown>;
  const core = {} as Record<string, unknown>;
  for (const name of EXPORTS) {
    const fn = raw[name];
    if (typeof fn !== "function") {
      throw new DmaError("ENOENT", `core export ${name} missing: build/core.wasm is stale`);
    }
    core[name] = (...args: number[]): unknown => {
      try {
        return (fn as (...a: number[]) => unknown)(...args);
      } catch (e) {
        if (e instanceof WebAssembly.RuntimeError) {
          throw new DmaError("EFAULT", `core trap in ${name}: ${e.message}`, { cause: e });
        }
        throw e;
      }
    };
  }
  return core as unknown as CoreExports;
}
