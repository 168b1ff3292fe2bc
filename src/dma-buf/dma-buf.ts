/**
 * struct dma_buf (drivers/dma-buf/dma-buf.c): a buffer one driver exports and others import
 * by file handle, attach to, and map for their device's DMA.
 *
 * - dmaBufExport checks the exporter's ops as the kernel does: map, unmap and release are
 *   required, pin and unpin come together (EINVAL otherwise).
 * - Attachments: static (dmaBufAttach) or dynamic (dmaBufDynamicAttach with importer ops,
 *   moveNotify required). A static importer of an exporter that can move its buffer (one
 *   with pin/unpin) pins it at attach, so the exporter will not move it.
 * - dmaBufMapAttachment / Unmap: a dynamic importer holds the reservation lock, a static one
 *   does not (the call takes it). The sg table's addresses are the exporter's.
 * - dmaBufMoveNotify (the exporter, under the reservation lock, about to move the buffer):
 *   every dynamic importer's moveNotify runs; it must drop its mapping and map again later.
 * - CPU access is bracketed by dmaBufBeginCpuAccess / End (DMA_BUF_IOCTL_SYNC), which wait
 *   for the buffer's fences first.
 * - The ownership checker (src/check/ownership.ts) hears every map, unmap, bracket, CPU
 *   access (dmaBufCpuAccess) and DMA (dmaBufDeviceDma) of a streaming buffer.
 * @module
 */
import type { OwningDevice } from "../check/ownership.js";
import { DmaError, errnoName } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import type { Prot } from "../mm/mprotect.js";
import type { Process } from "../mm/process.js";
import type { VmOperations } from "../mm/vma.js";
import { type DmaResult, deviceDma } from "../iommu/dma-engine.js";
import { IommuDevice } from "../iommu/iommu.js";
import { type DmaResv, dmaResvInit, dmaResvLock, dmaResvUnlock, dmaResvUsageRw, dmaResvWaitTimeout } from "./dma-resv.js";

/** enum dma_data_direction. */
export type DmaDataDirection = "BIDIRECTIONAL" | "TO_DEVICE" | "FROM_DEVICE";

/** One segment of a mapping: a bus address the device uses, and its length. */
export interface SgEntry {
  dmaAddress: number;
  length: number;
}

export interface SgTable {
  readonly entries: SgEntry[];
}

/** struct dma_buf_ops (the exporter's). */
export interface DmaBufOps {
  attach?(db: DmaBuf, a: DmaBufAttachment): number;
  detach?(db: DmaBuf, a: DmaBufAttachment): void;
  pin?(a: DmaBufAttachment): number;
  unpin?(a: DmaBufAttachment): void;
  mapDmaBuf(a: DmaBufAttachment, dir: DmaDataDirection): SgTable;
  unmapDmaBuf(a: DmaBufAttachment, sgt: SgTable, dir: DmaDataDirection): void;
  release(db: DmaBuf): void;
  beginCpuAccess?(db: DmaBuf, dir: DmaDataDirection): number;
  endCpuAccess?(db: DmaBuf, dir: DmaDataDirection): number;
  /** (dmalab) The frames the buffer occupies now, for the checkers; absent: not tracked. */
  frames?(db: DmaBuf): number[];
  /**
   * Map pages [@pgoff, @pgoff + @pages) into @proc (dma_buf_mmap has checked the range), the
   * VMA carrying @vmOps (the buffer's file reference); the first page mapped.
   */
  mmap?(db: DmaBuf, proc: Process, pgoff: number, pages: number, prot: Prot, vmOps: VmOperations): number;
  /** A kernel mapping of the whole buffer (struct iosys_map). */
  vmap?(db: DmaBuf): IosysMap;
  vunmap?(db: DmaBuf, map: IosysMap): void;
}

/** struct iosys_map: a kernel mapping of a buffer (system memory or I/O memory), and the frames behind it. */
export interface IosysMap {
  readonly vaddr: bigint;
  readonly isIomem: boolean;
  readonly frames: readonly number[];
}

