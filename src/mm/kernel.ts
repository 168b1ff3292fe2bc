/**
 * The kernel side of one machine: what every mm path shares (the zero page, mapping ids,
 * anon_vmas and inodes by id for the reverse map, PCIDs, LRU lists, processes) and the
 * checked core calls they make. Lives with the handle that created the machine.
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import { DmaError } from "../errors.js";
import type { Core } from "../core/core.js";
import type { Phys } from "./phys.js";
import type { Cpu } from "../mmu/cpu.js";
import type { Clock } from "../sim/clock.js";
import type { CostTable } from "../sim/cost.js";
import type { Trace } from "../trace/trace.js";
import { AnonVma } from "./anon-vma.js";
import type { Inode } from "../fs/inode.js";
import type { Process } from "./process.js";
import type { Fs } from "../fs/fs.js";
import type { Machine } from "../machine.js";
import { PageTable } from "../mmu/pgtable.js";
import { Checkers, type CheckOptions } from "../check/checkers.js";
import { Kheap } from "./kvmalloc.js";

/** Transparent huge pages: /sys/kernel/mm/transparent_hugepage/enabled. */
export type ThpMode = "always" | "madvise" | "never";

export interface KernelEnv {
  core: Core;
  clock: Clock;
  costs: CostTable;
  trace: Trace;
  phys: Phys;
  cpus: readonly Cpu[];
  thp: ThpMode;
  check?: CheckOptions;
}

/** The zonelist of user pages (GFP_HIGHUSER_MOVABLE) in the core's nibble format. */
function zonelistOf(phys: Phys, names: string[]): number {
  let list = 0;
  let shift = 0;
  for (const name of names) {
    const z = phys.zones().find((x) => x.name === name);
    if (!z) continue;
    list |= z.index << shift;
    shift += 4;
  }
  return (list | (F.ZONELIST_END << shift)) >>> 0;
}

export class Kernel {
  readonly core: Core;
  readonly clock: Clock;
  readonly costs: CostTable;
  readonly trace: Trace;
  readonly phys: Phys;
  readonly cpus: readonly Cpu[];
  thp: ThpMode;
  /** The shared zero page: anonymous read faults map it read-only (ZERO_PAGE). */
  readonly zeroPfn: number;
  readonly userZones: number;
  readonly normalZones: number;
  readonly anonVmas = new Map<number, AnonVma>();
  readonly inodes = new Map<number, Inode>();
  /** LRU lists (mm/vmscan.c), oldest first; entries whose PG_lru went are dropped lazily. */
  readonly lru = { anon: new Set<number>(), file: new Set<number>() };
  readonly processes = new Map<number, Process>();
  /** The kernel heap: kvcalloc'd arrays the core fills in place. */
  readonly kheap: Kheap;
  /** The file system (set by the machine once the kernel exists). */
  fs!: Fs;
  #nextMapping = 1;
  #nextPid = 1;
  #pcids = new Set<number>();

  constructor(env: KernelEnv) {
    this.core = env.core;
    this.clock = env.clock;
    this.costs = env.costs;
    this.trace = env.trace;
    this.phys = env.phys;
    this.cpus = env.cpus;
    this.thp = env.thp;
    this.zeroPfn = this.phys.allocPages(0, { gfp: "KERNEL" });
    this.pageFlags(this.zeroPfn, F.PG_reserved, 0);
    this.core.setHdr(H.HDR_ZERO_PFN, this.zeroPfn);
    this.userZones = zonelistOf(this.phys, ["MOVABLE", "NORMAL", "CMA"]);
    this.normalZones = zonelistOf(this.phys, ["NORMAL"]);
    this.checkers = new Checkers(this, env.check ?? { pinnedWriteback: true, callSites: true });
    this.kheap = new Kheap(this.core);
  }

  /** pgdAlloc - a new root page table. */
  pgdAlloc(): PageTable {
    const pfn = this.check(this.core.x.pgdAlloc(), "pgdAlloc");
    return new PageTable({ core: this.core, clock: this.clock, costs: this.costs, trace: this.trace }, pfn);
  }

  /** TASK_SIZE_MAX in pages: the first page above user space (2^47 or 2^56 bytes, minus a page). */
  taskSizePages(): number {
    return this.core.hdr(H.HDR_LEVELS) === 5 ? 2 ** 44 - 1 : 2 ** 35 - 1;
  }

