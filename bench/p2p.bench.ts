/**
 * p2p: a NIC writes 1 MiB into an NVMe drive's CMB, the three ways the 2017 P2P thread
 * argued about, against the same write into system memory:
 * - "host": a system-memory buffer mapped through the IOMMU (dmaMapSg, IOVAs);
 * - "switch": the CMB below the NIC's switch, mapped BUS_ADDR: bus addresses, the switch turns
 *   the requests, the IOMMU never sees them;
 * - "host-bridge": ACS redirect on the switch ports and a whitelisted host bridge: mapped
 *   THRU_HOST_BRIDGE (IOVAs), translated, then forwarded back down by the root complex;
 * - and on a host bridge that does not forward P2P the map is EREMOTEIO (counted).
 * Each transfer is 256 requests of 4 KiB in one deviceDma batch (in flight together), and
 * also a single 4 KiB request, where latency rather than bandwidth decides. nsPerOp:
 * emulator wall ns per 4 KiB (best of 5 rounds); modeledNs: the machine clock's advance.
 */
import {
  createMachine, deviceDma, dmaMapSg, type DmaOp, pciAllocP2pmem, pciP2pdmaAddResource, PCI_ACS_RR, PciTopology,
  type TopologySpec,
} from "../src/index.js";
import { type BenchReport, type Case, median } from "./lib.js";

const MiB = 1 << 20;
const PAGES = 256;

function spec(acs: number, device: number): TopologySpec {
  return {
    hostBridges: [{
      name: "hb0", device,
      rootPorts: [{
        name: "rp0",
        child: {
          kind: "switch", name: "sw0", downstream: [
            { name: "dsp0", acs, child: { kind: "endpoint", name: "nvme0", bars: [{ size: 16 * 1024 }, { size: 4 * MiB, prefetchable: true, bits64: true }] } },
            { name: "dsp1", acs, child: { kind: "endpoint", name: "nic0", bars: [{ size: 64 * 1024 }] } },
          ],
        },
      }],
    }],
  };
}

async function transfer(way: "host" | "switch" | "host-bridge" | "refused", pages = PAGES): Promise<Case | number> {
  const m = await createMachine({
    memory: { normal: "256MiB", movable: 0, cma: 0, p2pdma: "8MiB" }, cpus: 1, trace: false, check: { callSites: false },
  });
  const t = new PciTopology(way === "host-bridge" || way === "refused" ? spec(PCI_ACS_RR, way === "refused" ? 0x1234 : 0x2030) : spec(0, 0x1234));
  const k = m.kernel;
  const nvme = t.dev("nvme0");
  pciP2pdmaAddResource(k, nvme, 1);
  const nic = m.iommu.iommuProbeDevice("nic0", { pci: t.dev("nic0") });
  const cmb = way === "host" ? 0 : pciAllocP2pmem(k, nvme, pages * 4096)! / 4096;
  const pfns = Array.from({ length: pages }, (_, i) => (way === "host" ? m.phys.allocPages(0) : cmb + i));
  const sg = pfns.map((pfn) => ({ pfn, offset: 0, length: 4096 }));
  if (way === "refused") {
    try {
      dmaMapSg(nic, sg, "FROM_DEVICE");
      return 0;
    } catch {
      return 1;
    }
  }
  const segs = dmaMapSg(nic, sg, "FROM_DEVICE", MiB);
  const data = new Uint8Array(4096).fill(0x5a);
  const ops: DmaOp[] = [];
  for (const s of segs) for (let at = 0; at < s.dmaLength; at += 4096) ops.push({ dev: nic, addr: s.dmaAddress + at, data });
  const per: number[] = [];
  let modeled = 0;
  let p2p: string | null = null;
  for (let r = 0; r < 6; r++) {
    const c0 = m.clock.now;
    const t0 = performance.now();
    const res = deviceDma(m.iommu, ops, { check: false });
    if (r > 0) per.push(((performance.now() - t0) * 1e6) / pages);
    modeled = m.clock.now - c0;
    p2p = res[0]!.p2p;
    if (res.some((x) => x.fault !== null || x.done !== 4096)) throw new Error(`p2p bench: ${way} transfer failed: ${JSON.stringify(res.find((x) => x.fault))}`);
  }
  const best = Math.min(...per);
  const size = pages === PAGES ? "1MiB" : `${pages * 4}KiB`;
  return { name: `write-${size}/${way}`, impl: "core", nsPerOp: best, medianNsPerOp: median(per), modeledNs: modeled, modeledGBps: (pages * 4096) / modeled, route: p2p ?? "memory", segments: segs.length };
}

export async function run(): Promise<BenchReport> {
  const cases: Case[] = [];
  for (const pages of [PAGES, 1]) for (const way of ["host", "switch", "host-bridge"] as const) cases.push((await transfer(way, pages)) as Case);
  const refused = (await transfer("refused")) as number;
  const host = cases[0]!.modeledNs as number;
  const host1 = cases[3]!.modeledNs as number;
  return {
    bench: "p2p",
    cases,
    ratios: {
      "modeled: host memory / switch P2P": host / (cases[1]!.modeledNs as number),
      "modeled: host memory / host-bridge P2P": host / (cases[2]!.modeledNs as number),
      "modeled 4 KiB: host memory / switch P2P": host1 / (cases[4]!.modeledNs as number),
      "modeled 4 KiB: host memory / host-bridge P2P": host1 / (cases[5]!.modeledNs as number),
      "wall: switch P2P / host memory": (cases[1]!.nsPerOp as number) / cases[0]!.nsPerOp,
    },
    notes: [
      "a NIC writes 1 MiB (256 x 4 KiB requests, one deviceDma batch) into system memory through the IOMMU, or into an NVMe CMB below the same switch",
      "switch: BUS_ADDR segments, no IOMMU translation; host-bridge: ACS RR on both switch ports, host bridge 8086:2030 (whitelisted), IOVAs translated and forwarded",
      `refused: the same with a host bridge that is not whitelisted: dmaMapSg EREMOTEIO (${refused ? "refused" : "NOT refused"})`,
      "modeledNs: the batch's slowest request (pcieRoundTrip + 2 x pcieHop per switch above for the root complex; 2 x pcieHop per switch between + memAccess for a switch's peer) once, plus pcieDataPage per 4 KiB, plus IOTLB lookups and walks",
    ],
  };
}
