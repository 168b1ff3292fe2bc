/**
 * struct mm_struct: an address space. Its page tables (the pgd), its PCID, its VMAs, its
 * mmap_lock, the CPUs that may hold its translations (mm_cpumask), MMF_HAS_PINNED, and RSS.
 * @module
 */
import type { PageTable } from "../mmu/pgtable.js";
import type { Kernel } from "./kernel.js";
import { RwSemaphore } from "./mmap-lock.js";
import { VmaTree } from "./vma-tree.js";

export class MmStruct {
  readonly kernel: Kernel;
  readonly pgd: PageTable;
  readonly pcid: number;
  readonly vmas = new VmaTree();
  readonly mmapLock: RwSemaphore;
  /** CPUs whose TLBs may hold this mm's translations. */
  readonly cpumask = new Set<number>();
  /** MMF_HAS_PINNED: set the first time FOLL_PIN is used on this mm, never cleared. */
  hasPinned = false;
  /** Odd while fork copies the page tables (GUP-fast backs off then). */
  writeProtectSeq = 0;
  /** Resident pages by kind (the mm's rss_stat), and swap entries. */
  readonly rss = { anon: 0, file: 0, shmem: 0, swap: 0 };
  /** Top of the mmap area (page number): new mappings go below it (top-down layout). */
  readonly mmapBase: number;
  dead = false;

  constructor(kernel: Kernel, pgd: PageTable, pcid: number, pid: number, mmapBase: number) {
    this.kernel = kernel;
    this.pgd = pgd;
    this.pcid = pcid;
    this.mmapLock = new RwSemaphore(`mmap_lock of pid ${pid}`);
    this.mmapBase = mmapBase;
  }
}