/** struct dma_buf_attach_ops (a dynamic importer's). */
export interface DmaBufAttachOps {
  /** The exporter moves the buffer: drop the mapping, map again before the next use. */
  moveNotify(a: DmaBufAttachment): void;
  allowPeer2peer?: boolean;
}

export class DmaBuf {
  readonly kernel: Kernel;
  /** Its name (DMA_BUF_SET_NAME changes it). */
  name: string;
  readonly size: number;
  readonly ops: DmaBufOps;
  readonly priv: unknown;
  readonly resv: DmaResv;
  /** A coherent buffer needs no ownership (write-combined, uncached, or a coherent device). */
  readonly coherent: boolean;
  readonly attachments: DmaBufAttachment[] = [];
  refs = 1;
  fd = -1;
  /** vmap users, and the mapping they share. */
  vmappingCounter = 0;
  vmapPtr: IosysMap | null = null;

  constructor(k: Kernel, o: { name: string; size: number; ops: DmaBufOps; priv: unknown; resv: DmaResv; coherent: boolean }) {
    this.kernel = k;
    this.name = o.name;
    this.size = o.size;
    this.ops = o.ops;
    this.priv = o.priv;
    this.resv = o.resv;
    this.coherent = o.coherent;
  }

  /** dma_buf_is_dynamic: the exporter can move the buffer (it has pin/unpin). */
  get dynamic(): boolean {
    return this.ops.pin !== undefined;
  }
}

export class DmaBufAttachment {
  readonly dmabuf: DmaBuf;
  readonly dev: OwningDevice;
  readonly importerOps: DmaBufAttachOps | null;
  /** Both sides allow peer-to-peer: the importer asks, the exporter's attach may clear it (a device it cannot reach). */
  peer2peer: boolean;
  sgt: SgTable | null = null;
  dir: DmaDataDirection | null = null;
  pinned = false;
  attached = true;
  priv: unknown = null;

  constructor(db: DmaBuf, dev: OwningDevice, importerOps: DmaBufAttachOps | null) {
    this.dmabuf = db;
    this.dev = dev;
    this.importerOps = importerOps;
    this.peer2peer = importerOps?.allowPeer2peer === true;
  }

  /** dma_buf_attachment_is_dynamic. */
  get dynamic(): boolean {
    return this.importerOps !== null;
  }
}

const files = new WeakMap<Kernel, { next: number; byFd: Map<number, DmaBuf> }>();

function fdTable(k: Kernel) {
  let t = files.get(k);
  if (!t) files.set(k, (t = { next: 3, byFd: new Map() }));
  return t;
}

/** dmaBufExport - dma_buf_export. EINVAL for missing or unpaired ops, or a bad size. */
export function dmaBufExport(
  k: Kernel, o: { ops: DmaBufOps; size: number; priv?: unknown; name?: string; resv?: DmaResv; coherent?: boolean },
): DmaBuf {
  const ops = o.ops;
  if (!ops || typeof ops.mapDmaBuf !== "function" || typeof ops.unmapDmaBuf !== "function" || typeof ops.release !== "function") {
    throw new DmaError("EINVAL", "dmaBufExport: ops.mapDmaBuf, ops.unmapDmaBuf and ops.release are required", { arg: "ops" });
  }
  if (!ops.pin !== !ops.unpin) throw new DmaError("EINVAL", "dmaBufExport: ops.pin and ops.unpin come together", { arg: "ops" });
  if (!ops.beginCpuAccess !== !ops.endCpuAccess) {
    throw new DmaError("EINVAL", "dmaBufExport: ops.beginCpuAccess and ops.endCpuAccess come together", { arg: "ops" });
  }
  if (!Number.isSafeInteger(o.size) || o.size <= 0 || o.size % 4096) throw new DmaError("EINVAL", `dmaBufExport: size ${o.size} is not a positive multiple of 4 KiB`, { arg: "size" });
  const db = new DmaBuf(k, {
    name: o.name ?? "dmabuf", size: o.size, ops, priv: o.priv ?? null, resv: o.resv ?? dmaResvInit(k), coherent: o.coherent ?? false,
  });
  k.trace.count("dma_buf.exported");
  return db;
}