  /** check - a core return value, or the DmaError it names. */
  check(rc: number, fn: string): number {
    return this.core.check(rc, fn);
  }

  mappingId(): number {
    return this.#nextMapping++;
  }

  pid(): number {
    return this.#nextPid++;
  }

  newAnonVma(parent: AnonVma | null): AnonVma {
    const a = new AnonVma(this.mappingId(), parent);
    this.anonVmas.set(a.id, a);
    return a;
  }

  allocPcid(): number {
    for (let p = 1; p < 4096; p++) {
      if (!this.#pcids.has(p)) {
        this.#pcids.add(p);
        return p;
      }
    }
    throw new DmaError("ENOSPC", "no free PCID (4095 address spaces alive)");
  }

  freePcid(p: number): void {
    this.#pcids.delete(p);
  }

  /* ---- struct page calls (checked) ---- */

  pageFlags(pfn: number, set: number, clear: number): number {
    return this.check(this.core.x.pageFlags(pfn, set, clear), "pageFlags");
  }

  flagsOf(pfn: number): number {
    return this.core.u32[(this.core.hdr(H.HDR_FRAMES_BASE) + pfn * F.FRAME_SIZE) >>> 2]!;
  }

  refcountOf(pfn: number): number {
    return this.core.i32[(this.core.hdr(H.HDR_FRAMES_BASE) + pfn * F.FRAME_SIZE + F.FRAME_REFCOUNT) >>> 2]!;
  }

  mapcountOf(pfn: number): number {
    return this.core.i32[(this.core.hdr(H.HDR_FRAMES_BASE) + pfn * F.FRAME_SIZE + F.FRAME_MAPCOUNT) >>> 2]!;
  }

  /** A large folio's _pincount (kept in its first tail, as folio page[1]). */
  pincountOf(head: number): number {
    return this.core.u32[(this.core.hdr(H.HDR_FRAMES_BASE) + (head + 1) * F.FRAME_SIZE + F.FRAME_INDEX) >>> 2]!;
  }

  /** The head pfn of the folio holding @pfn. */
  folioOf(pfn: number): number {
    const f = this.flagsOf(pfn);
    if (!(f & F.PG_tail)) return pfn;
    return this.core.u32[(this.core.hdr(H.HDR_FRAMES_BASE) + pfn * F.FRAME_SIZE + F.FRAME_MAPPING) >>> 2]!;
  }

  folioRef(pfn: number, delta: number): number {
    return this.check(this.core.x.folioRef(pfn, delta), "folioRef");
  }

  mapcount(pfn: number, delta: number): number {
    return this.check(this.core.x.pageMapcount(pfn, delta), "pageMapcount");
  }

  setMapping(pfn: number, mapping: number, index: number): void {
    this.check(this.core.x.pageSetMapping(pfn, mapping, index), "pageSetMapping");
  }

  /**
   * PF_MEMALLOC_PIN (memalloc_pin_save): while above zero, user pages come from NORMAL
   * only, so a page faulted in for a FOLL_LONGTERM pin need not be migrated again.
   */
  memallocPin = 0;
  /** The machine handle this kernel lives with (set by Machine). */
  machine: Machine | null = null;
  /** The rule checkers watching this kernel. */
  readonly checkers: Checkers;
  /** What the kernel would WARN about mmu notifier callbacks that broke the protocol. */
  readonly notifierWarnings: string[] = [];

  /** A user page of 2^@order frames (a folio when order > 0), from MOVABLE first. */
  allocUserFolio(order = 0): number {
    const flags = order > 0 ? H.ALLOC_COMPOUND : 0;
    const zones = this.memallocPin > 0 ? this.normalZones : this.userZones;
    return this.check(this.core.x.allocPages(zones, order, flags), "allocPages");
  }

  /** lru_cache_add: put a folio on its LRU list (PG_lru), off the other (a reused frame). */
  lruAdd(head: number, anon: boolean): void {
    this.pageFlags(head, F.PG_lru, 0);
    this.lru.anon.delete(head);
    this.lru.file.delete(head);
    (anon ? this.lru.anon : this.lru.file).add(head);
  }
}
