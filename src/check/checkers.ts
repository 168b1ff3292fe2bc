/**
 * The rule checkers of a machine's kernel: independent observers that the kernel's paths
 * tell what happened, and that report the rules broken. machine.checkReports() lists what
 * they found; each report is also a "check.report" trace event.
 * @module
 */
import type { Inode } from "../fs/inode.js";
import type { Kernel } from "../mm/kernel.js";
import type { Process } from "../mm/process.js";
import type { PagesArray } from "../gup/range.js";
import { CoherencyChecker } from "./coherency.js";
import { DmaChecker } from "./dma.js";
import { Lockdep } from "./lockdep.js";
import { OwnershipChecker } from "./ownership.js";
import { PinnedWritebackChecker } from "./pinned-writeback.js";
import type { CheckReport } from "./report.js";

export interface CheckOptions {
  pinnedWriteback: boolean;
  callSites: boolean;
  /** lockdep-lite (lock order, sleeping in non-block sections). Default true. */
  lockdep?: boolean;
  /** Device mappings left stale by a CPU page-table change. Default true. */
  coherency?: boolean;
  /** dma-buf ownership of streaming buffers. Default true. */
  ownership?: boolean;
  /** DMA into unheld frames, stale IOTLB/ATC use, invalidation order. Default true. */
  dma?: boolean;
}

export class Checkers {
  readonly reports: CheckReport[] = [];
  readonly pinnedWriteback: PinnedWritebackChecker | null;
  readonly lockdep: Lockdep | null;
  readonly coherency: CoherencyChecker | null;
  readonly ownership: OwnershipChecker | null;
  readonly dma: DmaChecker | null;
  readonly #k: Kernel;

  constructor(k: Kernel, o: CheckOptions) {
    this.#k = k;
    const report = (r: CheckReport): void => this.#add(r);
    this.pinnedWriteback = o.pinnedWriteback ? new PinnedWritebackChecker(k, o.callSites, report) : null;
    this.lockdep = o.lockdep === false ? null : new Lockdep(k, o.callSites, report);
    this.coherency = o.coherency === false ? null : new CoherencyChecker(k, o.callSites, report);
    this.ownership = o.ownership === false ? null : new OwnershipChecker(k, o.callSites, report);
    this.dma = o.dma === false ? null : new DmaChecker(k, o.callSites, report);
  }

  #add(r: CheckReport): void {
    this.reports.push(r);
    this.#k.trace.emit("check.report", { checker: r.checker, rule: r.rule, pfn: r.pfn, message: r.message }, this.#k.clock.now);
    this.#k.trace.count(`check.${r.checker}.${r.rule}`);
  }

  /** A pin call of @p took @n pages from page @vpn; @huge: all from huge leaves. */
  pinned(p: Process, fn: string, vpn: number, pages: PagesArray, n: number, huge: boolean): void {
    this.pinnedWriteback?.pinned(p.pid, fn, pages, n, vpn, huge);
  }

  /** Writeback (@fn) wrote a page that looked DMA-pinned. */
  writebackPinned(inode: Inode, index: number, pfn: number, fn: string): void {
    this.pinnedWriteback?.writebackPinned(inode, index, pfn, fn);
  }

  /** unpinUserPagesDirtyLock(make_dirty) is about to release @n entries of @pages. */
  unpinDirty(pages: PagesArray, n: number): void {
    this.pinnedWriteback?.unpinDirty(pages, n);
  }
}