/** dmaBufFd - dma_buf_fd: a file handle another driver (or process) imports it by. */
export function dmaBufFd(db: DmaBuf): number {
  if (db.fd >= 0) return db.fd;
  const t = fdTable(db.kernel);
  db.fd = t.next++;
  t.byFd.set(db.fd, db);
  return db.fd;
}

/** dmaBufGet - dma_buf_get: the buffer behind @fd (a reference). EBADF for anything else. */
export function dmaBufGet(k: Kernel, fd: number): DmaBuf {
  const db = fdTable(k).byFd.get(fd);
  if (!db || db.refs <= 0) throw new DmaError("EBADF", `dmaBufGet: ${fd} is not a dma-buf file`, { arg: "fd" });
  db.refs++;
  return db;
}

/** dmaBufPut - dma_buf_put: the last reference releases the buffer (ops.release). */
export function dmaBufPut(db: DmaBuf): void {
  if (db.refs <= 0) throw new DmaError("EINVAL", "dmaBufPut: the buffer was released", { arg: "dmabuf" });
  if (--db.refs > 0) return;
  if (db.fd >= 0) fdTable(db.kernel).byFd.delete(db.fd);
  db.ops.release(db);
}

/** dmaBufAttach - dma_buf_attach: a static attachment of @dev. */
export function dmaBufAttach(db: DmaBuf, dev: OwningDevice): DmaBufAttachment {
  return dmaBufDynamicAttach(db, dev, null);
}

/** dmaBufDynamicAttach - dma_buf_dynamic_attach. EINVAL without importer ops.moveNotify. */
export function dmaBufDynamicAttach(db: DmaBuf, dev: OwningDevice, importerOps: DmaBufAttachOps | null): DmaBufAttachment {
  if (db.refs <= 0) throw new DmaError("EINVAL", "dmaBufAttach: the buffer was released", { arg: "dmabuf" });
  if (importerOps && typeof importerOps.moveNotify !== "function") {
    throw new DmaError("EINVAL", "dmaBufDynamicAttach: importer ops need moveNotify", { arg: "importer_ops" });
  }
  const a = new DmaBufAttachment(db, dev, importerOps);
  const rc = db.ops.attach?.(db, a) ?? 0;
  if (rc) throw new DmaError("EINVAL", `dmaBufAttach: the exporter refused (${rc})`, { arg: "dev" });
  // A static importer of a buffer that can move pins it: the exporter must not move it.
  if (!a.dynamic && db.dynamic) {
    lockResv(db, "dma_buf_attach");
    try {
      const prc = db.ops.pin!(a);
      if (prc) {
        db.ops.detach?.(db, a);
        throw new DmaError(prc < 0 ? errnoName(-prc) : "ENOMEM", `dmaBufAttach: the exporter could not pin the buffer (${prc})`, { arg: "dmabuf" });
      }
      a.pinned = true;
    } finally {
      dmaResvUnlock(db.resv);
    }
  }
  db.attachments.push(a);
  return a;
}

function lockResv(db: DmaBuf, fn: string): void {
  const rc = dmaResvLock(db.resv, null);
  if (rc) throw new DmaError("EDEADLK", `${fn}: the reservation lock is held by this context`, { arg: "dmabuf" });
}

function checkAttached(a: DmaBufAttachment, fn: string): void {
  if (!a.attached) throw new DmaError("EINVAL", `${fn}: the attachment was detached`, { arg: "attach" });
}

/** dmaBufDetach - dma_buf_detach: a mapping left is unmapped first. EINVAL if already detached. */
export function dmaBufDetach(db: DmaBuf, a: DmaBufAttachment): void {
  if (a.dmabuf !== db) throw new DmaError("EINVAL", "dmaBufDetach: the attachment is of another buffer", { arg: "attach" });
  checkAttached(a, "dmaBufDetach");
  if (a.sgt) unmapLocked(a, a.sgt, a.dir!);
  if (a.pinned) {
    lockResv(db, "dma_buf_detach");
    try {
      db.ops.unpin!(a);
      a.pinned = false;
    } finally {
      dmaResvUnlock(db.resv);
    }
  }
  db.ops.detach?.(db, a);
  a.attached = false;
  db.attachments.splice(db.attachments.indexOf(a), 1);
}

