/**
 * A GPU exporting a buffer of its VRAM (the amdgpu / TTM shape of dma-buf P2P): the VRAM is
 * the GPU's BAR given struct pages (pciP2pdmaAddResource), and the buffer lives either there
 * ("vram") or in system memory ("gtt"), moving between them under the reservation lock.
 *
 * - attach: an importer that asked for peer-to-peer keeps it only if it is a device on the
 *   same fabric at a supported P2P distance (amdgpu_dma_buf_attach clears attach->peer2peer
 *   when pci_p2pdma_distance < 0).
 * - pin (a static importer, or dmaBufPin): the buffer is pinned where every attached
 *   importer can reach it (amdgpu_dma_buf_pin): VRAM only if all of them are peer-to-peer,
 *   else system memory, moving it there first. A buffer already pinned where the new pin
 *   does not allow stays put and the pin is -EINVAL (amdgpu_bo_pin).
 * - map: an importer without peer2peer needs the buffer in system memory: the map moves it
 *   there first (telling the other dynamic importers), as TTM validation into GTT does. Then
 *   the table comes from the DMA API for the importer: VRAM pages map by P2P type (a bus
 *   address below a shared switch, an IOVA through a host bridge that forwards P2P), system
 *   pages to IOVAs (or physical addresses for a device without IOMMU).
 * - evict / migrateToVram: moves the whole buffer (EBUSY while pinned), moveNotify first.
 * @module
 */
import {
  type DmaBuf, type DmaBufAttachment, type DmaBufOps, type DmaDataDirection, type SgTable, dmaBufExport, dmaBufMoveNotify,
  dmaBufPinned,
} from "../dma-buf/dma-buf.js";
import { dmaResvLock, dmaResvUnlock } from "../dma-buf/dma-resv.js";
import { EINVAL } from "../abi/errno.js";
import { DmaError, einval } from "../errors.js";
import { mapFramesSg, unmapFramesSg } from "./sg-map.js";
import { IommuDevice } from "../iommu/iommu.js";
import { framePageBytes, frameWrite } from "../mm/filemap.js";
import type { Kernel } from "../mm/kernel.js";
import { pciP2pdmaDistance } from "../pci/p2pdma.js";
import { pciAllocP2pmem, pciFreeP2pmem, pciP2pdmaAddResource, pciP2pdmaOf } from "../pci/p2pmem.js";
import type { PciDev } from "../pci/topology.js";

export type Placement = "vram" | "gtt";

export interface VramExporterOptions {
  /** The GPU, behind the IOMMU and on a PCIe fabric. */
  gpu: IommuDevice;
  pages: number;
  name?: string;
  /** The VRAM BAR (default: the GPU's largest). It gets struct pages on first use. */
  bar?: number;
}

export class VramExporter {
  readonly kernel: Kernel;
  readonly gpu: IommuDevice;
  readonly pci: PciDev;
  readonly dmabuf: DmaBuf;
  placement: Placement = "vram";
  /** The buffer's frames now (VRAM's P2PDMA frames, or system frames). */
  frames: number[];
  readonly stats = { maps: 0, moves: 0, p2pMaps: 0 };
  #pins = 0;

  constructor(k: Kernel, o: VramExporterOptions) {
    this.kernel = k;
    if (!(o.gpu instanceof IommuDevice) || !o.gpu.pci) throw einval("gpu", "the GPU must be an IOMMU device with a PCIe function (iommuProbeDevice with pci)");
    if (!Number.isSafeInteger(o.pages) || o.pages <= 0) throw einval("pages", `${o.pages} is not a page count`);
    this.gpu = o.gpu;
    this.pci = o.gpu.pci;
    const bars = this.pci.bars;
    const bar = o.bar ?? bars.reduce((best, b) => (b.size > bars[best]!.size ? b.index : best), 0);
    if (!pciP2pdmaOf(k, this.pci)?.pagemaps.some((m) => m.bar === bar)) pciP2pdmaAddResource(k, this.pci, bar);
    const at = pciAllocP2pmem(k, this.pci, o.pages * 4096);
    if (at === null) throw new DmaError("ENOMEM", `${this.pci.name}: no ${o.pages} pages of VRAM free`, { arg: "pages" });
    this.frames = Array.from({ length: o.pages }, (_, i) => at / 4096 + i);
    const ops: DmaBufOps = {
      attach: (_db, a) => this.#attach(a),
      pin: (a) => this.#pin(a),
      unpin: () => void this.#pins--,
      mapDmaBuf: (a, dir) => this.#map(a, dir),
      unmapDmaBuf: (_a, sgt, dir) => unmapFramesSg(sgt, dir),
      release: () => this.#release(),
      beginCpuAccess: () => 0,
      endCpuAccess: () => 0,
      frames: () => this.frames,
    };
    this.dmabuf = dmaBufExport(k, { ops, size: o.pages * 4096, priv: this, name: o.name ?? `${this.pci.name} VRAM buffer` });
  }

