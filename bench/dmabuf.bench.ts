/**
 * dmabuf: attach / map / unmap / detach cycles per second on a 1 MiB system-heap buffer
 * (static and dynamic importers), and the cost of an eviction with N dynamic importers that
 * each drop their mapping in moveNotify and map again afterwards: emulator wall time, and
 * modeled time (the page copies of the move; mapping through dma-direct is not charged).
 * The "iommu" cases attach a device behind the IOMMU (strict domain): each map is a dmaMapSg
 * of the 256 pages (an IOVA range, IO page-table writes), each unmap an iommuUnmap with its
 * IOTLB invalidation and wait, so they carry modeled time of their own.
 * The reference model has no dma-buf (it lives in the host only): no reference column.
 */
import { createMachine } from "../src/index.js";
import {
  dmaBufAttach, dmaBufDetach, dmaBufDynamicAttach, dmaBufMapAttachment, dmaBufUnmapAttachment,
} from "../src/dma-buf/dma-buf.js";
import { dmaResvLock, dmaResvUnlock } from "../src/dma-buf/dma-resv.js";
import { dmaDevice, HeapExporter } from "../src/drivers/heap-exporter.js";
import { type BenchReport, type Case, median } from "./lib.js";

const PAGES = 256; // 1 MiB

async function machine() {
  return createMachine({ memory: { normal: "512MiB", movable: 0, cma: 0 }, cpus: 2, trace: false, check: { callSites: false } });
}

async function cycles(dynamic: boolean, iommu = false): Promise<Case> {
  const m = await machine();
  const heap = new HeapExporter(m.kernel, { pages: PAGES });
  const db = heap.dmabuf;
  const dev = iommu ? m.iommu.iommuProbeDevice("nic") : dmaDevice("nic");
  const N = iommu ? 2000 : 20000;
  const per: number[] = [];
  let modeled = 0;
  for (let r = 0; r < 6; r++) {
    const c0 = m.clock.now;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const a = dynamic ? dmaBufDynamicAttach(db, dev, { moveNotify: () => {} }) : dmaBufAttach(db, dev);
      if (dynamic) dmaResvLock(db.resv, null);
      const sgt = dmaBufMapAttachment(a, "TO_DEVICE");
      dmaBufUnmapAttachment(a, sgt, "TO_DEVICE");
      if (dynamic) dmaResvUnlock(db.resv);
      dmaBufDetach(db, a);
    }
    if (r > 0) per.push(((performance.now() - t0) * 1e6) / N);
    modeled = (m.clock.now - c0) / N;
  }
  const best = Math.min(...per);
  return { name: `cycle/${dynamic ? "dynamic" : "static"}${iommu ? "-iommu" : ""}`, impl: "core", nsPerOp: best, medianNsPerOp: median(per), cyclesPerSec: 1e9 / best, modeledNs: modeled, pages: PAGES };
}

async function eviction(n: number, iommu = false): Promise<Case> {
  const m = await machine();
  const gpu = new HeapExporter(m.kernel, { pages: PAGES, movable: true });
  const db = gpu.dmabuf;
  const importers = Array.from({ length: n }, (_, i) =>
    dmaBufDynamicAttach(db, iommu ? m.iommu.iommuProbeDevice(`importer ${i}`) : dmaDevice(`importer ${i}`), { moveNotify: (a) => dmaBufUnmapAttachment(a, a.sgt!, a.dir!) }),
  );
  const remap = () => {
    dmaResvLock(db.resv, null);
    for (const a of importers) if (!a.sgt) dmaBufMapAttachment(a, "TO_DEVICE");
    dmaResvUnlock(db.resv);
  };
  remap();
  const wall: number[] = [];
  let modeled = 0;
  for (let r = 0; r < 6; r++) {
    const c0 = m.clock.now;
    const t0 = performance.now();
    gpu.evict();
    remap();
    if (r > 0) wall.push((performance.now() - t0) * 1e6);
    modeled = m.clock.now - c0;
  }
  const best = Math.min(...wall);
  return { name: `evict/${n}-importers${iommu ? "-iommu" : ""}`, impl: "core", nsPerOp: best, medianNsPerOp: median(wall), modeledNs: modeled, importers: n, pages: PAGES };
}

export async function run(): Promise<BenchReport> {
  const cases: Case[] = [await cycles(false), await cycles(true), await cycles(false, true), await cycles(true, true)];
  for (const n of [1, 10, 100, 1000]) cases.push(await eviction(n));
  for (const n of [1, 10, 60]) cases.push(await eviction(n, true));
  return {
    bench: "dmabuf",
    cases,
    notes: [
      "machine: 512 MiB NORMAL, 2 CPUs, trace off, checkers on without call sites; a 1 MiB (256-page) system-heap buffer",
      "cycle/*: one attach, map (TO_DEVICE), unmap, detach; nsPerOp best of 5 rounds of 20,000; cyclesPerSec = 1e9 / nsPerOp",
      "evict/N-importers: one eviction (moveNotify to N dynamic importers that unmap, the move of 256 pages) and the N re-maps; nsPerOp best of 5",
      "modeledNs: the machine clock's advance over one eviction and re-map: the 256 page copies (pageCopy each); with -iommu also each importer's IOTLB invalidation on unmap and its IO page-table writes on map",
      "cycle/*-iommu: 2,000 cycles a round; the device table holds 64 devices, so at most 60 IOMMU importers",
    ],
  };
}
