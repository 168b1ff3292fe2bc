/**
 * The PCIe router's records in the ring, shared by the core (assembly/pcie/route.ts) and the
 * host (src/pci/router.ts): a call carries the fabric's nodes, then the requests, and the
 * core writes each request's answer over it.
 */

/* A node: PCIE_NODE_SIZE bytes. */
export const PCIE_NODE_SIZE = 128;
export const PN_PARENT = 0; // i32: the parent node's index, -1 for a host bridge
export const PN_KIND = 4; // u32: PK_*
export const PN_ACS = 8; // u32: ACS control bits (RR 0x04, CR 0x08, EC 0x20 redirect)
export const PN_FLAGS = 12; // u32: PNF_*
export const PN_RANGES = 16; // PCIE_RANGES x (f64 start, f64 end): windows of a bridge, BARs of an endpoint
export const PCIE_RANGES = 6;
export const PN_FIRST_CHILD = 112; // i32: the core's own: first child (-1 none), set at each call
export const PN_NEXT_SIBLING = 116; // i32: the core's own: next child of the same parent

export const PK_HOST_BRIDGE = 0;
export const PK_ROOT_PORT = 1;
export const PK_SWITCH_UP = 2;
export const PK_SWITCH_DOWN = 3;
export const PK_ENDPOINT = 4;

/** Host bridge: it forwards peer-to-peer between its root ports (whitelisted, or an AMD Zen CPU). */
export const PNF_P2P_FORWARD = 1;
/** Host bridge flag: an IOMMU translates what reaches the root complex, which routes none of it by address. */
export const PNF_IOMMU = 2;

/* A request: PCIE_REQ_SIZE bytes, at RING_ENTRY0 + nodes * PCIE_NODE_SIZE. */
export const PCIE_REQ_SIZE = 24;
export const PR_ADDR = 0; // f64 in: the bus address; out: unchanged
export const PR_REQUESTER = 8; // u32 in: the requester's node; out: the target node (or -1)
export const PR_RESULT = 12; // u32 out: PCIE_ROUTE_*
export const PR_HOPS = 16; // u32 out: links crossed

/** Claimed by a peer's BAR below a common switch or root complex. */
export const PCIE_ROUTE_PEER = 0;
/** Up to the root complex and on to host memory (through the IOMMU). */
export const PCIE_ROUTE_HOST = 1;
/** Unsupported Request: a root complex that does not forward P2P, or an address nobody claims inside a window. */
export const PCIE_ROUTE_UR = 2;

export const PCIE_ACS_REDIRECT = 0x04 | 0x08 | 0x20;
