/**
 * A machine: physical memory in zones, CPUs with TLBs, page tables, the virtual clock, the
 * cost table and the trace, over one WASM core and one shared WebAssembly.Memory.
 *
 * createMachine() builds one; machine.share() gives what a Worker needs to attachMachine()
 * to the same memory with its own core instance and ring.
 * @module
 */
import * as H from "./abi/header.js";

import { type MachineConfig, type MachineOptions, parseMachineOptions } from "./config.js";
import { Core } from "./core/core.js";
import { compileCore, type CoreSource, instantiateCore } from "./core/loader.js";
import { DmaError, einval } from "./errors.js";
import { type PageInfo, readPage } from "./mm/page.js";
import { Phys } from "./mm/phys.js";
import { Cpu, LINUX_CONTROL, LINUX_PKRU } from "./mmu/cpu.js";
import { PageTable } from "./mmu/pgtable.js";
import { Clock } from "./sim/clock.js";
import { type CostTable, costTable } from "./sim/cost.js";
import { Rng } from "./sim/rng.js";
import { toChromeTrace, type ChromeTrace } from "./trace/chrome.js";
import { Trace } from "./trace/trace.js";
import { Kernel } from "./mm/kernel.js";
import { Process } from "./mm/process.js";
import { Fs } from "./fs/fs.js";
import type { CheckReport } from "./check/report.js";
import { Iommu } from "./iommu/iommu.js";

/** What a Worker needs to attach to a machine (structured-cloneable: postMessage it). */
export interface SharedMachine {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  config: MachineConfig;
}

/** Pool growth step: 256 slots = 1 MiB of page contents at a time. */
const POOL_GROW_SLOTS = 256;

export class Machine {
  readonly config: MachineConfig;
  readonly clock = new Clock();
  readonly trace: Trace;
  readonly costs: CostTable;
  readonly rng: Rng;
  readonly phys: Phys;
  readonly cpus: readonly Cpu[];
  readonly #core: Core;
  readonly #module: WebAssembly.Module;
  #kernel: Kernel | null = null;
  #iommu: Iommu | null = null;

  /** @internal use createMachine() or attachMachine(). */
  constructor(core: Core, module: WebAssembly.Module, config: MachineConfig) {
    this.#core = core;
    this.#module = module;
    this.config = config;
    this.trace = new Trace(config.trace);
    this.costs = costTable(config.costs);
    this.rng = new Rng(config.seed);
    const env = { core, clock: this.clock, costs: this.costs, trace: this.trace };
    this.phys = new Phys(core, this.clock, this.trace);
    this.cpus = Array.from({ length: config.cpus }, (_, i) => new Cpu(env, i));
  }

