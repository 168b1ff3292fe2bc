/**
 * The PCIe fabric: a topology description (host bridges, root ports, switches, endpoints),
 * enumeration, and BAR assignment.
 *
 * - Enumeration numbers buses depth first, as pci_scan_bridge does. Each host bridge is its own
 *   PCI domain with root bus 0. Its root ports sit on bus 0 at devices 1, 2, ...; a bridge
 *   takes the next bus number as its secondary and closes its subordinate once its subtree is
 *   numbered. A switch is an upstream port on a root port's secondary bus, with its downstream
 *   ports at devices 0, 1, ... of the upstream port's secondary bus; endpoints are device 0 of
 *   their port's bus.
 * - BAR assignment follows pci_bus_size_bridges / pci_assign_unassigned_resources:
 *   - Memory BARs are sized bottom up into each bridge's two windows: the 32-bit one, and the
 *     64-bit prefetchable one for BARs that are both prefetchable and 64-bit.
 *   - A window is rounded to 1 MiB, aligned to its largest child (at least 1 MiB), and packed largest
 *     first.
 *   - Addresses are then handed out top down from the host bridge's apertures.
 * - A description that cannot be laid out is EINVAL naming the field: a duplicate name, a BAR
 *   that is not a power of two of at least 4 KiB, an aperture too small.
 * - A host bridge whose BARs carry firmware addresses (`start`) is claimed instead of laid
 *   out (setup-res.ts): overlapping or misaligned BARs are EINVAL there.
 * @module
 */
import { DmaError } from "../errors.js";
import { barsBelow, claimBars, highPref } from "./setup-res.js";

export interface BarSpec {
  /** Bytes: a power of two, at least 4 KiB. */
  size: number;
  /**
   * The bus address the firmware assigned (a fabric described as booted): then every BAR
   * under the host bridge gives one, and the description is checked instead of laid out.
   */
  start?: number;
  prefetchable?: boolean;
  /** A 64-bit BAR (prefetchable ones may be placed above 4 GiB). */
  bits64?: boolean;
}

export interface EndpointSpec {
  kind: "endpoint";
  name: string;
  bars?: BarSpec[];
  /** ATS, PRI and PASID capabilities. */
  ats?: boolean;
  pri?: boolean;
  pasid?: boolean;
}

export interface PortSpec {
  name: string;
  /** The ACS control bits enabled on this port (PCI_ACS_RR 0x04, CR 0x08, EC 0x20, ...). */
  acs?: number;
  /** What hangs below the port: an endpoint or a switch. */
  child?: EndpointSpec | SwitchSpec;
}

export interface SwitchSpec {
  kind: "switch";
  name: string;
  /** The upstream port's ACS bits. */
  acs?: number;
  downstream: PortSpec[];
}

export interface HostBridgeSpec {
  name: string;
  /** The host bridge's root device (00.0): vendor and device, for the P2P whitelist. */
  vendor?: number;
  device?: number;
  rootPorts: PortSpec[];
  /** Bus-address apertures: 32-bit non-prefetchable and 64-bit prefetchable memory. */
  mem32?: [number, number];
  mem64?: [number, number];
}

export interface TopologySpec {
  hostBridges: HostBridgeSpec[];
  /** The CPU is AMD family 0x17 or later: host bridges forward P2P (pci_p2pdma whitelist). */
  amdZen?: boolean;
}

export type PciKind = "hostBridge" | "rootPort" | "switchUpstream" | "switchDownstream" | "endpoint";

/** An assigned BAR. */
export interface Bar {
  index: number;
  start: number;
  /** Where it was described (for errors), and whether the firmware fixed its address. */
  path: string;
  fixed: boolean;
  size: number;
  prefetchable: boolean;
  bits64: boolean;
}

/** A function in the enumerated fabric. */
export class PciDev {
  readonly name: string;
  readonly kind: PciKind;
  readonly parent: PciDev | null;
  readonly children: PciDev[] = [];
  /** PCI domain (one per host bridge), bus, device, function. */
  domain = 0;
  bus = 0;
  devfn = 0;
  /** Bridges: the bus numbers below them. */
  secondary = -1;
  subordinate = -1;
  acs = 0;
  bars: Bar[] = [];
  /** Bridges: memory windows [start, end) (empty: [0, 0)). */
  window: [number, number] = [0, 0];
  prefWindow: [number, number] = [0, 0];
  ats = false;
  pri = false;
  pasid = false;
  /** The host bridge's root device ids. */
  vendor = 0;
  device = 0;
  /** The fabric it belongs to. */
  topology!: PciTopology;

