/**
 * The DMA engine: a device's reads and writes of memory through the IOMMU (DESIGN "DMA").
 * Each request moves [iova, iova + len) page by page: translate (translate.ts), then touch
 * the frame, copying between it and the request's bytes in the ring's data area.
 *
 * On the way it notes what the DMA checker reports: a frame nobody holds (no reference: free
 * memory, so the device scribbles on whatever the allocator hands out next), and with
 * IOX_CHECK a cached translation the tables no longer give. Neither stops the transfer: the
 * hardware does not know. A fault stops it; so does an address outside RAM, which the host
 * routes through the fabric, and a translated address in a peer's BAR (a P2PDMA frame) the
 * host did not say the root complex forwards to.
 *
 * A request the fabric already delivered to a peer (a switch routed it: IODF_BYPASS) carries
 * a physical address and skips the IOMMU, as a P2P TLP below a switch never reaches it.
 */
import { EINVAL, ENOMEM } from "../../src/abi/errno";
import { R_COUNT, R_FLAGS, R_NO_POOL } from "../../src/abi/reason";
import { RING_ENTRY0, RENT_SIZE, ZONE_KIND } from "../../src/abi/header";
import { PG_reserved, PG_tail, ZONE_DEVICE, ZONE_DEVICE_PRIVATE, ZONE_P2PDMA } from "../../src/abi/frame";
import { IOD_P2P_LO, IOD_P2P_HI, IODF_BYPASS, IODS_P2P } from "../../src/abi/iommu";
import {
  IOD_IOVA, IOD_DEV, IOD_PASID, IOD_LEN, IOD_DIR, IOD_DATA, IOD_STATUS, IOD_DONE, IOD_EVENTS, IOD_PA, IOD_STOP_PA,
  IODMA_SIZE, IODIR_FROM_DEVICE, IODE_UNHELD, IODE_UNHELD_SHIFT, IODE_STALE, IODS_MMIO, IOST_STALE, IOA_READ, IOA_WRITE, IOX_ALL,
  REG_IO_UNHELD,
} from "../../src/abi/iommu";
import { fail } from "../errno";
import { RING, ringCheck } from "../ring";
import { NR_FRAMES, RING_ENTRIES } from "../layout";
import { frameFlags, frameMapping, frameRefcount, pfnToZone, zone } from "../phys/frame";
import { frameBytesAddr } from "../phys/pool";
import { ioTranslate, ioPa, ioCountsReset, ioCountsStore, ioRequestCheck } from "./translate";

/** Whether frame @pfn of a zone of @kind is held: device memory, reserved, or its folio referenced. */
function held(pfn: u32, kind: u32): bool {
  if (kind == ZONE_DEVICE || kind == ZONE_DEVICE_PRIVATE || kind == ZONE_P2PDMA) return true;
  const f = frameFlags(pfn);
  if (f & PG_reserved) return true;
  return frameRefcount(f & PG_tail ? frameMapping(pfn) : pfn) > 0;
}

/** Bytes of the ring left for data after @n requests. */
function dataBytes(n: u32): u64 {
  const all = <u64>RING_ENTRIES * RENT_SIZE;
  const used = <u64>n * IODMA_SIZE;
  return used >= all ? 0 : all - used;
}

/**
 * iommuDma - run @n DMA requests (IODMA_SIZE each from RING_ENTRY0, data after them).
 * Writes each one's status, bytes done, events and addresses in place, and the batch's
 * counts to the ring's registers (REG_IO_UNHELD among them). Returns @n, or -EINVAL (count,
 * flags, a request's device, PASID, direction or data out of the ring) with nothing moved.
 */
