/**
 * What every checker shares: the kernel it watches, whether reports carry the caller's stack,
 * where reports go, and how a call site is recorded.
 * @module
 */
import type { Kernel } from "../mm/kernel.js";
import { type CallSite, type CheckReport, deepError, userFrames } from "./report.js";

export abstract class Checker {
  protected readonly k: Kernel;
  /** Record the caller's stack in each call site (check.callSites). */
  protected readonly sites: boolean;
  protected readonly report: (r: CheckReport) => void;

  constructor(k: Kernel, sites: boolean, report: (r: CheckReport) => void) {
    this.k = k;
    this.sites = sites;
    this.report = report;
  }

  /** The call site of dmalab function @fn, now. */
  protected site(fn: string): CallSite {
    return { fn, pid: null, time: this.k.clock.now, stack: this.sites ? userFrames(deepError(fn)) : [] };
  }
}
