/**
 * The coherency checker ([C1]): after the CPU page table of a range changed (each
 * invalidation's end, whether or not anyone subscribed), every device that mirrors the mm is
 * asked what it still maps there; a live device entry whose page is no longer the one the CPU
 * maps at that address is a device that will DMA into memory the process no longer has
 * there: the "pinned userptr without a coherent end" of the Aug 2019 thread.
 *
 * A registration cache drops its entries in invalidate_range_start and a shadow-PTE mirror
 * clears its PTEs, so neither has a live entry left when the check runs. A device whose pins
 * keep the old pages (system integrity holds) but keeps using them is reported.
 * @module
 */
import type { MmStruct } from "../mm/mm.js";
import { Checker } from "./checker.js";

/** A device that maps pages of an mm (a driver model registers itself). */
export interface DeviceMapping {
  readonly name: string;
  readonly mm: MmStruct;
  /** The device's live entries over pages [start, end): [vpn, pfn] pairs. */
  entries(start: number, end: number): Iterable<[number, number]>;
}

export class CoherencyChecker extends Checker {
  readonly #devices = new Set<DeviceMapping>();
  readonly #reported = new Set<string>();


  track(d: DeviceMapping): void {
    this.#devices.add(d);
  }

  untrack(d: DeviceMapping): void {
    this.#devices.delete(d);
  }


  /** The CPU page table of pages [@start, @end) of @mm changed (@event): check the devices. */
  changed(mm: MmStruct, start: number, end: number, event: string): void {
    if (!this.#devices.size || mm.dead) return;
    for (const d of this.#devices) {
      if (d.mm !== mm) continue;
      for (const [vpn, pfn] of d.entries(start, end)) {
        const cpu = cpuPfn(mm, vpn);
        if (cpu === pfn) continue;
        const key = `${d.name}:${vpn}:${pfn}`;
        if (this.#reported.has(key)) continue;
        this.#reported.add(key);
        const now = cpu === null ? "maps nothing there" : `maps frame ${cpu} there`;
        this.report({
          checker: "coherency",
          rule: "C1",
          message:
            `${d.name} still maps 0x${(vpn * 4096).toString(16)} to frame ${pfn} after a ${event} invalidation; the CPU ${now}. ` +
            "Its DMA reaches a page the process no longer has at that address (a pin keeps the page, not the mapping coherent)",
          time: this.k.clock.now,
          pfn,
          file: null,
          pids: [mm.pid],
          sites: { invalidation: this.site(`${event} invalidation`) },
        });
      }
    }
  }
}

/** The frame the CPU maps at page @vpn of @mm, or null. */
function cpuPfn(mm: MmStruct, vpn: number): number | null {
  const { pte, level } = mm.pgd.ptepGetVpn(vpn);
  if (!(pte & 1n)) return null;
  const pfn = Number((pte >> 12n) & 0xffffffffffn);
  const span = level === 1 ? 1 : 2 ** (9 * (level - 1));
  return pfn - (pfn % span) + (vpn % span);
}
