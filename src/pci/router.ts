/**
 * The host side of the core's PCIe router (assembly/pcie/route.ts): the fabric's nodes and a
 * batch of requests go to the core in one call; each request comes back with where it went
 * (a peer's BAR, host memory, or an Unsupported Request), the device that claimed it, and the
 * links it crossed.
 * @module
 */
import * as H from "../abi/header.js";
import * as P from "../abi/pcie.js";
import type { Core } from "../core/core.js";
import { DmaError } from "../errors.js";
import { hostBridgeForwards } from "./p2pdma.js";
import type { PciDev, PciTopology } from "./topology.js";

export type RouteResult = "PEER" | "HOST" | "UR";
const RESULTS: RouteResult[] = ["PEER", "HOST", "UR"];

export interface RouteRequest {
  requester: PciDev;
  /** Bus address. */
  address: number;
}

export interface Route {
  result: RouteResult;
  /** The endpoint whose BAR claimed it (PEER), else null. */
  target: PciDev | null;
  hops: number;
}

const KINDS: Record<PciDev["kind"], number> = {
  hostBridge: P.PK_HOST_BRIDGE, rootPort: P.PK_ROOT_PORT, switchUpstream: P.PK_SWITCH_UP, switchDownstream: P.PK_SWITCH_DOWN, endpoint: P.PK_ENDPOINT,
};

/** The topology's nodes in one order, parents by index. */
export function fabricNodes(t: PciTopology): PciDev[] {
  return [...t.byName.values()];
}

function ranges(d: PciDev): [number, number][] {
  if (d.kind === "endpoint") return d.bars.map((b) => [b.start, b.start + b.size]);
  if (d.kind === "hostBridge") return [];
  return [d.window, d.prefWindow].filter(([lo, hi]) => hi > lo);
}

/**
 * pcieRoute - route @reqs through @t's fabric in the core, a ring's worth per call. EINVAL for
 * a requester that is not an endpoint of @t, or an endpoint with more BARs than a node holds.
 */
export function pcieRoute(core: Core, t: PciTopology, reqs: RouteRequest[]): Route[] {
  const nodes = fabricNodes(t);
  const index = new Map(nodes.map((d, i) => [d, i]));
  const max = core.x.pcieRouteMax(nodes.length);
  if (max < 1) throw new DmaError("EINVAL", `pcieRoute: ${nodes.length} nodes do not fit the ring`, { arg: "topology" });
  const out: Route[] = [];
  const base = core.ring + H.RING_ENTRY0;
  for (let at = 0; at < reqs.length; at += max) {
    const batch = reqs.slice(at, at + max);
    const dv = new DataView(core.u8.buffer);
    nodes.forEach((d, i) => {
      const n = base + i * P.PCIE_NODE_SIZE;
      const r = ranges(d);
      if (r.length > P.PCIE_RANGES) throw new DmaError("EINVAL", `pcieRoute: ${d.name} has more than ${P.PCIE_RANGES} BARs`, { arg: "topology" });
      dv.setInt32(n + P.PN_PARENT, d.parent ? index.get(d.parent)! : -1, true);
      dv.setUint32(n + P.PN_KIND, KINDS[d.kind], true);
      dv.setUint32(n + P.PN_ACS, d.acs, true);
      dv.setUint32(n + P.PN_FLAGS, d.kind === "hostBridge" && hostBridgeForwards(t, d) ? P.PNF_P2P_FORWARD : 0, true);
      for (let k = 0; k < P.PCIE_RANGES; k++) {
        const [lo, hi] = r[k] ?? [0, 0];
        dv.setFloat64(n + P.PN_RANGES + 16 * k, lo, true);
        dv.setFloat64(n + P.PN_RANGES + 16 * k + 8, hi, true);
      }
    });
    const q0 = base + nodes.length * P.PCIE_NODE_SIZE;
    batch.forEach((q, i) => {
      const r = index.get(q.requester);
      if (r === undefined || q.requester.kind !== "endpoint") throw new DmaError("EINVAL", `pcieRoute: requests[${at + i}].requester is not an endpoint of this fabric`, { arg: "requester" });
      dv.setFloat64(q0 + i * P.PCIE_REQ_SIZE + P.PR_ADDR, q.address, true);
      dv.setInt32(q0 + i * P.PCIE_REQ_SIZE + P.PR_REQUESTER, r, true);
    });
    core.check(core.x.pcieRoute(nodes.length, batch.length), "pcieRoute");
    const dv2 = new DataView(core.u8.buffer);
    batch.forEach((_, i) => {
      const q = q0 + i * P.PCIE_REQ_SIZE;
      const tgt = dv2.getInt32(q + P.PR_REQUESTER, true);
      out.push({ result: RESULTS[dv2.getUint32(q + P.PR_RESULT, true)]!, target: tgt >= 0 ? nodes[tgt]! : null, hops: dv2.getUint32(q + P.PR_HOPS, true) });
    });
  }
  return out;
}
