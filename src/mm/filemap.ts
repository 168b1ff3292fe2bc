/**
 * The page cache (mm/filemap.c): finding or reading in the folio at an index of a file,
 * marking folios dirty, and reading or writing file contents through the cache. A cached
 * page holds one reference for the cache; each mapping of it holds one more.
 * @module
 */
import * as F from "../abi/frame.js";
import { DmaError } from "../errors.js";
import type { Inode } from "../fs/inode.js";
import type { Kernel } from "./kernel.js";

/**
 * filemapGetFolio - the page-cache frame of @inode at @index, read in from the disk (or
 * zero-filled) when absent. For fsdax files, the file's block at @index.
 */
export function filemapGetFolio(k: Kernel, inode: Inode, index: number): number {
  if (inode.kind === "dax") {
    const pfn = inode.daxPfns[index];
    if (pfn === undefined) throw new DmaError("EFAULT", `fsdax file ${inode.path} has no block ${index}`, { arg: "index" });
    return pfn;
  }
  const have = inode.pages.get(index);
  if (have !== undefined) return have;
  const pfn = k.allocUserFolio(0);
  const data = inode.disk.get(index);
  if (data) {
    const addr = k.check(k.core.x.frameBytes(pfn, 1), "filemap");
    k.core.u8.set(data, addr);
  }
  const swapbacked = inode.kind === "shmem" ? F.PG_swapbacked : 0;
  k.pageFlags(pfn, F.PG_uptodate | swapbacked, 0);
  k.setMapping(pfn, inode.id, index);
  inode.pages.set(index, pfn);
  k.lruAdd(pfn, inode.kind === "shmem");
  k.trace.count("mm.pagecache_reads");
  return pfn;
}

/** folioMarkDirty - set_page_dirty / folio_mark_dirty: the page must be written back. */
export function folioMarkDirty(k: Kernel, pfn: number): boolean {
  const old = k.pageFlags(pfn, F.PG_dirty, 0);
  return (old & F.PG_dirty) === 0;
}

/** The bytes of frame @pfn (a copy), zeros when it holds none. */
export function framePageBytes(k: Kernel, pfn: number): Uint8Array {
  const addr = k.check(k.core.x.frameBytes(pfn, 0), "frameBytes");
  return addr ? k.core.u8.slice(addr, addr + 4096) : new Uint8Array(4096);
}

/** Write @data at @off of frame @pfn, giving the frame bytes if it has none. */
export function frameWrite(k: Kernel, pfn: number, off: number, data: Uint8Array): void {
  const addr = k.check(k.core.x.frameBytes(pfn, 1), "frameBytes");
  k.core.u8.set(data, addr + off);
}
