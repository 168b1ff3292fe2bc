/**
 * An inode and its address_space: the file's size, its contents on the emulated disk, the
 * page cache (index -> frame), and every VMA mapping it (i_mmap). fsdax files have no page
 * cache: their pages are the file's blocks, device frames allocated at creation. shmem files
 * (MAP_SHARED | MAP_ANONYMOUS, memfd) have no disk: their pages live in the cache.
 * @module
 */
import type { Vma } from "../mm/vma.js";

export type InodeKind = "file" | "shmem" | "dax";

export class Inode {
  /** The address_space id: what `mapping` of its page-cache pages holds. */
  readonly id: number;
  readonly path: string;
  readonly kind: InodeKind;
  /** Size in bytes. */
  size: number;
  /** The page cache: page index -> frame. */
  readonly pages = new Map<number, number>();
  /** What is on disk, by page index; a page never written is zeros. */
  readonly disk = new Map<number, Uint8Array>();
  /** i_mmap: the VMAs that map this file. */
  readonly mmaps = new Set<Vma>();
  /**
   * The hidden shmem file behind MAP_SHARED | MAP_ANONYMOUS memory: no path reaches it, so
   * it goes (with its pages) when its last mapping does.
   */
  hidden = false;
  /** fsdax: the file's blocks, one device frame per page index. */
  readonly daxPfns: number[] = [];

  constructor(id: number, path: string, kind: InodeKind, size: number) {
    this.id = id;
    this.path = path;
    this.kind = kind;
    this.size = size;
  }

  get pagesInFile(): number {
    return Math.ceil(this.size / 4096);
  }

  /**
   * truncateDisk - the file system's side of a truncate to @size bytes (ext4_truncate):
   * the blocks past the end are freed, and the block holding the end is zeroed past it, so
   * bytes beyond end of file read as zeros if the file grows again.
   */
  truncateDisk(size: number): void {
    const pages = Math.ceil(size / 4096);
    for (const index of [...this.disk.keys()]) {
      if (index >= pages) this.disk.delete(index);
    }
    const tail = this.disk.get(Math.floor(size / 4096));
    if (tail && size % 4096) tail.fill(0, size % 4096);
  }
}
