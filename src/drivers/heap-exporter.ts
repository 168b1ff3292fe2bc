/**
 * A dma-buf exporter over system memory: the dma-heap "system" heap (fixed pages), or, with
 * `movable`, a GPU's buffer that its memory manager may move (TTM-style eviction). The sg
 * table comes from the DMA API for the attached device: an IOMMU device (iommuProbeDevice)
 * gets IOVAs from dmaMapSg (unmapped again by dmaUnmapSg); any other device is dma-direct and
 * sees a page at its physical address (consecutive frames merge into one segment).
 *
 * A fixed buffer can be mmapped (remap_pfn_range of its pages, as the system heap's mmap
 * does: a VM_PFNMAP mapping GUP cannot pin); every buffer can be vmapped. A movable one has no mmap: its CPU mappings would
 * have to be zapped on each move, which this exporter does not do.
 *
 * evict(): under the reservation lock, refused (EBUSY) while an attachment pins the buffer
 * or it is vmapped; otherwise the bytes are copied to new frames, the dynamic importers are
 * told (moveNotify) and the old frames freed: a mapping kept past moveNotify now points at
 * freed frames.
 * @module
 */
import type { OwningDevice } from "../check/ownership.js";
import {
  type DmaBuf, type DmaBufAttachment, type DmaBufOps, type DmaDataDirection, type IosysMap, type SgTable, dmaBufExport, dmaBufMoveNotify, dmaBufPinned,
} from "../dma-buf/dma-buf.js";
import { dmaResvLock, dmaResvUnlock } from "../dma-buf/dma-resv.js";
import { DmaError } from "../errors.js";
import { framePageBytes, frameWrite } from "../mm/filemap.js";
import type { Kernel } from "../mm/kernel.js";
import { remapPfnPagesMmap } from "../mm/vm-insert.js";
import { mapFramesSg, unmapFramesSg } from "./sg-map.js";

export interface HeapExporterOptions {
  pages: number;
  name?: string;
  /** The buffer may move (the exporter has pin/unpin and evicts). */
  movable?: boolean;
  /** A coherent (write-combined / uncached) buffer: no ownership to track. */
  coherent?: boolean;
}

/** x86-64's VMALLOC_START (4-level paging), and where each kernel's next vmap goes. */
const VMALLOC_START = 0xffffc90000000000n;
const vmallocNext = new WeakMap<Kernel, bigint>();

export class HeapExporter {
  readonly kernel: Kernel;
  readonly dmabuf: DmaBuf;
  /** The buffer's frames now. */
  frames: number[];
  readonly stats = { maps: 0, moves: 0 };
  #pins = 0;

  constructor(k: Kernel, o: HeapExporterOptions) {
    this.kernel = k;
    if (!Number.isSafeInteger(o.pages) || o.pages <= 0) throw new DmaError("EINVAL", `heap: ${o.pages} pages`, { arg: "pages" });
    this.frames = Array.from({ length: o.pages }, () => k.phys.allocPages(0, { gfp: "HIGHUSER_MOVABLE" }));
    const ops: DmaBufOps = {
      mapDmaBuf: (a, dir) => this.#map(a, dir),
      unmapDmaBuf: (_a, sgt, dir) => unmapFramesSg(sgt, dir),
      release: () => this.#release(),
      beginCpuAccess: () => 0,
      endCpuAccess: () => 0,
      frames: () => this.frames,
      vmap: () => this.#vmap(),
      ...(o.movable
        ? { pin: () => (this.#pins++, 0), unpin: () => void this.#pins-- }
        : { mmap: (_db, proc, pgoff, pages, prot, vmOps) => remapPfnPagesMmap(proc, this.frames.slice(pgoff, pgoff + pages), prot, "dma_buf_mmap", vmOps) }),
    };
    this.dmabuf = dmaBufExport(k, { ops, size: o.pages * 4096, priv: this, name: o.name ?? "system-heap buffer", coherent: o.coherent ?? false });
  }

  #map(a: DmaBufAttachment, dir: DmaDataDirection): SgTable {
    this.stats.maps++;
    return mapFramesSg(a.dev, this.frames, dir);
  }

  /** A kernel mapping (vmap of the pages): an address in the vmalloc area, the frames behind it. */
  #vmap(): IosysMap {
    const at = vmallocNext.get(this.kernel) ?? 0n;
    vmallocNext.set(this.kernel, at + BigInt(this.frames.length + 1) * 4096n); // and a guard page
    return { vaddr: VMALLOC_START + at, isIomem: false, frames: [...this.frames] };
  }

  #release(): void {
    for (const pfn of this.frames) this.kernel.folioRef(pfn, -1);
    this.frames = [];
  }

  /** Evict: move the buffer to other frames. EBUSY while pinned. */
  evict(): void {
    const db = this.dmabuf;
    if (!db.dynamic) throw new DmaError("EINVAL", "heap: this buffer does not move", { arg: "dmabuf" });
    const rc = dmaResvLock(db.resv, null);
    if (rc) throw new DmaError("EDEADLK", "heap evict: reservation lock", { arg: "dmabuf" });
    try {
      if (dmaBufPinned(db) || this.#pins > 0) throw new DmaError("EBUSY", `${db.name}: pinned by an importer, it cannot move`, { arg: "dmabuf" });
      if (db.vmappingCounter > 0) throw new DmaError("EBUSY", `${db.name}: vmapped, it cannot move`, { arg: "dmabuf" });
      // The new frames are taken and filled before anyone is told: a failed move changes nothing.
      const k = this.kernel;
      const fresh: number[] = [];
      try {
        for (const old of this.frames) {
          const n = k.phys.allocPages(0, { gfp: "HIGHUSER_MOVABLE" });
          fresh.push(n);
          frameWrite(k, n, 0, framePageBytes(k, old));
        }
      } catch (e) {
        for (const n of fresh) k.folioRef(n, -1);
        throw e;
      }
      k.clock.advance(fresh.length * k.costs.pageCopy.ns);
      dmaBufMoveNotify(db);
      for (const old of this.frames) k.folioRef(old, -1);
      this.frames = fresh;
      this.stats.moves++;
    } finally {
      dmaResvUnlock(db.resv);
    }
  }
}

/** A dma-direct device (its name and coherency domain) for attachments: one not behind the IOMMU (an IommuDevice is the other kind). */
export function dmaDevice(name: string, coherencyDomain?: string): OwningDevice {
  return coherencyDomain === undefined ? { name } : { name, coherencyDomain };
}

export type { DmaBufAttachment };
