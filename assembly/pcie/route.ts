/**
 * The PCIe router: where a memory request from a device to a bus address goes (PCIe
 * address routing through switches and root ports, KERNEL-SPEC 8.1).
 *
 * Up from the requester, one link at a time. At a switch's upstream port the request turns
 * down into the sibling downstream port whose window claims the address, unless the ingress
 * downstream port redirects peer traffic upstream (ACS RR/CR/EC). At the root complex it goes
 * down another root port whose window claims it only if the host bridge forwards P2P, and is
 * an Unsupported Request if not; an address no root port claims goes to host memory. Going
 * down, each bridge hands it to the child whose window (or BAR) holds it: none is an
 * Unsupported Request. Hops count links crossed.
 *
 * Behind an IOMMU (PNF_IOMMU on the host bridge) every request that reaches the root complex
 * is the IOMMU's to translate: HOST, whatever the address.
 */
import { EINVAL } from "../../src/abi/errno";
import { R_COUNT, R_CONFIG } from "../../src/abi/reason";
import { RING_ENTRY0, RENT_SIZE } from "../../src/abi/header";
import {
  PCIE_NODE_SIZE, PN_PARENT, PN_KIND, PN_ACS, PN_FLAGS, PN_RANGES, PCIE_RANGES, PK_HOST_BRIDGE, PK_SWITCH_UP,
  PK_SWITCH_DOWN, PK_ENDPOINT, PNF_P2P_FORWARD, PNF_IOMMU, PCIE_REQ_SIZE, PR_ADDR, PR_REQUESTER, PR_RESULT, PR_HOPS,
  PCIE_ROUTE_PEER, PCIE_ROUTE_HOST, PCIE_ROUTE_UR, PCIE_ACS_REDIRECT, PN_FIRST_CHILD, PN_NEXT_SIBLING,
} from "../../src/abi/pcie";
import { fail } from "../errno";
import { RING_ENTRIES } from "../layout";
import { RING, ringCheck } from "../ring";

let nodes: usize = 0;
let hops: u32 = 0;
let target: i32 = -1;

// @ts-ignore: decorator
@inline function node(i: i32): usize {
  return nodes + <usize>i * PCIE_NODE_SIZE;
}

// @ts-ignore: decorator
@inline function parentOf(i: i32): i32 {
  return load<i32>(node(i) + PN_PARENT);
}

// @ts-ignore: decorator
@inline function kindOf(i: i32): u32 {
  return load<u32>(node(i) + PN_KIND);
}

// @ts-ignore: decorator
@inline function firstChild(i: i32): i32 {
  return load<i32>(node(i) + PN_FIRST_CHILD);
}

// @ts-ignore: decorator
@inline function nextSibling(i: i32): i32 {
  return load<i32>(node(i) + PN_NEXT_SIBLING);
}

/** Whether a range of node @i holds @a. */
function claims(i: i32, a: f64): bool {
  const base = node(i) + PN_RANGES;
  for (let r: u32 = 0; r < <u32>PCIE_RANGES; r++) {
    const lo = load<f64>(base + <usize>r * 16);
    const hi = load<f64>(base + <usize>r * 16 + 8);
    if (a >= lo && a < hi) return true;
  }
  return false;
}

/** Down from bridge @b (which claims @a) to the endpoint that holds it: PEER, or UR. */
function descend(b: i32, a: f64): u32 {
  let cur = b;
  while (kindOf(cur) != PK_ENDPOINT) {
    let next: i32 = -1;
    for (let c = firstChild(cur); c >= 0; c = nextSibling(c)) {
      if (claims(c, a)) {
        next = c;
        break;
      }
    }
    if (next < 0) return PCIE_ROUTE_UR;
    cur = next;
    hops++;
  }
  target = cur;
  return PCIE_ROUTE_PEER;
}

