/**
 * struct mm_struct: an address space. Its page tables (the pgd), its PCID, its VMAs, its
 * mmap_lock, the CPUs that may hold its translations (mm_cpumask), MMF_HAS_PINNED, and RSS.
 * @module
 */
import * as F from "../abi/frame.js";
import * as H from "../abi/header.js";
import type { PageTable } from "../mmu/pgtable.js";
import type { Kernel } from "./kernel.js";
import { RwSemaphore } from "./mmap-lock.js";
import { VmaTree } from "./vma-tree.js";

export class MmStruct {
  readonly kernel: Kernel;
  readonly pgd: PageTable;
  readonly pcid: number;
  /** The process that owns this address space. */
  readonly pid: number;
  readonly vmas = new VmaTree();
  readonly mmapLock: RwSemaphore;
  /** CPUs whose TLBs may hold this mm's translations. */
  readonly cpumask = new Set<number>();
  /** Resident pages by kind (the mm's rss_stat), and swap entries. */
  readonly rss = { anon: 0, file: 0, shmem: 0, swap: 0 };
  /** Top of the mmap area (page number): new mappings go below it (top-down layout). */
  readonly mmapBase: number;
  dead = false;

  constructor(kernel: Kernel, pgd: PageTable, pcid: number, pid: number, mmapBase: number) {
    this.kernel = kernel;
    this.pgd = pgd;
    this.pcid = pcid;
    this.pid = pid;
    this.mmapLock = new RwSemaphore(`mmap_lock of pid ${pid}`, "mmap_lock", () => kernel.checkers.lockdep);
    this.mmapBase = mmapBase;
  }

  /*
   * MMF_HAS_PINNED and write_protect_seq live in the pgd's frame record (PG_has_pinned, and
   * the mapcount field), where GUP-fast in any thread reads and sets them.
   */

  /** MMF_HAS_PINNED: set the first time FOLL_PIN is used on this mm, never cleared. */
  get hasPinned(): boolean {
    return (this.kernel.flagsOf(this.pgd.pfn) & F.PG_has_pinned) !== 0;
  }

  set hasPinned(v: boolean) {
    this.kernel.pageFlags(this.pgd.pfn, v ? F.PG_has_pinned : 0, v ? 0 : F.PG_has_pinned);
  }

  /** mm->write_protect_seq: odd while fork write-protects the page tables (GUP-fast backs off). */
  get writeProtectSeq(): number {
    return this.kernel.core.i32[(this.kernel.core.hdr(H.HDR_FRAMES_BASE) + this.pgd.pfn * F.FRAME_SIZE + F.FRAME_MAPCOUNT) >>> 2]!;
  }

  /** share - what a Worker needs to reach this address space (remoteMm): plain data. */
  share(): { pgd: number; pid: number; levels: number } {
    return { pgd: this.pgd.pfn, pid: this.pid, levels: this.kernel.core.hdr(H.HDR_LEVELS) };
  }

  /** writeSeqcountBegin / writeSeqcountEnd: one step of write_protect_seq. */
  writeProtectSeqStep(): void {
    const c = this.kernel.core;
    Atomics.add(c.i32, (c.hdr(H.HDR_FRAMES_BASE) + this.pgd.pfn * F.FRAME_SIZE + F.FRAME_MAPCOUNT) >>> 2, 1);
  }
}
