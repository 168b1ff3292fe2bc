/**
 * The p2pdma provider (drivers/pci/p2pdma.c): a device offers part of a BAR as memory other
 * devices DMA into directly. The BAR gets struct pages (ZONE_DEVICE, MEMORY_DEVICE_PCI_P2PDMA),
 * so the memory can sit in scatterlists, in a process's page tables and in GUP's results.
 *
 * - pciP2pdmaAddResource takes frames from the machine's P2PDMA zone (memory.p2pdma) to stand
 *   for [BAR + offset, + size): their CPU physical addresses are the frames', and the pagemap
 *   records bus_offset = bus address - CPU physical address, as pci_bus_address() minus the
 *   resource start does. The range joins the provider's pool (gen_pool, page granularity,
 *   first fit, the newest range first as gen_pool_add puts chunks at the head).
 * - pciAllocP2pmem / pciFreeP2pmem hand out and take back contiguous runs of the pool. The
 *   "kernel virtual address" they deal in is the CPU physical address: the model has no
 *   kernel page tables, and the direct map is linear anyway.
 * - A P2PDMA page idles at refcount 1, the pagemap's own reference (as device pages did before
 *   Linux 5.17); a mapping or a GUP reference adds to it.
 * - p2pmemAllocMmap is p2pmem_alloc_mmap, the mmap of sysfs p2pmem/allocate: shared mappings
 *   only, offset 0, the pages inserted at once (vm_insert_page: VM_MIXEDMAP, a reference and
 *   a mapcount each). The kernel returns such a page to the pool when its last reference
 *   goes (p2pdma_page_free); here the pool takes back, before it next allocates or counts,
 *   every mmapped page whose references are down to the pagemap's.
 * @module
 */
import { type Address, addressOf, pageCount } from "../core/addr.js";
import { DmaError, einval } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import { vmInsertPagesMmap } from "../mm/vm-insert.js";
import { parseProt, type Process, type ProtSpec } from "../mm/process.js";
import { pciP2pdmaDistanceMany } from "./p2pdma.js";
import type { PciDev } from "./topology.js";

/** struct pci_p2pdma_pagemap: one range of one BAR. */
export class PciP2pdmaPagemap {
  readonly provider: PciDev;
  readonly bar: number;
  /** First frame and frame count. */
  readonly pfn: number;
  readonly pages: number;
  /** Bus address minus CPU physical address. */
  readonly busOffset: number;

  constructor(provider: PciDev, bar: number, pfn: number, pages: number, busStart: number) {
    this.provider = provider;
    this.bar = bar;
    this.pfn = pfn;
    this.pages = pages;
    this.busOffset = busStart - pfn * 4096;
  }

  /** The bus addresses of the range: [busStart, busEnd). */
  get busStart(): number {
    return this.pfn * 4096 + this.busOffset;
  }

  get busEnd(): number {
    return this.busStart + this.pages * 4096;
  }

  contains(pfn: number): boolean {
    return pfn >= this.pfn && pfn < this.pfn + this.pages;
  }
}

/** struct pci_p2pdma: a provider's pool. */
export class PciP2pdma {
  readonly provider: PciDev;
  /** Newest first (gen_pool_add puts a chunk at the head of the list). */
  readonly pagemaps: PciP2pdmaPagemap[] = [];
  published = false;
  /** Frames handed out (by pciAllocP2pmem or an mmap). */
  readonly used = new Set<number>();
  /** Frames an mmap took: they come back when only the pagemap's reference is left. */
  readonly mmapped = new Set<number>();

  constructor(provider: PciDev) {
    this.provider = provider;
  }

  get size(): number {
    return this.pagemaps.reduce((s, m) => s + m.pages * 4096, 0);
  }
}

interface Registry {
  byDev: Map<PciDev, PciP2pdma>;
  pagemaps: PciP2pdmaPagemap[];
}

const registries = new WeakMap<Kernel, Registry>();

function registry(k: Kernel): Registry {
  let r = registries.get(k);
  if (!r) registries.set(k, (r = { byDev: new Map(), pagemaps: [] }));
  return r;
}

/** pdev->p2pdma: the provider state of @pdev, or null. */
export function pciP2pdmaOf(k: Kernel, pdev: PciDev): PciP2pdma | null {
  return registries.get(k)?.byDev.get(pdev) ?? null;
}

/** The P2PDMA pagemap holding frame @pfn (is_pci_p2pdma_page), or null. */
export function p2pdmaPagemapOf(k: Kernel, pfn: number): PciP2pdmaPagemap | null {
  const r = registries.get(k);
  if (!r) return null;
  for (const m of r.pagemaps) if (m.contains(pfn)) return m;
  return null;
}

/** isPciP2pdmaPage - is_pci_p2pdma_page. */
export function isPciP2pdmaPage(k: Kernel, pfn: number): boolean {
  return p2pdmaPagemapOf(k, pfn) !== null;
}

