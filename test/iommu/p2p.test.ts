/**
 * Peer-to-peer DMA end to end, the 2017 "Enabling peer to peer device transactions for PCIe
 * devices" thread's cases: a NIC DMAs into an NVMe drive's P2PDMA memory through a switch
 * (bus addresses, the IOMMU never sees it), through the root complex when ACS redirects it up
 * (an IOVA, forwarded only by a whitelisted host bridge), and refused (EREMOTEIO at map time,
 * an Unsupported Request at DMA time) when the host bridge does not forward P2P.
 */
import { describe, expect, it } from "vitest";
import {
  dmaMapPage, dmaMapSg, dmaUnmapSg, dmaWrite, dmaRead, deviceDma, iommuMap, pciAllocP2pmem, pciP2pdmaAddResource,
  PCI_ACS_RR, PciTopology, type Machine, type TopologySpec,
} from "../../src/index.js";
import { smallMachine } from "../helpers.js";
import { code } from "../mm/mm-helpers.js";

const MiB = 1 << 20;

/** NVMe with a 2 MiB CMB and a NIC below one switch (ACS on both downstream ports as asked), a NIC on a second root port. */
function spec(o: { acs?: number; device?: number } = {}): TopologySpec {
  return {
    hostBridges: [{
      name: "hb0", device: o.device ?? 0x1234,
      rootPorts: [
        {
          name: "rp0",
          child: {
            kind: "switch", name: "sw0", downstream: [
              { name: "dsp0", acs: o.acs, child: { kind: "endpoint", name: "nvme0", bars: [{ size: 16 * 1024 }, { size: 2 * MiB, prefetchable: true, bits64: true }] } },
              { name: "dsp1", acs: o.acs, child: { kind: "endpoint", name: "nic0", bars: [{ size: 64 * 1024 }] } },
            ],
          },
        },
        { name: "rp1", child: { kind: "endpoint", name: "nic1", bars: [{ size: 64 * 1024 }] } },
      ],
    }],
  };
}

async function setup(o: { acs?: number; device?: number } = {}) {
  const m: Machine = await smallMachine({
    memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB", p2pdma: "8MiB" },
    iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } },
    check: { callSites: false },
  });
  const t = new PciTopology(spec(o));
  const k = m.kernel;
  const nvme = t.dev("nvme0");
  const pm = pciP2pdmaAddResource(k, nvme, 1);
  const dev = (name: string) => m.iommu.iommuProbeDevice(name, { pci: t.dev(name) });
  return { m, t, k, nvme, pm, nic0: dev("nic0"), nic1: dev("nic1") };
}

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

