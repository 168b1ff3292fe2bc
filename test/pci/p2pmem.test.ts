/**
 * The p2pdma provider (drivers/pci/p2pdma.c): pci_p2pdma_add_resource's checks, the pool
 * (pci_alloc_p2pmem / pci_free_p2pmem / pci_p2pmem_virt_to_bus), publishing and
 * pci_p2pmem_find_many, and the mmap of p2pmem with GUP taking its pages only with
 * FOLL_PCI_P2PDMA (try_grab_folio's -EREMOTEIO otherwise).
 */
import { describe, expect, it } from "vitest";
import {
  getUserPages, p2pmemAllocMmap, pciAllocP2pmem, pciFreeP2pmem, pciHasP2pmem, pciP2pdmaAddResource, pciP2pmemAvailable,
  pciP2pmemFindMany, pciP2pmemPublish, pciP2pmemVirtToBus, isPciP2pdmaPage, PciTopology, pinUserPages, pinUserPagesFast,
  unpinUserPages, type Machine, type TopologySpec,
} from "../../src/index.js";
import { smallMachine } from "../helpers.js";
import { caught, code, pfnAt } from "../mm/mm-helpers.js";

const MiB = 1 << 20;

/** Two NVMe drives with a CMB below one switch, a NIC on another root port, a plain host bridge. */
export const P2P_TOPOLOGY: TopologySpec = {
  hostBridges: [{
    name: "hb0", device: 0x1234,
    rootPorts: [
      {
        name: "rp0",
        child: {
          kind: "switch", name: "sw0", downstream: [
            { name: "dsp0", child: { kind: "endpoint", name: "nvme0", bars: [{ size: 16 * 1024 }, { size: 2 * MiB, prefetchable: true, bits64: true }] } },
            { name: "dsp1", child: { kind: "endpoint", name: "nvme1", bars: [{ size: 16 * 1024 }, { size: 2 * MiB, prefetchable: true, bits64: true }] } },
            { name: "dsp2", child: { kind: "endpoint", name: "nic0", bars: [{ size: 64 * 1024 }] } },
          ],
        },
      },
      { name: "rp1", child: { kind: "endpoint", name: "nic1", bars: [{ size: 64 * 1024 }] } },
    ],
  }],
};

async function setup(): Promise<{ m: Machine; t: PciTopology }> {
  const m = await smallMachine({ memory: { normal: "64MiB", movable: "16MiB", cma: "8MiB", p2pdma: "16MiB" }, check: { callSites: false } });
  return { m, t: new PciTopology(P2P_TOPOLOGY) };
}

describe("pciP2pdmaAddResource", () => {
  it("gives a BAR range struct pages whose bus addresses are the BAR's, and rejects bad ranges with EINVAL", async () => {
    const { m, t } = await setup();
    const k = m.kernel;
    const nvme = t.dev("nvme0");
    const bar = nvme.bars[1]!;
    expect(code(() => pciP2pdmaAddResource(k, nvme, 5))).toBe("EINVAL:bar");
    expect(code(() => pciP2pdmaAddResource(k, nvme, 1, 0, bar.size))).toBe("EINVAL:offset");
    expect(code(() => pciP2pdmaAddResource(k, nvme, 1, bar.size, 4096))).toBe("EINVAL:size");
    expect(code(() => pciP2pdmaAddResource(k, nvme, 1, 4096, 100))).toBe("EINVAL:offset");
    expect(pciP2pmemAvailable(k, nvme)).toBe(0);
    const pm = pciP2pdmaAddResource(k, nvme, 1, MiB, MiB); // the upper half of the 2 MiB BAR
    expect(pm.pages).toBe(256);
    expect(pm.busStart).toBe(bar.start + MiB);
    expect(m.page(pm.pfn).zone).toBe("P2PDMA");
    expect(isPciP2pdmaPage(k, pm.pfn + 255)).toBe(true);
    expect(isPciP2pdmaPage(k, pm.pfn + 256)).toBe(false);
    // Every page idles at the pagemap's reference.
    expect([m.page(pm.pfn).refcount, m.page(pm.pfn + 200).refcount]).toEqual([1, 1]);
    // The same range again is the kernel's conflicting mapping; the lower half is fine.
    expect(code(() => pciP2pdmaAddResource(k, nvme, 1, 4096, MiB + 4096))).toBe("ENOMEM:offset");
    pciP2pdmaAddResource(k, nvme, 1, MiB, 0);
    expect(pciP2pmemAvailable(k, nvme)).toBe(2 * MiB);
  });

  it("a machine without P2PDMA memory cannot give a BAR struct pages", async () => {
    const m = await smallMachine();
    const t = new PciTopology(P2P_TOPOLOGY);
    expect(code(() => pciP2pdmaAddResource(m.kernel, t.dev("nvme0"), 1))).toBe("EINVAL:kernel");
  });
});

