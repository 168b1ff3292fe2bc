/**
 * The writeback hazards of DMA-pinned file pages ("The trouble with get_user_pages()",
 * LSF/MM 2018; KERNEL-SPEC 2.3) and what the pinned-writeback checker reports:
 *
 * - [O1] writeback cleans a page a device holds pinned; the device's later writes come with
 *   no fault, so the file system never learns of them;
 * - [O2] the driver's set_page_dirty at unpin hits a page the file system took for clean.
 *   unpin_user_pages_dirty_lock does it under the page lock, so the page is written again;
 *   a plain unpin leaves the device's writes out of the file for good.
 */
import { describe, expect, it } from "vitest";
import { pinUserPagesFast, unpinUserPages, unpinUserPagesDirtyLock } from "../../src/index.js";
import { gupMachine, mmap, PAGE, str, text } from "./gup-helpers.js";

async function pinnedFilePage() {
  const m = await gupMachine();
  const f = m.fs.create("/data", { size: 4 * PAGE });
  const p = m.spawn();
  const a = mmap(p, { length: 4 * PAGE, file: "/data", shared: true });
  p.write(a, text("v1 by the CPU"));
  const pages = new Float64Array(1);
  expect(pinUserPagesFast(p, a, 1, { write: true }, pages)).toBe(1); // a driver's O_DIRECT / RDMA buffer
  return { m, f, p, a, pfn: pages[0]!, pages };
}

const disk = (f: { disk: Map<number, Uint8Array> }, n: number): string => str((f.disk.get(0) ?? new Uint8Array(n)).subarray(0, n));

describe("[O1] writeback of a DMA-pinned page", () => {
  it("is done all the same, and reported with the page, the file, the processes and both call sites", async () => {
    const { m, p, pfn } = await pinnedFilePage();
    expect(m.checkReports()).toEqual([]);
    const wb = m.fs.writeback("/data");
    expect(wb).toEqual({ pages: 1, pinned: 1 });
    const [r] = m.checkReports();
    expect(r).toMatchObject({ checker: "pinned-writeback", rule: "O1", pfn, file: { path: "/data", index: 0 }, pids: [p.pid] });
    expect(r!.message).toMatch(/pinned by pid \d+ \(pinUserPagesFast\)/);
    expect(r!.sites.pin).toMatchObject({ fn: "pinUserPagesFast", pid: p.pid });
    expect(r!.sites.pin!.stack.join("\n")).toContain("writeback.test.ts");
    expect(r!.sites.writeback!.fn).toBe("fs.writeback");
    expect(r!.sites.writeback!.stack.join("\n")).toContain("writeback.test.ts");
    expect(m.trace.counters.get("check.pinned-writeback.O1")).toBe(1);
  });

  it("is not reported for a page nobody pins, nor for one whose pin went before the writeback", async () => {
    const { m, pages } = await pinnedFilePage();
    unpinUserPages(m, pages, 1);
    expect(m.fs.writeback("/data")).toEqual({ pages: 1, pinned: 0 });
    expect(m.checkReports()).toEqual([]);
  });
});

describe("[O2] dirtying at unpin after writeback cleaned the page", () => {
  it("unpinUserPagesDirtyLock re-dirties the page, so the device's writes reach the disk; the checker reports it", async () => {
    const { m, f, pfn, pages } = await pinnedFilePage();
    m.fs.writeback("/data");
    expect(disk(f, 13)).toBe("v1 by the CPU");
    // The device writes through its pin: no fault, no dirty bit anywhere.
    m.phys.write(pfn * PAGE, text("v2 by DMA"));
    expect(m.page(pfn).flags).not.toContain("dirty");
    expect(m.fs.writeback("/data").pages).toBe(0); // the file system sees nothing to write
    expect(disk(f, 13)).toBe("v1 by the CPU");
    unpinUserPagesDirtyLock(m, pages, 1, true);
    expect(m.page(pfn).flags).toContain("dirty");
    const o2 = m.checkReports().filter((r) => r.rule === "O2");
    expect(o2).toHaveLength(1);
    expect(o2[0]).toMatchObject({ pfn, file: { path: "/data", index: 0 } });
    expect(o2[0]!.sites.unpin!.fn).toBe("unpinUserPagesDirtyLock");
    expect(o2[0]!.sites.pin!.fn).toBe("pinUserPagesFast");
    expect(m.fs.writeback("/data")).toEqual({ pages: 1, pinned: 0 });
    expect(disk(f, 13)).toBe("v2 by DMA CPU");
    expect(m.page(pfn).refcount).toBe(2); // the cache's and the mapping's: the pin is gone
  });

  it("a plain unpin (make_dirty false) leaves the device's writes out of the file: they are lost when the page goes", async () => {
    const { m, f, p, a, pfn, pages } = await pinnedFilePage();
    m.fs.writeback("/data");
    m.phys.write(pfn * PAGE, text("v2 by DMA"));
    unpinUserPages(m, pages, 1);
    expect(m.checkReports().map((r) => r.rule)).toEqual(["O1"]);
    expect(m.fs.writeback("/data").pages).toBe(0);
    p.munmap(a, 4 * PAGE);
    m.fs.dropCaches();
    expect(str(m.fs.read("/data", 0, 13))).toBe("v1 by the CPU");
    expect(disk(f, 13)).toBe("v1 by the CPU");
  });

  it("a page dirtied again by the CPU before the unpin is no O2: the file system knows it is dirty", async () => {
    const { m, p, a, pages } = await pinnedFilePage();
    m.fs.writeback("/data");
    p.write(a, text("v3")); // write fault on the cleaned mapping: dirty again
    unpinUserPagesDirtyLock(m, pages, 1, true);
    expect(m.checkReports().map((r) => r.rule)).toEqual(["O1"]);
  });
});
