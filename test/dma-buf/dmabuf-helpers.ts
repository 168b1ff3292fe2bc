/** Shared by the dma-buf tests. */
import { type DmaBufAttachment, type DmaDataDirection, dmaBufMapAttachment } from "../../src/dma-buf/dma-buf.js";
import { dmaResvLock, dmaResvUnlock } from "../../src/dma-buf/dma-resv.js";

/** Map a dynamic importer's attachment the way it must: under the reservation lock. */
export function mapLocked(a: DmaBufAttachment, dir: DmaDataDirection = "BIDIRECTIONAL") {
  dmaResvLock(a.dmabuf.resv, null);
  try {
    return dmaBufMapAttachment(a, dir);
  } finally {
    dmaResvUnlock(a.dmabuf.resv);
  }
}