  /** Whether @a's device can reach this GPU's VRAM peer to peer. */
  #reachable(a: DmaBufAttachment): boolean {
    const dev = a.dev;
    return dev instanceof IommuDevice && dev.pci !== null && dev.pci.topology === this.pci.topology && pciP2pdmaDistance(this.pci.topology, this.pci, dev.pci) >= 0;
  }

  #attach(a: DmaBufAttachment): number {
    if (a.peer2peer && !this.#reachable(a)) a.peer2peer = false;
    return 0;
  }

  #pin(a: DmaBufAttachment): number {
    const vramOk = a.peer2peer && this.dmabuf.attachments.every((x) => x.peer2peer);
    if (this.placement === "vram" && !vramOk) {
      if (this.#pins > 0) return -EINVAL;
      this.#move("gtt");
    }
    this.#pins++;
    return 0;
  }

  #map(a: DmaBufAttachment, dir: DmaDataDirection): SgTable {
    this.stats.maps++;
    if (this.placement === "vram" && !a.peer2peer) {
      if (dmaBufPinned(this.dmabuf)) throw new DmaError("EBUSY", `${this.dmabuf.name}: pinned in VRAM, which ${a.dev.name} cannot reach`, { arg: "attach" });
      this.#move("gtt");
    }
    const sgt = mapFramesSg(a.dev, this.frames, dir);
    if (this.placement === "vram") this.stats.p2pMaps++;
    return sgt;
  }

  /**
   * Move the buffer to @to (the lock held): the new frames are taken and filled first, so a
   * move that fails (no VRAM, no memory) changes nothing and tells nobody; then moveNotify
   * to the dynamic importers, and the old frames go.
   */
  #move(to: Placement): void {
    if (this.placement === to) return;
    const k = this.kernel;
    let fresh: number[];
    if (to === "gtt") {
      fresh = [];
      try {
        for (let i = 0; i < this.frames.length; i++) fresh.push(k.phys.allocPages(0, { gfp: "HIGHUSER_MOVABLE" }));
      } catch (e) {
        this.#free("gtt", fresh);
        throw e;
      }
    } else {
      const at = pciAllocP2pmem(k, this.pci, this.frames.length * 4096);
      if (at === null) throw new DmaError("ENOMEM", `${this.pci.name}: no ${this.frames.length} pages of VRAM free`, { arg: "dmabuf" });
      fresh = this.frames.map((_, i) => at / 4096 + i);
    }
    try {
      fresh.forEach((pfn, i) => frameWrite(k, pfn, 0, framePageBytes(k, this.frames[i]!)));
    } catch (e) {
      this.#free(to, fresh);
      throw e;
    }
    k.clock.advance(fresh.length * k.costs.pageCopy.ns);
    dmaBufMoveNotify(this.dmabuf);
    this.#free(this.placement, this.frames);
    this.frames = fresh;
    this.placement = to;
    this.stats.moves++;
  }

  #free(where: Placement, frames: number[]): void {
    const k = this.kernel;
    if (!frames.length) return;
    if (where === "vram") pciFreeP2pmem(k, this.pci, frames[0]! * 4096, frames.length * 4096);
    else for (const pfn of frames) k.folioRef(pfn, -1);
  }

  #release(): void {
    this.#free(this.placement, this.frames);
    this.frames = [];
  }

  #locked(fn: string, to: Placement): void {
    const db = this.dmabuf;
    if (dmaResvLock(db.resv, null)) throw new DmaError("EDEADLK", `${fn}: the reservation lock is held by this context`, { arg: "dmabuf" });
    try {
      if (dmaBufPinned(db)) throw new DmaError("EBUSY", `${db.name}: pinned by an importer, it cannot move`, { arg: "dmabuf" });
      this.#move(to);
    } finally {
      dmaResvUnlock(db.resv);
    }
  }

  /** evict - TTM eviction of the buffer from VRAM to system memory. EBUSY while pinned. */
  evict(): void {
    this.#locked("evict", "gtt");
  }

  /** migrateToVram - validate the buffer back into VRAM. EBUSY while pinned, ENOMEM when VRAM is full. */
  migrateToVram(): void {
    this.#locked("migrateToVram", "vram");
  }
}
