/**
 * The IOMMU's translation path, in the pattern of QEMU's iommu test device and the iommufd
 * selftest mock domain: hand-built IO page tables, translations and DMA through them, the
 * expected physical addresses and faults, and what the IOTLB and the ATC cache.
 */
import { describe, expect, it } from "vitest";
import {
  IOMMU_READ, IOMMU_WRITE, iommuAttachDevice, iommuDomainAlloc, iommuDomainFree, iommuDetachDevice, iommuIovaToPhys,
  iommuMap, iommuPgsizeRuns, iommuUnmap, type Machine,
} from "../../src/index.js";
import { smallMachine, snapshot } from "../helpers.js";

const RW = IOMMU_READ | IOMMU_WRITE;

async function setup(): Promise<Machine> {
  return smallMachine({ iommu: { devices: 8, iotlb: { sets: 16, ways: 4 }, atc: { sets: 4, ways: 2 } } });
}

describe("IO page tables and translation", () => {
  it("translate an unmanaged domain's mappings: walk first, then the IOTLB (and the ATC of an ATS device)", async () => {
    const m = await setup();
    const nic = m.iommu.iommuProbeDevice("nic");
    const gpu = m.iommu.iommuProbeDevice("gpu", { ats: true });
    const d = iommuDomainAlloc(m.iommu, "unmanaged");
    iommuAttachDevice(d, nic);
    iommuAttachDevice(d, gpu);
    const pfn = m.phys.allocPages(1);
    iommuMap(d, 0x40000, pfn * 4096, 8192, RW);
    const reqs = [{ dev: nic, iova: 0x40123 }, { dev: nic, iova: 0x41008, access: "write" as const }, { dev: gpu, iova: 0x40123 }, { dev: gpu, iova: 0x40123 }];
    const t = m.iommu.iommuTranslate(reqs);
    expect(t.map((x) => [x.pa, x.source])).toEqual([
      [pfn * 4096 + 0x123, "walk"],
      [(pfn + 1) * 4096 + 8, "walk"],
      [pfn * 4096 + 0x123, "iotlb"], // same domain: the nic's walk filled it; the ATC fills from it
      [pfn * 4096 + 0x123, "atc"],
    ]);
    expect(m.iommu.stats).toMatchObject({ translations: 4, walks: 2, iotlbHits: 1, atcHits: 1, atsRequests: 1 });
    expect(iommuIovaToPhys(d, 0x41008)).toBe((pfn + 1) * 4096 + 8);
  });

  it("fault what is not mapped, writes to read-only mappings, addresses beyond the width, and blocked devices", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("dev");
    const d = iommuDomainAlloc(m.iommu, "unmanaged");
    iommuAttachDevice(d, dev);
    const pfn = m.phys.allocPages(0);
    iommuMap(d, 0x1000, pfn * 4096, 4096, IOMMU_READ);
    const t = m.iommu.iommuTranslate([
      { dev, iova: 0x1000 }, { dev, iova: 0x1000, access: "write" }, { dev, iova: 0x2000 }, { dev, iova: 2 ** 47 },
      { dev, iova: 0x1000, access: "exec" },
    ]);
    expect(t.map((x) => x.fault)).toEqual([null, "permission", "not-present", "range", null]);
    iommuDetachDevice(d, dev);
    expect(m.iommu.iommuTranslate([{ dev, iova: 0x1000 }])[0]!.fault).toBe("blocked");
  });

  it("pass addresses through an identity domain untranslated", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("legacy", { defaultDomain: "identity" });
    expect(m.iommu.iommuTranslate([{ dev, iova: 0x1234_5678 }])[0]).toMatchObject({ pa: 0x1234_5678, source: "direct" });
  });

  it("split a map into the largest pages alignment allows, and translate through 2 MiB leaves", async () => {
    expect(iommuPgsizeRuns(0x1ff000, 0x3ff000, 0x202000)).toEqual([
      [0x1ff000, 0x3ff000, 0x1000, "4K"], [0x200000, 0x400000, 0x200000, "2M"], [0x400000, 0x600000, 0x1000, "4K"],
    ]);
    expect(iommuPgsizeRuns(0x1000, 0x202000, 0x400000).every(([, , , s]) => s === "4K")).toBe(true);
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("dev");
    const d = iommuDomainAlloc(m.iommu, "unmanaged");
    iommuAttachDevice(d, dev);
    const pfn = m.phys.allocPages(9);
    iommuMap(d, 0x4000_0000, pfn * 4096, 2 ** 21, RW);
    const [a, b] = m.iommu.iommuTranslate([{ dev, iova: 0x4000_0000 + 0x12345 }, { dev, iova: 0x4000_0000 + 0x1f_f000 }]);
    expect(a).toMatchObject({ pa: pfn * 4096 + 0x12345, size: 1, source: "walk" });
    expect(b).toMatchObject({ pa: pfn * 4096 + 0x1f_f000, size: 1, source: "iotlb" }); // one 2 MiB entry serves both
  });

  it("refuse bad maps with the kernel's errno and change nothing", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("dev");
    const d = iommuDomainAlloc(m.iommu, "unmanaged");
    iommuAttachDevice(d, dev);
    const pfn = m.phys.allocPages(2);
    iommuMap(d, 0x10000, pfn * 4096, 4096, RW);
    const before = snapshot(m, [d.pgtable!], [[0x8000, 0x18000]]);
    expect(() => iommuMap(d, 0x10800, pfn * 4096, 4096, RW)).toThrow(/EINVAL: iova/);
    expect(() => iommuMap(d, 0x11000, pfn * 4096, 4096, 0)).toThrow(/EINVAL: prot/);
    expect(() => iommuMap(d, 0xe000, pfn * 4096, 4 * 4096, RW)).toThrow(/EEXIST/); // its third page is mapped
    expect(() => iommuMap(d, 2 ** 47 - 4096, pfn * 4096, 8192, RW)).toThrow(/ERANGE/);
    expect(snapshot(m, [d.pgtable!], [[0x8000, 0x18000]])).toBe(before);
    expect(m.iommu.iommuTranslate([{ dev, iova: 0xe000 }])[0]!.fault).toBe("not-present");
    expect(iommuUnmap(d, 0x20000, 4096)).toBe(0); // nothing there: 0 bytes
  });

  it("refuse to free a domain with a device attached (EBUSY), and a page table a device walks", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("dev");
    const d = iommuDomainAlloc(m.iommu, "unmanaged");
    iommuAttachDevice(d, dev);
    expect(() => iommuDomainFree(d)).toThrow(/EBUSY/);
    expect(() => d.pgtable!.free()).toThrow(/EBUSY: .*IOMMU device 0 translates through it/);
    iommuDetachDevice(d, dev);
    iommuDomainFree(d);
    expect(m.page(d.pgtable!.pfn).refcount).toBe(0);
  });

  it("refuse requests for a device that is not behind this IOMMU, naming it", async () => {
    const m = await setup();
    const other = await setup();
    const stranger = other.iommu.iommuProbeDevice("stranger");
    m.iommu.iommuProbeDevice("dev");
    m.iommu.iommuProbeDevice("dev2");
    expect(() => m.iommu.iommuTranslate([{ dev: stranger, iova: 0 }])).toThrow(/EINVAL: reqs\[0\]\.dev: stranger/);
  });

  it("strict unmap leaves no IOTLB or ATC entry behind: the next translation walks and faults", async () => {
    const m = await setup();
    const dev = m.iommu.iommuProbeDevice("gpu", { ats: true });
    const d = iommuDomainAlloc(m.iommu, "unmanaged");
    iommuAttachDevice(d, dev);
    const pfn = m.phys.allocPages(0);
    iommuMap(d, 0x5000, pfn * 4096, 4096, RW);
    m.iommu.iommuTranslate([{ dev, iova: 0x5000 }]);
    expect(m.iommu.iommuTranslate([{ dev, iova: 0x5000 }])[0]!.source).toBe("atc");
    expect(iommuUnmap(d, 0x5000, 4096)).toBe(4096);
    expect(m.iommu.qi.stats).toMatchObject({ iotlbDropped: 1, atcDropped: 1 });
    expect(m.iommu.iommuTranslate([{ dev, iova: 0x5000 }], { check: true })[0]).toMatchObject({ fault: "not-present", stale: false });
  });
});
