/**
 * machine.fs: files to map and to read and write through the page cache. A path names an
 * inode; `dax: true` makes an fsdax file whose pages are its blocks (device frames from
 * the machine's pmem), with no page cache.
 *
 * - read and write go through the page cache (filemap_read, generic_perform_write); a write
 *   dirties the pages, and past the end grows the file.
 * - writeback(path) / fsync(path) write a file's dirty pages (filemap_write_and_wait);
 *   writeback() writes every file's (sync). Pages are cleaned with page_mkclean first.
 *   dropCaches() then lets the next read come from disk.
 * - truncate(path, size) changes the size (do_truncate): a shrink unmaps and drops the pages
 *   past the end from every process and from the cache, and frees the blocks on disk.
 * - fsdax files grow by taking blocks from pmem (ENOSPC when it has none left); a block
 *   still held by a DMA pin is not given back (EBUSY: the kernel waits for it).
 * @module
 */

import * as F from "../abi/frame.js";
import { DmaError, einval } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import { filemapGetFolio, folioMarkDirty, framePageBytes, frameWrite } from "../mm/filemap.js";
import {
  daxLayoutBusyPage, invalidateMappingPages, iomapZeroRange, type TruncateStats, truncateSetsize, unmapMappingPages,
} from "../mm/truncate.js";
import { filemapWriteAndWaitRange, syncInodes, type WritebackStats } from "../mm/writeback.js";
import { Inode } from "./inode.js";

export interface CreateFileOptions {
  /** Size in bytes. */
  size?: number;
  /** An fsdax file (its pages are device frames; no page cache). */
  dax?: boolean;
}

/** The largest file: a page's index is 32 bits wide in struct page (16 TiB). */
export const MAX_FILE_SIZE = 2 ** 32 * 4096;

export class Fs {
  readonly #k: Kernel;
  readonly #files = new Map<string, Inode>();

  constructor(kernel: Kernel) {
    this.#k = kernel;
  }

