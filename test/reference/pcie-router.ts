/**
 * Reference model of the core's PCIe router (assembly/pcie/route.ts), over the topology's
 * objects: the same routing rules, written as a walk of the tree.
 */
import { hostBridgeForwards } from "../../src/pci/p2pdma.js";
import type { Route } from "../../src/pci/router.js";
import type { PciDev, PciTopology } from "../../src/pci/topology.js";

const REDIRECT = 0x04 | 0x08 | 0x20;

function claims(d: PciDev, a: number): boolean {
  if (d.kind === "endpoint") return d.bars.some((b) => a >= b.start && a < b.start + b.size);
  if (d.kind === "hostBridge") return false;
  return [d.window, d.prefWindow].some(([lo, hi]) => a >= lo && a < hi);
}

function down(from: PciDev, a: number, hops: number): Route {
  let cur = from;
  while (cur.kind !== "endpoint") {
    const next = cur.children.find((c) => claims(c, a));
    if (!next) return { result: "UR", target: null, hops };
    cur = next;
    hops++;
  }
  return { result: "PEER", target: cur, hops };
}

export function refPcieRoute(t: PciTopology, requester: PciDev, a: number, iommu = false): Route {
  if (claims(requester, a)) return { result: "PEER", target: requester, hops: 0 };
  let hops = 0;
  let redirect = false;
  let cur = requester;
  for (;;) {
    const p = cur.parent!;
    hops++;
    if (p.kind === "hostBridge") {
      if (iommu) return { result: "HOST", target: null, hops };
      const port = p.children.find((c) => claims(c, a));
      if (!port) return { result: "HOST", target: null, hops };
      if ((port === cur && !redirect) || !hostBridgeForwards(t, p)) return { result: "UR", target: null, hops };
      return down(port, a, hops + 1);
    }
    if (p.kind === "switchUpstream") {
      if (!redirect) {
        const sib = p.children.find((c) => c !== cur && c.kind === "switchDownstream" && claims(c, a));
        if (sib) return down(sib, a, hops + 1);
      }
    } else if (p.acs & REDIRECT) {
      redirect = true;
    }
    cur = p;
  }
}
