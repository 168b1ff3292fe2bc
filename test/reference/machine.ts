/**
 * The reference machine: RefPhys + RefPageTables + RefMmu behind the same calls as the
 * core's exports (same arguments, same return codes and reasons).
 */
import type { MachineConfig } from "../../src/config.js";
import { RefFailure, RefPhys } from "./buddy.js";
import { RefMmu } from "./mmu.js";
import { RefPageTables } from "./pgtable.js";
import { RefGup } from "./gup.js";

export class RefMachine {
  readonly phys: RefPhys;
  readonly pts: RefPageTables;
  readonly mmu: RefMmu;
  readonly gup: RefGup;
  readonly ringEntries: number;
  reason = 0;
  arg = 0;

  constructor(cfg: MachineConfig) {
    this.phys = new RefPhys(cfg);
    this.pts = new RefPageTables(this.phys, cfg.levels, cfg.physAddrBits);
    this.mmu = new RefMmu(this.pts, cfg.cpus, cfg.tlb.sets, cfg.tlb.ways, cfg.physAddrBits);
    this.ringEntries = cfg.ringEntries;
    this.gup = new RefGup(this.phys, this.pts);
  }

  /** Run @fn as a core call: its result, or -errno with the reason recorded. */
  call<T>(fn: () => T): T | number {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof RefFailure)) throw e;
      this.reason = e.reason;
      this.arg = e.arg;
      return -e.errno;
    }
  }
}
