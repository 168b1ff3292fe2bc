/**
 * SVA: a device's PASID-tagged DMA walks the process's page table, stays coherent with it
 * through the mmu notifier (IOTLB then ATC flushed with every CPU TLB flush of the mm), faults
 * pages in through PRI, and loses the mm when the process exits.
 */
import { describe, expect, it } from "vitest";
import { dmaRead, dmaWrite, iommuSvaBindDevice, iommuSvaGetPasid, iommuSvaUnbindDevice, type Machine } from "../../src/index.js";
import { smallMachine } from "../helpers.js";

async function setup(): Promise<Machine> {
  return smallMachine({ iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } }, check: { callSites: false } });
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("SVA", () => {
  it("give a process's mm one PASID on every device; binding twice is the same handle; a device without PASIDs is EOPNOTSUPP", async () => {
    const m = await setup();
    const a = m.iommu.iommuProbeDevice("accel0", { ats: true, pri: true, pasid: true });
    const b = m.iommu.iommuProbeDevice("accel1", { pasid: true });
    const plain = m.iommu.iommuProbeDevice("nic");
    const p = m.spawn();
    const q = m.spawn();
    const h = iommuSvaBindDevice(m.iommu, a, p);
    expect(iommuSvaBindDevice(m.iommu, a, p)).toBe(h);
    expect(h.users).toBe(2);
    expect(iommuSvaBindDevice(m.iommu, b, p).pasid).toBe(iommuSvaGetPasid(h));
    expect(iommuSvaBindDevice(m.iommu, a, q).pasid).not.toBe(h.pasid);
    expect(() => iommuSvaBindDevice(m.iommu, plain, p)).toThrow(/EOPNOTSUPP/);
  });

  it("DMA with the PASID reads and writes the process's memory at its virtual addresses", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("accel", { ats: true, pasid: true });
    const p = m.spawn();
    const va = Number(p.mmap({ length: 8192 }));
    p.write(va, text("hello, device"));
    const h = iommuSvaBindDevice(m.iommu, dev, p);
    expect(new TextDecoder().decode(dmaRead(m.iommu, dev, va, 13, h.pasid).data)).toBe("hello, device");
    expect(dmaWrite(m.iommu, dev, va + 4096 - 3, text("across"), h.pasid).fault).toBe("not-present"); // page 2 never touched, no PRI
    p.touch(va + 4096, 4096, "w");
    expect(dmaWrite(m.iommu, dev, va + 4096 - 3, text("across"), h.pasid)).toMatchObject({ done: 6, fault: null });
    expect(new TextDecoder().decode(p.read(va + 4096 - 3, 6))).toBe("across");
    expect(dmaRead(m.iommu, dev, va, 4, 0).fault).toBe("not-present"); // without the PASID: the DMA domain maps nothing there
  });

  it("stay coherent: after munmap the device's next access faults, with no stale IOTLB or ATC entry", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("accel", { ats: true, pasid: true });
    const p = m.spawn();
    const va = Number(p.mmap({ length: 4096 }));
    p.touch(va, 4096, "w");
    const h = iommuSvaBindDevice(m.iommu, dev, p);
    dmaRead(m.iommu, dev, va, 8, h.pasid);
    expect(dmaRead(m.iommu, dev, va, 8, h.pasid).stale).toBe(false);
    const before = m.iommu.qi.stats.atcDropped;
    p.munmap(va, 4096);
    expect(m.iommu.qi.stats.atcDropped).toBeGreaterThan(before);
    expect(dmaRead(m.iommu, dev, va, 8, h.pasid)).toMatchObject({ done: 0, fault: "not-present", stale: false });
    expect(m.checkReports()).toEqual([]);
  });

  it("fault pages in through PRI (SUCCESS) and answer INVALID where the VMA does not allow the access", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("accel", { ats: true, pri: true, pasid: true });
    const p = m.spawn();
    const va = Number(p.mmap({ length: 3 * 4096 }));
    const ro = Number(p.mmap({ length: 4096, prot: "r" }));
    const h = iommuSvaBindDevice(m.iommu, dev, p);
    const r = dmaWrite(m.iommu, dev, va + 100, new Uint8Array(3 * 4096 - 200).fill(7), h.pasid);
    expect(r).toMatchObject({ done: 3 * 4096 - 200, fault: null, pageRequests: 3 });
    expect(p.read(va + 4096, 4)).toEqual(new Uint8Array([7, 7, 7, 7]));
    expect(dmaWrite(m.iommu, dev, ro, text("x"), h.pasid)).toMatchObject({ done: 0, fault: "not-present", pageRequests: 0 });
    expect(m.iommu.stats.pageRequests).toBe(4);
  });

  it("block the PASID when the process exits, so its freed page table is never walked; unbind after that is EINVAL", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("accel", { ats: true, pasid: true });
    const p = m.spawn();
    const va = Number(p.mmap({ length: 4096 }));
    p.touch(va, 4096, "w");
    const h = iommuSvaBindDevice(m.iommu, dev, p);
    const pgd = p.mm.pgd.pfn;
    p.exit();
    expect(m.page(pgd).refcount).toBe(0); // freed: nothing walks it any more
    expect(dmaRead(m.iommu, dev, va, 8, h.pasid).fault).toBe("pasid");
    expect(() => iommuSvaUnbindDevice(h)).toThrow(/EINVAL/);
  });

  it("unbind: the last user detaches the PASID", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("accel", { pasid: true });
    const p = m.spawn();
    const va = Number(p.mmap({ length: 4096 }));
    p.touch(va, 4096, "w");
    const h = iommuSvaBindDevice(m.iommu, dev, p);
    iommuSvaBindDevice(m.iommu, dev, p);
    iommuSvaUnbindDevice(h);
    expect(dmaRead(m.iommu, dev, va, 8, h.pasid).fault).toBe(null);
    iommuSvaUnbindDevice(h);
    expect(dmaRead(m.iommu, dev, va, 8, h.pasid).fault).toBe("pasid");
    p.exit();
  });
});
