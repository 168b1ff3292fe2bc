/**
 * The PCIe router in the core: where a device's memory request goes on the canonical
 * topologies (a switch, ACS redirect, root ports of a whitelisted and of a plain host bridge,
 * host memory), and its hop counts matching pci_p2pdma_distance's.
 */
import { describe, expect, it } from "vitest";
import { PCI_ACS_RR, pciP2pdmaDistance } from "../../src/pci/p2pdma.js";
import { pcieRoute } from "../../src/pci/router.js";
import { type EndpointSpec, PciTopology, type TopologySpec } from "../../src/pci/topology.js";
import { caught, mmMachine } from "../mm/mm-helpers.js";

const MiB = 1 << 20;
const ep = (name: string): EndpointSpec => ({ kind: "endpoint", name, bars: [{ size: 1 * MiB }, { size: 64 * MiB, prefetchable: true, bits64: true }] });
const spec = (o: { acs?: number; device?: number } = {}): TopologySpec => ({
  hostBridges: [{
    name: "hb0", device: o.device ?? 0x1234,
    rootPorts: [
      { name: "rp0", child: { kind: "switch", name: "sw0", downstream: [{ name: "dsp0", acs: o.acs, child: ep("gpu0") }, { name: "dsp1", child: ep("nic0") }] } },
      { name: "rp1", child: ep("nvme0") },
    ],
  }],
});

async function route(t: PciTopology, from: string, address: number) {
  const m = await mmMachine();
  return pcieRoute(m.core, t, [{ requester: t.dev(from), address }])[0]!;
}

describe("the PCIe router", () => {
  it("a peer below the same switch: across the switch, 4 links, as pci_p2pdma_distance counts", async () => {
    const t = new PciTopology(spec());
    const bar = t.dev("nic0").bars[1]!.start + 4096;
    const r = await route(t, "gpu0", bar);
    expect(r).toMatchObject({ result: "PEER", hops: 4 });
    expect(r.target?.name).toBe("nic0");
    expect(r.hops).toBe(pciP2pdmaDistance(t, t.dev("nic0"), t.dev("gpu0")));
  });

  it("ACS redirect on the requester's port sends it up: an Unsupported Request at a plain root complex, a peer through a whitelisted one", async () => {
    const plain = new PciTopology(spec({ acs: PCI_ACS_RR }));
    expect((await route(plain, "gpu0", plain.dev("nic0").bars[0]!.start)).result).toBe("UR");
    const wl = new PciTopology(spec({ acs: PCI_ACS_RR, device: 0x2030 }));
    const r = await route(wl, "gpu0", wl.dev("nic0").bars[0]!.start);
    expect(r).toMatchObject({ result: "PEER", hops: 8 }); // up 4 to the root complex, down 4
  });

  it("another root port: UR unless the host bridge forwards; then 6 links, as the distance counts", async () => {
    const plain = new PciTopology(spec());
    expect((await route(plain, "gpu0", plain.dev("nvme0").bars[0]!.start)).result).toBe("UR");
    const wl = new PciTopology(spec({ device: 0x2030 }));
    const r = await route(wl, "gpu0", wl.dev("nvme0").bars[0]!.start);
    expect(r).toMatchObject({ result: "PEER", hops: 6 });
    expect(r.hops).toBe(pciP2pdmaDistance(wl, wl.dev("nvme0"), wl.dev("gpu0")));
  });

  it("an address no window claims goes to host memory; a gap inside a port's window is an Unsupported Request", async () => {
    const t = new PciTopology(spec());
    expect(await route(t, "gpu0", 0x1000_0000)).toMatchObject({ result: "HOST", target: null, hops: 4 });
    // A 64 KiB BAR in a 1 MiB window: the rest of the window is claimed by nobody.
    const small = spec({ device: 0x2030 }); // a root complex that forwards: the gap, not the bridge, refuses it
    small.hostBridges[0]!.rootPorts[1]!.child = { kind: "endpoint", name: "nvme0", bars: [{ size: 64 * 1024 }] };
    const t2 = new PciTopology(small);
    const bar = t2.dev("nvme0").bars[0]!;
    expect(bar.start + bar.size).toBeLessThan(t2.dev("rp1").window[1]);
    expect((await route(t2, "gpu0", bar.start + bar.size)).result).toBe("UR");
  });

  it("a requester that is not an endpoint of the fabric is EINVAL", async () => {
    const m = await mmMachine();
    const t = new PciTopology(spec());
    expect(caught(() => pcieRoute(m.core, t, [{ requester: t.dev("sw0"), address: 0 }])).arg).toBe("requester");
  });
});