  /**
   * A file size or offset: a safe integer in [0, MAX_FILE_SIZE]; EINVAL naming @arg if not a
   * size, EFBIG past the largest file (as the kernel's s_maxbytes check).
   */
  #checkSize(arg: string, n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw einval(arg, `${n} is not a file ${arg}`);
    if (n > MAX_FILE_SIZE) {
      throw new DmaError("EFBIG", `${arg}: ${n} is past the largest file size (${MAX_FILE_SIZE} bytes)`, { arg });
    }
  }

  /** create - a new file of @opts.size bytes (zeros). EEXIST if @path exists. */
  create(path: string, opts: CreateFileOptions = {}): Inode {
    if (typeof path !== "string" || !path) throw einval("path", "must be a non-empty string");
    if (this.#files.has(path)) throw new DmaError("EEXIST", `create: ${path} exists`, { arg: "path" });
    const size = opts.size ?? 0;
    this.#checkSize("size", size);
    const k = this.#k;
    if (opts.dax) this.#daxRoom(path, Math.ceil(size / 4096), "size");
    const inode = new Inode(k.mappingId(), path, opts.dax ? "dax" : "file", size);
    if (opts.dax) this.#daxAddBlocks(inode, Math.ceil(size / 4096));
    k.inodes.set(inode.id, inode);
    this.#files.set(path, inode);
    return inode;
  }

  /** EINVAL without pmem, ENOSPC when the pmem device has fewer than @n free blocks. */
  #daxRoom(path: string, n: number, arg: string): void {
    const k = this.#k;
    if (!k.phys.zones().some((z) => z.name === "DEVICE")) {
      throw einval("dax", `${path}: the machine has no persistent memory (set memory.pmem)`);
    }
    if (n > k.phys.nrFreePages("DEVICE")) {
      throw new DmaError("ENOSPC", `${path}: the pmem device has no room for ${n} more blocks`, { arg });
    }
  }

  /** Give fsdax file @inode blocks up to index @pages - 1 (the caller checked the room). */
  #daxAddBlocks(inode: Inode, pages: number): void {
    const k = this.#k;
    while (inode.daxPfns.length < pages) {
      const pfn = k.phys.allocPages(0, { zone: "DEVICE" });
      k.setMapping(pfn, inode.id, inode.daxPfns.length);
      inode.daxPfns.push(pfn);
    }
  }

  /** shmemInode - the hidden shmem file behind a MAP_SHARED | MAP_ANONYMOUS mapping. */
  shmemInode(size: number): Inode {
    const k = this.#k;
    const inode = new Inode(k.mappingId(), `/dev/zero (deleted) #${k.inodes.size}`, "shmem", size);
    inode.hidden = true;
    k.inodes.set(inode.id, inode);
    return inode;
  }

  /** lookup - the inode at @path; ENOENT if none. */
  lookup(path: string): Inode {
    const inode = this.#files.get(path);
    if (!inode) throw new DmaError("ENOENT", `${path}: no such file`, { arg: "path" });
    return inode;
  }

  #range(off: number, len: number): void {
    if (!Number.isSafeInteger(off) || off < 0) throw einval("offset", `${off} is not a file offset`);
    if (!Number.isSafeInteger(len) || len < 0) throw einval("length", `${len} is not a length`);
  }

  /** read - @len bytes at @off through the page cache (short at end of file). */
  read(path: string, off: number, len: number): Uint8Array {
    const inode = this.lookup(path);
    this.#range(off, len);
    const end = Math.min(off + len, inode.size);
    const out = new Uint8Array(Math.max(0, end - off));
    for (let at = off; at < end; ) {
      const index = Math.floor(at / 4096);
      const o = at % 4096;
      const n = Math.min(4096 - o, end - at);
      const pfn = filemapGetFolio(this.#k, inode, index);
      out.set(framePageBytes(this.#k, pfn).subarray(o, o + n), at - off);
      at += n;
    }
    return out;
  }

  /**
   * write - @data at @off through the page cache; pages become dirty. Writing past the end
   * grows the file (an fsdax file takes new blocks: ENOSPC when pmem has none left).
   */
  write(path: string, off: number, data: Uint8Array): void {
    const inode = this.lookup(path);
    this.#range(off, data.length);
    const k = this.#k;
    const end = off + data.length;
    if (end > MAX_FILE_SIZE) {
      throw new DmaError("EFBIG", `length: the write ends past the largest file size (${MAX_FILE_SIZE} bytes)`, { arg: "length" });
    }
    if (inode.kind === "dax") this.#daxRoom(path, Math.ceil(end / 4096) - inode.daxPfns.length, "length");
    if (off > inode.size) this.#zeroEof(inode, off);
    if (inode.kind === "dax") this.#daxAddBlocks(inode, Math.ceil(end / 4096));
    for (let at = 0; at < data.length; ) {
      const index = Math.floor((off + at) / 4096);
      const o = (off + at) % 4096;
      const n = Math.min(4096 - o, data.length - at);
      const pfn = filemapGetFolio(k, inode, index);
      frameWrite(k, pfn, o, data.subarray(at, at + n));
      if (inode.kind !== "dax") folioMarkDirty(k, pfn);
      at += n;
    }
    inode.size = Math.max(inode.size, end);
  }

  /**
   * writeback - write the dirty pages of @path, or of every file without one, to disk
   * (filemap_write_and_wait; sync): each page is cleaned in every mapping first
   * (page_mkclean), so the next write through a mapping faults and dirties it again.
   * fsdax files have nothing to write. Returns the pages written and how many of them
   * looked DMA-pinned (written all the same: hazard [O1]). ENOENT for an unknown path.
   */
  writeback(path?: string): WritebackStats {
    if (path !== undefined) return filemapWriteAndWaitRange(this.#k, this.lookup(path));
    return syncInodes(this.#k, this.list());
  }

  /** fsync - write back @path's dirty pages (vfs_fsync over the whole file). */
  fsync(path: string): WritebackStats {
    return this.writeback(path);
  }

  /**
   * dropCaches - drop every file's clean, unmapped, unreferenced cached pages
   * (echo 1 > /proc/sys/vm/drop_caches); the next read of them comes from disk. Dirty,
   * mapped and pinned pages stay. Returns the pages dropped.
   */
  dropCaches(): number {
    let n = 0;
    for (const inode of this.#files.values()) n += invalidateMappingPages(this.#k, inode);
    return n;
  }

  /**
   * truncate - make @path @size bytes long (do_truncate: truncate_setsize, then the file
   * system frees the blocks past the end).
   *
   * - Shrinking unmaps the pages past the new end from every process (private copies too),
   *   drops them from the page cache (a page still pinned stays allocated, out of the
   *   cache), and zeroes the new last page past the end, in memory and on disk. An access
   *   past the new end through a mapping is SIGBUS.
   * - Growing adds zeros (an fsdax file takes blocks from pmem: ENOSPC if it has too few).
   * - EBUSY for an fsdax shrink while a cut block is held by something other than the file
   *   and its mappings (a DMA pin): the kernel waits for it (ext4_break_layouts); here the
   *   call fails and changes nothing.
   * Returns the entries unmapped, pages dropped and pages kept (still referenced).
   */
  truncate(path: string, size: number): TruncateStats {
    const inode = this.lookup(path);
    this.#checkSize("size", size);
    const k = this.#k;
    const ts = k.clock.now;
    const from = inode.size;
    let r: TruncateStats;
    if (inode.kind === "dax") r = this.#daxTruncate(inode, size);
    else {
      if (size > from) this.#zeroEof(inode, size);
      r = truncateSetsize(k, inode, size);
      if (size < from) inode.truncateDisk(size);
    }
    k.trace.emit("mm.truncate", { path, from, to: size, unmapped: r.unmapped, dropped: r.dropped, kept: r.kept }, ts);
    return r;
  }

  /**
   * The file grows to @to bytes: zero what lies past the old end in the page straddling it
   * (a mapping may have written there), up to @to (iomap_zero_range, as xfs_setattr_size and
   * xfs_file_write_checks do before the size changes).
   */
  #zeroEof(inode: Inode, to: number): void {
    const from = inode.size;
    iomapZeroRange(this.#k, inode, from, Math.min(to, Math.ceil(from / 4096) * 4096) - from);
  }

  /** truncate for fsdax: the file's blocks are its pages. */
  #daxTruncate(inode: Inode, size: number): TruncateStats {
    const k = this.#k;
    const pages = Math.ceil(size / 4096);
    const out: TruncateStats = { unmapped: 0, dropped: 0, kept: 0 };
    if (pages > inode.daxPfns.length) this.#daxRoom(inode.path, pages - inode.daxPfns.length, "size");
    const busy = daxLayoutBusyPage(k, inode, pages);
    if (busy >= 0) {
      throw new DmaError(
        "EBUSY",
        `truncate: block ${inode.daxPfns.indexOf(busy)} of ${inode.path} (pfn ${busy}) is held beyond its mappings ` +
          "(a DMA pin); fsdax cannot free it until it is released",
        { arg: "size" },
      );
    }
    if (size > inode.size) {
      this.#zeroEof(inode, size);
      inode.size = size;
      this.#daxAddBlocks(inode, pages);
      return out;
    }
    inode.size = size;
    out.unmapped = unmapMappingPages(k, inode, pages);
    iomapZeroRange(k, inode, size, pages * 4096 - size); // dax_truncate_page
    while (inode.daxPfns.length > pages) {
      const pfn = inode.daxPfns.pop()!;
      k.pageFlags(pfn, 0, F.PG_dirty);
      k.setMapping(pfn, 0, 0);
      k.phys.freePages(pfn, 0);
      out.dropped++;
    }
    if (out.dropped) k.trace.count("mm.dax_blocks_freed", out.dropped);
    return out;
  }

  /** The files, by path. */
  list(): Inode[] {
    return [...this.#files.values()];
  }
}
