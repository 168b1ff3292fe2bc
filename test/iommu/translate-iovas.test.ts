/**
 * iommuTranslateIovas: one device's list of IOVAs translated as a DMA engine walks a
 * descriptor list. It must give what one request each gives (addresses, ATC / IOTLB / walk
 * counts, the charge), stop at the first fault with what came before translated and the
 * rest untouched, and refuse bad input with nothing translated.
 */
import { describe, expect, it } from "vitest";
import {
  IOMMU_READ, IOMMU_WRITE, type IommuDevice, iommuAttachDevice, iommuDomainAlloc, iommuMap, type Machine,
} from "../../src/index.js";
import { smallMachine } from "../helpers.js";
import { caught } from "../mm/mm-helpers.js";
import { R_IOVAS, R_PAS } from "../../src/abi/reason.js";

const PAGE = 4096;
const IOVA = 0x4000_0000;

/** A NIC and an ATS GPU sharing one domain that maps 64 pages at IOVA (the last 8 read-only), and a passthrough device. */
async function setup(): Promise<{ m: Machine; nic: IommuDevice; gpu: IommuDevice; legacy: IommuDevice; pfn: number }> {
  const m = await smallMachine({ iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } } });
  const nic = m.iommu.iommuProbeDevice("nic");
  const gpu = m.iommu.iommuProbeDevice("gpu", { ats: true });
  const legacy = m.iommu.iommuProbeDevice("legacy", { defaultDomain: "identity" });
  const d = iommuDomainAlloc(m.iommu, "unmanaged");
  iommuAttachDevice(d, nic);
  iommuAttachDevice(d, gpu);
  const pfn = m.phys.allocPages(6);
  iommuMap(d, IOVA, pfn * PAGE, 56 * PAGE, IOMMU_READ | IOMMU_WRITE);
  iommuMap(d, IOVA + 56 * PAGE, (pfn + 56) * PAGE, 8 * PAGE, IOMMU_READ);
  return { m, nic, gpu, legacy, pfn };
}

/** A streaming list: each of @pages pages read at a few offsets, twice over. */
function stream(pages: number): number[] {
  const out: number[] = [];
  for (let pass = 0; pass < 2; pass++) for (let p = 0; p < pages; p++) for (const off of [0, 0x200, 0xff8]) out.push(IOVA + p * PAGE + off);
  return out;
}