describe("P2P DMA through a switch (BUS_ADDR)", () => {
  it("the scatterlist gets the bus address; the NIC's writes reach the CMB without the IOMMU translating", async () => {
    const { m, k, nvme, pm, nic0 } = await setup();
    const buf = pciAllocP2pmem(k, nvme, 8192)!;
    const sys = m.phys.allocPages(0);
    const segs = dmaMapSg(nic0, [{ pfn: sys, offset: 0, length: 4096 }, { pfn: buf / 4096, offset: 0, length: 8192 }], "FROM_DEVICE");
    expect(segs).toHaveLength(2);
    expect(segs[1]).toEqual({ dmaAddress: nvme.bars[1]!.start + (buf / 4096 - pm.pfn) * 4096, dmaLength: 8192, bus: true });
    expect(segs[0]!.bus).toBeUndefined();
    const before = { ...m.iommu.stats };
    const clock = m.clock.now;
    const r = dmaWrite(m.iommu, nic0, segs[1]!.dmaAddress + 100, bytes(6000, 1));
    expect(r).toMatchObject({ done: 6000, fault: null, peer: "nvme0", p2p: "switch", unheld: 0 });
    expect(m.phys.read(buf + 100, 6000)).toEqual(bytes(6000, 1));
    expect(m.iommu.stats.translations).toBe(before.translations); // below the root complex
    const p2pNs = m.clock.now - clock;
    // The same bytes to system memory pay the round trip through the root complex.
    const big = dmaMapSg(nic0, [{ pfn: m.phys.allocPages(1), offset: 0, length: 8192 }], "FROM_DEVICE");
    const t1 = m.clock.now;
    dmaWrite(m.iommu, nic0, big[0]!.dmaAddress + 100, bytes(6000, 1));
    expect(m.clock.now - t1).toBeGreaterThan(p2pNs);
    // Reads come back from the CMB too; unmapping skips the bus segment.
    expect(dmaRead(m.iommu, nic0, segs[1]!.dmaAddress + 100, 16).data).toEqual(bytes(16, 1));
    dmaUnmapSg(nic0, segs, "FROM_DEVICE");
    dmaUnmapSg(nic0, [segs[1]!], "FROM_DEVICE"); // only bus addresses: nothing to unmap
    expect(code(() => dmaUnmapSg(nic0, segs, "FROM_DEVICE"))).toBe("EINVAL:segs"); // the IOVA part is gone
  });

  it("a DMA into the peer's register BAR stops there (mmio), and an address its switch claims but no BAR holds is an Unsupported Request", async () => {
    const { m, t, nvme, nic0 } = await setup();
    const reg = nvme.bars[0]!.start;
    expect(dmaWrite(m.iommu, nic0, reg + 8, bytes(4, 0))).toMatchObject({ done: 0, mmio: reg + 8, peer: "nvme0", stoppedAt: reg + 8 });
    // dsp0's 32-bit window is 1 MiB; the registers use 16 KiB of it.
    const hole = t.dev("dsp0").window[0] + 512 * 1024;
    expect(dmaWrite(m.iommu, nic0, hole, bytes(4, 0))).toMatchObject({ done: 0, fault: "unsupported-request", stoppedAt: hole });
    // A transfer running off the end of the CMB continues as a new request: past the BAR the
    // address goes up to the IOMMU, which has no mapping for it.
    const end = nvme.bars[1]!.start + 2 * MiB;
    const r = dmaWrite(m.iommu, nic0, end - 100, bytes(200, 0));
    expect(r).toMatchObject({ done: 100, fault: "not-present", stoppedAt: end, p2p: "switch" });
  });
});

