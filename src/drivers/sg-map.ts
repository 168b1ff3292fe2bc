/**
 * What an exporter's map_dma_buf does with its pages (drm_prime_pages_to_sg, then
 * dma_map_sgtable for the importer's device): a device behind the IOMMU gets the DMA API's
 * segments (dmaMapSg: IOVAs, or bus addresses for P2PDMA pages it reaches below a switch); a
 * dma-direct device sees the frames' physical addresses, consecutive frames merged. The
 * table remembers how to unmap itself.
 * @module
 */
import type { OwningDevice } from "../check/ownership.js";
import type { DmaDataDirection, SgTable } from "../dma-buf/dma-buf.js";
import { dmaMapSg, dmaUnmapSg } from "../iommu/dma-iommu.js";
import { IommuDevice } from "../iommu/iommu.js";

const unmaps = new WeakMap<SgTable, (dir: DmaDataDirection) => void>();

/** mapFramesSg - @frames (4 KiB each, in order) mapped for @dev's DMA in direction @dir. */
export function mapFramesSg(dev: OwningDevice, frames: readonly number[], dir: DmaDataDirection): SgTable {
  if (dev instanceof IommuDevice) {
    const segs = dmaMapSg(dev, frames.map((pfn) => ({ pfn, offset: 0, length: 4096 })), dir);
    const sgt: SgTable = { entries: segs.map((s) => ({ dmaAddress: s.dmaAddress, length: s.dmaLength })) };
    unmaps.set(sgt, (d) => dmaUnmapSg(dev, segs, d));
    return sgt;
  }
  const entries: { dmaAddress: number; length: number }[] = [];
  for (const pfn of frames) {
    const last = entries[entries.length - 1];
    if (last && last.dmaAddress + last.length === pfn * 4096) last.length += 4096;
    else entries.push({ dmaAddress: pfn * 4096, length: 4096 });
  }
  return { entries };
}

/** unmapFramesSg - undo mapFramesSg (nothing to do for dma-direct). */
export function unmapFramesSg(sgt: SgTable, dir: DmaDataDirection): void {
  unmaps.get(sgt)?.(dir);
  unmaps.delete(sgt);
}
