/**
 * A camera exporting its frames and a display scanning them out: the V4L2 (VIDIOC_EXPBUF)
 * to DRM (a framebuffer imported by handle) pipeline the 2011 dma-buf thread was written for.
 *
 * - The camera owns a ring of streaming (non-coherent) system-memory buffers, each a dma-buf.
 *   capture(): the next buffer is mapped for the camera (FROM_DEVICE), the sensor's bytes are
 *   DMAed in, and a fence that completes one frame time later goes into the buffer's
 *   reservation as its WRITE fence. The completion (the fence signalling) unmaps the buffer,
 *   handing it back to the CPU.
 * - The display's scanout(db) attaches, waits for the buffer's writers (implicit sync: a
 *   reader waits for WRITE fences), maps it TO_DEVICE, reads it by DMA, unmaps and detaches.
 *   With `{implicitSync: false}` it skips the wait, as a compositor that ignores the fences
 *   would: it then maps a buffer the camera still owns for writing, and the ownership checker
 *   reports the two device owners ([D2]).
 * - Either device may be an IommuDevice (the DMA goes through the IOMMU and the DMA engine) or
 *   a plain dma-direct device (dmaDevice).
 * @module
 */
import type { OwningDevice } from "../check/ownership.js";
import {
  type DmaBuf, type DmaBufAttachment, dmaBufAttach, dmaBufDetach, dmaBufDeviceDma, dmaBufMapAttachment,
  dmaBufUnmapAttachment,
} from "../dma-buf/dma-buf.js";
import { DmaFence } from "../dma-buf/dma-fence.js";
import { DMA_RESV_USAGE_WRITE, dmaResvAddFence, dmaResvLock, dmaResvReserveFences, dmaResvUnlock, dmaResvUsageRw, dmaResvWaitTimeout } from "../dma-buf/dma-resv.js";
import { DmaError, einval } from "../errors.js";
import { framePageBytes } from "../mm/filemap.js";
import type { Kernel } from "../mm/kernel.js";
import { IommuDevice } from "../iommu/iommu.js";
import { HeapExporter } from "./heap-exporter.js";

export interface CameraOptions {
  /** The camera's DMA device. */
  dev: OwningDevice;
  /** Buffers in the ring, and pages per frame. */
  buffers?: number;
  pages?: number;
  /** Frame time in ns (default 30 fps). */
  frameNs?: number;
}

export interface Frame {
  seq: number;
  dmabuf: DmaBuf;
  /** Signals when the sensor has written the frame (its WRITE fence). */
  fence: DmaFence;
}

export class Camera {
  readonly kernel: Kernel;
  readonly dev: OwningDevice;
  readonly frameNs: number;
  readonly buffers: HeapExporter[];
  readonly #attach: DmaBufAttachment[];
  #seq = 0;

  constructor(k: Kernel, o: CameraOptions) {
    this.kernel = k;
    this.dev = o.dev;
    const n = o.buffers ?? 3;
    const pages = o.pages ?? 4;
    this.frameNs = o.frameNs ?? 33_333_333;
    if (!Number.isSafeInteger(n) || n < 1) throw einval("buffers", `${n} is not a buffer count`);
    if (!(this.frameNs > 0)) throw einval("frameNs", `${o.frameNs} is not a frame time`);
    this.buffers = Array.from({ length: n }, (_, i) => new HeapExporter(k, { pages, name: `${o.dev.name} frame ${i}` }));
    this.#attach = this.buffers.map((b) => dmaBufAttach(b.dmabuf, o.dev));
  }

  /** capture - start the next frame: the buffer's WRITE fence signals when the sensor is done. EBUSY if it is still being written. */
  capture(): Frame {
    const seq = this.#seq;
    const i = seq % this.buffers.length;
    const a = this.#attach[i]!;
    const db = a.dmabuf;
    if (a.sgt) throw new DmaError("EBUSY", `${this.dev.name}: buffer ${i} still holds a frame being captured`, { arg: "camera" });
    const sgt = dmaBufMapAttachment(a, "FROM_DEVICE");
    const byte = (seq + 1) & 0xff; // the sensor's frame: every byte its sequence number plus one
    dmaBufDeviceDma(a, true, { data: byte });
    if (!(this.dev instanceof IommuDevice)) this.#directWrite(i, byte); // dma-direct: no DMA engine, the bytes land here
    const fence = new DmaFence(this.kernel, { seqno: seq + 1, completesAt: this.kernel.clock.now + this.frameNs, onSignal: () => dmaBufUnmapAttachment(a, sgt, "FROM_DEVICE") });
    if (dmaResvLock(db.resv, null)) throw new DmaError("EDEADLK", "capture: the reservation lock is held", { arg: "camera" });
    try {
      dmaResvReserveFences(db.resv, 1);
      dmaResvAddFence(db.resv, fence, DMA_RESV_USAGE_WRITE);
    } finally {
      dmaResvUnlock(db.resv);
    }
    this.#seq++;
    return { seq, dmabuf: db, fence };
  }

  /** A dma-direct camera's sensor writes the frame into the buffer's frames. */
  #directWrite(i: number, byte: number): void {
    for (const pfn of this.buffers[i]!.frames) this.kernel.phys.write(pfn * 4096, new Uint8Array(4096).fill(byte));
  }
}

/** A display controller scanning out imported framebuffers. */
export class Display {
  readonly kernel: Kernel;
  readonly dev: OwningDevice;
  readonly stats = { scanouts: 0, waitedNs: 0 };

  constructor(k: Kernel, dev: OwningDevice) {
    this.kernel = k;
    this.dev = dev;
  }

  /** scanout - read @db by DMA, after waiting for its writers unless @implicitSync is false. Returns what the panel shows. */
  scanout(db: DmaBuf, o: { implicitSync?: boolean } = {}): Uint8Array {
    const k = this.kernel;
    const a = dmaBufAttach(db, this.dev);
    try {
      if (o.implicitSync ?? true) {
        const t0 = k.clock.now;
        dmaResvWaitTimeout(db.resv, dmaResvUsageRw(false), true, Infinity);
        this.stats.waitedNs += k.clock.now - t0;
      }
      const sgt = dmaBufMapAttachment(a, "TO_DEVICE");
      const r = dmaBufDeviceDma(a, false);
      const out = r
        ? Uint8Array.from(r.flatMap((x) => [...x.data.subarray(0, x.done)]))
        : Uint8Array.from((db.ops.frames?.(db) ?? []).flatMap((pfn) => [...framePageBytes(k, pfn)]));
      dmaBufUnmapAttachment(a, sgt, "TO_DEVICE");
      this.stats.scanouts++;
      return out;
    } finally {
      dmaBufDetach(db, a);
    }
  }
}
