/**
 * The PCIe fabric (enumeration, BAR assignment) and pci_p2pdma_distance on the canonical
 * topologies of drivers/pci/p2pdma.c and the 2017 P2P thread: devices below one switch, root
 * ports of a whitelisted and of a plain host bridge, ACS redirect, two host bridges.
 */
import { describe, expect, it } from "vitest";
import { PCI_ACS_RR, pciP2pdmaDistance, pciP2pdmaDistanceMany, pciP2pdmaMapType } from "../../src/pci/p2pdma.js";
import { type EndpointSpec, PciTopology, type TopologySpec } from "../../src/pci/topology.js";
import { caught } from "../mm/mm-helpers.js";

const MiB = 1 << 20;
const gpu = (name: string): EndpointSpec => ({ kind: "endpoint", name, bars: [{ size: 16 * MiB }, { size: 256 * MiB, prefetchable: true, bits64: true }], ats: true });
const nic = (name: string): EndpointSpec => ({ kind: "endpoint", name, bars: [{ size: 1 * MiB }, { size: 64 * 1024 }] });

/** A GPU and a NIC below one switch, an NVMe on another root port. */
function oneSwitch(o: { acs?: number; device?: number } = {}): TopologySpec {
  return {
    hostBridges: [{
      name: "hb0", device: o.device ?? 0x1234,
      rootPorts: [
        { name: "rp0", child: { kind: "switch", name: "sw0", downstream: [{ name: "dsp0", acs: o.acs, child: gpu("gpu0") }, { name: "dsp1", child: nic("nic0") }] } },
        { name: "rp1", child: nic("nvme0") },
      ],
    }],
  };
}

describe("enumeration and BAR assignment", () => {
  it("buses are numbered depth first; every BAR lies in its bridges' windows, aligned to its size", () => {
    const t = new PciTopology(oneSwitch());
    const d = (n: string) => t.dev(n);
    expect([d("rp0").bdf, d("sw0").bdf, d("dsp0").bdf, d("dsp1").bdf, d("gpu0").bdf, d("nic0").bdf, d("rp1").bdf, d("nvme0").bdf]).toEqual([
      "0000:00:01.0", "0000:01:00.0", "0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0", "0000:00:02.0", "0000:05:00.0",
    ]);
    expect([d("rp0").secondary, d("rp0").subordinate, d("sw0").secondary, d("sw0").subordinate]).toEqual([1, 4, 2, 4]);
    for (const ep of ["gpu0", "nic0", "nvme0"].map(d)) {
      for (const b of ep.bars) {
        expect(b.start % b.size).toBe(0);
        for (let p = ep.parent; p && p.kind !== "hostBridge"; p = p.parent) {
          const [lo, hi] = b.prefetchable && b.bits64 ? p.prefWindow : p.window;
          expect(b.start >= lo && b.start + b.size <= hi).toBe(true);
          expect(lo % MiB).toBe(0);
        }
      }
    }
    // No two BARs overlap.
    const all = ["gpu0", "nic0", "nvme0"].flatMap((n) => d(n).bars).sort((a, b) => a.start - b.start);
    for (let i = 1; i < all.length; i++) expect(all[i]!.start).toBeGreaterThanOrEqual(all[i - 1]!.start + all[i - 1]!.size);
  });

  it("bad descriptions are EINVAL naming the field: a name used twice, a BAR size, an aperture too small", () => {
    const dup = oneSwitch();
    dup.hostBridges[0]!.rootPorts[1]!.child = nic("gpu0");
    expect(caught(() => new PciTopology(dup)).arg).toBe("hostBridges[0].rootPorts[1].child.name");
    const bar = oneSwitch();
    bar.hostBridges[0]!.rootPorts[1]!.child = { kind: "endpoint", name: "odd", bars: [{ size: 3000 }] };
    expect(caught(() => new PciTopology(bar)).arg).toBe("hostBridges[0].rootPorts[1].child.bars[0].size");
    const small = oneSwitch();
    small.hostBridges[0]!.mem64 = [0x40_0000_0000, 0x40_0000_0000 + 128 * MiB];
    expect(caught(() => new PciTopology(small)).arg).toBe("hostBridges[0].mem64");
    expect(caught(() => new PciTopology(oneSwitch()).dev("nope")).code).toBe("ENODEV");
  });
});

