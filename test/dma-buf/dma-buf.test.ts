/**
 * dma-buf: export validation, import by file handle, static and dynamic attachments,
 * mapping rules, eviction with moveNotify and pins, CPU-access bracketing, and the ownership
 * checker on the 12-step two-driver table of the Dec 2011 thread (seed 003).
 */
import { describe, expect, it } from "vitest";
import {
  type DmaBufOps, dmaBufAttach, dmaBufBeginCpuAccess, dmaBufCpuAccess, dmaBufDetach, dmaBufDeviceDma, dmaBufDynamicAttach,
  dmaBufEndCpuAccess, dmaBufExport, dmaBufFd, dmaBufGet, dmaBufMapAttachment, dmaBufPut, dmaBufUnmapAttachment,
} from "../../src/dma-buf/dma-buf.js";
import { dmaResvLock, dmaResvUnlock } from "../../src/dma-buf/dma-resv.js";
import { dmaDevice, HeapExporter } from "../../src/drivers/heap-exporter.js";
import type { Machine } from "../../src/index.js";
import { caught, mmMachine } from "../mm/mm-helpers.js";

const ownership = (m: Machine) => m.checkReports().filter((r) => r.checker === "dma-buf-ownership");

describe("the 12-step table (Bergmann, Dec 2011): who owns a non-coherent buffer", () => {
  /** The table, driven step by step; returns the rules reported and the step each was at. */
  async function table(o: { coherent?: boolean; readOnly?: boolean; sameDomain?: boolean } = {}) {
    const m = await mmMachine();
    const heap = new HeapExporter(m.kernel, { pages: 4, name: "shared buffer", coherent: o.coherent });
    const db = heap.dmabuf;
    const devA = dmaDevice("device A", o.sameDomain ? "cluster" : undefined);
    const devB = dmaDevice("device B", o.sameDomain ? "cluster" : undefined);
    const a = dmaBufAttach(db, devA);
    const b = dmaBufAttach(db, devB);
    const dir = o.readOnly ? "TO_DEVICE" : "BIDIRECTIONAL";
    const write = !o.readOnly;
    const steps: (() => void)[] = [
      () => dmaBufCpuAccess(db, "driver A", true), // 1. A read/write
      () => dmaBufCpuAccess(db, "driver B", true), // 2. B read/write
      () => void dmaBufMapAttachment(a, dir), // 3. A map()
      () => dmaBufCpuAccess(db, "driver B", true), // 4. B read/write
      () => dmaBufDeviceDma(a, write), // 5. A dma
      () => void dmaBufMapAttachment(b, dir), // 6. B map()
      () => dmaBufDeviceDma(a, write), // 7. A dma
      () => dmaBufDeviceDma(b, write), // 8. B dma
      () => dmaBufUnmapAttachment(a, a.sgt!, dir), // 9. A unmap()
      () => dmaBufDeviceDma(b, write), // 10. B dma
      () => dmaBufCpuAccess(db, "driver A", true), // 11. A read/write
      () => dmaBufUnmapAttachment(b, b.sgt!, dir), // 12. B unmap()
    ];
    const found: string[] = [];
    steps.forEach((step, i) => {
      const before = ownership(m).length;
      step();
      for (const r of ownership(m).slice(before)) found.push(`${i + 1}:${r.rule}`);
    });
    return { found, reports: ownership(m) };
  }

  it("a streaming buffer: step 4 and step 11 are CPU access to a device-owned buffer; steps 7 and 8 two device owners with writers", async () => {
    const { found, reports } = await table();
    expect(found).toEqual(["4:D1", "7:D2", "8:D2", "11:D1"]);
    expect(reports[0]!.message).toMatch(/driver B writes it with the CPU while device A owns it/);
    expect(reports[3]!.message).toMatch(/driver A writes it with the CPU while device B owns it/);
    expect(reports[1]!.message).toMatch(/device A does DMA \(write\) while device B also owns it/);
    expect(Object.keys(reports[0]!.sites).sort()).toEqual(["access", "owner"]);
  });

  it("steps 7-8 are fine when both devices only read, or share a coherency domain; 4 and 11 stay bugs", async () => {
    expect((await table({ readOnly: true })).found).toEqual(["4:D1", "11:D1"]);
    expect((await table({ sameDomain: true })).found).toEqual(["4:D1", "11:D1"]);
  });

  it("a coherent buffer has no owner: nothing to report", async () => {
    expect((await table({ coherent: true })).found).toEqual([]);
  });

  it("begin/end_cpu_access brackets make the CPU the owner for a while (DMA_BUF_IOCTL_SYNC)", async () => {
    const m = await mmMachine();
    const heap = new HeapExporter(m.kernel, { pages: 1 });
    const a = dmaBufAttach(heap.dmabuf, dmaDevice("device A"));
    dmaBufMapAttachment(a, "BIDIRECTIONAL");
    expect(dmaBufBeginCpuAccess(heap.dmabuf, "BIDIRECTIONAL")).toBe(0);
    dmaBufCpuAccess(heap.dmabuf, "driver B", true);
    dmaBufEndCpuAccess(heap.dmabuf, "BIDIRECTIONAL");
    expect(ownership(m)).toEqual([]);
    dmaBufCpuAccess(heap.dmabuf, "driver B", false);
    expect(ownership(m).map((r) => r.rule)).toEqual(["D1"]);
  });

  it("[D3] DMA through an attachment that is not mapped", async () => {
    const m = await mmMachine();
    const heap = new HeapExporter(m.kernel, { pages: 1 });
    dmaBufDeviceDma(dmaBufAttach(heap.dmabuf, dmaDevice("device A")), true);
    expect(ownership(m).map((r) => r.rule)).toEqual(["D3"]);
  });
});

