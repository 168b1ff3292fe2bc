/**
 * pci_p2pdma_distance (drivers/pci/p2pdma.c calc_map_type_and_dist): can a client device
 * DMA into a provider's memory (a BAR) directly, and how far apart are they?
 *
 * - Walk up from the provider (counting its hops) and, for each of its ancestors, walk up from
 *   the client until the two meet. The distance is the sum of the hops: the same device 0;
 *   two devices below one switch 4 (A -> its downstream port -> upstream port <- B's
 *   downstream port <- B).
 * - A port with ACS P2P Request Redirect, Completion Redirect or Egress Control on the
 *   provider's path (the common ancestor included) or the client's (excluded) sends the
 *   traffic up to the root complex: THRU_HOST_BRIDGE. So does the absence of a common
 *   ancestor below the host bridge (the distance is then the whole chain).
 * - THRU_HOST_BRIDGE works only if the host bridges forward P2P: an AMD Zen CPU, or both host
 *   bridges whitelisted (Intel 0x3c00/0x3c01/0x2f00/0x2f01 only when both devices share the
 *   host bridge; 0x2030-0x2033, 0x2020, 0x09a2 any). Otherwise NOT_SUPPORTED (-1).
 * @module
 */
import { DmaError } from "../errors.js";
import type { PciDev, PciTopology } from "./topology.js";

export type PciP2pdmaMapType = "BUS_ADDR" | "THRU_HOST_BRIDGE" | "NOT_SUPPORTED";

export const PCI_ACS_RR = 0x04;
export const PCI_ACS_CR = 0x08;
export const PCI_ACS_EC = 0x20;
const ACS_REDIRECT = PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC;

/** Intel host bridges that forward P2P; `sameHostBridge`: only between devices under the same one. */
const WHITELIST: { vendor: number; device: number; sameHostBridge: boolean }[] = [
  { vendor: 0x8086, device: 0x3c00, sameHostBridge: true },
  { vendor: 0x8086, device: 0x3c01, sameHostBridge: true },
  { vendor: 0x8086, device: 0x2f00, sameHostBridge: true },
  { vendor: 0x8086, device: 0x2f01, sameHostBridge: true },
  { vendor: 0x8086, device: 0x2030, sameHostBridge: false },
  { vendor: 0x8086, device: 0x2031, sameHostBridge: false },
  { vendor: 0x8086, device: 0x2032, sameHostBridge: false },
  { vendor: 0x8086, device: 0x2033, sameHostBridge: false },
  { vendor: 0x8086, device: 0x2020, sameHostBridge: false },
  { vendor: 0x8086, device: 0x09a2, sameHostBridge: false },
];

export interface P2pdmaResult {
  mapType: PciP2pdmaMapType;
  /** The distance, or -1 when not supported. */
  distance: number;
  /** Why not BUS_ADDR, as the kernel's messages put it (empty for BUS_ADDR). */
  reason: string;
}

/** Whether host bridge @hb forwards P2P between its own root ports (AMD Zen, or a whitelisted bridge). */
export function hostBridgeForwards(t: PciTopology, hb: PciDev): boolean {
  return t.amdZen || WHITELIST.some((w) => w.vendor === hb.vendor && w.device === hb.device);
}

/**
 * hostBridgesForwardP2p - whether the root complex forwards P2P between @a and @b (the
 * THRU_HOST_BRIDGE condition): an AMD Zen CPU, or both host bridges whitelisted (the first
 * four Intel ids only when they are the same bridge).
 */
export function hostBridgesForwardP2p(t: PciTopology, a: PciDev, b: PciDev): boolean {
  if (t.amdZen) return true;
  const ha = a.hostBridge;
  const hb = b.hostBridge;
  const entry = (h: PciDev) => WHITELIST.find((w) => w.vendor === h.vendor && w.device === h.device);
  const ea = entry(ha);
  const eb = entry(hb);
  if (!ea || !eb) return false;
  if ((ea.sameHostBridge || eb.sameHostBridge) && ha !== hb) return false;
  return true;
}

/** calc_map_type_and_dist between @provider and @client. */
export function pciP2pdmaMapType(t: PciTopology, provider: PciDev, client: PciDev): P2pdmaResult {
  let distA = 0;
  let acsA = 0;
  for (let a: PciDev | null = provider; a && a.kind !== "hostBridge"; a = a.parent) {
    let distB = 0;
    let acsB = 0;
    for (let b: PciDev | null = client; b && b.kind !== "hostBridge"; b = b.parent) {
      if (a === b) {
        const acs = acsA + (a.acs & ACS_REDIRECT ? 1 : 0) + acsB;
        const distance = distA + distB;
        if (!acs) return { mapType: "BUS_ADDR", distance, reason: "" };
        const reason = `ACS redirect is set between the client and provider (${a.name})`;
        return hostBridgesForwardP2p(t, provider, client)
          ? { mapType: "THRU_HOST_BRIDGE", distance, reason }
          : { mapType: "NOT_SUPPORTED", distance: -1, reason: `${reason}, and the host bridge is not whitelisted for P2P` };
      }
      distB++;
      if (b.acs & ACS_REDIRECT) acsB++;
    }
    distA++;
    if (a.acs & ACS_REDIRECT) acsA++;
  }
  // No common ancestor below the host bridge(s): through the root complex.
  const chain = (d: PciDev) => {
    let n = 0;
    for (let x: PciDev | null = d; x && x.kind !== "hostBridge"; x = x.parent) n++;
    return n;
  };
  const distance = chain(provider) + chain(client);
  const reason = "the devices have no common upstream bridge: the traffic crosses the host bridge";
  return hostBridgesForwardP2p(t, provider, client)
    ? { mapType: "THRU_HOST_BRIDGE", distance, reason }
    : { mapType: "NOT_SUPPORTED", distance: -1, reason: `${reason}, which is not whitelisted for P2P` };
}

/** pciP2pdmaDistance - pci_p2pdma_distance: the distance, or -1 when not supported. */
export function pciP2pdmaDistance(t: PciTopology, provider: PciDev, client: PciDev): number {
  return pciP2pdmaMapType(t, provider, client).distance;
}

/**
 * pciP2pdmaDistanceMany - pci_p2pdma_distance_many: the sum of the distances to every
 * client, -1 if any pair is not supported, or if there is no client.
 */
export function pciP2pdmaDistanceMany(t: PciTopology, provider: PciDev, clients: PciDev[]): number {
  if (!Array.isArray(clients)) throw new DmaError("EINVAL", "pciP2pdmaDistanceMany: clients must be an array", { arg: "clients" });
  if (!clients.length) return -1;
  let sum = 0;
  for (const c of clients) {
    const r = pciP2pdmaMapType(t, provider, c);
    if (r.mapType === "NOT_SUPPORTED") return -1;
    sum += r.distance;
  }
  return sum;
}
