/**
 * The DMA engine's host side: a device reads or writes memory at DMA addresses. The core
 * (assembly/iommu/dma.ts) translates and moves the bytes for a batch of transfers in one
 * call; here the results become what the device saw, with the checker's reports:
 *
 * - a transfer that touched a frame nobody holds ([M1]);
 * - a stale cached translation it used ([M2]), unless the range sits in its lazy domain's
 *   flush queue (the allowed window, counted);
 * - a fault. A device with PRI and a PASID bound by SVA asks for the page (a page request):
 *   the IOMMU's fault handler checks the VMA allows the access, runs handle_mm_fault on the
 *   mm and answers SUCCESS, and the device retries; otherwise the answer is INVALID and
 *   the transfer stops at the fault, as without PRI.
 *
 * A device on a PCIe fabric (iommuProbeDevice's `pci`) has its requests routed first
 * (pcieRoute with the root complex behind the IOMMU):
 * - a switch that claims the address for a sibling (no ACS redirect on the way) delivers it to
 *   the peer's BAR without the IOMMU seeing it: the bus address becomes the P2PDMA frame's
 *   CPU address (minus the pagemap's bus offset) and the core moves the bytes untranslated.
 *   A BAR range with no P2PDMA pages (registers) stops the transfer there (`mmio`);
 * - what reaches the root complex is translated. If it lands in a peer's P2PDMA frame, the
 *   root complex forwards it only when the host bridges forward P2P between the two
 *   (hostBridgesForwardP2p, the THRU_HOST_BRIDGE rule); otherwise the peer never sees it
 *   and the device gets an Unsupported Request, as does a device off the fabric;
 * - an address a switch's window claims but no BAR below holds is an Unsupported Request.
 * Costs: the requests of one batch are in flight together, so a batch pays its slowest
 * request's latency once, and every byte pays the link's bandwidth (pcieDataPage per 4 KiB).
 * A request that reaches the root complex takes a PCIe round trip (pcieRoundTrip) plus two
 * switch traversals (pcieHop, request and completion) per switch above the device; one a
 * switch turns to a peer takes two traversals per switch between them and the peer's memory
 * access (memAccess). Writes are charged as reads (no posted-write shortcut).
 * @module
 */
import * as H from "../abi/header.js";
import * as IO from "../abi/iommu.js";
import { hex } from "../core/addr.js";
import { einval } from "../errors.js";
import { handleMmFault } from "../mm/fault.js";
import { VM_READ, VM_WRITE } from "../mm/vma.js";
import { dmaInLazyWindow } from "./dma-iommu.js";
import { type Iommu, type IommuDevice, type IoFaultReason, ioFault } from "./iommu.js";
import { p2pdmaPagemapOf, pciP2pdmaOf, type PciP2pdmaPagemap } from "../pci/p2pmem.js";
import type { PciDev } from "../pci/topology.js";
import { hostBridgesForwardP2p } from "../pci/p2pdma.js";
import { pcieRoute } from "../pci/router.js";

export interface DmaOp {
  dev: IommuDevice;
  /** The DMA address: an IOVA, a physical address (identity), or a PASID's virtual address. */
  addr: number;
  pasid?: number;
  /** Bytes to write into memory; absent: a read of @len bytes. */
  data?: Uint8Array;
  len?: number;
}

export interface DmaResult {
  /** Bytes moved. */
  done: number;
  /** What a read brought back (its first @done bytes are valid). */
  data: Uint8Array;
  fault: IoFaultReason | null;
  /** The DMA address where it stopped (a fault, or an address outside RAM), else null. */
  stoppedAt: number | null;
  /** With a stop outside RAM: the physical (bus) address it reached; the fabric routes it. */
  mmio: number | null;
  /** Pages that hit a frame nobody holds. */
  unheld: number;
  /** A stale cached translation was used. */
  stale: boolean;
  /** Page requests the device sent (PRI). */
  pageRequests: number;
  /** The device whose BAR received bytes or stopped the transfer (P2P), else null. */
  peer: string | null;
  /** How P2P bytes got there: turned by a switch, or forwarded by the root complex. */
  p2p: "switch" | "host-bridge" | null;
}

/** A piece of a transfer in a batch: op, offset, bytes, and how the core is to treat it. */
interface Piece {
  i: number;
  from: number;
  len: number;
  /** The physical address a switch delivered it to (IODF_BYPASS), else null. */
  phys: number | null;
  /** Switches it crosses on the way (to the peer, or up to the root complex). */
  switches: number;
}

