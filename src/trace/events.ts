/**
 * The trace's event types: each event name with the arguments it carries. Times are modeled
 * nanoseconds from the machine's clock.
 * @module
 */

/** Arguments of every event, by name. Later subsystems add their own names here. */
export interface TraceEventArgs {
  "phys.alloc": { pfn: number; order: number; zone: string };
  "phys.free": { pfn: number; order: number; freed: boolean };
  "pt.alloc": { pgd: number };
  "pt.free": { pgd: number };
  "pt.map": { pgd: number; va: string; size: number; pfn: number; pageSize: string; tables: number };
  "pt.unmap": { pgd: number; va: string; size: number; leaves: number; pages: number; tables: number };
  "pt.protect": { pgd: number; va: string; size: number; changed: number; tables: number };
  "pt.set": { pgd: number; va: string; level: number; value: string };
  "cpu.cr3": { cpu: number; pgd: number; pcid: number; noflush: boolean };
  "cpu.control": { cpu: number; control: string };
  "cpu.translate": {
    cpu: number;
    n: number;
    hits: number;
    misses: number;
    walks: number;
    loads: number;
    faults: number;
    spurious: number;
  };
  "tlb.flush": { cpu: number; scope: string; va: string; size: number; dropped: number };
  "mm.fault": { pcid: number; va: number; write: boolean; result: string };
  "mm.shootdown": { pcid: number; start: number; pages: number; cpus: number; remote: number; dropped: number };
  "mm.mmap": { pid: number; start: number; size: number; prot: string; kind: string };
  "mm.munmap": { pid: number; start: number; size: number; anon: number; file: number; freed: number };
  "mm.mprotect": { pid: number; start: number; size: number; prot: string };
  "mm.fork": { pid: number; child: number; anon: number; file: number; copied: number };
  "mm.exit": { pid: number };
  "mm.writeback": { path: string; pages: number; pinned: number };
  "mm.truncate": { path: string; from: number; to: number; unmapped: number; dropped: number; kept: number };
  "mm.reclaim": { scanned: number; reclaimed: number; swapped: number; written: number };
  "mm.oom_reap": { pid: number; pages: number; nonblock: boolean };
  "mm.migrate": { from: number; to: number; mappings: number };
  "gup.call": {
    pid: number;
    fn: string;
    va: string;
    nr: number;
    got: number;
    flags: string;
    fast: number;
    stop: string;
    faults: number;
  };
  "gup.unpin": { fn: string; n: number; folios: number; dirtied: number; freed: number };
  "check.report": { checker: string; rule: string; pfn: number; message: string };
  "iommu.probe": { dev: string; rid: number; ats: boolean; pri: boolean; pasid: boolean; domain: string };
  "iommu.domain_alloc": { id: number; type: string; pgd: number | null };
  "iommu.attach": { dev: string; domain: number; type: string };
  "iommu.qi": { descs: string };
  "iommu.map": { dev: string; iova: string; size: number; dir: string };
  "iommu.unmap": { dev: string; iova: string; size: number; lazy: boolean };
  "iommu.fq_flush": { domain: number; entries: number; reason: string };
  "iommu.sva_bind": { dev: string; pid: number; pasid: number };
  "iommu.sva_unbind": { dev: string; pid: number; pasid: number };
  "iommu.page_request": { dev: string; pasid: number; va: string; write: boolean; response: string };
  "p2pdma.add_resource": { dev: string; bar: number; bus: number; size: number; pfn: number };
  "p2pdma.mmap": { pid: number; dev: string; start: number; size: number };
  "dma.transfer": { dev: string; addr: string; len: number; write: boolean; done: number; status: string };
}

export type TraceEventName = keyof TraceEventArgs;

/** A recorded event: complete ("X", with a duration) or instant ("i"). */
export interface TraceEvent<K extends TraceEventName = TraceEventName> {
  name: K;
  /** Category: the part of the name before the dot ("phys", "pt", "cpu", "tlb"). */
  cat: string;
  /** Start, in modeled ns. */
  ts: number;
  /** Duration in modeled ns, for an action that took time. */
  dur?: number;
  /** Track: a CPU number, or -1 for the machine itself. */
  tid: number;
  args: TraceEventArgs[K];
}
