/**
 * The camera-to-display pipeline over dma-buf: frames captured into a ring of streaming
 * buffers, each with a WRITE fence; a display that waits for the fence (implicit sync) sees
 * every frame whole and nothing is reported; one that scans out without waiting maps a
 * buffer the camera still owns for writing, and the ownership checker reports [D2].
 */
import { describe, expect, it } from "vitest";
import { Camera, Display } from "../../src/drivers/camera.js";
import { dmaDevice } from "../../src/drivers/heap-exporter.js";
import type { Machine } from "../../src/index.js";
import { caught, mmMachine } from "../mm/mm-helpers.js";

const reports = (m: Machine) => m.checkReports().map((r) => r.rule);

async function machine() {
  return mmMachine({ iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } }, check: { callSites: false } });
}

describe("camera -> display", () => {
  it("with implicit sync each scanout waits one frame time for its capture and shows that frame; nothing is reported", async () => {
    const m = await machine();
    const cam = new Camera(m.kernel, { dev: m.iommu.iommuProbeDevice("camera"), buffers: 2, pages: 2, frameNs: 1_000_000 });
    const disp = new Display(m.kernel, m.iommu.iommuProbeDevice("display"));
    for (let i = 0; i < 4; i++) {
      const t0 = m.clock.now;
      const f = cam.capture();
      expect(f.fence.isSignaled()).toBe(false);
      const shown = disp.scanout(f.dmabuf);
      expect(f.fence.isSignaled()).toBe(true);
      expect(m.clock.now - t0).toBeGreaterThanOrEqual(1_000_000);
      expect(shown.length).toBe(2 * 4096);
      expect(shown.every((b) => b === i + 1)).toBe(true);
    }
    expect(disp.stats.scanouts).toBe(4);
    expect(reports(m)).toEqual([]);
  });

  it("[D2] a scanout that ignores the fence maps the buffer while the camera still owns it for writing", async () => {
    const m = await machine();
    const cam = new Camera(m.kernel, { dev: m.iommu.iommuProbeDevice("camera"), buffers: 2, frameNs: 1_000_000 });
    const disp = new Display(m.kernel, m.iommu.iommuProbeDevice("display"));
    const f = cam.capture();
    disp.scanout(f.dmabuf, { implicitSync: false });
    const d2 = m.checkReports().filter((r) => r.rule === "D2");
    expect(d2.length).toBe(1);
    expect(d2[0]!.message).toMatch(/display does DMA \(read\) while camera also owns it \(mapped for writing\)/);
  });

  it("works with dma-direct devices too; a ring buffer still being written cannot be captured into again (EBUSY)", async () => {
    const m = await machine();
    const cam = new Camera(m.kernel, { dev: dmaDevice("usb-cam"), buffers: 1, pages: 1, frameNs: 500_000 });
    const disp = new Display(m.kernel, dmaDevice("panel"));
    const f = cam.capture();
    expect(caught(() => cam.capture()).code).toBe("EBUSY");
    expect(disp.scanout(f.dmabuf).every((b) => b === 1)).toBe(true); // frame 0
    const g = cam.capture(); // the wait let the first complete
    expect(disp.scanout(g.dmabuf).every((b) => b === 2)).toBe(true);
    expect(reports(m)).toEqual([]);
  });
});