/** Switches (upstream ports) above @d, up to the host bridge or to @stop (excluded). */
function switchesAbove(d: PciDev, stop: PciDev | null = null): number {
  let n = 0;
  for (let x = d.parent; x && x !== stop; x = x.parent) if (x.kind === "switchUpstream") n++;
  return n;
}

/** Switches between peers @a and @b below one root complex: each side's up to their common ancestor. */
function switchesBetween(a: PciDev, b: PciDev): number {
  const up = new Set<PciDev>();
  for (let x: PciDev | null = a; x; x = x.parent) up.add(x);
  let common: PciDev | null = b;
  while (common && !up.has(common)) common = common.parent;
  return switchesAbove(a, common) + switchesAbove(b, common) + (common?.kind === "switchUpstream" ? 1 : 0);
}

const PRI_RETRIES = 4;

/**
 * deviceDma - run @ops (a batch: as many per core call as the ring holds) and report what
 * each did. @check (default on when the DMA checker is): re-walk cached hits to find stale ones.
 */
export function deviceDma(iommu: Iommu, ops: DmaOp[], opts: { check?: boolean } = {}): DmaResult[] {
  const k = iommu.k;
  const check = opts.check ?? k.checkers.dma !== null;
  const c = k.core;
  const ringBytes = c.hdr(H.HDR_RING_ENTRIES) * H.RENT_SIZE;
  const cap = Math.floor((ringBytes - IO.IODMA_SIZE) / 4096) * 4096;
  const results = ops.map((op, i): DmaResult => {
    if (iommu.devices[op.dev.rid] !== op.dev) throw einval(`ops[${i}].dev`, `${op.dev.name} is not behind this IOMMU`);
    if (!Number.isSafeInteger(op.addr) || op.addr < 0) throw einval(`ops[${i}].addr`, `${op.addr} is not an address`);
    const len = op.data ? op.data.length : op.len ?? 0;
    if (!Number.isSafeInteger(len) || len < 0 || len > 2 ** 32 - 1) throw einval(`ops[${i}].len`, `${len} is not a length`);
    return { done: 0, data: op.data ?? new Uint8Array(len), fault: null, stoppedAt: null, mmio: null, unheld: 0, stale: false, pageRequests: 0, peer: null, p2p: null };
  });
  // Work items: (op, offset, bytes), each at most `cap` bytes, packed into batches.
  let work = ops.map((_, i) => i).filter((i) => results[i]!.data.length > 0);
  const st: EngineState = { retries: new Map(), windows: new Map() };
  while (work.length) {
    const again: number[] = [];
    let at = 0;
    while (at < work.length) {
      const batch: Piece[] = [];
      let bytes = 0;
      while (at < work.length) {
        const i = work[at]!;
        const r = results[i]!;
        const len = Math.min(r.data.length - r.done, cap);
        if (batch.length && (batch.length + 1) * IO.IODMA_SIZE + bytes + len > ringBytes) break;
        batch.push({ i, from: r.done, len, phys: null, switches: 0 });
        bytes += len;
        at++;
      }
      const routed = routeBatch(iommu, ops, results, batch);
      if (routed.length) runBatch(iommu, ops, results, routed, check, again, st);
    }
    work = again;
  }
  return results;
}

interface EngineState {
  retries: Map<number, number>;
  /** Per op: the P2PDMA frames [lo, hi) the root complex was found to forward it to. */
  windows: Map<number, [number, number]>;
}

/**
 * Route the batch's pieces of devices on a fabric (one core call per fabric): a switch's
 * peer gets the piece untranslated (clamped to the P2PDMA range it hits), a BAR without
 * P2PDMA pages or a window with no BAR ends the op there. Returns the pieces for the core.
 */
function routeBatch(iommu: Iommu, ops: DmaOp[], results: DmaResult[], batch: Piece[]): Piece[] {
  const k = iommu.k;
  const onFabric = batch.filter((p) => ops[p.i]!.dev.pci !== null);
  if (!onFabric.length) return batch;
  const drop = new Set<Piece>();
  for (const t of new Set(onFabric.map((p) => ops[p.i]!.dev.pci!.topology))) {
    const mine = onFabric.filter((p) => ops[p.i]!.dev.pci!.topology === t);
    const routes = pcieRoute(k.core, t, mine.map((p) => ({ requester: ops[p.i]!.dev.pci!, address: ops[p.i]!.addr + p.from })), { iommu: true });
    mine.forEach((p, j) => {
      const rt = routes[j]!;
      const r = results[p.i]!;
      const addr = ops[p.i]!.addr + p.from;
      const pci = ops[p.i]!.dev.pci!;
      if (rt.result === "HOST") {
        p.switches = switchesAbove(pci);
        return;
      }
      if (rt.result === "UR") {
        r.fault = "unsupported-request";
        r.stoppedAt = addr;
        drop.add(p);
        return;
      }
      const m = pagemapAtBus(iommu, rt.target!, addr);
      r.peer ??= rt.target!.name;
      if (!m) {
        r.stoppedAt = addr;
        r.mmio = addr;
        drop.add(p);
        return;
      }
      r.p2p ??= "switch";
      p.phys = addr - m.busOffset;
      p.len = Math.min(p.len, m.busEnd - addr);
      p.switches = switchesBetween(pci, rt.target!);
    });
  }
  for (const p of drop) {
    const op = ops[p.i]!;
    const r = results[p.i]!;
    k.trace.emit("dma.transfer", { dev: op.dev.name, addr: hex(op.addr + p.from), len: p.len, write: op.data !== undefined, done: 0, status: r.fault ?? "mmio" }, k.clock.now);
  }
  return batch.filter((p) => !drop.has(p));
}

