/**
 * The DMA API over the IOMMU and the DMA engine: strict and lazy (flush-queue) unmap, IOVA
 * reuse through the range caches, scatterlists, DMA into frames nobody holds, stale
 * translations, and the invalidation order of KERNEL-SPEC 7.2.
 */
import { describe, expect, it } from "vitest";
import {
  dmaFlushQueue, dmaMapPage, dmaMapSg, dmaRead, dmaUnmapPage, dmaUnmapSg, dmaWrite, IOVA_DEFAULT_FQ_SIZE,
  IOVA_FQ_TIMEOUT_NS, iommuUnmapFast, type Machine,
} from "../../src/index.js";
import { smallMachine } from "../helpers.js";

async function setup(): Promise<Machine> {
  return smallMachine({ iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } }, check: { callSites: false } });
}

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe("the DMA API", () => {
  it("map a page, DMA through it into the frame, and unmap (strict): the IOVA faults at once and comes back from the range cache", async () => {
    const m = await setup();
    const nic = m.iommu.iommuProbeDevice("nic");
    const pfn = m.phys.allocPages(0);
    const dma = dmaMapPage(nic, pfn, 0x100, 512, "FROM_DEVICE");
    expect(dma % 4096).toBe(0x100);
    expect(dma).toBeLessThan(2 ** 32); // a 64-bit device still gets a 32-bit IOVA first
    const r = dmaWrite(m.iommu, nic, dma, bytes(512, 3));
    expect(r).toMatchObject({ done: 512, fault: null, unheld: 0, stale: false });
    expect(m.phys.read(pfn * 4096 + 0x100, 512)).toEqual(bytes(512, 3));
    // x86-format (first-level) IO tables cannot say write-only: present means readable.
    expect(dmaRead(m.iommu, nic, dma, 16).fault).toBe(null);
    const ro = dmaMapPage(nic, pfn, 0, 4096, "TO_DEVICE");
    expect(dmaWrite(m.iommu, nic, ro, bytes(8, 1)).fault).toBe("permission"); // TO_DEVICE: read-only
    dmaUnmapPage(nic, ro, 4096, "TO_DEVICE");
    dmaUnmapPage(nic, dma, 512, "FROM_DEVICE");
    expect(dmaWrite(m.iommu, nic, dma, bytes(8, 1))).toMatchObject({ done: 0, fault: "not-present", stale: false });
    expect(dmaMapPage(nic, pfn, 0, 4096, "TO_DEVICE")).toBe(dma - 0x100); // the last IOVA freed, from the rcache
    expect(m.checkReports()).toEqual([]);
  });

  it("lazy mode: the device can still use the old translation until the flush queue flushes (counted, not reported), and the IOVA is not reused before", async () => {
    const m = await setup();
    const nic = m.iommu.iommuProbeDevice("nic", { defaultDomain: "dma-fq" });
    const pfn = m.phys.allocPages(0);
    const dma = dmaMapPage(nic, pfn, 0, 4096, "BIDIRECTIONAL");
    dmaWrite(m.iommu, nic, dma, bytes(64, 9)); // fills the IOTLB
    dmaUnmapPage(nic, dma, 4096, "BIDIRECTIONAL");
    const r = dmaRead(m.iommu, nic, dma, 64);
    expect(r).toMatchObject({ done: 64, fault: null, stale: true });
    expect(r.data).toEqual(bytes(64, 9));
    expect(m.kernel.checkers.dma!.lazyWindowUses).toBe(1);
    expect(m.checkReports()).toEqual([]);
    const again = dmaMapPage(nic, pfn, 0, 4096, "BIDIRECTIONAL");
    expect(again).not.toBe(dma); // the old IOVA waits in the flush queue
    dmaFlushQueue(nic);
    expect(dmaRead(m.iommu, nic, dma, 64).fault).toBe("not-present");
    dmaUnmapPage(nic, again, 4096, "BIDIRECTIONAL");
    dmaFlushQueue(nic);
    expect(dmaMapPage(nic, pfn, 0, 4096, "BIDIRECTIONAL")).toBe(again); // freed after the flush: reused
  });

  it("flush the queue when it is full or its 10 ms timeout passed", async () => {
    const m = await setup();
    const nic = m.iommu.iommuProbeDevice("nic", { defaultDomain: "dma-fq" });
    const pfn = m.phys.allocPages(0);
    const before = m.iommu.qi.stats.iotlb;
    for (let i = 0; i < IOVA_DEFAULT_FQ_SIZE - 1; i++) dmaUnmapPage(nic, dmaMapPage(nic, pfn, 0, 4096, "TO_DEVICE"), 4096, "TO_DEVICE");
    expect(m.iommu.qi.stats.iotlb).toBe(before);
    dmaUnmapPage(nic, dmaMapPage(nic, pfn, 0, 4096, "TO_DEVICE"), 4096, "TO_DEVICE");
    expect(m.iommu.qi.stats.iotlb).toBe(before + 1); // full: one domain-wide flush
    dmaUnmapPage(nic, dmaMapPage(nic, pfn, 0, 4096, "TO_DEVICE"), 4096, "TO_DEVICE");
    m.clock.advance(IOVA_FQ_TIMEOUT_NS);
    dmaMapPage(nic, pfn, 0, 4096, "TO_DEVICE");
    expect(m.iommu.qi.stats.iotlb).toBe(before + 2);
  });

  it("refuse to unmap what was not mapped (EINVAL) and change nothing", async () => {
    const m = await setup();
    const nic = m.iommu.iommuProbeDevice("nic");
    const pfn = m.phys.allocPages(0);
    const dma = dmaMapPage(nic, pfn, 0, 4096, "TO_DEVICE");
    expect(() => dmaUnmapPage(nic, dma + 0x10000, 4096, "TO_DEVICE")).toThrow(/EINVAL: addr/);
    expect(() => dmaUnmapPage(nic, dma, 2048, "TO_DEVICE")).toThrow(/EINVAL: size/);
    expect(() => dmaUnmapPage(nic, dma, 4096, "FROM_DEVICE")).toThrow(/EINVAL: dir/);
    expect(() => dmaMapPage(nic, pfn, 0, 4096, "NONE" as never)).toThrow(/EINVAL: dir/);
    expect(dmaRead(m.iommu, nic, dma, 8)).toMatchObject({ done: 8, fault: null });
  });

  it("map a scatterlist into one IOVA range, merging page-aligned neighbours up to the segment size; DMA beyond it faults", async () => {
    const m = await setup();
    const nvme = m.iommu.iommuProbeDevice("nvme");
    const a = m.phys.allocPages(0);
    const b = m.phys.allocPages(0);
    const c = m.phys.allocPages(0);
    const segs = dmaMapSg(nvme, [{ pfn: a, offset: 0, length: 4096 }, { pfn: b, offset: 0, length: 4096 }, { pfn: c, offset: 0x200, length: 256 }], "FROM_DEVICE");
    expect(segs.length).toBe(2);
    expect(segs[0]!.dmaLength).toBe(8192);
    expect(segs[1]!.dmaAddress).toBe(segs[0]!.dmaAddress + 8192 + 0x200);
    const r = dmaWrite(m.iommu, nvme, segs[0]!.dmaAddress + 4000, bytes(200, 5)); // crosses from a into b
    expect(r.done).toBe(200);
    expect(m.phys.read(a * 4096 + 4000, 96)).toEqual(bytes(200, 5).subarray(0, 96));
    expect(m.phys.read(b * 4096, 104)).toEqual(bytes(200, 5).subarray(96));
    // The allocation is 4 pages (3 rounded up to a power of two); the fourth is not mapped.
    const beyond = dmaWrite(m.iommu, nvme, segs[0]!.dmaAddress + 3 * 4096 - 16, bytes(64, 1));
    expect(beyond).toMatchObject({ done: 16, fault: "not-present", stoppedAt: segs[0]!.dmaAddress + 3 * 4096 });
    dmaUnmapSg(nvme, segs, "FROM_DEVICE");
    expect(dmaWrite(m.iommu, nvme, segs[0]!.dmaAddress, bytes(4, 1)).fault).toBe("not-present");
  });
});