  constructor(name: string, kind: PciKind, parent: PciDev | null) {
    this.name = name;
    this.kind = kind;
    this.parent = parent;
  }

  /** "dddd:bb:dd.f". */
  get bdf(): string {
    const h = (n: number, w: number) => n.toString(16).padStart(w, "0");
    return `${h(this.domain, 4)}:${h(this.bus, 2)}:${h(this.devfn >> 3, 2)}.${this.devfn & 7}`;
  }

  /** The host bridge above (or this one). */
  get hostBridge(): PciDev {
    let d: PciDev = this;
    while (d.parent) d = d.parent;
    return d;
  }

  get isBridge(): boolean {
    return this.kind !== "endpoint" && this.kind !== "hostBridge";
  }
}

export class PciTopology {
  readonly hostBridges: PciDev[] = [];
  readonly byName = new Map<string, PciDev>();
  readonly amdZen: boolean;

  constructor(spec: TopologySpec) {
    this.amdZen = spec.amdZen === true;
    if (!Array.isArray(spec?.hostBridges) || !spec.hostBridges.length) throw new DmaError("EINVAL", "topology: hostBridges must list at least one", { arg: "hostBridges" });
    spec.hostBridges.forEach((hb, i) => this.hostBridges.push(this.#hostBridge(hb, i)));
  }

  /** The device named @name (ENODEV). */
  dev(name: string): PciDev {
    const d = this.byName.get(name);
    if (!d) throw new DmaError("ENODEV", `topology: no device named ${name}`, { arg: "name" });
    return d;
  }

  #add(d: PciDev, path: string): PciDev {
    if (typeof d.name !== "string" || !d.name) throw new DmaError("EINVAL", `topology: ${path}.name must be a non-empty string`, { arg: `${path}.name` });
    if (this.byName.has(d.name)) throw new DmaError("EINVAL", `topology: ${path}.name ${d.name} is used twice`, { arg: `${path}.name` });
    this.byName.set(d.name, d);
    d.topology = this;
    d.parent?.children.push(d);
    return d;
  }

  #hostBridge(hb: HostBridgeSpec, domain: number): PciDev {
    const path = `hostBridges[${domain}]`;
    const root = this.#add(new PciDev(hb.name, "hostBridge", null), path);
    root.domain = domain;
    root.vendor = hb.vendor ?? 0x8086;
    root.device = hb.device ?? 0;
    root.secondary = 0;
    const next = { bus: 1 };
    hb.rootPorts.forEach((rp, i) => {
      const port = this.#add(new PciDev(rp.name, "rootPort", root), `${path}.rootPorts[${i}]`);
      port.domain = domain;
      port.bus = 0;
      port.devfn = (i + 1) << 3;
      port.acs = rp.acs ?? 0;
      this.#below(port, rp.child, next, `${path}.rootPorts[${i}].child`);
    });
    root.subordinate = next.bus - 1;
    const mem32 = hb.mem32 ?? [0xc000_0000, 0xfe00_0000];
    const mem64 = hb.mem64 ?? [0x40_0000_0000, 0x80_0000_0000];
    if (barsBelow(root).some((b) => b.fixed)) claimBars(root, mem32, mem64);
    else assignBars(root, mem32, mem64, path);
    return root;
  }

