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
}