describe("ACS redirect: P2P up to the root complex (THRU_HOST_BRIDGE)", () => {
  it("on a whitelisted host bridge the map gives an IOVA and the root complex forwards the translated request to the peer", async () => {
    const { m, k, nvme, nic0 } = await setup({ acs: PCI_ACS_RR, device: 0x2030 });
    const buf = pciAllocP2pmem(k, nvme, 4096)!;
    const [seg] = dmaMapSg(nic0, [{ pfn: buf / 4096, offset: 0, length: 4096 }], "BIDIRECTIONAL");
    expect(seg!.bus).toBeUndefined();
    expect(seg!.dmaAddress).toBeLessThan(2 ** 32); // an IOVA, not the 64-bit BAR
    const before = m.iommu.stats.translations;
    const r = dmaWrite(m.iommu, nic0, seg!.dmaAddress, bytes(4096, 7));
    expect(r).toMatchObject({ done: 4096, fault: null, peer: "nvme0", p2p: "host-bridge" });
    expect(m.iommu.stats.translations).toBeGreaterThan(before);
    expect(m.phys.read(buf, 4096)).toEqual(bytes(4096, 7));
    // A device that uses the bus address anyway is sent up by ACS and the IOMMU has no mapping for it.
    expect(dmaWrite(m.iommu, nic0, nvme.bars[1]!.start, bytes(8, 0))).toMatchObject({ done: 0, fault: "not-present" });
  });

  it("on a host bridge that does not forward P2P, the map is EREMOTEIO and changes nothing; a DMA through a hand-made mapping is an Unsupported Request", async () => {
    const { m, k, nvme, nic0, nic1 } = await setup({ acs: PCI_ACS_RR });
    const buf = pciAllocP2pmem(k, nvme, 4096)!;
    const probe = dmaMapPage(nic0, m.phys.allocPages(0), 0, 4096, "TO_DEVICE");
    const sys = m.phys.allocPages(0);
    expect(code(() => dmaMapSg(nic0, [{ pfn: sys, offset: 0, length: 4096 }, { pfn: buf / 4096, offset: 0, length: 4096 }], "TO_DEVICE"))).toBe("EREMOTEIO:sg[1]");
    expect(code(() => dmaMapSg(nic1, [{ pfn: buf / 4096, offset: 0, length: 4096 }], "TO_DEVICE"))).toBe("EREMOTEIO:sg[0]"); // another root port
    expect(code(() => dmaMapPage(nic0, buf / 4096, 0, 4096, "TO_DEVICE"))).toBe("EREMOTEIO:pfn");
    // No IOVA was taken: the next map gets the one after the probe's, as it would have.
    const next = dmaMapPage(nic0, sys, 0, 4096, "TO_DEVICE");
    expect(next).toBe(probe - 4096);
    // A driver that maps the CMB into the IOMMU by hand: the root complex will not forward.
    iommuMap(nic1.domain, 0x4000_0000, buf, 4096, 3);
    const r = dmaWrite(m.iommu, nic1, 0x4000_0000, bytes(16, 0));
    expect(r).toMatchObject({ done: 0, fault: "unsupported-request", peer: "nvme0", stoppedAt: 0x4000_0000 });
    expect(m.phys.read(buf, 16)).toEqual(new Uint8Array(16));
  });

  it("a P2PDMA frame no BAR range claims (the rest of a provider's block) decodes to nothing: an Unsupported Request", async () => {
    const m = await smallMachine({
      memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB", p2pdma: "8MiB" },
      iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } },
      check: { callSites: false },
    });
    const t = new PciTopology(spec({ device: 0x2030 }));
    const pm = pciP2pdmaAddResource(m.kernel, t.dev("nvme0"), 1, 3 * 4096); // a 4-page block, 3 used
    const nic = m.iommu.iommuProbeDevice("nic1", { pci: t.dev("nic1") });
    const [seg] = dmaMapSg(nic, [{ pfn: pm.pfn + 3, offset: 0, length: 4096 }], "FROM_DEVICE");
    expect(dmaWrite(m.iommu, nic, seg!.dmaAddress, bytes(8, 0))).toMatchObject({ done: 0, fault: "unsupported-request", peer: null });
  });

  it("the IOVA space keeps the host bridge's windows clear: no IOVA a switch would route to a peer", async () => {
    const m = await smallMachine({ memory: { normal: "256MiB", movable: 0, cma: 0 }, iommu: { devices: 8 }, check: { callSites: false } });
    const s = spec();
    s.hostBridges[0]!.mem32 = [0xfd00_0000, 0xfe00_0000];
    const t = new PciTopology(s);
    const nic = m.iommu.iommuProbeDevice("nic0", { pci: t.dev("nic0") });
    const [lo, hi] = t.dev("hb0").window;
    const pfn = m.phys.allocPages(14); // 64 MiB
    const segs = dmaMapSg(nic, [{ pfn, offset: 0, length: 64 * MiB }], "FROM_DEVICE", 64 * MiB);
    const [iova] = segs.map((x) => x.dmaAddress);
    expect(iova! + 64 * MiB <= lo || iova! >= hi).toBe(true);
    const r = dmaWrite(m.iommu, nic, iova! + 48 * MiB, bytes(16, 3));
    expect(r).toMatchObject({ done: 16, fault: null, peer: null });
    expect(m.phys.read(pfn * 4096 + 48 * MiB, 16)).toEqual(bytes(16, 3));
  });

  it("a device off the PCIe fabric cannot map P2P memory, and its DMA into it is an Unsupported Request", async () => {
    const { m, k, nvme } = await setup();
    const plat = m.iommu.iommuProbeDevice("platform-dma");
    const buf = pciAllocP2pmem(k, nvme, 4096)!;
    expect(code(() => dmaMapSg(plat, [{ pfn: buf / 4096, offset: 0, length: 4096 }], "TO_DEVICE"))).toBe("EREMOTEIO:sg[0]");
    iommuMap(plat.domain, 0x10_0000, buf, 4096, 3);
    const [r] = deviceDma(m.iommu, [{ dev: plat, addr: 0x10_0000, len: 64 }]);
    expect(r).toMatchObject({ done: 0, fault: "unsupported-request" });
  });
});
