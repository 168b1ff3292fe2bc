/**
 * The dma-buf as a file and as kernel memory (drivers/dma-buf/dma-buf.c): mmap into a
 * process, vmap / vunmap, and the ioctls userspace uses, with sync files.
 *
 * - dmaBufMmap: EINVAL without the exporter's mmap op, or when offset + length run past the
 *   buffer (or it was released); each VMA holds a reference to the buffer, so closing the last
 *   handle while it is mapped does not release it. CPU access through the mapping is
 *   bracketed with DMA_BUF_IOCTL_SYNC.
 * - dmaBufVmap: one kernel mapping shared by its users (vmapping_counter); the last
 *   dmaBufVunmap gives it back. EINVAL without the op, or for a vunmap with no user.
 * - dmaBufIoctl(db, cmd, arg), magic 'b': SYNC (flags READ 1, WRITE 2, END 4; anything
 *   else or neither READ nor WRITE is EINVAL; READ is DMA_FROM_DEVICE, WRITE DMA_TO_DEVICE,
 *   both BIDIRECTIONAL; END ends the CPU access, else it begins), SET_NAME (at most 31
 *   characters and the NUL), EXPORT_SYNC_FILE (the fences a READ or WRITE must wait for, as
 *   one fence: none gives the signalled stub, several an array), IMPORT_SYNC_FILE (each
 *   fence of the file added as a WRITE fence with WRITE, else READ); another command is
 *   ENOTTY. They return 0 or -errno, as the system call would; sync files come back in arg.
 * @module
 */
import { EINVAL, ENOTTY } from "../abi/errno.js";
import { type Address, addressOf, pageCount } from "../core/addr.js";
import { DmaError, einval } from "../errors.js";
import { parseProt, type Process, type ProtSpec } from "../mm/process.js";
import { type DmaBuf, type DmaDataDirection, type IosysMap, dmaBufBeginCpuAccess, dmaBufEndCpuAccess, dmaBufPut } from "./dma-buf.js";
import { type DmaFence, dmaFenceContextAlloc, dmaFenceGetStub } from "./dma-fence.js";
import { dmaFenceArrayCreate } from "./dma-fence-array.js";
import { dmaFenceUnwrapForEach } from "./dma-fence-unwrap.js";
import {
  DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, dmaResvAddFence, dmaResvGetFences, dmaResvLock, dmaResvReserveFences, dmaResvUnlock,
  dmaResvUsageRw,
} from "./dma-resv.js";

export const DMA_BUF_SYNC_READ = 1 << 0;
export const DMA_BUF_SYNC_WRITE = 2 << 0;
export const DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
export const DMA_BUF_SYNC_START = 0 << 2;
export const DMA_BUF_SYNC_END = 1 << 2;
export const DMA_BUF_SYNC_VALID_FLAGS_MASK = DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END;
export const DMA_BUF_NAME_LEN = 32;

/* _IOW/_IOWR('b', nr, size): dir << 30 | size << 16 | 'b' << 8 | nr. */
export const DMA_BUF_IOCTL_SYNC = 0x40086200;
export const DMA_BUF_SET_NAME_A = 0x40046201;
export const DMA_BUF_SET_NAME_B = 0x40086201;
export const DMA_BUF_IOCTL_EXPORT_SYNC_FILE = 0xc0086202;
export const DMA_BUF_IOCTL_IMPORT_SYNC_FILE = 0x40086203;

/** A sync_file: a file carrying one fence (drivers/dma-buf/sync_file.c). */
export class SyncFile {
  readonly fence: DmaFence;
  constructor(fence: DmaFence) {
    this.fence = fence;
  }
}

/** dmaBufMmap - dma_buf_mmap_internal: map [@offset, + @length) of @db into @proc, shared. */
export function dmaBufMmap(db: DmaBuf, proc: Process, o: { length: Address; offset?: number; prot?: ProtSpec }): Address {
  if (db.refs <= 0) throw einval("dmabuf", `${db.name} was released`);
  if (!db.ops.mmap) throw einval("dmabuf", `${db.name}: the exporter has no mmap`);
  const pages = pageCount(o.length, "length");
  const offset = o.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % 4096) throw einval("offset", `${offset} is not a page offset`);
  const pgoff = offset / 4096;
  if (pgoff + pages > db.size / 4096) throw einval("length", `pages [${pgoff}, ${pgoff + pages}) run past the buffer's ${db.size / 4096}`);
  // The mapping holds a reference to the buffer's file (vma->vm_file), one per VMA: split
  // and fork take one more, munmap and exit give theirs back.
  const vmOps = { open: () => void db.refs++, close: () => dmaBufPut(db) };
  db.refs++;
  try {
    return addressOf(db.ops.mmap(db, proc, pgoff, pages, parseProt(o.prot), vmOps));
  } catch (e) {
    db.refs--;
    throw e;
  }
}