/**
 * dmaBufMapAttachment - dma_buf_map_attachment: the buffer mapped for @a's device in
 * direction @dir. A dynamic importer must hold the reservation lock (EINVAL otherwise);
 * EBUSY if @a is mapped already.
 */
export function dmaBufMapAttachment(a: DmaBufAttachment, dir: DmaDataDirection, fn = "dma_buf_map_attachment"): SgTable {
  checkAttached(a, "dmaBufMapAttachment");
  const db = a.dmabuf;
  if (a.dynamic && !db.resv.lock.isLocked) {
    throw new DmaError("EINVAL", "dmaBufMapAttachment: a dynamic importer maps with the reservation lock held", { arg: "attach" });
  }
  if (a.sgt) throw new DmaError("EBUSY", "dmaBufMapAttachment: the attachment is mapped already", { arg: "attach" });
  const locked = !a.dynamic;
  if (locked) lockResv(db, fn);
  try {
    const sgt = db.ops.mapDmaBuf(a, dir);
    a.sgt = sgt;
    a.dir = dir;
    db.kernel.checkers.ownership?.mapped(db, a, a.dev, dir !== "TO_DEVICE", fn);
    db.kernel.trace.count("dma_buf.map");
    return sgt;
  } finally {
    if (locked) dmaResvUnlock(db.resv);
  }
}

function unmapLocked(a: DmaBufAttachment, sgt: SgTable, dir: DmaDataDirection): void {
  const db = a.dmabuf;
  db.ops.unmapDmaBuf(a, sgt, dir);
  a.sgt = null;
  a.dir = null;
  db.kernel.checkers.ownership?.unmapped(db, a);
}

/** dmaBufUnmapAttachment - EINVAL for a table that is not @a's current mapping. */
export function dmaBufUnmapAttachment(a: DmaBufAttachment, sgt: SgTable, dir: DmaDataDirection): void {
  checkAttached(a, "dmaBufUnmapAttachment");
  if (!a.sgt || a.sgt !== sgt) throw new DmaError("EINVAL", "dmaBufUnmapAttachment: that table is not this attachment's mapping", { arg: "sg_table" });
  if (a.dir !== dir) throw new DmaError("EINVAL", `dmaBufUnmapAttachment: mapped ${a.dir}, unmapped ${dir}`, { arg: "direction" });
  if (a.dynamic && !a.dmabuf.resv.lock.isLocked) {
    throw new DmaError("EINVAL", "dmaBufUnmapAttachment: a dynamic importer unmaps with the reservation lock held", { arg: "attach" });
  }
  unmapLocked(a, sgt, dir);
}

/** dmaBufMoveNotify - dma_buf_move_notify: the exporter will move the buffer (the lock held). */
export function dmaBufMoveNotify(db: DmaBuf): void {
  if (!db.resv.lock.isLocked) throw new DmaError("EINVAL", "dmaBufMoveNotify: the reservation lock is not held", { arg: "dmabuf" });
  for (const a of [...db.attachments]) if (a.importerOps) a.importerOps.moveNotify(a);
  db.kernel.trace.count("dma_buf.move_notify");
}

/** Whether any attachment pins @db (a move is not allowed then). */
export function dmaBufPinned(db: DmaBuf): boolean {
  return db.attachments.some((a) => a.pinned);
}

/** dmaBufPin - dma_buf_pin (a dynamic importer, the lock held). */
export function dmaBufPin(a: DmaBufAttachment): number {
  if (!a.dmabuf.resv.lock.isLocked) throw new DmaError("EINVAL", "dmaBufPin: the reservation lock is not held", { arg: "attach" });
  if (!a.dmabuf.ops.pin) return 0;
  const rc = a.dmabuf.ops.pin(a);
  if (!rc) a.pinned = true;
  return rc;
}