/** The P2PDMA pagemap of @provider that holds bus address @bus, or null. */
function pagemapAtBus(iommu: Iommu, provider: PciDev, bus: number): PciP2pdmaPagemap | null {
  return pciP2pdmaOf(iommu.k, provider)?.pagemaps.find((m) => bus >= m.busStart && bus < m.busEnd) ?? null;
}

function runBatch(
  iommu: Iommu, ops: DmaOp[], results: DmaResult[], batch: Piece[], check: boolean,
  again: number[], st: EngineState,
): void {
  const k = iommu.k;
  const c = k.core;
  const n = batch.length;
  const base = c.ring + H.RING_ENTRY0;
  const data = base + n * IO.IODMA_SIZE;
  let u32 = c.u32;
  let off = 0;
  let latency = 0;
  let bytes = 0;
  batch.forEach((p, j) => {
    const op = ops[p.i]!;
    const w = (base + j * IO.IODMA_SIZE) >>> 2;
    const a = p.phys ?? op.addr + p.from;
    const win = st.windows.get(p.i);
    u32[w + IO.IOD_IOVA / 4] = a % 2 ** 32;
    u32[w + IO.IOD_IOVA / 4 + 1] = Math.floor(a / 2 ** 32);
    u32[w + IO.IOD_DEV / 4] = op.dev.rid;
    u32[w + IO.IOD_PASID / 4] = op.pasid ?? 0;
    u32[w + IO.IOD_LEN / 4] = p.len;
    u32[w + IO.IOD_DIR / 4] = (op.data ? IO.IODIR_FROM_DEVICE : IO.IODIR_TO_DEVICE) | (p.phys !== null ? IO.IODF_BYPASS : 0);
    u32[w + IO.IOD_DATA / 4] = off;
    u32[w + IO.IOD_P2P_LO / 4] = win?.[0] ?? 0;
    u32[w + IO.IOD_P2P_HI / 4] = win?.[1] ?? 0;
    if (op.data) c.u8.set(op.data.subarray(p.from, p.from + p.len), data + off);
    off += p.len;
    // A piece turned by a switch crosses each link twice (request, completion); the rest
    // make the round trip through the root complex.
    const costs = k.costs;
    const ns = p.phys !== null ? 2 * p.switches * costs.pcieHop.ns + costs.memAccess.ns : costs.pcieRoundTrip.ns + 2 * p.switches * costs.pcieHop.ns;
    latency = Math.max(latency, ns);
  });
  c.check(c.x.iommuDma(n, check ? IO.IOX_CHECK : 0), "deviceDma");
  iommu.account(batch.filter((p) => p.phys === null).length); // a switch's peer traffic skips the IOMMU
  u32 = c.u32;
  off = 0;
  batch.forEach((p, j) => {
    const { i, from, len } = p;
    const op = ops[i]!;
    const r = results[i]!;
    const w = (base + j * IO.IODMA_SIZE) >>> 2;
    const status = u32[w + IO.IOD_STATUS / 4]! | 0;
    const done = u32[w + IO.IOD_DONE / 4]!;
    const events = u32[w + IO.IOD_EVENTS / 4]!;
    const pa = u32[w + IO.IOD_PA / 4]! + u32[w + IO.IOD_PA / 4 + 1]! * 2 ** 32;
    const stopPa = u32[w + IO.IOD_STOP_PA / 4]! + u32[w + IO.IOD_STOP_PA / 4 + 1]! * 2 ** 32;
    if (!op.data) r.data.set(c.u8.subarray(data + off, data + off + done), from);
    off += len;
    bytes += done;
    r.done = from + done;
    const addr = op.addr + from;
    const write = op.data !== undefined;
    if (events & IO.IODE_UNHELD) {
      const pages = events >>> IO.IODE_UNHELD_SHIFT;
      r.unheld += pages;
      k.checkers.dma?.unheld(op.dev.name, addr, Math.floor(pa / 4096), pages, write);
    }
    if (events & IO.IODE_STALE) {
      r.stale = true;
      const lazy = (op.pasid ?? 0) === 0 && dmaInLazyWindow(op.dev, Math.floor(addr / 4096), Math.ceil((addr % 4096 + len) / 4096));
      k.checkers.dma?.stale(op.dev.name, addr, Math.floor(pa / 4096), lazy, op.dev.ats ? "ATC or IOTLB" : "IOTLB");
    }
    const win = st.windows.get(i);
    if (done > 0 && win && p.phys === null) r.p2p ??= "host-bridge";
    const stopAt = addr + done;
    let outcome = status >= 0x10000 && status !== IO.IODS_MMIO && status !== IO.IODS_P2P ? ioFault(status) : "ok";
    if (status === IO.IODS_MMIO) {
      r.stoppedAt = stopAt;
      r.mmio = stopPa;
      outcome = "mmio";
    } else if (status === IO.IODS_P2P) {
      // A translated address in a peer's BAR: the root complex forwards it or refuses it. A
      // P2PDMA frame no BAR range claims (the rest of a provider's block) decodes to nothing.
      const m = p2pdmaPagemapOf(k, Math.floor(stopPa / 4096));
      if (m) r.peer ??= m.provider.name;
      const pci = op.dev.pci;
      if (m && pci && pci.topology === m.provider.topology && hostBridgesForwardP2p(pci.topology, m.provider, pci)) {
        st.windows.set(i, [m.pfn, m.pfn + m.pages]);
        again.push(i);
        outcome = "p2p";
      } else {
        r.fault = "unsupported-request";
        r.stoppedAt = stopAt;
        outcome = r.fault;
      }
    } else if (status < 0) {
      c.check(status, "deviceDma");
    } else if (status >= 0x10000) {
      const reason = ioFault(status);
      const tries = st.retries.get(i) ?? 0;
      if ((reason === "not-present" || reason === "permission") && pageRequest(iommu, op, stopAt, write, tries)) {
        r.pageRequests++;
        st.retries.set(i, tries + 1);
        again.push(i);
      } else {
        r.fault = reason;
        r.stoppedAt = stopAt;
      }
    } else if (r.done < r.data.length) {
      again.push(i); // more than one ring's worth, or the end of a peer's range: the next piece
    }
    k.trace.emit("dma.transfer", { dev: op.dev.name, addr: hex(addr), len, write, done, status: outcome }, k.clock.now);
  });
  k.clock.advance(latency + (bytes / 4096) * k.costs.pcieDataPage.ns);
}

