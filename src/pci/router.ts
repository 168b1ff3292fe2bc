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
 * @iommu: an IOMMU translates whatever reaches the root complex (HOST, never routed on).
 */
export function pcieRoute(core: Core, t: PciTopology, reqs: RouteRequest[], opts: { iommu?: boolean } = {}): Route[] {
  const rc = opts.iommu ? P.PNF_IOMMU : 0;
  const nodes = fabricNodes(t);
  const index = new Map(nodes.map((d, i) => [d, i]));
  const max = core.x.pcieRouteMax(nodes.length);
  if (max < 1) throw new DmaError("EINVAL", `pcieRoute: ${nodes.length} nodes do not fit the ring`, { arg: "topology" });
  for (const d of nodes) {
    if (ranges(d).length > P.PCIE_RANGES) throw new DmaError("EINVAL", `pcieRoute: ${d.name} has more than ${P.PCIE_RANGES} BARs`, { arg: "topology" });
  }
  const out: Route[] = new Array(reqs.length);
  const base = core.ring + H.RING_ENTRY0;
  const q0 = base + nodes.length * P.PCIE_NODE_SIZE;
  for (let at = 0; at < reqs.length; at += max) {
    const n = Math.min(max, reqs.length - at);
    let i32 = core.i32;
    const f64 = core.f64;
    // The fabric (every batch: the ring is the only way in).
    nodes.forEach((d, i) => {
      const w = (base + i * P.PCIE_NODE_SIZE) >>> 2;
      i32[w + P.PN_PARENT / 4] = d.parent ? index.get(d.parent)! : -1;
      i32[w + P.PN_KIND / 4] = KINDS[d.kind];
      i32[w + P.PN_ACS / 4] = d.acs;
      i32[w + P.PN_FLAGS / 4] = d.kind === "hostBridge" ? (hostBridgeForwards(t, d) ? P.PNF_P2P_FORWARD : 0) | rc : 0;
      const r = ranges(d);
      const f = (base + i * P.PCIE_NODE_SIZE + P.PN_RANGES) >>> 3;
      for (let k = 0; k < P.PCIE_RANGES; k++) {
        f64[f + 2 * k] = r[k]?.[0] ?? 0;
        f64[f + 2 * k + 1] = r[k]?.[1] ?? 0;
      }
    });
    for (let i = 0; i < n; i++) {
      const q = reqs[at + i]!;
      const r = index.get(q.requester);
      if (r === undefined || q.requester.kind !== "endpoint") throw new DmaError("EINVAL", `pcieRoute: requests[${at + i}].requester is not an endpoint of this fabric`, { arg: "requester" });
      const a = q0 + i * P.PCIE_REQ_SIZE;
      f64[(a + P.PR_ADDR) >>> 3] = q.address;
      i32[(a + P.PR_REQUESTER) >>> 2] = r;
    }
    core.check(core.x.pcieRoute(nodes.length, n), "pcieRoute");
    i32 = core.i32; // after the call: the memory may have grown
    for (let i = 0; i < n; i++) {
      const a = q0 + i * P.PCIE_REQ_SIZE;
      const tgt = i32[(a + P.PR_REQUESTER) >>> 2]!;
      out[at + i] = { result: RESULTS[i32[(a + P.PR_RESULT) >>> 2]!]!, target: tgt >= 0 ? nodes[tgt]! : null, hops: i32[(a + P.PR_HOPS) >>> 2]! };
    }
  }
  return out;
}
