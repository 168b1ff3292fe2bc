/**
 * dma-buf attachments of devices behind the IOMMU: the sg table holds IOVAs from the DMA API,
 * the device's DMA really goes through them, and an eviction (moveNotify) shows the two
 * importer behaviours: one that drops its mapping faults harmlessly on the old IOVA and maps
 * the new frames; one that keeps its table writes into the frames the buffer left, and the DMA
 * checker reports it ([M1]).
 */
import { describe, expect, it } from "vitest";
import {
  dmaBufDetach, dmaBufDeviceDma, dmaBufDynamicAttach, dmaBufUnmapAttachment,
} from "../../src/dma-buf/dma-buf.js";
import { HeapExporter } from "../../src/drivers/heap-exporter.js";
import type { Machine } from "../../src/index.js";
import { mmMachine } from "../mm/mm-helpers.js";
import { mapLocked } from "./dmabuf-helpers.js";

const dmaReports = (m: Machine) => m.checkReports().filter((r) => r.checker === "dma");

async function setup() {
  const m = await mmMachine({ iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } }, check: { callSites: false } });
  const gpu = new HeapExporter(m.kernel, { pages: 4, movable: true, name: "gpu buffer" });
  return { m, gpu, db: gpu.dmabuf };
}


describe("dma-buf through the IOMMU", () => {
  it("the table holds IOVAs; the device's DMA through them lands in the buffer's frames; detach unmaps them", async () => {
    const { m, gpu, db } = await setup();
    const nic = m.iommu.iommuProbeDevice("nic");
    const a = dmaBufDynamicAttach(db, nic, { moveNotify: () => {} });
    const sgt = mapLocked(a);
    expect(sgt.entries.reduce((n, e) => n + e.length, 0)).toBe(4 * 4096);
    expect(sgt.entries[0]!.dmaAddress).toBeLessThan(2 ** 32);
    expect(sgt.entries.every((e) => !gpu.frames.includes(e.dmaAddress / 4096))).toBe(true); // not physical addresses
    const r = dmaBufDeviceDma(a, true, { data: 0x5a })!;
    expect(r.every((x) => x.fault === null && x.done > 0)).toBe(true);
    for (const pfn of gpu.frames) expect(m.phys.read(pfn * 4096, 4096).every((b) => b === 0x5a)).toBe(true);
    const iova = sgt.entries[0]!.dmaAddress;
    dmaBufDetach(db, a); // unmaps the table it still had: the IOVA faults
    expect(m.iommu.iommuTranslate([{ dev: nic, iova }])[0]!.fault).toBe("not-present");
    expect(dmaReports(m)).toEqual([]);
  });

  it("an importer that drops its mapping on moveNotify: the old IOVA faults (no harm), the new table reaches the moved bytes", async () => {
    const { m, gpu, db } = await setup();
    const nic = m.iommu.iommuProbeDevice("nic");
    const a = dmaBufDynamicAttach(db, nic, { moveNotify: (x) => dmaBufUnmapAttachment(x, x.sgt!, x.dir!) });
    const old = mapLocked(a);
    dmaBufDeviceDma(a, true, { data: 0x11 });
    const oldFrames = [...gpu.frames];
    gpu.evict();
    expect(a.sgt).toBeNull();
    expect(gpu.frames).not.toEqual(oldFrames);
    const stale = dmaBufDeviceDma(a, true, { sgt: old, data: 0x22 })!;
    expect(stale[0]).toMatchObject({ done: 0, fault: "not-present" });
    const fresh = mapLocked(a);
    const r = dmaBufDeviceDma(a, false, { sgt: fresh })!;
    expect(r.flatMap((x) => [...x.data]).every((b) => b === 0x11)).toBe(true); // the bytes moved with the buffer
    expect(dmaReports(m)).toEqual([]);
  });

  it("[M1] an importer that ignores moveNotify keeps DMAing through its old IOVAs into frames nobody holds", async () => {
    const { m, gpu, db } = await setup();
    const nic = m.iommu.iommuProbeDevice("lazy-nic");
    const a = dmaBufDynamicAttach(db, nic, { moveNotify: () => {} });
    mapLocked(a);
    const oldFrames = [...gpu.frames];
    gpu.evict();
    const r = dmaBufDeviceDma(a, true, { data: 0x33 })!;
    // The move took all its new frames before freeing the old ones: every old frame is free
    // now, and each page the stale table reaches is an [M1] page.
    expect(oldFrames.some((pfn) => gpu.frames.includes(pfn))).toBe(false);
    expect(r.reduce((n, x) => n + x.unheld, 0)).toBe(4);
    const m1 = dmaReports(m).filter((x) => x.rule === "M1");
    expect(m1.length).toBeGreaterThan(0);
    expect(m1[0]!.message).toMatch(/lazy-nic wrote frame \d+ through 0x[0-9a-f]+, and nobody holds it/);
    expect(oldFrames).toContain(m1[0]!.pfn);
    for (const pfn of gpu.frames) expect(m.phys.read(pfn * 4096, 16).every((b) => b === 0)).toBe(true); // the moved buffer is untouched
  });
});