/**
 * A page request for @addr of @op's PASID (iommu_sva_handle_mm): SUCCESS (true) when the
 * VMA allows the access and handle_mm_fault resolved it; INVALID (false) otherwise, or
 * when the device has no PRI, no SVA binding for the PASID, or asked too often.
 */
function pageRequest(iommu: Iommu, op: DmaOp, addr: number, write: boolean, tries: number): boolean {
  const dev = op.dev;
  const pasid = op.pasid ?? 0;
  if (!dev.pri || pasid === 0 || tries >= PRI_RETRIES) return false;
  const h = [...dev.sva.values()].find((x) => x.pasid === pasid);
  if (!h) return false;
  const k = iommu.k;
  const mm = h.mm;
  const vpn = Math.floor(addr / 4096);
  const vma = mm.dead ? null : mm.vmas.find(vpn);
  let ok = vma !== null && (vma.flags & (write ? VM_WRITE : VM_READ)) !== 0;
  if (ok) ok = handleMmFault(mm, vpn, { write }, "iopf") === "ok";
  iommu.stats.pageRequests++;
  k.clock.advance(k.costs.priFault.ns);
  k.trace.emit("iommu.page_request", { dev: dev.name, pasid, va: hex(addr), write, response: ok ? "SUCCESS" : "INVALID" }, k.clock.now);
  return ok;
}

/** dmaWrite - @dev writes @data into memory at DMA address @addr. */
export function dmaWrite(iommu: Iommu, dev: IommuDevice, addr: number, data: Uint8Array, pasid = 0): DmaResult {
  return deviceDma(iommu, [{ dev, addr, data, pasid }])[0]!;
}

/** dmaRead - @dev reads @len bytes of memory at DMA address @addr. */
export function dmaRead(iommu: Iommu, dev: IommuDevice, addr: number, len: number, pasid = 0): DmaResult {
  return deviceDma(iommu, [{ dev, addr, len, pasid }])[0]!;
}
