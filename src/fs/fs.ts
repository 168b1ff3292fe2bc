/**
 * machine.fs: files to map and to read and write through the page cache. A path names an
 * inode; `dax: true` makes an fsdax file whose pages are its blocks (device frames from
 * the machine's pmem), with no page cache.
 * @module
 */

import { DmaError, einval } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import { filemapGetFolio, folioMarkDirty, framePageBytes, frameWrite } from "../mm/filemap.js";
import { Inode } from "./inode.js";

export interface CreateFileOptions {
  /** Size in bytes. */
  size?: number;
  /** An fsdax file (its pages are device frames; no page cache). */
  dax?: boolean;
}

export class Fs {
  readonly #k: Kernel;
  readonly #files = new Map<string, Inode>();

  constructor(kernel: Kernel) {
    this.#k = kernel;
  }

  /** create - a new file of @opts.size bytes (zeros). EEXIST if @path exists. */
  create(path: string, opts: CreateFileOptions = {}): Inode {
    if (typeof path !== "string" || !path) throw einval("path", "must be a non-empty string");
    if (this.#files.has(path)) throw new DmaError("EEXIST", `create: ${path} exists`, { arg: "path" });
    const size = opts.size ?? 0;
    if (!Number.isSafeInteger(size) || size < 0) throw einval("size", `${size} is not a file size`);
    const k = this.#k;
    const inode = new Inode(k.mappingId(), path, opts.dax ? "dax" : "file", size);
    if (opts.dax) {
      const n = Math.ceil(size / 4096);
      if (n > k.phys.nrFreePages("DEVICE")) {
        throw new DmaError("ENOSPC", `create: the pmem device has no room for ${path} (${n} pages)`, { arg: "size" });
      }
      for (let i = 0; i < n; i++) {
        const pfn = k.phys.allocPages(0, { zone: "DEVICE" });
        k.setMapping(pfn, inode.id, i);
        inode.daxPfns.push(pfn);
      }
    }
    k.inodes.set(inode.id, inode);
    this.#files.set(path, inode);
    return inode;
  }

  /** shmemInode - the hidden shmem file behind a MAP_SHARED | MAP_ANONYMOUS mapping. */
  shmemInode(size: number): Inode {
    const k = this.#k;
    const inode = new Inode(k.mappingId(), `/dev/zero (deleted) #${k.inodes.size}`, "shmem", size);
    k.inodes.set(inode.id, inode);
    return inode;
  }

  /** lookup - the inode at @path; ENOENT if none. */
  lookup(path: string): Inode {
    const inode = this.#files.get(path);
    if (!inode) throw new DmaError("ENOENT", `${path}: no such file`, { arg: "path" });
    return inode;
  }

  #range(inode: Inode, off: number, len: number): void {
    if (!Number.isSafeInteger(off) || off < 0) throw einval("offset", `${off} is not a file offset`);
    if (!Number.isSafeInteger(len) || len < 0) throw einval("length", `${len} is not a length`);
  }

  /** read - @len bytes at @off through the page cache (short at end of file). */
  read(path: string, off: number, len: number): Uint8Array {
    const inode = this.lookup(path);
    this.#range(inode, off, len);
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

  /** write - @data at @off through the page cache, growing the file; pages become dirty. */
  write(path: string, off: number, data: Uint8Array): void {
    const inode = this.lookup(path);
    this.#range(inode, off, data.length);
    if (inode.kind === "dax" && off + data.length > inode.size) {
      throw new DmaError("ENOSPC", `write: fsdax file ${path} cannot grow`, { arg: "length" });
    }
    const k = this.#k;
    for (let at = 0; at < data.length; ) {
      const index = Math.floor((off + at) / 4096);
      const o = (off + at) % 4096;
      const n = Math.min(4096 - o, data.length - at);
      const pfn = filemapGetFolio(k, inode, index);
      frameWrite(k, pfn, o, data.subarray(at, at + n));
      if (inode.kind !== "dax") folioMarkDirty(k, pfn);
      at += n;
    }
    inode.size = Math.max(inode.size, off + data.length);
  }

  /** The files, by path. */
  list(): Inode[] {
    return [...this.#files.values()];
  }
}


