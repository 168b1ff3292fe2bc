/**
 * struct vm_area_struct: a range of an address space with one set of rights and one
 * backing (anonymous memory, a file, shmem, fsdax, or device frames). Ranges are kept in
 * 4 KiB page numbers, which are exact for every user address (a 5-level user address has
 * more bits than a double holds, its page number does not).
 * @module
 */
import type { AnonVma } from "./anon-vma.js";
import type { Inode } from "../fs/inode.js";
import type { MmStruct } from "./mm.js";

/* vm_flags (include/linux/mm.h values). */
export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_PFNMAP = 0x400;
export const VM_LOCKED = 0x2000;
export const VM_IO = 0x4000;
export const VM_DONTEXPAND = 0x40000;
export const VM_MIXEDMAP = 0x10000000;
export const VM_HUGEPAGE = 0x20000000;
export const VM_NOHUGEPAGE = 0x40000000;

/**
 * What backs a VMA. "mixedmap": pages a driver inserted at mmap time (vm_insert_pages,
 * VM_MIXEDMAP): p2pmem, a dma-buf's mmap.
 */
export type VmaKind = "anon" | "file" | "shmem" | "dax" | "device" | "mixedmap";

/**
 * struct vm_operations_struct, the hooks a driver's mapping needs here: open when the VMA is
 * duplicated (split, fork), close when one goes away (munmap, exit). A VMA with close never
 * merges (is_mergeable_vma).
 */
export interface VmOperations {
  open?(v: Vma): void;
  close?(v: Vma): void;
}

/** Flags a VMA merge must agree on (vm_flags minus the accounting bits). */
const MERGE_MASK = ~0;

export class Vma {
  mm: MmStruct;
  /** First page and one past the last page ([start, end) in 4 KiB page numbers). */
  start: number;
  end: number;
  flags: number;
  kind: VmaKind;
  /**
   * vm_pgoff: the page offset in the file (file, shmem, dax, device); for anonymous memory
   * the page number of the mapping's address, as Linux sets it (so adjacent anonymous
   * mappings continue each other and merge). Kept modulo 2^32, the width of a page's index.
   */
  pgoff: number;
  file: Inode | null;
  /** Reverse map of anonymous pages (private mappings, once a page was written). */
  anonVma: AnonVma | null;
  /** Device frames behind a VM_PFNMAP mapping: the frame of page `start`. */
  pfn: number | null;
  /** vm_ops: a driver's open/close, or null. */
  ops: VmOperations | null = null;

  constructor(mm: MmStruct, start: number, end: number, flags: number, kind: VmaKind, pgoff: number) {
    this.mm = mm;
    this.start = start;
    this.end = end;
    this.flags = flags;
    this.kind = kind;
    this.pgoff = pgoff;
    this.file = null;
    this.anonVma = null;
    this.pfn = null;
  }

  get pages(): number {
    return this.end - this.start;
  }

  /** A private mapping that may be written: its pages are copied on write (is_cow_mapping). */
  get isCow(): boolean {
    return (this.flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;
  }

  get isShared(): boolean {
    return (this.flags & VM_SHARED) !== 0;
  }

  /** The page offset (in its file or anon range, modulo 2^32) of page @vpn of this VMA. */
  pgoffOf(vpn: number): number {
    return (this.pgoff + (vpn - this.start)) % 2 ** 32;
  }

  /** The page of this VMA at offset @index, or -1 outside it. */
  vpnOf(index: number): number {
    const vpn = this.start + ((index - this.pgoff + 2 ** 32) % 2 ** 32);
    return vpn < this.end ? vpn : -1;
  }

  /** A copy with the same backing over [start, end) (for splits). */
  clone(start: number, end: number): Vma {
    const v = new Vma(this.mm, start, end, this.flags, this.kind, this.pgoffOf(start));
    v.file = this.file;
    v.anonVma = this.anonVma;
    v.pfn = this.pfn === null ? null : this.pfn + (start - this.start);
    v.ops = this.ops;
    this.ops?.open?.(v);
    return v;
  }

  /** Whether @next could continue this VMA (vma_merge's can_vma_merge_after). */
  canMergeWith(next: Vma): boolean {
    return (
      this.end === next.start &&
      !this.ops?.close && !next.ops?.close &&
      (this.flags & MERGE_MASK) === (next.flags & MERGE_MASK) &&
      this.kind === next.kind &&
      this.file === next.file &&
      anonVmaCompatible(this, next) &&
      next.pgoff === (this.pgoff + this.pages) % 2 ** 32 &&
      (this.pfn === null) === (next.pfn === null) &&
      (this.pfn === null || next.pfn === this.pfn + this.pages)
    );
  }
}

/** vm_get_page_prot, as protection names for /proc/pid/maps: "rw-p", "r-xs", ... */
export function vmaPermString(flags: number): string {
  return (
    (flags & VM_READ ? "r" : "-") +
    (flags & VM_WRITE ? "w" : "-") +
    (flags & VM_EXEC ? "x" : "-") +
    (flags & VM_SHARED ? "s" : "p")
  );
}

/**
 * is_mergeable_anon_vma: the same anon_vma, or one side has none and the other's
 * anon_vma_chain is singular (its anon_vma is not one fork chained to a parent's).
 */
export function anonVmaCompatible(a: Vma, b: Vma): boolean {
  if (a.anonVma && b.anonVma) return a.anonVma === b.anonVma;
  const one = a.anonVma ?? b.anonVma;
  return !one || one.parent === null;
}