describe("the DMA checker", () => {
  it("[M1] reports a DMA into a frame freed while still mapped", async () => {
    const m = await setup();
    const nic = m.iommu.iommuProbeDevice("nic");
    const pfn = m.phys.allocPages(0);
    const dma = dmaMapPage(nic, pfn, 0, 4096, "FROM_DEVICE");
    expect(dmaWrite(m.iommu, nic, dma, bytes(32, 1)).unheld).toBe(0);
    m.phys.freePages(pfn); // the driver's bug: freed before dma_unmap
    expect(dmaWrite(m.iommu, nic, dma, bytes(32, 2)).unheld).toBe(1);
    const [rep] = m.checkReports();
    expect(rep).toMatchObject({ checker: "dma", rule: "M1", pfn });
    expect(rep!.message).toMatch(/nic wrote frame \d+ .* nobody holds it/);
  });

  it("[M1] counts every unheld page of a transfer, in the result and in one report", async () => {
    const m = await setup();
    const nic = m.iommu.iommuProbeDevice("nic");
    const pfn = m.phys.allocPages(2);
    const dma = dmaMapPage(nic, pfn, 0, 3 * 4096, "FROM_DEVICE");
    m.phys.freePages(pfn, 2); // all four frames go back; three are mapped
    expect(dmaWrite(m.iommu, nic, dma + 4000, bytes(5000, 1)).unheld).toBe(3); // touches pages 0, 1 and 2
    const reps = m.checkReports();
    expect(reps.length).toBe(1);
    expect(reps[0]!.message).toMatch(/3 such pages in this transfer/);
  });

  it("[M2] reports a stale ATC translation used after a driver's unmap that flushed only the IOTLB", async () => {
    const m = await setup();
    const gpu = m.iommu.iommuProbeDevice("gpu", { ats: true });
    const pfn = m.phys.allocPages(0);
    const dma = dmaMapPage(gpu, pfn, 0, 4096, "BIDIRECTIONAL");
    dmaRead(m.iommu, gpu, dma, 8); // the ATC now holds it
    const d = gpu.domain;
    iommuUnmapFast(d, dma, 4096);
    m.iommu.qi.qiSubmitSync([{ type: "iotlb", domain: d.id, pasid: 0, gran: "page", vpn: dma / 4096, npages: 1 }, { type: "wait" }]);
    const r = dmaRead(m.iommu, gpu, dma, 8);
    expect(r).toMatchObject({ done: 8, stale: true });
    expect(m.checkReports().map((x) => x.rule)).toEqual(["M2"]);
  });

  it("[I1] reports an ATC invalidated before the IOTLB, and shows the refill it allows", async () => {
    const m = await setup();
    const gpu = m.iommu.iommuProbeDevice("gpu", { ats: true });
    const pfn = m.phys.allocPages(0);
    const dma = dmaMapPage(gpu, pfn, 0, 4096, "BIDIRECTIONAL");
    dmaRead(m.iommu, gpu, dma, 8);
    const d = gpu.domain;
    const vpn = dma / 4096;
    iommuUnmapFast(d, dma, 4096);
    m.iommu.qi.qiSubmitSync([{ type: "devtlb", dev: gpu.rid, pasid: 0, vpn, npages: 1 }, { type: "wait" }]); // wrong order
    dmaRead(m.iommu, gpu, dma, 8); // a translation request, served from the stale IOTLB, refills the ATC
    m.iommu.qi.qiSubmitSync([{ type: "iotlb", domain: d.id, pasid: 0, gran: "page", vpn, npages: 1 }, { type: "wait" }]);
    const r = dmaRead(m.iommu, gpu, dma, 8);
    expect(r.stale).toBe(true); // the IOTLB is clean now; the refilled ATC is not
    expect(m.checkReports().map((x) => x.rule)).toEqual(["I1", "M2", "M2"]);
  });
});

describe("a DMA into free memory", () => {
  it("leaves no backing slot behind when the frame becomes a page table (the table reuses it, zeroed)", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("legacy", { defaultDomain: "identity" });
    const pt = m.pgdAlloc();
    pt.free();
    const used = m.phys.backing().slotsUsed;
    expect(dmaWrite(m.iommu, dev, pt.pfn * 4096 + 8, bytes(8, 1)).unheld).toBe(1); // into the free frame
    expect(m.phys.backing().slotsUsed).toBe(used + 1);
    const again = m.pgdAlloc();
    expect(again.pfn).toBe(pt.pfn);
    expect(m.phys.read(again.pfn * 4096, 16)).toEqual(new Uint8Array(16)); // a table starts zeroed
    expect(m.phys.backing().slotsUsed).toBe(used + 1);
    again.free();
    expect(m.phys.backing().slotsUsed).toBe(used);
  });
});
