/**
 * The DMA checker: what a device's memory traffic did wrong, as the IOMMU and the DMA engine
 * saw it (DESIGN "src/check").
 *
 * - [M1] a DMA touched a frame nobody holds: no reference, so the allocator may already have
 *   given it to someone else (the use-after-unpin / use-after-unmap of a driver).
 * - [M2] a device used a cached translation (IOTLB or ATC) after the invalidation that should
 *   have removed it completed, in strict mode: the unmap returned, the caller may reuse the
 *   IOVA or the page, and the device still reaches the old page. In lazy (flush-queue) mode
 *   the window between unmap and the queue's flush is the design: counted, not reported.
 * - [I1] a device's ATC invalidated while the IOTLB still held the range (KERNEL-SPEC 7.2):
 *   a translation request can refill the ATC from the stale IOTLB.
 * @module
 */
import { Checker } from "./checker.js";

export class DmaChecker extends Checker {
  /** Stale translations used inside a lazy-mode window (allowed). */
  lazyWindowUses = 0;



  #add(rule: string, message: string, pfn: number, fn: string): void {
    this.report({ checker: "dma", rule, message, time: this.k.clock.now, pfn, file: null, pids: [], sites: { dma: this.site(fn) } });
  }

  /** @dev's DMA at @iova reached frame @pfn, which nobody holds ([M1]). */
  unheld(dev: string, iova: number, pfn: number, pages: number, write: boolean): void {
    this.#add(
      "M1",
      `${dev} ${write ? "wrote" : "read"} frame ${pfn} through 0x${iova.toString(16)}, and nobody holds it ` +
        `(${pages} such page${pages === 1 ? "" : "s"} in this transfer): free memory the allocator may hand to anyone`,
      pfn,
      write ? "dmaWrite" : "dmaRead",
    );
  }

  /** @dev used a stale cached translation of @iova (to @pfn); @lazy: inside a flush-queue window. */
  stale(dev: string, iova: number, pfn: number, lazy: boolean, from: string): void {
    if (lazy) {
      this.lazyWindowUses++;
      return;
    }
    this.#add(
      "M2",
      `${dev} used a stale ${from} translation of 0x${iova.toString(16)} (to frame ${pfn}) after its invalidation ` +
        "completed: the unmap returned while the device could still reach the old page",
      pfn,
      "dma",
    );
  }

  /** @dev's ATC was invalidated over pages the IOTLB had not yet dropped ([I1]). */
  atcBeforeIotlb(dev: string, pasid: number, vpn: number, npages: number): void {
    this.#add(
      "I1",
      `${dev}'s ATC invalidated for ${npages} page${npages === 1 ? "" : "s"} at 0x${(vpn * 4096).toString(16)}` +
        `${pasid ? ` (PASID ${pasid})` : ""} before the IOTLB: a translation request can refill it from the stale IOTLB`,
      -1,
      "qiSubmitSync",
    );
  }
}