describe("pci_p2pdma_distance", () => {
  it("two devices below one switch: BUS_ADDR, distance 4; a device with itself: 0", () => {
    const t = new PciTopology(oneSwitch());
    expect(pciP2pdmaMapType(t, t.dev("gpu0"), t.dev("nic0"))).toEqual({ mapType: "BUS_ADDR", distance: 4, reason: "" });
    expect(pciP2pdmaDistance(t, t.dev("gpu0"), t.dev("gpu0"))).toBe(0);
  });

  it("ACS P2P Request Redirect on the provider's downstream port forces it through the host bridge", () => {
    const plain = new PciTopology(oneSwitch({ acs: PCI_ACS_RR }));
    expect(pciP2pdmaMapType(plain, plain.dev("gpu0"), plain.dev("nic0"))).toMatchObject({ mapType: "NOT_SUPPORTED", distance: -1 });
    const wl = new PciTopology(oneSwitch({ acs: PCI_ACS_RR, device: 0x2030 }));
    expect(pciP2pdmaMapType(wl, wl.dev("gpu0"), wl.dev("nic0"))).toMatchObject({ mapType: "THRU_HOST_BRIDGE", distance: 4 });
    expect(pciP2pdmaMapType(wl, wl.dev("gpu0"), wl.dev("nic0")).reason).toMatch(/ACS redirect/);
  });

  it("root ports of one host bridge: NOT_SUPPORTED unless whitelisted (then the whole chains: 4 + 2) or the CPU is AMD Zen", () => {
    const plain = new PciTopology(oneSwitch());
    expect(pciP2pdmaDistance(plain, plain.dev("gpu0"), plain.dev("nvme0"))).toBe(-1);
    const wl = new PciTopology(oneSwitch({ device: 0x3c00 }));
    expect(pciP2pdmaMapType(wl, wl.dev("gpu0"), wl.dev("nvme0"))).toMatchObject({ mapType: "THRU_HOST_BRIDGE", distance: 6 }); // gpu0, dsp0, sw0, rp0 + nvme0, rp1
    const zen = new PciTopology({ ...oneSwitch(), amdZen: true });
    expect(pciP2pdmaMapType(zen, zen.dev("gpu0"), zen.dev("nvme0")).mapType).toBe("THRU_HOST_BRIDGE");
  });

  it("two host bridges: a same-host-bridge-only whitelist entry refuses, an any-bridge entry on both allows", () => {
    const spec = (device: number): TopologySpec => ({
      hostBridges: [
        { name: "hb0", device, rootPorts: [{ name: "rp0", child: gpu("gpu0") }] },
        { name: "hb1", device, rootPorts: [{ name: "rp1", child: nic("nic1") }] },
      ],
    });
    const same = new PciTopology(spec(0x3c00));
    expect(pciP2pdmaDistance(same, same.dev("gpu0"), same.dev("nic1"))).toBe(-1);
    const any = new PciTopology(spec(0x2020));
    expect(pciP2pdmaMapType(any, any.dev("gpu0"), any.dev("nic1"))).toMatchObject({ mapType: "THRU_HOST_BRIDGE", distance: 4 });
    expect(any.dev("nic1").bdf).toBe("0001:01:00.0");
  });

  it("distance_many: the sum over the clients; -1 if any is not supported, or with no client", () => {
    const t = new PciTopology(oneSwitch());
    expect(pciP2pdmaDistanceMany(t, t.dev("gpu0"), [t.dev("nic0"), t.dev("gpu0")])).toBe(4);
    expect(pciP2pdmaDistanceMany(t, t.dev("gpu0"), [t.dev("nic0"), t.dev("nvme0")])).toBe(-1);
    expect(pciP2pdmaDistanceMany(t, t.dev("gpu0"), [])).toBe(-1);
  });
});