export function dmaBufUnpin(a: DmaBufAttachment): void {
  if (!a.dmabuf.resv.lock.isLocked) throw new DmaError("EINVAL", "dmaBufUnpin: the reservation lock is not held", { arg: "attach" });
  if (!a.pinned) throw new DmaError("EINVAL", "dmaBufUnpin: not pinned", { arg: "attach" });
  a.dmabuf.ops.unpin?.(a);
  a.pinned = false;
}

/**
 * dmaBufBeginCpuAccess - dma_buf_begin_cpu_access: wait for the fences the access must
 * (dma_resv_usage_rw), then the exporter's op; the CPU owns the buffer until End. @dir is the
 * DMA direction the CPU's access serves: TO_DEVICE (or BIDIRECTIONAL) means the CPU writes,
 * so it waits for readers and writers; FROM_DEVICE means it reads, and waits for writers.
 */
export function dmaBufBeginCpuAccess(db: DmaBuf, dir: DmaDataDirection): number {
  dmaResvWaitTimeout(db.resv, dmaResvUsageRw(dir === "BIDIRECTIONAL" || dir === "TO_DEVICE"), true, Infinity);
  const rc = db.ops.beginCpuAccess?.(db, dir) ?? 0;
  if (!rc) db.kernel.checkers.ownership?.cpuBracket(db, true);
  return rc;
}

export function dmaBufEndCpuAccess(db: DmaBuf, dir: DmaDataDirection): number {
  const rc = db.ops.endCpuAccess?.(db, dir) ?? 0;
  db.kernel.checkers.ownership?.cpuBracket(db, false);
  return rc;
}

/** A driver (@who) reads or writes the buffer with the CPU (through vmap or its own mapping). */
export function dmaBufCpuAccess(db: DmaBuf, who: string, write: boolean): void {
  db.kernel.checkers.ownership?.cpuAccess(db, who, write, `${who}: CPU ${write ? "write" : "read"}`);
}

/**
 * The device of @a does DMA into (@write) or out of the buffer, through its mapping: each
 * segment of @sgt (default: @a's current table). A device behind the IOMMU really moves the
 * bytes through the DMA engine (@data, repeated, for a write; else 0xa5), so a table kept past
 * a move reaches the frames the buffer left and the DMA checker reports it ([M1]); the
 * results come back. For a dma-direct device the table's addresses are frames: one the
 * exporter no longer has for this buffer (ops.frames tells) is reported ([D4]).
 */
export function dmaBufDeviceDma(a: DmaBufAttachment, write: boolean, o: { sgt?: SgTable; data?: number } = {}): DmaResult[] | null {
  const db = a.dmabuf;
  const fn = `${a.dev.name}: DMA ${write ? "write" : "read"}`;
  const own = db.kernel.checkers.ownership;
  const sgt = o.sgt ?? a.sgt;
  if (a.dev instanceof IommuDevice) {
    own?.dma(db, a, a.dev, write, fn);
    db.kernel.trace.count("dma_buf.dma");
    if (!sgt) return [];
    const dev = a.dev;
    return deviceDma(dev.domain.iommu, sgt.entries.map((e) => (write ? { dev, addr: e.dmaAddress, data: new Uint8Array(e.length).fill(o.data ?? 0xa5) } : { dev, addr: e.dmaAddress, len: e.length })));
  }
  const held = db.ops.frames?.(db);
  if (own && a.sgt && held) {
    const mine = new Set(held);
    const stale: number[] = [];
    for (const e of a.sgt.entries) {
      for (let at = e.dmaAddress; at < e.dmaAddress + e.length; at += 4096) if (!mine.has(Math.floor(at / 4096))) stale.push(Math.floor(at / 4096));
    }
    if (stale.length) own.staleDma(db, a.dev, stale, fn);
  }
  own?.dma(db, a, a.dev, write, fn);
  db.kernel.trace.count("dma_buf.dma");
  return null;
}