describe("export, import and attachments", () => {
  const ops = (): DmaBufOps => ({ mapDmaBuf: () => ({ entries: [] }), unmapDmaBuf: () => {}, release: () => {} });

  it("export validates the ops and the size (EINVAL)", async () => {
    const k = (await mmMachine()).kernel;
    expect(caught(() => dmaBufExport(k, { ops: { ...ops(), release: undefined } as unknown as DmaBufOps, size: 4096 })).code).toBe("EINVAL");
    expect(caught(() => dmaBufExport(k, { ops: { ...ops(), pin: () => 0 }, size: 4096 })).message).toMatch(/pin and ops.unpin come together/);
    expect(caught(() => dmaBufExport(k, { ops: ops(), size: 100 })).arg).toBe("size");
  });

  it("import by file handle; the last put releases; a stale handle is EBADF", async () => {
    const k = (await mmMachine()).kernel;
    let released = 0;
    const db = dmaBufExport(k, { ops: { ...ops(), release: () => void released++ }, size: 4096 });
    const fd = dmaBufFd(db);
    const imported = dmaBufGet(k, fd);
    expect(imported).toBe(db);
    dmaBufPut(imported);
    expect(released).toBe(0);
    dmaBufPut(db);
    expect(released).toBe(1);
    expect(caught(() => dmaBufGet(k, fd)).code).toBe("EBADF");
  });

  it("bad use is an errno error: unmap of a table not mapped, map twice, detach twice, a dynamic importer without the lock", async () => {
    const m = await mmMachine();
    const heap = new HeapExporter(m.kernel, { pages: 2 });
    const db = heap.dmabuf;
    const a = dmaBufAttach(db, dmaDevice("nic"));
    const sgt = dmaBufMapAttachment(a, "TO_DEVICE");
    expect(caught(() => dmaBufMapAttachment(a, "TO_DEVICE")).code).toBe("EBUSY");
    expect(caught(() => dmaBufUnmapAttachment(a, { entries: [] }, "TO_DEVICE")).code).toBe("EINVAL");
    expect(caught(() => dmaBufUnmapAttachment(a, sgt, "FROM_DEVICE")).arg).toBe("direction");
    dmaBufUnmapAttachment(a, sgt, "TO_DEVICE");
    dmaBufDetach(db, a);
    expect(caught(() => dmaBufDetach(db, a)).code).toBe("EINVAL");
    const d = dmaBufDynamicAttach(db, dmaDevice("gpu"), { moveNotify: () => {} });
    expect(caught(() => dmaBufMapAttachment(d, "BIDIRECTIONAL")).message).toMatch(/reservation lock held/);
    expect(caught(() => dmaBufDynamicAttach(db, dmaDevice("x"), {} as never)).arg).toBe("importer_ops");
  });

  it("the sg table gives the frames' addresses (dma-direct), consecutive frames merged", async () => {
    const m = await mmMachine();
    const heap = new HeapExporter(m.kernel, { pages: 3 });
    const sgt = dmaBufMapAttachment(dmaBufAttach(heap.dmabuf, dmaDevice("nic")), "TO_DEVICE");
    expect(sgt.entries.reduce((s, e) => s + e.length, 0)).toBe(3 * 4096);
    expect(sgt.entries[0]!.dmaAddress).toBe(heap.frames[0]! * 4096);
  });
});