describe("the pool", () => {
  it("allocates first fit from the newest range, translates to bus addresses, and takes back only what it gave", async () => {
    const { m, t } = await setup();
    const k = m.kernel;
    const nvme = t.dev("nvme0");
    expect(pciAllocP2pmem(k, nvme, 4096)).toBe(null); // no p2pdma yet
    const low = pciP2pdmaAddResource(k, nvme, 1, MiB, 0);
    const high = pciP2pdmaAddResource(k, nvme, 1, MiB, MiB);
    const a = pciAllocP2pmem(k, nvme, 3 * 4096)!;
    expect(a).toBe(high.pfn * 4096); // the newest chunk is searched first
    const b = pciAllocP2pmem(k, nvme, 100)!; // rounded up to a page
    expect(b).toBe(a + 3 * 4096);
    expect(pciP2pmemVirtToBus(k, nvme, b + 12)).toBe(nvme.bars[1]!.start + MiB + 3 * 4096 + 12);
    expect(pciP2pmemVirtToBus(k, t.dev("nvme1"), b)).toBe(0); // not nvme1's
    expect(pciP2pmemAvailable(k, nvme)).toBe(2 * MiB - 4 * 4096);
    // A run longer than the newest range's free pages comes from the older one.
    const c = pciAllocP2pmem(k, nvme, MiB)!;
    expect(c).toBe(low.pfn * 4096);
    expect(pciAllocP2pmem(k, nvme, MiB)).toBe(null);
    expect(code(() => pciFreeP2pmem(k, nvme, a + 4096 * 200, 4096))).toBe("EINVAL:addr"); // never handed out
    pciFreeP2pmem(k, nvme, a, 3 * 4096);
    expect(code(() => pciFreeP2pmem(k, nvme, a, 4096))).toBe("EINVAL:addr"); // twice
    expect(pciAllocP2pmem(k, nvme, 2 * 4096)).toBe(a);
  });

  it("pciP2pmemFindMany picks the closest published provider and none that cannot reach every client", async () => {
    const { m, t } = await setup();
    const k = m.kernel;
    const [nvme0, nvme1, nic0, nic1] = ["nvme0", "nvme1", "nic0", "nic1"].map((n) => t.dev(n));
    pciP2pdmaAddResource(k, nvme0!, 1);
    pciP2pdmaAddResource(k, nvme1!, 1);
    expect(pciP2pmemFindMany(k, [nic0!])).toBe(null); // nothing published
    pciP2pmemPublish(k, nvme1!, true);
    expect(pciHasP2pmem(k, nvme1!)).toBe(true);
    expect(pciP2pmemFindMany(k, [nic0!])).toBe(nvme1);
    pciP2pmemPublish(k, nvme0!, true);
    // nvme0 as a client of itself is distance 0 + 4 to the NIC: it beats nvme1 (4 + 4).
    expect(pciP2pmemFindMany(k, [nvme0!, nic0!])).toBe(nvme0);
    // nic1 is on another root port of a host bridge that does not forward P2P.
    expect(pciP2pmemFindMany(k, [nic0!, nic1!])).toBe(null);
    // A tie between the two drives: chosen at random, so over 32 calls both come back (the
    // machine's seeded generator makes this deterministic), and nothing else does.
    const seen = new Set(Array.from({ length: 32 }, () => pciP2pmemFindMany(k, [nic0!])!.name));
    expect([...seen].sort()).toEqual(["nvme0", "nvme1"]);
  });
});