/**
 * pciP2pdmaAddResource - pci_p2pdma_add_resource: give [BAR @bar + @offset, + @size) struct
 * pages and add it to @pdev's pool (@size 0: the rest of the BAR). EINVAL for a device or BAR
 * that is not memory, an offset at or past the BAR's end, a range past it, or one not in
 * whole pages; ENOMEM when the range overlaps one already added (the kernel's "conflicting
 * mapping") or the P2PDMA zone has no room. Nothing changes on failure.
 */
export function pciP2pdmaAddResource(k: Kernel, pdev: PciDev, bar: number, size = 0, offset = 0): PciP2pdmaPagemap {
  const b = pdev.kind === "endpoint" && Number.isInteger(bar) ? pdev.bars[bar] : undefined;
  if (!b) throw einval("bar", `${pdev.name} has no memory BAR ${bar}`);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset >= b.size) throw einval("offset", `${offset} is not inside BAR ${bar} (${b.size} bytes)`);
  if (!Number.isSafeInteger(size) || size < 0) throw einval("size", `${size} is not a size`);
  const len = size || b.size - offset;
  if (len + offset > b.size) throw einval("size", `${offset} + ${len} runs past the end of BAR ${bar} (${b.size} bytes)`);
  if (offset % 4096 || len % 4096) throw einval(offset % 4096 ? "offset" : "size", "P2PDMA memory comes in whole 4 KiB pages");
  const reg = registry(k);
  const busStart = b.start + offset;
  for (const m of reg.pagemaps) {
    if (m.provider === pdev && m.bar === bar && busStart < m.busEnd && m.busStart < busStart + len) {
      throw new DmaError("ENOMEM", `pciP2pdmaAddResource: ${pdev.name} BAR ${bar} [${busStart.toString(16)}, +${len}) overlaps memory already added`, { arg: "offset" });
    }
  }
  if (!k.phys.zones().some((z) => z.name === "P2PDMA")) {
    throw einval("kernel", "the machine has no P2PDMA memory for struct pages (set memory.p2pdma)");
  }
  const pages = len / 4096;
  const order = Math.ceil(Math.log2(pages));
  let pfn: number;
  try {
    pfn = k.phys.allocPages(order, { zone: "P2PDMA" });
  } catch (e) {
    if (e instanceof DmaError && e.code === "ENOMEM") throw new DmaError("ENOMEM", `pciP2pdmaAddResource: the P2PDMA zone has no ${2 ** order}-page block for ${len} bytes`, { arg: "size" });
    throw e;
  }
  // memremap_pages: each page its own, held by the pagemap. The pages past the range (the
  // block is a power of two) stay with the provider, unused.
  k.phys.splitPage(pfn, order);
  const m = new PciP2pdmaPagemap(pdev, bar, pfn, pages, busStart);
  let p = reg.byDev.get(pdev);
  if (!p) reg.byDev.set(pdev, (p = new PciP2pdma(pdev)));
  p.pagemaps.unshift(m);
  reg.pagemaps.push(m);
  k.trace.emit("p2pdma.add_resource", { dev: pdev.name, bar, bus: busStart, size: len, pfn }, k.clock.now);
  return m;
}

/** Take back the mmapped pages nobody maps or references any more (p2pdma_page_free). */
function reclaim(k: Kernel, p: PciP2pdma): void {
  for (const pfn of p.mmapped) {
    if (k.refcountOf(pfn) === 1 && k.mapcountOf(pfn) === 0) {
      p.mmapped.delete(pfn);
      p.used.delete(pfn);
    }
  }
}

/** gen_pool_alloc, first fit: @pages contiguous free frames of one range, or null. */
function poolAlloc(k: Kernel, p: PciP2pdma, pages: number): number | null {
  reclaim(k, p);
  for (const m of p.pagemaps) {
    let run = 0;
    for (let i = 0; i < m.pages; i++) {
      run = p.used.has(m.pfn + i) ? 0 : run + 1;
      if (run === pages) {
        const first = m.pfn + i + 1 - pages;
        for (let j = 0; j < pages; j++) p.used.add(first + j);
        return first;
      }
    }
  }
  return null;
}

/** pciP2pmemAvailable - the pool's free bytes (sysfs p2pmem/available). */
export function pciP2pmemAvailable(k: Kernel, pdev: PciDev): number {
  const p = pciP2pdmaOf(k, pdev);
  if (!p) return 0;
  reclaim(k, p);
  return p.size - p.used.size * 4096;
}

/**
 * pciAllocP2pmem - pci_alloc_p2pmem: @size bytes (rounded up to pages) of @pdev's pool, as
 * the CPU physical address of the first byte; null when @pdev provides none or the pool has
 * no run that long.
 */
export function pciAllocP2pmem(k: Kernel, pdev: PciDev, size: number): number | null {
  if (!Number.isSafeInteger(size) || size <= 0) throw einval("size", `${size} is not a size`);
  const p = pciP2pdmaOf(k, pdev);
  if (!p) return null;
  const pfn = poolAlloc(k, p, Math.ceil(size / 4096));
  return pfn === null ? null : pfn * 4096;
}