  /** Number the bus below bridge @port and what hangs there. */
  #below(port: PciDev, child: EndpointSpec | SwitchSpec | undefined, next: { bus: number }, path: string): void {
    port.secondary = next.bus++;
    if (child?.kind === "endpoint") {
      const ep = this.#add(new PciDev(child.name, "endpoint", port), path);
      ep.domain = port.domain;
      ep.bus = port.secondary;
      ep.devfn = 0;
      ep.ats = !!child.ats;
      ep.pri = !!child.pri;
      ep.pasid = !!child.pasid;
      (child.bars ?? []).forEach((b, i) => {
        if (!Number.isSafeInteger(b?.size) || b.size < 4096 || (b.size & (b.size - 1)) !== 0) {
          throw new DmaError("EINVAL", `topology: ${path}.bars[${i}].size ${b?.size} is not a power of two of at least 4 KiB`, { arg: `${path}.bars[${i}].size` });
        }
        const fixed = b.start !== undefined;
        ep.bars.push({ index: i, start: fixed ? b.start! : 0, size: b.size, prefetchable: !!b.prefetchable, bits64: !!b.bits64, path: `${path}.bars[${i}]`, fixed });
      });
    } else if (child?.kind === "switch") {
      const usp = this.#add(new PciDev(child.name, "switchUpstream", port), path);
      usp.domain = port.domain;
      usp.bus = port.secondary;
      usp.acs = child.acs ?? 0;
      usp.secondary = next.bus++;
      child.downstream.forEach((ds, i) => {
        const dsp = this.#add(new PciDev(ds.name, "switchDownstream", usp), `${path}.downstream[${i}]`);
        dsp.domain = port.domain;
        dsp.bus = usp.secondary;
        dsp.devfn = i << 3;
        dsp.acs = ds.acs ?? 0;
        this.#below(dsp, ds.child, next, `${path}.downstream[${i}].child`);
      });
      usp.subordinate = next.bus - 1;
    } else if (child !== undefined) {
      throw new DmaError("EINVAL", `topology: ${path}.kind must be "endpoint" or "switch"`, { arg: `${path}.kind` });
    }
    port.subordinate = next.bus - 1;
  }
}

const MiB = 1 << 20;

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

interface Need {
  size: number;
  align: number;
}

/** What the subtree of @d needs of each window (pbus_size_mem). */
function sizeOf(d: PciDev, pref: boolean): Need {
  const items: Need[] = [];
  for (const b of d.bars) if (highPref(b) === pref) items.push({ size: b.size, align: b.size });
  for (const c of d.children) {
    const n = sizeOf(c, pref);
    if (n.size) items.push(n);
  }
  if (!items.length) return { size: 0, align: 0 };
  items.sort((a, b) => b.align - a.align || b.size - a.size);
  let size = 0;
  for (const it of items) size = alignUp(size, it.align) + it.size;
  const align = Math.max(...items.map((i) => i.align));
  return d.isBridge ? { size: alignUp(size, MiB), align: Math.max(MiB, align) } : { size, align };
}

/** Hand out addresses top down: @d's BARs and its children's windows inside [@start, ...). */
function place(d: PciDev, pref: boolean, start: number): void {
  const items: { align: number; size: number; put: (at: number) => void }[] = [];
  for (const b of d.bars) if (highPref(b) === pref) items.push({ align: b.size, size: b.size, put: (at) => void (b.start = at) });
  for (const c of d.children) {
    const n = sizeOf(c, pref);
    if (!n.size) continue;
    items.push({
      align: n.align, size: n.size,
      put: (at) => {
        if (c.isBridge) {
          if (pref) c.prefWindow = [at, at + n.size];
          else c.window = [at, at + n.size];
        }
        place(c, pref, at);
      },
    });
  }
  items.sort((a, b) => b.align - a.align || b.size - a.size);
  let at = start;
  for (const it of items) {
    at = alignUp(at, it.align);
    it.put(at);
    at += it.size;
  }
}

function assignBars(root: PciDev, mem32: [number, number], mem64: [number, number], path: string): void {
  for (const [pref, [lo, hi], name] of [[false, mem32, "mem32"], [true, mem64, "mem64"]] as const) {
    const n = sizeOf(root, pref);
    const start = alignUp(lo, Math.max(n.align, 1));
    if (start + n.size > hi) {
      throw new DmaError("EINVAL", `topology: ${path}.${name}: the BARs below need ${n.size} bytes, the aperture has ${hi - lo}`, { arg: `${path}.${name}` });
    }
    place(root, pref, start);
    if (pref) root.prefWindow = [lo, hi];
    else root.window = [lo, hi];
  }
}