describe("dynamic attachments and eviction", () => {
  it("eviction tells each dynamic importer (moveNotify); it maps again and gets the new addresses", async () => {
    const m = await mmMachine();
    const gpu = new HeapExporter(m.kernel, { pages: 2, movable: true, name: "vram buffer" });
    const db = gpu.dmabuf;
    const notified: string[] = [];
    const imp = dmaBufDynamicAttach(db, dmaDevice("display"), {
      moveNotify: (a) => {
        notified.push(a.dev.name);
        dmaBufUnmapAttachment(a, a.sgt!, a.dir!); // drop the mapping; map again before the next use
      },
    });
    dmaResvLock(db.resv, null);
    const before = dmaBufMapAttachment(imp, "TO_DEVICE").entries.map((e) => e.dmaAddress);
    dmaResvUnlock(db.resv);
    gpu.evict();
    expect(notified).toEqual(["display"]);
    expect(imp.sgt).toBeNull();
    dmaResvLock(db.resv, null);
    const after = dmaBufMapAttachment(imp, "TO_DEVICE").entries.map((e) => e.dmaAddress);
    dmaResvUnlock(db.resv);
    expect(after).not.toEqual(before);
    expect(gpu.stats.moves).toBe(1);
  });

  it("[D4] an importer that ignores moveNotify and keeps its old table DMAs into frames the buffer left", async () => {
    const m = await mmMachine();
    const gpu = new HeapExporter(m.kernel, { pages: 2, movable: true });
    const db = gpu.dmabuf;
    const lazy = dmaBufDynamicAttach(db, dmaDevice("lazy importer"), { moveNotify: () => {} });
    dmaResvLock(db.resv, null);
    dmaBufMapAttachment(lazy, "BIDIRECTIONAL");
    dmaResvUnlock(db.resv);
    dmaBufDeviceDma(lazy, true);
    expect(ownership(m)).toEqual([]);
    gpu.evict();
    dmaBufDeviceDma(lazy, true);
    const d4 = ownership(m).filter((r) => r.rule === "D4");
    expect(d4.length).toBe(1);
    expect(d4[0]!.message).toMatch(/lazy importer does DMA through a mapping made before the buffer moved/);
  });

  it("a static importer pins a movable buffer at attach: eviction is EBUSY until it detaches", async () => {
    const m = await mmMachine();
    const gpu = new HeapExporter(m.kernel, { pages: 1, movable: true });
    const a = dmaBufAttach(gpu.dmabuf, dmaDevice("camera"));
    expect(a.pinned).toBe(true);
    expect(caught(() => gpu.evict()).code).toBe("EBUSY");
    dmaBufDetach(gpu.dmabuf, a);
    gpu.evict();
    expect(gpu.stats.moves).toBe(1);
  });
});
