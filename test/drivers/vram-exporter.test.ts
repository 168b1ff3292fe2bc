/**
 * A GPU exports VRAM through dma-buf (the amdgpu/TTM shape): P2P attachments granted and
 * refused per topology, the table's bus addresses and IOVAs, moving the buffer to system
 * memory for an importer that cannot reach VRAM, pins, and eviction with moveNotify.
 */
import { describe, expect, it } from "vitest";
import {
  type DmaBufAttachment, dmaBufAttach, dmaBufDeviceDma, dmaBufDynamicAttach, dmaBufPin, dmaBufUnmapAttachment,
} from "../../src/dma-buf/dma-buf.js";
import { dmaResvLock, dmaResvUnlock } from "../../src/dma-buf/dma-resv.js";
import { VramExporter } from "../../src/drivers/vram-exporter.js";
import { isPciP2pdmaPage, PciTopology, type TopologySpec } from "../../src/index.js";
import { smallMachine } from "../helpers.js";
import { caught } from "../mm/mm-helpers.js";
import { mapLocked } from "../dma-buf/dmabuf-helpers.js";

const MiB = 1 << 20;

/** A GPU and a NIC below one switch, a second NIC on another root port. */
function spec(device = 0x1234): TopologySpec {
  return {
    hostBridges: [{
      name: "hb0", device,
      rootPorts: [
        {
          name: "rp0",
          child: {
            kind: "switch", name: "sw0", downstream: [
              { name: "dsp0", child: { kind: "endpoint", name: "gpu0", bars: [{ size: 16 * MiB }, { size: 4 * MiB, prefetchable: true, bits64: true }] } },
              { name: "dsp1", child: { kind: "endpoint", name: "nic0", bars: [{ size: 64 * 1024 }] } },
            ],
          },
        },
        { name: "rp1", child: { kind: "endpoint", name: "nic1", bars: [{ size: 64 * 1024 }] } },
      ],
    }],
  };
}

async function setup(device?: number) {
  const m = await smallMachine({
    memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB", p2pdma: "32MiB" },
    iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } },
    check: { callSites: false },
  });
  const t = new PciTopology(spec(device));
  const dev = (name: string) => m.iommu.iommuProbeDevice(name, { pci: t.dev(name) });
  const gpu = dev("gpu0");
  const vram = new VramExporter(m.kernel, { gpu, pages: 4, bar: 1 });
  return { m, t, vram, db: vram.dmabuf, nic0: dev("nic0"), nic1: dev("nic1") };
}

/** A dynamic importer that drops its table when told, and records the calls. */
function importer(log: string[]) {
  return {
    allowPeer2peer: true,
    moveNotify: (a: DmaBufAttachment) => {
      log.push(a.dev.name);
      if (a.sgt) dmaBufUnmapAttachment(a, a.sgt, a.dir!);
    },
  };
}