export function iommuDma(n: u32, flags: u32): i32 {
  const rr = ringCheck();
  if (rr < 0) return rr;
  if (n == 0 || dataBytes(n) == 0) return fail(EINVAL, R_COUNT, n);
  if (flags & ~IOX_ALL) return fail(EINVAL, R_FLAGS, flags);
  const base = RING + RING_ENTRY0;
  const data = base + <usize>n * IODMA_SIZE;
  const room = dataBytes(n);
  for (let i: u32 = 0; i < n; i++) {
    const q = base + <usize>i * IODMA_SIZE;
    const dir = load<u32>(q + IOD_DIR);
    const c = ioRequestCheck(load<u32>(q + IOD_DEV), load<u32>(q + IOD_PASID), (dir & 0xff) == IODIR_FROM_DEVICE ? IOA_WRITE : IOA_READ, i);
    if (c < 0) return c;
    if ((dir & ~IODF_BYPASS) > <u32>IODIR_FROM_DEVICE) return fail(EINVAL, R_FLAGS, dir);
    if (<u64>load<u32>(q + IOD_DATA) + <u64>load<u32>(q + IOD_LEN) > room) return fail(EINVAL, R_COUNT, i);
  }
  ioCountsReset();
  let unheld: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const q = base + <usize>i * IODMA_SIZE;
    const dev = load<u32>(q + IOD_DEV);
    const pasid = load<u32>(q + IOD_PASID);
    const iova = load<u64>(q + IOD_IOVA);
    const len = load<u32>(q + IOD_LEN);
    const dir = load<u32>(q + IOD_DIR);
    const toMem = (dir & 0xff) == IODIR_FROM_DEVICE;
    const bypass = (dir & IODF_BYPASS) != 0;
    const p2pLo = load<u32>(q + IOD_P2P_LO);
    const p2pHi = load<u32>(q + IOD_P2P_HI);
    const buf = data + <usize>load<u32>(q + IOD_DATA);
    let done: u32 = 0;
    let events: u32 = 0;
    let pagesUnheld: u32 = 0;
    let status: i32 = 0;
    let first: u64 = 0;
    let stop: u64 = 0;
    while (done < len) {
      const va = iova + done;
      const inPage: u32 = 4096 - <u32>(va & 4095);
      const chunk = len - done < inPage ? len - done : inPage;
      let st: i32 = 0;
      let pa = va;
      if (!bypass) {
        st = ioTranslate(dev, pasid, va, toMem ? IOA_WRITE : IOA_READ, flags);
        if (st >= 0x10000) {
          status = st;
          break;
        }
        pa = ioPa;
      }
      const pfn = pa >> 12;
      const z = pfn < <u64>NR_FRAMES ? pfnToZone(pfn) : -1;
      if (z < 0) {
        status = IODS_MMIO;
        stop = pa;
        break;
      }
      const kind = load<u32>(zone(<u32>z) + ZONE_KIND);
      if (kind == ZONE_P2PDMA && !bypass && (<u32>pfn < p2pLo || <u32>pfn >= p2pHi)) {
        status = IODS_P2P;
        stop = pa;
        break;
      }
      let ev: u32 = st & IOST_STALE ? IODE_STALE : 0;
      if (!held(<u32>pfn, kind)) {
        ev |= IODE_UNHELD;
        pagesUnheld++;
      }
      if (ev != 0 && events == 0) first = pa;
      events |= ev;
      if (toMem) {
        const dst = frameBytesAddr(<u32>pfn, true);
        if (dst == 0) {
          status = fail(ENOMEM, R_NO_POOL, 1);
          break;
        }
        memory.copy(dst + <usize>(pa & 4095), buf + done, chunk);
      } else {
        const src = frameBytesAddr(<u32>pfn, false);
        if (src == 0) memory.fill(buf + done, 0, chunk);
        else memory.copy(buf + done, src + <usize>(pa & 4095), chunk);
      }
      done += chunk;
    }
    store<i32>(q + IOD_STATUS, status);
    store<u32>(q + IOD_DONE, done);
    store<u32>(q + IOD_EVENTS, events | (pagesUnheld << IODE_UNHELD_SHIFT));
    unheld += pagesUnheld;
    store<u64>(q + IOD_PA, first);
    store<u64>(q + IOD_STOP_PA, stop);
  }
  ioCountsStore();
  store<u32>(RING + REG_IO_UNHELD, unheld);
  return <i32>n;
}
