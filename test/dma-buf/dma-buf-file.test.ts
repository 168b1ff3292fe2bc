/**
 * The dma-buf file: mmap into a process (range checks, the pages are the buffer's), vmap
 * shared by its users, and the ioctls with the kernel's argument checks: SYNC (and which
 * fences a CPU read or write waits for), SET_NAME, EXPORT_SYNC_FILE and IMPORT_SYNC_FILE,
 * ENOTTY for anything else.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, ENOTTY } from "../../src/abi/errno.js";
import { dmaBufBeginCpuAccess, dmaBufEndCpuAccess, dmaBufPut } from "../../src/dma-buf/dma-buf.js";
import { pinUserPages } from "../../src/index.js";
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME_B, DMA_BUF_SYNC_END,
  DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_WRITE, dmaBufIoctl, dmaBufMmap, dmaBufVmap, dmaBufVunmap, SyncFile,
} from "../../src/dma-buf/dma-buf-file.js";
import { DmaFence, dmaFenceGetStub, dmaFenceSignal } from "../../src/dma-buf/dma-fence.js";
import { isDmaFenceArray } from "../../src/dma-buf/dma-fence-array.js";
import {
  DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, dmaResvAddFence, dmaResvGetFences, dmaResvLock, dmaResvReserveFences, dmaResvUnlock,
} from "../../src/dma-buf/dma-resv.js";
import { HeapExporter } from "../../src/drivers/heap-exporter.js";
import { code, mmMachine, pfnAt } from "../mm/mm-helpers.js";

async function setup(o: { movable?: boolean } = {}) {
  const m = await mmMachine();
  const heap = new HeapExporter(m.kernel, { pages: 4, name: "buf", movable: o.movable });
  return { m, k: m.kernel, heap, db: heap.dmabuf };
}

function addFence(db: HeapExporter["dmabuf"], f: DmaFence, usage: number): void {
  dmaResvLock(db.resv, null);
  dmaResvReserveFences(db.resv, 1);
  dmaResvAddFence(db.resv, f, usage);
  dmaResvUnlock(db.resv);
}

describe("dma-buf mmap and vmap", () => {
  it("mmap maps the buffer's own pages (remap_pfn_range: GUP cannot pin them); a range past the end is EINVAL; a movable buffer has no mmap", async () => {
    const { m, heap, db } = await setup();
    const p = m.spawn();
    expect(code(() => dmaBufMmap(db, p, { length: 4096, offset: 4 * 4096 }))).toBe("EINVAL:length");
    expect(code(() => dmaBufMmap(db, p, { length: 3 * 4096, offset: 2 * 4096 }))).toBe("EINVAL:length");
    expect(db.refs).toBe(1); // the failed calls took no reference
    const va = Number(dmaBufMmap(db, p, { length: 2 * 4096, offset: 4096 }));
    expect([pfnAt(p, va), pfnAt(p, va + 4096)]).toEqual([heap.frames[1], heap.frames[2]]);
    expect(m.page(heap.frames[1]!)).toMatchObject({ refcount: 1, mapcount: 0 }); // special entries
    p.write(va, new Uint8Array([7, 8, 9]));
    expect(m.phys.read(heap.frames[1]! * 4096, 3)).toEqual(new Uint8Array([7, 8, 9]));
    expect(code(() => pinUserPages(p, va, 1, {}, [0]))).toBe("EFAULT:start"); // VM_PFNMAP
    p.munmap(va, 2 * 4096);
    expect(m.page(heap.frames[1]!)).toMatchObject({ refcount: 1, mapcount: 0 });
    expect(db.refs).toBe(1);
    const moving = await setup({ movable: true });
    expect(code(() => dmaBufMmap(moving.db, moving.m.spawn(), { length: 4096 }))).toBe("EINVAL:dmabuf");
  });

  it("each mapping holds the buffer: closing the last handle while mapped releases nothing; split and fork take references, munmap and exit give them back", async () => {
    const { m, heap, db } = await setup();
    const p = m.spawn();
    const va = Number(dmaBufMmap(db, p, { length: 4 * 4096 }));
    expect(db.refs).toBe(2);
    p.mprotect(va, 4096, "r"); // splits the VMA: two VMAs, two references
    expect(db.refs).toBe(3);
    const child = p.fork();
    expect(db.refs).toBe(5);
    child.exit();
    expect(db.refs).toBe(3);
    dmaBufPut(db); // the exporter's handle goes: the mappings still hold the buffer
    expect(heap.frames.length).toBe(4);
    p.munmap(va, 4 * 4096);
    expect(db.refs).toBe(0);
    expect(heap.frames).toEqual([]); // released with the last mapping
    expect(code(() => dmaBufMmap(db, p, { length: 4096 }))).toBe("EINVAL:dmabuf");
  });

  it("vmap is shared by its users and given back by the last vunmap", async () => {
    const { db, heap } = await setup();
    const a = dmaBufVmap(db);
    const b = dmaBufVmap(db);
    expect(b).toBe(a);
    expect(a.frames).toEqual(heap.frames);
    expect(a.vaddr >= 0xffffc90000000000n).toBe(true);
    dmaBufVunmap(db, a);
    expect(db.vmappingCounter).toBe(1);
    dmaBufVunmap(db, b);
    expect(code(() => dmaBufVunmap(db, a))).toBe("EINVAL:dmabuf");
    expect(dmaBufVmap(db).vaddr).not.toBe(a.vaddr); // a new mapping
  });

  it("a vmapped movable buffer cannot be evicted (its kernel mapping would point at freed frames)", async () => {
    const { db, heap } = await setup({ movable: true });
    const map = dmaBufVmap(db);
    expect(code(() => heap.evict())).toBe("EBUSY:dmabuf");
    dmaBufVunmap(db, map);
    heap.evict();
    expect(heap.stats.moves).toBe(1);
  });
});

describe("dma-buf ioctls", () => {
  it("DMA_BUF_IOCTL_SYNC checks its flags as the kernel does; a CPU read waits for writers only, a write for readers too", async () => {
    const { k, db } = await setup();
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_SYNC, { flags: 0 })).toBe(-EINVAL); // neither READ nor WRITE
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_END })).toBe(-EINVAL);
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_RW | 8 })).toBe(-EINVAL);
    const reader = new DmaFence(k, { completesAt: k.clock.now + 5_000 });
    addFence(db, reader, DMA_RESV_USAGE_READ);
    // Reading with the CPU (FROM_DEVICE) need not wait for a device that only reads.
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_READ })).toBe(0);
    expect(reader.isSignaled()).toBe(false);
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_READ | DMA_BUF_SYNC_END })).toBe(0);
    // Writing (TO_DEVICE) must: the device may still be reading the old contents.
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_WRITE })).toBe(0);
    expect(reader.isSignaled()).toBe(true);
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_SYNC, { flags: DMA_BUF_SYNC_WRITE | DMA_BUF_SYNC_END })).toBe(0);
    // The in-kernel calls follow the same rule.
    const writer = new DmaFence(k, { completesAt: k.clock.now + 5_000 });
    addFence(db, writer, DMA_RESV_USAGE_WRITE);
    dmaBufBeginCpuAccess(db, "FROM_DEVICE");
    expect(writer.isSignaled()).toBe(true);
    dmaBufEndCpuAccess(db, "FROM_DEVICE");
  });

  it("SET_NAME takes at most 31 characters; an unknown command is ENOTTY", async () => {
    const { db } = await setup();
    expect(dmaBufIoctl(db, DMA_BUF_SET_NAME_B, { name: "x".repeat(32) })).toBe(-EINVAL);
    expect(db.name).toBe("buf");
    expect(dmaBufIoctl(db, DMA_BUF_SET_NAME_B, { name: "x".repeat(31) })).toBe(0);
    expect(db.name).toBe("x".repeat(31));
    expect(dmaBufIoctl(db, 0x40086204, { flags: 0 })).toBe(-ENOTTY);
  });

  it("EXPORT_SYNC_FILE hands out the fences to wait for (stub, one, or an array); IMPORT_SYNC_FILE adds a file's fences", async () => {
    const { k, db } = await setup();
    const arg: { flags: number; fd?: SyncFile | null } = { flags: DMA_BUF_SYNC_WRITE };
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, { flags: 0 })).toBe(-EINVAL);
    expect(dmaBufIoctl(db, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg)).toBe(0);
    expect(arg.fd!.fence).toBe(dmaFenceGetStub(k)); // nothing to wait for
    const w = new DmaFence(k);
    const r = new DmaFence(k);
    addFence(db, w, DMA_RESV_USAGE_WRITE);
    addFence(db, r, DMA_RESV_USAGE_READ);
    const rd: { flags: number; fd?: SyncFile | null } = { flags: DMA_BUF_SYNC_READ };
    dmaBufIoctl(db, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, rd);
    expect(rd.fd!.fence).toBe(w); // a reader waits for the writer only
    dmaBufIoctl(db, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg);
    expect(isDmaFenceArray(arg.fd!.fence)).toBe(true); // a writer waits for both: one array
    dmaFenceSignal(w);
    expect(arg.fd!.fence.isSignaled()).toBe(false);
    dmaFenceSignal(r);
    expect(arg.fd!.fence.isSignaled()).toBe(true);
    // Import: a render job's fence becomes the buffer's WRITE fence.
    const other = await setup();
    const job = new DmaFence(other.k);
    expect(dmaBufIoctl(other.db, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: DMA_BUF_SYNC_WRITE, fd: null })).toBe(-EINVAL);
    expect(dmaBufIoctl(other.db, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, { flags: DMA_BUF_SYNC_WRITE, fd: new SyncFile(job) })).toBe(0);
    expect(dmaResvGetFences(other.db.resv, DMA_RESV_USAGE_WRITE)).toEqual([job]);
  });
});