describe("VRAM export with P2P attachments", () => {
  it("a NIC below the GPU's switch keeps peer2peer: the table holds bus addresses in the VRAM BAR and its DMA lands in VRAM", async () => {
    const { m, t, vram, db, nic0 } = await setup();
    expect(isPciP2pdmaPage(m.kernel, vram.frames[0]!)).toBe(true);
    const a = dmaBufDynamicAttach(db, nic0, importer([]));
    expect(a.peer2peer).toBe(true);
    const sgt = mapLocked(a);
    const bar = t.dev("gpu0").bars[1]!;
    expect(sgt.entries.every((e) => e.dmaAddress >= bar.start && e.dmaAddress < bar.start + bar.size)).toBe(true);
    const [r] = dmaBufDeviceDma(a, true, { data: 0x77 })!;
    expect(r).toMatchObject({ fault: null, peer: "gpu0", p2p: "switch" });
    expect(m.phys.read(vram.frames[0]! * 4096, 8)).toEqual(new Uint8Array(8).fill(0x77));
    expect([vram.placement, vram.stats.p2pMaps, vram.stats.moves]).toEqual(["vram", 1, 0]);
  });

  it("a NIC on another root port of a plain host bridge loses peer2peer: mapping moves the buffer to system memory (the P2P importer is told) and gives IOVAs", async () => {
    const { m, vram, db, nic0, nic1 } = await setup();
    const log: string[] = [];
    const near = dmaBufDynamicAttach(db, nic0, importer(log));
    mapLocked(near);
    dmaBufDeviceDma(near, true, { data: 0x42 });
    const far = dmaBufDynamicAttach(db, nic1, importer(log));
    expect(far.peer2peer).toBe(false);
    const sgt = mapLocked(far);
    expect(vram.placement).toBe("gtt");
    expect(log).toEqual(["nic0", "nic1"]); // every dynamic importer hears of the move
    expect(near.sgt).toBeNull();
    expect(sgt.entries[0]!.dmaAddress).toBeLessThan(2 ** 32); // an IOVA
    const r = dmaBufDeviceDma(far, false)!;
    expect(r.every((x) => x.fault === null && x.peer === null)).toBe(true);
    expect(r.flatMap((x) => [...x.data]).every((b) => b === 0x42)).toBe(true); // the bytes moved with it
    expect(m.checkReports().filter((x) => x.checker === "dma")).toEqual([]);
  });

  it("on a whitelisted host bridge the far NIC keeps peer2peer, and its table is an IOVA the root complex forwards to VRAM", async () => {
    const { vram, db, nic1 } = await setup(0x2030);
    const a = dmaBufDynamicAttach(db, nic1, importer([]));
    expect(a.peer2peer).toBe(true);
    const sgt = mapLocked(a);
    expect(sgt.entries[0]!.dmaAddress).toBeLessThan(2 ** 32);
    const [r] = dmaBufDeviceDma(a, true)!;
    expect(r).toMatchObject({ fault: null, peer: "gpu0", p2p: "host-bridge" });
    expect(vram.placement).toBe("vram");
  });

  it("an importer that did not ask for peer2peer pins the buffer in system memory; eviction and migration are EBUSY until it detaches", async () => {
    const { vram, db, nic0 } = await setup();
    const a = dmaBufAttach(db, nic0); // static: pins at attach, without peer2peer
    expect([a.pinned, vram.placement]).toEqual([true, "gtt"]);
    expect(caught(() => vram.migrateToVram()).code).toBe("EBUSY");
    expect(caught(() => vram.evict()).code).toBe("EBUSY");
  });

  it("eviction: moveNotify, the bytes follow, and the P2P importer maps system memory afterwards; migration brings it back to VRAM", async () => {
    const { vram, db, nic0 } = await setup();
    const log: string[] = [];
    const a = dmaBufDynamicAttach(db, nic0, importer(log));
    mapLocked(a);
    dmaBufDeviceDma(a, true, { data: 0x13 });
    vram.evict();
    expect([log, vram.placement, a.sgt]).toEqual([["nic0"], "gtt", null]);
    const after = mapLocked(a);
    expect(after.entries[0]!.dmaAddress).toBeLessThan(2 ** 32); // system memory through the IOMMU
    expect(dmaBufDeviceDma(a, false)!.flatMap((x) => [...x.data]).every((b) => b === 0x13)).toBe(true);
    vram.migrateToVram();
    expect([vram.placement, log]).toEqual(["vram", ["nic0", "nic0"]]);
    const back = mapLocked(a);
    expect(dmaBufDeviceDma(a, false, { sgt: back })!.flatMap((x) => [...x.data]).every((b) => b === 0x13)).toBe(true);
  });

  it("a buffer pinned in VRAM stays there: a pin that needs system memory is EINVAL (amdgpu_bo_pin) and nothing moves", async () => {
    const { vram, db, nic0, nic1 } = await setup();
    const log: string[] = [];
    const p2p = dmaBufDynamicAttach(db, nic0, importer(log));
    dmaResvLock(db.resv, null);
    expect(dmaBufPin(p2p)).toBe(0);
    dmaResvUnlock(db.resv);
    const sgt = mapLocked(p2p);
    expect(vram.placement).toBe("vram");
    expect(caught(() => dmaBufAttach(db, nic1)).code).toBe("EINVAL"); // static, unreachable: must pin in system memory
    expect([vram.placement, log, p2p.sgt]).toEqual(["vram", [], sgt]);
    expect(db.attachments).toEqual([p2p]);
  });

  it("a move that fails (no memory for the copy) changes nothing and tells nobody", async () => {
    const m = await smallMachine({
      memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB", p2pdma: "32MiB" }, backing: { max: "1MiB" },
      iommu: { devices: 8 }, check: { callSites: false },
    });
    const t = new PciTopology(spec());
    const gpu = m.iommu.iommuProbeDevice("gpu0", { pci: t.dev("gpu0") });
    const vram = new VramExporter(m.kernel, { gpu, pages: 4, bar: 1 });
    const log: string[] = [];
    dmaBufDynamicAttach(vram.dmabuf, m.iommu.iommuProbeDevice("nic0", { pci: t.dev("nic0") }), importer(log));
    // Fill the backing pool so the copy of the buffer's (written) pages finds no slot.
    for (const pfn of vram.frames) m.phys.write(pfn * 4096, new Uint8Array([1]));
    const hog: number[] = [];
    try {
      for (;;) {
        const pfn = m.phys.allocPages(0);
        hog.push(pfn);
        m.phys.write(pfn * 4096, new Uint8Array([1]));
      }
    } catch {
      // the pool (or memory) is full
    }
    const free = m.phys.nrFreePages();
    const frames = [...vram.frames];
    expect(caught(() => vram.evict()).code).toBe("ENOMEM");
    expect([vram.placement, vram.frames, log, m.phys.nrFreePages()]).toEqual(["vram", frames, [], free]);
  });
});
