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
    return { done: 0, data: op.data ?? new Uint8Array(len), fault: null, stoppedAt: null, mmio: null, unheld: 0, stale: false, pageRequests: 0 };
  });
  // Work items: (op, offset, bytes), each at most `cap` bytes, packed into batches.
  let work = ops.map((_, i) => i).filter((i) => results[i]!.data.length > 0);
  const retries = new Map<number, number>();
  while (work.length) {
    const again: number[] = [];
    let at = 0;
    while (at < work.length) {
      const batch: [number, number, number][] = [];
      let bytes = 0;
      while (at < work.length) {
        const i = work[at]!;
        const r = results[i]!;
        const len = Math.min(r.data.length - r.done, cap);
        if (batch.length && (batch.length + 1) * IO.IODMA_SIZE + bytes + len > ringBytes) break;
        batch.push([i, r.done, len]);
        bytes += len;
        at++;
      }
      runBatch(iommu, ops, results, batch, check, again, retries);
    }
    work = again;
  }
  return results;
}

function runBatch(
  iommu: Iommu, ops: DmaOp[], results: DmaResult[], batch: [number, number, number][], check: boolean,
  again: number[], retries: Map<number, number>,
): void {
  const k = iommu.k;
  const c = k.core;
  const n = batch.length;
  const base = c.ring + H.RING_ENTRY0;
  const data = base + n * IO.IODMA_SIZE;
  let u32 = c.u32;
  let off = 0;
  batch.forEach(([i, from, len], j) => {
    const op = ops[i]!;
    const w = (base + j * IO.IODMA_SIZE) >>> 2;
    const a = op.addr + from;
    u32[w + IO.IOD_IOVA / 4] = a % 2 ** 32;
    u32[w + IO.IOD_IOVA / 4 + 1] = Math.floor(a / 2 ** 32);
    u32[w + IO.IOD_DEV / 4] = op.dev.rid;
    u32[w + IO.IOD_PASID / 4] = op.pasid ?? 0;
    u32[w + IO.IOD_LEN / 4] = len;
    u32[w + IO.IOD_DIR / 4] = op.data ? IO.IODIR_FROM_DEVICE : IO.IODIR_TO_DEVICE;
    u32[w + IO.IOD_DATA / 4] = off;
    if (op.data) c.u8.set(op.data.subarray(from, from + len), data + off);
    off += len;
  });
  c.check(c.x.iommuDma(n, check ? IO.IOX_CHECK : 0), "deviceDma");
  iommu.account(n);
  k.clock.advance(n * k.costs.pcieRoundTrip.ns);
  u32 = c.u32;
  off = 0;
  batch.forEach(([i, from, len], j) => {
    const op = ops[i]!;
    const r = results[i]!;
    const w = (base + j * IO.IODMA_SIZE) >>> 2;
    const status = u32[w + IO.IOD_STATUS / 4]! | 0;
    const done = u32[w + IO.IOD_DONE / 4]!;
    const events = u32[w + IO.IOD_EVENTS / 4]!;
    const pa = u32[w + IO.IOD_PA / 4]! + u32[w + IO.IOD_PA / 4 + 1]! * 2 ** 32;
    if (!op.data) r.data.set(c.u8.subarray(data + off, data + off + done), from);
    off += len;
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
    const stopAt = addr + done;
    if (status === IO.IODS_MMIO) {
      r.stoppedAt = stopAt;
      r.mmio = u32[w + IO.IOD_STOP_PA / 4]! + u32[w + IO.IOD_STOP_PA / 4 + 1]! * 2 ** 32;
    } else if (status < 0) {
      c.check(status, "deviceDma");
    } else if (status >= 0x10000) {
      const reason = ioFault(status);
      if ((reason === "not-present" || reason === "permission") && pageRequest(iommu, op, stopAt, write, retries.get(i) ?? 0)) {
        r.pageRequests++;
        retries.set(i, (retries.get(i) ?? 0) + 1);
        again.push(i);
      } else {
        r.fault = reason;
        r.stoppedAt = stopAt;
      }
    } else if (r.done < r.data.length) {
      again.push(i); // more than one ring's worth: the next piece
    }
    k.trace.emit("dma.transfer", { dev: op.dev.name, addr: hex(addr), len, write, done, status: status >= 0x10000 ? ioFault(status) : status === IO.IODS_MMIO ? "mmio" : "ok" }, k.clock.now);
  });
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