  /**
   * The kernel of this machine: processes, files, page cache, reclaim. It lives with the
   * handle that created the machine (Worker handles share the memory, not the kernel).
   */
  get kernel(): Kernel {
    if (!this.#kernel) {
      if (this.thread !== 0) {
        throw new DmaError("EPERM", "the kernel lives with the handle that created the machine", { arg: "machine" });
      }
      this.#kernel = new Kernel({
        core: this.#core, clock: this.clock, costs: this.costs, trace: this.trace, phys: this.phys,
        cpus: this.cpus, thp: this.config.thp, check: this.config.check,
      });
      this.#kernel.fs = new Fs(this.#kernel);
      this.#kernel.machine = this;
    }
    return this.#kernel;
  }

  /** The machine's IOMMU: devices behind it, domains, translation, invalidation (src/iommu). */
  get iommu(): Iommu {
    if (!this.#iommu) this.#iommu = new Iommu(this.kernel);
    return this.#iommu;
  }

  /**
   * checkReports - what the rule checkers found so far (writeback of pinned pages, ...),
   * oldest first. Empty on a Worker's handle: the checkers live with the kernel.
   */
  checkReports(): CheckReport[] {
    return this.#kernel ? [...this.#kernel.checkers.reports] : [];
  }

  /**
   * vmstat - the /proc/vmstat counters the machine keeps: nr_foll_pin_acquired and
   * nr_foll_pin_released (pages pinned and unpinned with FOLL_PIN since boot; equal when no
   * page is pinned).
   */
  vmstat(): { nr_foll_pin_acquired: number; nr_foll_pin_released: number } {
    const u = this.#core.u32;
    const at = (off: number): number => u[(H.HDR_ADDR + off) >>> 2]! + u[(H.HDR_ADDR + off + 4) >>> 2]! * 2 ** 32;
    return { nr_foll_pin_acquired: at(H.HDR_FOLL_PIN_ACQUIRED), nr_foll_pin_released: at(H.HDR_FOLL_PIN_RELEASED) };
  }

  /** @internal the kernel, if this handle created the machine and has built it; else null. */
  get kernelIfHere(): Kernel | null {
    return this.#kernel;
  }

  /** @internal this handle's core instance. */
  get core(): Core {
    return this.#core;
  }

  /** fs - the machine's files (create, read, write, and what the page cache holds). */
  get fs(): Fs {
    return this.kernel.fs;
  }

  /** spawn - a new process with an empty address space, on @cpu (default: round robin). */
  spawn(cpu?: number): Process {
    const k = this.kernel;
    const c = cpu === undefined ? this.cpus[k.processes.size % this.cpus.length]! : this.cpu(cpu);
    return new Process(k, c);
  }

  /** This handle's thread slot (0 for the creator, then one per attached Worker). */
  get thread(): number {
    return this.#core.thread;
  }

  /** The shared memory (for inspection; its layout is in src/abi/). */
  get memory(): WebAssembly.Memory {
    return this.#core.memory;
  }

  cpu(i: number): Cpu {
    const c = this.cpus[i];
    if (!c) throw einval("cpu", `no CPU ${i} (the machine has ${this.cpus.length})`);
    return c;
  }

  /** page - frame @pfn's struct page: flags, counts, mapping, index. */
  page(pfn: number): PageInfo {
    const nr = this.#core.hdr(H.HDR_NR_FRAMES);
    if (!Number.isSafeInteger(pfn) || pfn < 0 || pfn >= nr) {
      throw einval("pfn", `${pfn} is not a frame of this machine (0..${nr - 1})`);
    }
    return readPage(this.#core, this.#core.hdr(H.HDR_FRAMES_BASE), pfn, this.phys.zoneOf(pfn));
  }

  /** pgdAlloc - a new, empty page-table hierarchy (its root from the NORMAL zone). */
  pgdAlloc(): PageTable {
    const pfn = this.#core.check(this.#core.x.pgdAlloc(), "pgdAlloc");
    this.trace.emit("pt.alloc", { pgd: pfn }, this.clock.now);
    return new PageTable({ core: this.#core, clock: this.clock, costs: this.costs, trace: this.trace }, pfn);
  }

  /** pageTable - a handle on the existing root table @pfn (e.g. one another thread made). */
  pageTable(pfn: number): PageTable {
    const info = this.page(pfn);
    if (!info.flags.includes("pgtable") || info.mapping !== this.config.levels) {
      throw einval("pfn", `${pfn} is not a root page table`);
    }
    return new PageTable({ core: this.#core, clock: this.clock, costs: this.costs, trace: this.trace }, pfn);
  }

  /**
   * share - what attachMachine() needs in another thread. In a browser the page must be
   * cross-origin isolated (COOP: same-origin, COEP: require-corp) for shared memory to
   * cross to a Worker; EPERM says so instead of a DataCloneError later.
   */
  share(): SharedMachine {
    if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) {
      throw new DmaError(
        "EPERM",
        "share: this page is not cross-origin isolated, so its shared memory cannot reach a " +
          "Worker; serve it with Cross-Origin-Opener-Policy: same-origin and " +
          "Cross-Origin-Embedder-Policy: require-corp",
      );
    }
    return { module: this.#module, memory: this.#core.memory, config: this.config };
  }

  /**
   * detach - give this handle's ring back (a Worker that is done). Every later call
   * through this handle fails with EBADF. A thread that ends without detaching keeps its
   * ring until the machine is gone.
   */
  detach(): void {
    this.#core.detach();
  }

  /** toChromeTrace - the trace so far, as JSON that Perfetto and chrome://tracing open. */
  toChromeTrace(): ChromeTrace {
    return toChromeTrace(this.trace, { seed: this.config.seed, modeledNs: this.clock.now });
  }
}

function writeHeader(core: Core, cfg: MachineConfig): void {
  core.setHdr(H.HDR_MAGIC, H.HDR_MAGIC_VALUE);
  core.setHdr(H.HDR_ABI, H.ABI_VERSION);
  core.setHdr(H.HDR_NR_ZONES, cfg.zones.length);
  core.setHdr(H.HDR_NR_CPUS, cfg.cpus);
  core.setHdr(H.HDR_LEVELS, cfg.levels);
  core.setHdr(H.HDR_TLB_SETS, cfg.tlb.sets);
  core.setHdr(H.HDR_TLB_WAYS, cfg.tlb.ways);
  core.setHdr(H.HDR_THREADS, cfg.threads);
  core.setHdr(H.HDR_RING_ENTRIES, cfg.ringEntries);
  core.setHdr(H.HDR_PHYS_BITS, cfg.physAddrBits);
  core.setHdr(H.HDR_POOL_MAX_SLOTS, cfg.backingMaxSlots);
  core.setHdr(H.HDR_NR_FRAMES, cfg.nrFrames);
  core.setHdr(H.HDR_POOL_GROW_SLOTS, POOL_GROW_SLOTS);
  core.setHdr(H.HDR_SWAP_SLOTS, cfg.swapSlots);
  core.setHdr(H.HDR_KHEAP_BYTES, cfg.kheapBytes);
  core.setHdr(H.HDR_IOMMU_DEVS, cfg.iommu.devices);
  core.setHdr(H.HDR_IOTLB_SETS, cfg.iommu.iotlb.sets);
  core.setHdr(H.HDR_IOTLB_WAYS, cfg.iommu.iotlb.ways);
  core.setHdr(H.HDR_ATC_SETS, cfg.iommu.atc.sets);
  core.setHdr(H.HDR_ATC_WAYS, cfg.iommu.atc.ways);
  cfg.zones.forEach((z, i) => {
    const at = H.HDR_ZONE_CFG + i * H.ZCFG_SIZE;
    core.setHdr(at + H.ZCFG_START, z.startPfn);
    core.setHdr(at + H.ZCFG_PAGES, z.pages);
    core.setHdr(at + H.ZCFG_KIND, z.kind);
  });
}

export interface CreateOptions extends MachineOptions {
  /** The core to run: a compiled module, its URL or bytes. Default: the package's build. */
  wasm?: CoreSource;
}

/**
 * createMachine - build a machine from @options (all optional; see MachineOptions).
 * Throws DmaError(EINVAL) naming the bad option's path.
 */
export async function createMachine(options: CreateOptions = {}): Promise<Machine> {
  const { wasm, ...rest } = options;
  const config = parseMachineOptions(rest);
  const { core, module } = await bootCore(config, wasm);
  const m = new Machine(core, module, config);
  for (const cpu of m.cpus) {
    cpu.setControl(LINUX_CONTROL);
    cpu.wrpkru(LINUX_PKRU);
  }
  m.trace.clear();
  return m;
}

/**
 * bootCore - a core laid out and initialised for @config, attached to this thread: what
 * createMachine() builds on (and what differential tests drive directly).
 * @internal
 */
export async function bootCore(
  config: MachineConfig,
  wasm?: CoreSource,
): Promise<{ core: Core; module: WebAssembly.Module }> {
  const module = await compileCore(wasm);
  let memory: WebAssembly.Memory;
  try {
    // 4 GiB of address space is reserved (not committed): the pool grows into it.
    memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  } catch (e) {
    throw new DmaError("ENOMEM", `createMachine: cannot reserve a shared memory: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const core = new Core(await instantiateCore(module, memory), memory);
  writeHeader(core, config);
  core.check(core.x.coreLayout(), "createMachine");
  const need = core.hdr(H.HDR_MEM_PAGES) - memory.buffer.byteLength / 65536;
  if (need > 0) {
    try {
      memory.grow(need);
      core.invalidateViews();
    } catch (e) {
      throw new DmaError("ENOMEM", `createMachine: cannot grow the memory to ${core.hdr(H.HDR_MEM_PAGES) * 64} KiB`, {
        cause: e,
      });
    }
  }
  core.check(core.x.coreInit(), "createMachine");
  core.attach();
  return { core, module };
}

/**
 * attachMachine - a handle on a machine another thread created, with this thread's own
 * core instance and ring. Its clock, trace and statistics are its own.
 */
export async function attachMachine(shared: SharedMachine): Promise<Machine> {
  const core = new Core(await instantiateCore(shared.module, shared.memory), shared.memory);
  core.attach();
  return new Machine(core, shared.module, shared.config);
}