/** Route one request of node @req to @a. */
function route(req: i32, a: f64): u32 {
  hops = 0;
  target = -1;
  if (claims(req, a)) {
    target = req;
    return PCIE_ROUTE_PEER; // its own BAR
  }
  let cur = req;
  let redirect = false;
  while (true) {
    const p = parentOf(cur);
    const k = kindOf(p);
    hops++; // the link up to p
    if (k == PK_HOST_BRIDGE) {
      if (load<u32>(node(p) + PN_FLAGS) & PNF_IOMMU) return PCIE_ROUTE_HOST;
      // The root complex: down a root port that claims it (the one it came up by only when a
      // redirect sent it up), if the host bridge forwards P2P; else host memory.
      for (let c = firstChild(p); c >= 0; c = nextSibling(c)) {
        if (!claims(c, a)) continue;
        if (c == cur && !redirect) return PCIE_ROUTE_UR; // inside its own port's window, claimed by nobody below
        if ((load<u32>(node(p) + PN_FLAGS) & PNF_P2P_FORWARD) == 0) return PCIE_ROUTE_UR;
        hops++;
        return descend(c, a);
      }
      return PCIE_ROUTE_HOST;
    }
    if (k != PK_SWITCH_UP) {
      // A downstream or root port met from below: ACS redirect sends peer traffic up.
      if (load<u32>(node(p) + PN_ACS) & PCIE_ACS_REDIRECT) redirect = true;
    } else if (!redirect) {
      // A switch: across to the sibling downstream port whose window claims it.
      for (let c = firstChild(p); c >= 0; c = nextSibling(c)) {
        if (c == cur || kindOf(c) != PK_SWITCH_DOWN || !claims(c, a)) continue;
        hops++;
        return descend(c, a);
      }
    }
    cur = p;
  }
  return PCIE_ROUTE_UR; // not reached
}

/** The most requests one call of @n nodes can carry. */
export function pcieRouteMax(n: u32): u32 {
  const bytes = <u64>RING_ENTRIES * RENT_SIZE;
  const used = <u64>n * PCIE_NODE_SIZE;
  return used >= bytes ? 0 : <u32>((bytes - used) / PCIE_REQ_SIZE);
}

/**
 * pcieRoute - route @nreq requests through the fabric of @nnodes nodes, both in the ring
 * (nodes first). Writes each answer in place. Returns @nreq, or -EINVAL (a node or request
 * that does not fit, a requester that is not a node, a parent out of range).
 */
export function pcieRoute(nnodes: u32, nreq: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  if (nnodes == 0 || nreq > pcieRouteMax(nnodes)) return fail(EINVAL, R_COUNT, nreq);
  nodes = RING + RING_ENTRY0;
  for (let i: i32 = 0; i < <i32>nnodes; i++) {
    const p = parentOf(i);
    if ((kindOf(i) == PK_HOST_BRIDGE) != (p < 0) || p >= <i32>nnodes || p == i) return fail(EINVAL, R_CONFIG, i);
    store<i32>(node(i) + PN_FIRST_CHILD, -1);
  }
  // Every chain of parents ends at a host bridge (no cycle).
  for (let i: i32 = 0; i < <i32>nnodes; i++) {
    let c = i;
    let steps: u32 = 0;
    while (parentOf(c) >= 0) {
      c = parentOf(c);
      if (++steps > nnodes) return fail(EINVAL, R_CONFIG, i);
    }
  }
  // Child lists, in node order (the order the host gave: the kernel's bus order).
  for (let i: i32 = <i32>nnodes - 1; i >= 0; i--) {
    const p = parentOf(i);
    if (p < 0) continue;
    store<i32>(node(i) + PN_NEXT_SIBLING, firstChild(p));
    store<i32>(node(p) + PN_FIRST_CHILD, i);
  }
  const reqs = nodes + <usize>nnodes * PCIE_NODE_SIZE;
  for (let r: u32 = 0; r < nreq; r++) {
    const q = reqs + <usize>r * PCIE_REQ_SIZE;
    const req = load<i32>(q + PR_REQUESTER);
    if (req < 0 || req >= <i32>nnodes || kindOf(req) != PK_ENDPOINT) return fail(EINVAL, R_CONFIG, nnodes + r);
  }
  for (let r: u32 = 0; r < nreq; r++) {
    const q = reqs + <usize>r * PCIE_REQ_SIZE;
    const res = route(load<i32>(q + PR_REQUESTER), load<f64>(q + PR_ADDR));
    store<i32>(q + PR_REQUESTER, res == PCIE_ROUTE_PEER ? target : -1);
    store<u32>(q + PR_RESULT, res);
    store<u32>(q + PR_HOPS, hops);
  }
  return <i32>nreq;
}
