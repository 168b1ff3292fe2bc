/**
 * Differential test of the PCIe router: the core's (assembly/pcie/route.ts) against the
 * reference model (test/reference/pcie-router.ts) over random fabrics (one or two host
 * bridges, root ports, switches up to two deep, endpoints with random BARs, ACS redirect on
 * random ports, whitelisted or plain host bridges, an AMD Zen CPU or not) and random request
 * streams (into BARs, window gaps, host memory, anywhere). Same result, same target, same
 * hops for every request: at least 10,000 requests per run.
 *
 * On failure fast-check prints the seed and path; rerun with DMALAB_SEED=<seed>.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { pcieRoute } from "../../src/pci/router.js";
import { type EndpointSpec, PciTopology, type PortSpec, type SwitchSpec, type TopologySpec } from "../../src/pci/topology.js";
import { createMachine } from "../../src/index.js";
import { refPcieRoute } from "../reference/pcie-router.js";

const barArb = fc.record({
  size: fc.constantFrom(4096, 16384, 65536, 1 << 20, 4 << 20, 16 << 20),
  prefetchable: fc.boolean(),
  bits64: fc.boolean(),
});
const acsArb = fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(0x04, 0x08, 0x20, 0x01) });

type Child = EndpointSpec | SwitchSpec | undefined;
let serial = 0;

/** A random child of a port: an endpoint, a switch (while @depth allows), or nothing. */
function childArb(depth: number): fc.Arbitrary<Child> {
  const endpoint = fc.array(barArb, { minLength: 1, maxLength: 3 }).map((bars): Child => ({ kind: "endpoint", name: `ep${serial++}`, bars }));
  const none = fc.constant<Child>(undefined);
  if (depth <= 0) return fc.oneof({ weight: 5, arbitrary: endpoint }, { weight: 1, arbitrary: none });
  const sw = fc.tuple(fc.array(portArb(depth - 1), { minLength: 1, maxLength: 3 }), acsArb).map(([downstream, acs]): Child => ({ kind: "switch", name: `sw${serial++}`, acs, downstream }));
  return fc.oneof({ weight: 5, arbitrary: endpoint }, { weight: 2, arbitrary: sw }, { weight: 1, arbitrary: none });
}

function portArb(depth: number): fc.Arbitrary<PortSpec> {
  return fc.tuple(acsArb, childArb(depth)).map(([acs, child]) => ({ name: `p${serial++}`, acs, ...(child ? { child } : {}) }));
}

const topoArb: fc.Arbitrary<TopologySpec> = fc.record({
  hostBridges: fc.array(
    fc.record({
      device: fc.constantFrom(0x1234, 0x2030, 0x3c00),
      rootPorts: fc.array(portArb(2), { minLength: 1, maxLength: 3 }),
    }),
    { minLength: 1, maxLength: 2 },
  ).map((hbs) => hbs.map((hb, i) => ({ name: `hb${i}-${serial++}`, device: hb.device, rootPorts: hb.rootPorts }))),
  amdZen: fc.boolean(),
});

/** Addresses to try: inside each BAR, just past it, inside each window, and host memory. */
function addressesOf(t: PciTopology, picks: number[]): number[] {
  const cands: number[] = [0x1000_0000, 0xbfff_f000];
  for (const d of t.byName.values()) {
    for (const b of d.bars) cands.push(b.start, b.start + b.size - 1, b.start + b.size);
    for (const [lo, hi] of [d.window, d.prefWindow]) if (hi > lo) cands.push(lo, hi - 1, hi);
  }
  return picks.map((p) => cands[p % cands.length]!);
}

let requests = 0;
/** Outcomes by result and whether the host bridge forwarded (DMALAB_DIFF_STATS=1 prints them). */
const outcomes = new Map<string, number>();

describe("PCIe router: core vs reference model", () => {
  it("agree on random fabrics and request streams", async () => {
    const m = await createMachine({ memory: { normal: "16MiB", movable: 0, cma: 0 }, cpus: 1, trace: false });
    await fc.assert(
      fc.asyncProperty(topoArb, fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 50, maxLength: 200 }), async (spec, reqs) => {
        let t: PciTopology;
        try {
          t = new PciTopology(spec);
        } catch {
          return; // an aperture too small for the BARs drawn: not a fabric
        }
        const eps = [...t.byName.values()].filter((d) => d.kind === "endpoint");
        if (!eps.length) return;
        const addrs = addressesOf(t, reqs.map(([, a]) => a));
        const batch = reqs.map(([r], i) => ({ requester: eps[r % eps.length]!, address: addrs[i]! }));
        const iommu = reqs.length % 3 === 0; // a third of the fabrics sit behind an IOMMU
        const core = pcieRoute(m.core, t, batch, { iommu });
        batch.forEach((q, i) => {
          const ref = refPcieRoute(t, q.requester, q.address, iommu);
          const got = core[i]!;
          expect({ result: got.result, target: got.target?.name ?? null, hops: got.hops }, `${q.requester.name} -> 0x${q.address.toString(16)}`).toEqual({
            result: ref.result, target: ref.target?.name ?? null, hops: ref.hops,
          });
        });
        requests += batch.length;
        for (const r of core) outcomes.set(`${r.result}:${r.hops}`, (outcomes.get(`${r.result}:${r.hops}`) ?? 0) + 1);
      }),
      { numRuns: 150, seed: process.env.DMALAB_SEED ? Number(process.env.DMALAB_SEED) : undefined, interruptAfterTimeLimit: 150_000 },
    );
    expect(requests).toBeGreaterThanOrEqual(10_000);
    if (process.env.DMALAB_DIFF_STATS) console.log([...outcomes].sort().map(([k, v]) => `${k}=${v}`).join(" "));
  }, 300_000);
});