describe("iommuTranslateIovas: a descriptor list", () => {
  it("gives the addresses and counts of one request each, through the ring or in the kernel heap, for an ATS device too", async () => {
    for (const name of ["nic", "gpu"] as const) {
      const a = await setup();
      const b = await setup();
      const list = stream(40);
      const one = a.m.iommu.iommuTranslate(list.map((iova) => ({ dev: a[name], iova, access: "write" as const })));
      // b: the first half from ordinary arrays (through the ring), the rest from kvcalloc'd ones.
      const half = list.length >> 1;
      const pas = new Float64Array(list.length);
      expect(b.m.iommu.iommuTranslateIovas(b[name], Float64Array.from(list.slice(0, half)), pas, { access: "write" })).toEqual({ translated: half, fault: null });
      const heap = b.m.kernel.kheap;
      const iovas = heap.kvcalloc(list.length - half);
      const out = heap.kvcalloc(list.length - half);
      iovas.set(list.slice(half));
      expect(b.m.iommu.iommuTranslateIovas(b[name], iovas, out, { access: "write" })).toEqual({ translated: list.length - half, fault: null });
      pas.set(out, half);
      expect(Array.from(pas)).toEqual(one.map((t) => t.pa));
      expect(pas[1]).toBe(a.pfn * PAGE + 0x200);
      expect(b.m.iommu.stats).toEqual(a.m.iommu.stats);
      expect(b.m.clock.now).toBe(a.m.clock.now);
      heap.kvfree(iovas);
      heap.kvfree(out);
    }
  });

  it("stops at the first fault: the entries before it are translated, the rest of pas is untouched", async () => {
    const { m, nic, pfn } = await setup();
    const pas = new Float64Array(4).fill(-1);
    const list = Float64Array.from([IOVA, IOVA + 55 * PAGE, IOVA + 56 * PAGE, IOVA]);
    expect(m.iommu.iommuTranslateIovas(nic, list, pas, { access: "write" })).toEqual({ translated: 2, fault: "permission" });
    expect(Array.from(pas)).toEqual([pfn * PAGE, (pfn + 55) * PAGE, -1, -1]);
    expect(m.iommu.stats).toMatchObject({ translations: 3, faults: 1 });
    // A read of the read-only pages goes through; a hole is not-present; past the width, range.
    expect(m.iommu.iommuTranslateIovas(nic, list, pas)).toEqual({ translated: 4, fault: null });
    expect(m.iommu.iommuTranslateIovas(nic, Float64Array.from([IOVA + 64 * PAGE]), pas)).toEqual({ translated: 0, fault: "not-present" });
    expect(m.iommu.iommuTranslateIovas(nic, Float64Array.from([2 ** 48]), pas)).toEqual({ translated: 0, fault: "range" });
  });

  it("passes an identity domain's addresses through, faults a blocked device at its first entry, and translates in place", async () => {
    const { m, legacy, nic, pfn } = await setup();
    const pas = new Float64Array(2);
    expect(m.iommu.iommuTranslateIovas(legacy, Float64Array.from([0x1234_5000, 0x8_0000_0000]), pas)).toEqual({ translated: 2, fault: null });
    expect(Array.from(pas)).toEqual([0x1234_5000, 0x8_0000_0000]);
    const blocked = m.iommu.iommuProbeDevice("blocked");
    iommuAttachDevice(m.iommu.blocked, blocked);
    expect(m.iommu.iommuTranslateIovas(blocked, Float64Array.from([IOVA]), pas)).toEqual({ translated: 0, fault: "blocked" });
    const inPlace = m.kernel.kheap.kvcalloc(3);
    inPlace.set([IOVA + 3 * PAGE + 7, IOVA, IOVA + 63 * PAGE]);
    expect(m.iommu.iommuTranslateIovas(nic, inPlace, inPlace)).toEqual({ translated: 3, fault: null });
    expect(Array.from(inPlace)).toEqual([(pfn + 3) * PAGE + 7, pfn * PAGE, (pfn + 63) * PAGE]);
  });

  it("refuses bad input with EINVAL naming it, and translates nothing (a list longer than the ring is checked whole first)", async () => {
    const { m, nic, gpu } = await setup();
    const other = await setup();
    const long = new Float64Array(m.core.x.iommuTranslateIovasMax() + 10).fill(IOVA);
    long[long.length - 1] = IOVA + 0.5;
    const pas = new Float64Array(long.length);
    const stats = { ...m.iommu.stats };
    const now = m.clock.now;
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, long, pas)).code).toBe("EINVAL");
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, long, pas)).arg).toBe("iovas");
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, Float64Array.from([IOVA, -PAGE]), pas)).message).toMatch(/iovas\[1\] is not an address/);
    long[long.length - 1] = 2 ** 64; // an integer, but past 64 bits: refused before the first chunk too
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, long, pas)).message).toMatch(new RegExp(`iovas\\[${long.length - 1}\\] is not an address`));
    // Ordinary arrays over the same memory: a shifted view of the list is refused.
    const shared = new Float64Array(8).fill(IOVA);
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, shared.subarray(0, 4), shared.subarray(1, 5))).arg).toBe("pas");
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, Float64Array.from([IOVA, NaN]), pas)).arg).toBe("iovas");
    expect(caught(() => m.iommu.iommuTranslateIovas(other.nic, Float64Array.from([IOVA]), pas)).arg).toBe("dev");
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, Float64Array.from([IOVA, IOVA]), new Float64Array(1))).arg).toBe("pas");
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, Float64Array.from([IOVA]), pas, { n: 2 })).arg).toBe("n");
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, Float64Array.from([IOVA]), pas, { pasid: 2 ** 20 })).arg).toBe("pasid");
    // kvcalloc'd arrays: the output may be the input itself, never a shifted view of it.
    const heap = m.kernel.kheap.kvcalloc(4).fill(IOVA);
    expect(caught(() => m.iommu.iommuTranslateIovas(nic, heap.subarray(0, 3), heap.subarray(1))).arg).toBe("pas");
    // The core's own checks of where the arrays are: misaligned, or past the heap's end.
    const at = heap.byteOffset;
    expect([m.core.x.iommuTranslateIovas(nic.rid, 0, 1, 0, 1, at + 4, 0), m.core.x.coreReason()]).toEqual([-22, R_IOVAS]);
    expect([m.core.x.iommuTranslateIovas(nic.rid, 0, 1, 0, 1, 0, at + (8 << 20)), m.core.x.coreReason()]).toEqual([-22, R_PAS]);
    expect(m.iommu.stats).toEqual(stats);
    expect(m.clock.now).toBe(now);
    // Nothing was cached: the first request after them walks.
    expect(m.iommu.iommuTranslate([{ dev: gpu, iova: IOVA }])[0]!.source).toBe("walk");
  });
});