/** pciFreeP2pmem - pci_free_p2pmem: give back what pciAllocP2pmem returned. EINVAL if it did not. */
export function pciFreeP2pmem(k: Kernel, pdev: PciDev, addr: number, size: number): void {
  const p = pciP2pdmaOf(k, pdev);
  if (!p) throw einval("pdev", `${pdev.name} provides no P2PDMA memory`);
  if (!Number.isSafeInteger(size) || size <= 0) throw einval("size", `${size} is not a size`);
  const pfn = addr / 4096;
  const pages = Math.ceil(size / 4096);
  const m = Number.isInteger(pfn) ? p.pagemaps.find((x) => x.contains(pfn)) : undefined;
  if (!m || pfn + pages > m.pfn + m.pages) throw einval("addr", `${addr} (+${size}) is not ${pdev.name}'s P2PDMA memory`);
  for (let i = 0; i < pages; i++) {
    if (!p.used.has(pfn + i) || p.mmapped.has(pfn + i)) throw einval("addr", `page ${pfn + i} of ${pdev.name}'s pool was not allocated by pciAllocP2pmem`);
  }
  for (let i = 0; i < pages; i++) p.used.delete(pfn + i);
}

/** pciP2pmemVirtToBus - pci_p2pmem_virt_to_bus: the bus address of @addr, 0 if it is not @pdev's. */
export function pciP2pmemVirtToBus(k: Kernel, pdev: PciDev, addr: number): number {
  const m = p2pdmaPagemapOf(k, Math.floor(addr / 4096));
  return m && m.provider === pdev ? addr + m.busOffset : 0;
}

/** pciP2pmemPublish - pci_p2pmem_publish: let pciP2pmemFindMany offer @pdev's memory, or stop. */
export function pciP2pmemPublish(k: Kernel, pdev: PciDev, publish: boolean): void {
  const p = pciP2pdmaOf(k, pdev);
  if (p) p.published = publish;
}

/** pciHasP2pmem - pci_has_p2pmem: @pdev published memory. */
export function pciHasP2pmem(k: Kernel, pdev: PciDev): boolean {
  return pciP2pdmaOf(k, pdev)?.published ?? false;
}

/**
 * p2pmemAllocMmap - p2pmem_alloc_mmap: map @length bytes of @pdev's pool into @proc, shared.
 * EINVAL for a private mapping or a nonzero offset, ENODEV when @pdev provides no memory,
 * ENOMEM when the pool has no run that long (or the address space no room).
 */
export function p2pmemAllocMmap(proc: Process, pdev: PciDev, length: Address, o: { prot?: ProtSpec; shared?: boolean; offset?: number } = {}): Address {
  const k = proc.kernel;
  const pages = pageCount(length, "length");
  if (o.shared === false) throw einval("shared", "p2pmem can only be mapped shared (MAP_SHARED)");
  if ((o.offset ?? 0) !== 0) throw einval("offset", "p2pmem is mapped from offset 0");
  const prot = parseProt(o.prot);
  const p = pciP2pdmaOf(k, pdev);
  if (!p) throw new DmaError("ENODEV", `p2pmem mmap: ${pdev.name} provides no P2PDMA memory`, { arg: "pdev" });
  const pfn = poolAlloc(k, p, pages);
  if (pfn === null) throw new DmaError("ENOMEM", `p2pmem mmap: ${pdev.name}'s pool has no ${pages} free pages in a row`, { arg: "length" });
  let start: number;
  try {
    start = vmInsertPagesMmap(proc, Array.from({ length: pages }, (_, i) => pfn + i), prot, "p2pmem mmap");
  } catch (e) {
    for (let i = 0; i < pages; i++) p.used.delete(pfn + i);
    throw e;
  }
  for (let i = 0; i < pages; i++) p.mmapped.add(pfn + i);
  k.trace.emit("p2pdma.mmap", { pid: proc.pid, dev: pdev.name, start: start * 4096, size: pages * 4096 }, k.clock.now);
  return addressOf(start);
}

/**
 * pciP2pmemFindMany - pci_p2pmem_find_many: of the devices that published P2PDMA memory, the
 * one with the lowest pciP2pdmaDistanceMany to @clients (ties broken at random with the
 * machine's generator), or null when none can serve them all.
 */
export function pciP2pmemFindMany(k: Kernel, clients: PciDev[]): PciDev | null {
  if (!Array.isArray(clients) || !clients.length) return null;
  const t = clients[0]!.topology;
  if (clients.some((c) => c.topology !== t)) return null; // no provider reaches two fabrics
  let best = Infinity;
  let closest: PciDev[] = [];
  for (const d of t.byName.values()) {
    if (!pciHasP2pmem(k, d)) continue;
    const dist = pciP2pdmaDistanceMany(t, d, clients);
    if (dist < 0 || dist > best) continue;
    if (dist < best) closest = [];
    best = dist;
    closest.push(d);
  }
  if (!closest.length) return null;
  return closest.length === 1 ? closest[0]! : closest[(k.machine?.rng.int(0, closest.length - 1) ?? 0)]!;
}
