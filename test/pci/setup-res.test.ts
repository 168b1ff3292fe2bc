/**
 * A fabric described as the firmware left it (BARs with bus addresses): the kernel claims
 * them; a description no hardware could decode is EINVAL naming the BAR or bridge.
 */
import { describe, expect, it } from "vitest";
import { pcieRoute } from "../../src/pci/router.js";
import { PciTopology, type TopologySpec } from "../../src/pci/topology.js";
import { smallMachine } from "../helpers.js";
import { caught } from "../mm/mm-helpers.js";

const MiB = 1 << 20;

function spec(o: { gpu?: number; nic?: number; nicSize?: number; nvme?: number | null } = {}): TopologySpec {
  return {
    hostBridges: [{
      name: "hb0",
      rootPorts: [
        {
          name: "rp0",
          child: {
            kind: "switch", name: "sw0", downstream: [
              { name: "dsp0", child: { kind: "endpoint", name: "gpu0", bars: [{ size: 16 * MiB, start: o.gpu ?? 0xc000_0000 }] } },
              { name: "dsp1", child: { kind: "endpoint", name: "nic0", bars: [{ size: o.nicSize ?? MiB, start: o.nic ?? 0xc100_0000 }] } },
            ],
          },
        },
        { name: "rp1", child: { kind: "endpoint", name: "nvme0", bars: [{ size: 16 * 1024, ...(o.nvme === null ? {} : { start: o.nvme ?? 0xd000_0000 }) }] } },
      ],
    }],
  };
}

describe("firmware-assigned BARs", () => {
  it("are kept where the firmware put them; bridge windows span what is below them, and routing uses them", async () => {
    const t = new PciTopology(spec());
    expect(t.dev("gpu0").bars[0]!.start).toBe(0xc000_0000);
    expect(t.dev("dsp1").window).toEqual([0xc100_0000, 0xc110_0000]);
    expect(t.dev("sw0").window).toEqual([0xc000_0000, 0xc110_0000]);
    expect(t.dev("rp1").window).toEqual([0xd000_0000, 0xd010_0000]);
    const m = await smallMachine();
    const [r] = pcieRoute(m.core, t, [{ requester: t.dev("nic0"), address: 0xc000_1000 }]);
    expect(r).toMatchObject({ result: "PEER", target: t.dev("gpu0"), hops: 4 });
  });

  it("overlapping, misaligned, out-of-aperture and missing addresses are EINVAL naming the BAR", () => {
    const at = (s: TopologySpec) => caught(() => new PciTopology(s)).arg;
    expect(at(spec({ nic: 0xc0ff_0000 }))).toBe("hostBridges[0].rootPorts[0].child.downstream[1].child.bars[0].start"); // inside the GPU's BAR
    expect(at(spec({ nic: 0xc100_8000 }))).toBe("hostBridges[0].rootPorts[0].child.downstream[1].child.bars[0].start"); // not 1 MiB aligned
    expect(at(spec({ nvme: 0x1000_0000 }))).toBe("hostBridges[0].rootPorts[1].child.bars[0].start"); // below the aperture
    expect(at(spec({ nvme: null }))).toBe("hostBridges[0].rootPorts[1].child.bars[0].start");
    expect(caught(() => new PciTopology(spec({ nic: 0xc0ff_0000 }))).code).toBe("EINVAL");
  });

  it("sibling bridges whose windows interleave are EINVAL naming the bridge", () => {
    // nvme0 (below rp1) sits inside the span of sw0's BARs: rp0's window [c0000000, c2100000) covers it.
    const e = caught(() => new PciTopology(spec({ nic: 0xc200_0000, nvme: 0xc100_0000 })));
    expect([e.code, e.arg]).toEqual(["EINVAL", "rp1"]);
  });
});