describe("p2pmem in a process, and GUP", () => {
  it("the mmap inserts the pages; GUP refuses them without FOLL_PCI_P2PDMA (EREMOTEIO) and takes them with it", async () => {
    const { m, t } = await setup();
    const k = m.kernel;
    const nvme = t.dev("nvme0");
    const p = m.spawn();
    expect(code(() => p2pmemAllocMmap(p, nvme, 8 * 4096))).toBe("ENODEV:pdev");
    pciP2pdmaAddResource(k, nvme, 1);
    expect(code(() => p2pmemAllocMmap(p, nvme, 8 * 4096, { shared: false }))).toBe("EINVAL:shared");
    expect(code(() => p2pmemAllocMmap(p, nvme, 4 * MiB))).toBe("ENOMEM:length");
    const va = Number(p2pmemAllocMmap(p, nvme, 8 * 4096));
    const vma = p.mm.vmas.find(va / 4096)!;
    expect(vma.kind).toBe("mixedmap");
    expect(pciP2pmemAvailable(k, nvme)).toBe(2 * MiB - 8 * 4096);
    const pfn0 = pfnAt(p, va);
    expect(isPciP2pdmaPage(k, pfn0)).toBe(true);
    expect([m.page(pfn0).refcount, m.page(pfn0).mapcount]).toEqual([2, 1]);
    // The CPU writes through the mapping; it lands in the BAR's frames.
    p.write(va + 100, new Uint8Array([1, 2, 3]));
    expect(m.phys.read(pfn0 * 4096 + 100, 3)).toEqual(new Uint8Array([1, 2, 3]));

    const pages: number[] = new Array(8).fill(-1);
    expect(caught(() => pinUserPagesFast(p, va, 8, { write: true }, pages))).toMatchObject({ code: "EREMOTEIO", arg: "gupFlags" });
    expect(code(() => getUserPages(p, va, 8, {}, pages))).toBe("EREMOTEIO:gupFlags");
    expect(pinUserPages(p, va, 8, { longterm: true, pciP2pdma: true }, pages)).toBe(0); // invalid: pin_user_pages WARNs and returns 0
    expect(m.page(pfn0).refcount).toBe(2); // nothing taken
    expect(pinUserPagesFast(p, va, 8, { write: true, pciP2pdma: true }, pages)).toBe(8);
    expect(pages[3]).toBe(pfn0 + 3);
    expect(m.page(pfn0 + 3).refcount).toBe(2 + 1024);
    unpinUserPages(m, pages, 8);
    // A range running from anonymous memory into p2pmem: a short count, the anonymous page.
    const anon = Number(p.mmap({ length: 4096, addr: va - 4096, fixed: true, populate: true }));
    expect(pinUserPagesFast(p, anon, 3, {}, pages)).toBe(1);
    unpinUserPages(m, pages, 1);

    // munmap drops the mapping's references; the pool takes the pages back.
    p.munmap(va, 8 * 4096);
    expect([m.page(pfn0).refcount, m.page(pfn0).mapcount]).toEqual([1, 0]);
    expect(pciP2pmemAvailable(k, nvme)).toBe(2 * MiB);
  });

  it("a pinned p2pmem page stays out of the pool after munmap until it is unpinned; fork shares the pages; a fault beyond them is SIGBUS", async () => {
    const { m, t } = await setup();
    const k = m.kernel;
    const nvme = t.dev("nvme0");
    pciP2pdmaAddResource(k, nvme, 1);
    const p = m.spawn();
    const va = Number(p2pmemAllocMmap(p, nvme, 4 * 4096));
    const pfn0 = pfnAt(p, va);
    const child = p.fork();
    expect(pfnAt(child, va)).toBe(pfn0);
    expect([m.page(pfn0).refcount, m.page(pfn0).mapcount]).toEqual([3, 2]);
    child.exit();
    const pages: number[] = new Array(8).fill(-1);
    expect(pinUserPages(p, va, 1, { pciP2pdma: true }, pages)).toBe(1);
    p.munmap(va, 4 * 4096);
    expect(pciP2pmemAvailable(k, nvme)).toBe(2 * MiB - 4096); // the pinned page is still out
    unpinUserPages(m, pages, 1);
    expect(pciP2pmemAvailable(k, nvme)).toBe(2 * MiB);
    // The pages are inserted at mmap: kernfs has no fault handler, so a zapped page is SIGBUS.
    const vb = Number(p2pmemAllocMmap(p, nvme, 2 * 4096));
    p.madvise(vb, 2 * 4096, "dontneed");
    const e = caught(() => p.touch(vb, 4096, "r"));
    expect([e.code, /SIGBUS/.test(e.message)]).toEqual(["EFAULT", true]);
  });
});