/** dmaBufVmap - dma_buf_vmap: the buffer's kernel mapping (shared by every user). */
export function dmaBufVmap(db: DmaBuf): IosysMap {
  if (!db.ops.vmap) throw einval("dmabuf", `${db.name}: the exporter has no vmap`);
  if (db.vmappingCounter > 0) {
    db.vmappingCounter++;
    return db.vmapPtr!;
  }
  db.vmapPtr = db.ops.vmap(db);
  db.vmappingCounter = 1;
  return db.vmapPtr;
}

/** dmaBufVunmap - dma_buf_vunmap: one user fewer; the last gives the mapping back. */
export function dmaBufVunmap(db: DmaBuf, map: IosysMap): void {
  if (db.vmappingCounter === 0) throw einval("dmabuf", `${db.name} is not vmapped`);
  if (map !== db.vmapPtr) throw einval("map", `that is not ${db.name}'s kernel mapping`);
  if (--db.vmappingCounter > 0) return;
  db.ops.vunmap?.(db, map);
  db.vmapPtr = null;
}

/** The flags of EXPORT/IMPORT_SYNC_FILE: READ, WRITE or both, nothing else. */
function syncFileFlags(flags: number): boolean {
  return Number.isInteger(flags) && (flags & ~DMA_BUF_SYNC_RW) === 0 && (flags & DMA_BUF_SYNC_RW) !== 0;
}

/** dma_resv_get_singleton: the fences of @usage as one (null: none). */
function resvSingleton(db: DmaBuf, usage: number): DmaFence | null {
  const fences = dmaResvGetFences(db.resv, usage);
  if (fences.length === 0) return null;
  if (fences.length === 1) return fences[0]!;
  const flat = fences.flatMap((f) => [...dmaFenceUnwrapForEach(f)]);
  return dmaFenceArrayCreate(db.kernel, flat, dmaFenceContextAlloc(db.kernel), 1, false);
}

export type DmaBufIoctlArg =
  | { flags: number }
  | { name: string }
  | { flags: number; fd?: SyncFile | null };

/** dmaBufIoctl - dma_buf_ioctl: 0 or -errno; EXPORT_SYNC_FILE puts the sync file in arg.fd. */
export function dmaBufIoctl(db: DmaBuf, cmd: number, arg: DmaBufIoctlArg): number {
  switch (cmd) {
    case DMA_BUF_IOCTL_SYNC: {
      const flags = (arg as { flags: number }).flags;
      if (!Number.isInteger(flags) || flags & ~DMA_BUF_SYNC_VALID_FLAGS_MASK) return -EINVAL;
      const dir: DmaDataDirection | null = (flags & DMA_BUF_SYNC_RW) === DMA_BUF_SYNC_RW
        ? "BIDIRECTIONAL" : flags & DMA_BUF_SYNC_READ ? "FROM_DEVICE" : flags & DMA_BUF_SYNC_WRITE ? "TO_DEVICE" : null;
      if (!dir) return -EINVAL;
      return flags & DMA_BUF_SYNC_END ? dmaBufEndCpuAccess(db, dir) : dmaBufBeginCpuAccess(db, dir);
    }
    case DMA_BUF_SET_NAME_A:
    case DMA_BUF_SET_NAME_B: {
      const name = (arg as { name: string }).name;
      if (typeof name !== "string" || new TextEncoder().encode(name).length >= DMA_BUF_NAME_LEN) return -EINVAL;
      db.name = name;
      return 0;
    }
    case DMA_BUF_IOCTL_EXPORT_SYNC_FILE: {
      const a = arg as { flags: number; fd?: SyncFile | null };
      if (!syncFileFlags(a.flags)) return -EINVAL;
      const fence = resvSingleton(db, dmaResvUsageRw((a.flags & DMA_BUF_SYNC_WRITE) !== 0)) ?? dmaFenceGetStub(db.kernel);
      a.fd = new SyncFile(fence);
      return 0;
    }
    case DMA_BUF_IOCTL_IMPORT_SYNC_FILE: {
      const a = arg as { flags: number; fd?: SyncFile | null };
      if (!syncFileFlags(a.flags) || !(a.fd instanceof SyncFile)) return -EINVAL;
      const usage = a.flags & DMA_BUF_SYNC_WRITE ? DMA_RESV_USAGE_WRITE : DMA_RESV_USAGE_READ;
      const fences = [...dmaFenceUnwrapForEach(a.fd.fence)];
      if (!fences.length) return 0;
      if (dmaResvLock(db.resv, null)) throw new DmaError("EDEADLK", "IMPORT_SYNC_FILE: the reservation lock is held by this context", { arg: "dmabuf" });
      try {
        const rc = dmaResvReserveFences(db.resv, fences.length);
        if (rc) return rc;
        for (const f of fences) dmaResvAddFence(db.resv, f, usage);
        return 0;
      } finally {
        dmaResvUnlock(db.resv);
      }
    }
    default:
      return -ENOTTY;
  }
}
