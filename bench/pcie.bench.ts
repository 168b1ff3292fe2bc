/**
 * pcie: routing decisions per second, the core's batched router against the reference model
 * (test/reference/pcie-router.ts), on one fabric: two host bridges (one forwarding P2P), six
 * root ports, two switches of four ports, 16 endpoints, ACS redirect on one port; a stream of
 * 50,000 requests into peers' BARs, window gaps and host memory, routed in batches.
 *
 * The core's figure includes packing the fabric and the requests into the ring for each batch
 * (what a host call costs); nsPerOp is ns per request, the best of 5 rounds.
 */
import { createMachine } from "../src/index.js";
import { pcieRoute } from "../src/pci/router.js";
import { type EndpointSpec, PciTopology, type PortSpec, type TopologySpec } from "../src/pci/topology.js";
import { refPcieRoute } from "../test/reference/pcie-router.js";
import { type BenchReport, type Case, median } from "./lib.js";

const MiB = 1 << 20;
let n = 0;
const ep = (): EndpointSpec => ({ kind: "endpoint", name: `ep${n++}`, bars: [{ size: 1 * MiB }, { size: 16 * MiB, prefetchable: true, bits64: true }] });
const sw = (acs = 0): PortSpec => ({ name: `rp${n++}`, child: { kind: "switch", name: `sw${n++}`, downstream: [0, 1, 2, 3].map((i) => ({ name: `dsp${n++}`, acs: i === 0 ? acs : 0, child: ep() })) } });
const spec: TopologySpec = {
  hostBridges: [
    { name: "hb0", device: 0x2030, rootPorts: [sw(0x04), { name: "rpa", child: ep() }, { name: "rpb", child: ep() }] },
    { name: "hb1", device: 0x1234, rootPorts: [sw(), { name: "rpc", child: ep() }, { name: "rpd", child: ep() }] },
  ],
};

export async function run(): Promise<BenchReport> {
  const m = await createMachine({ memory: { normal: "64MiB", movable: 0, cma: 0 }, cpus: 1, trace: false });
  const t = new PciTopology(spec);
  const eps = [...t.byName.values()].filter((d) => d.kind === "endpoint");
  const targets = eps.flatMap((d) => d.bars.map((b) => b.start + 4096)).concat([0x1000_0000, 0x2000_0000]);
  let seed = 12345;
  const rnd = (k: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % k);
  const reqs = Array.from({ length: 50_000 }, () => ({ requester: eps[rnd(eps.length)]!, address: targets[rnd(targets.length)]! }));
  const time = (f: () => void): number[] => {
    const per: number[] = [];
    for (let r = 0; r < 6; r++) {
      const t0 = performance.now();
      f();
      if (r > 0) per.push(((performance.now() - t0) * 1e6) / reqs.length);
    }
    return per;
  };
  const core = time(() => void pcieRoute(m.core, t, reqs));
  const ref = time(() => {
    for (const q of reqs) refPcieRoute(t, q.requester, q.address);
  });
  const cases: Case[] = [
    { name: "route/50k", impl: "core", nsPerOp: Math.min(...core), medianNsPerOp: median(core), decisionsPerSec: 1e9 / Math.min(...core) },
    { name: "route/50k", impl: "reference", nsPerOp: Math.min(...ref), medianNsPerOp: median(ref), decisionsPerSec: 1e9 / Math.min(...ref) },
  ];
  return {
    bench: "pcie",
    cases,
    ratios: { "route: reference / core": cases[1]!.nsPerOp / cases[0]!.nsPerOp },
    notes: [
      `fabric: ${t.byName.size} nodes, ${eps.length} endpoints; 50,000 requests to peers' BARs and host memory`,
      "core: pcieRoute, batches of a ring's worth, packing included; reference: refPcieRoute per request over the topology objects",
    ],
  };
}
