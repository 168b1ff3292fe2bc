/**
 * The dma-buf ownership checker: who owns a non-coherent (streaming) buffer at each moment,
 * in the terms of the Dec 2011 "dma-buf: Introduce dma buffer sharing mechanism" thread
 * (Bergmann's 12-step table) and of the streaming DMA API it rests on:
 *
 * - a device owns the buffer from dma_buf_map_attachment to dma_buf_unmap_attachment, unless
 *   the CPU has taken it back inside begin/end_cpu_access (the DMA_BUF_IOCTL_SYNC bracket);
 * - [D1] a CPU access (a driver reading or writing through its kernel mapping) while a device
 *   owns the buffer: the CPU may see stale data, or its writes may be lost to the cache
 *   (steps 4 and 11 of the table);
 * - [D2] a device's DMA while another device also owns the buffer, with a writer among the
 *   two, and the devices in different coherency domains (steps 7 and 8; two readers, or one
 *   coherency domain, are fine);
 * - [D3] a device's DMA through an attachment that has no mapping;
 * - [D4] a device's DMA through a mapping whose frames are no longer the buffer's (the
 *   exporter moved it after moveNotify, and the importer kept its old table): the DMA lands
 *   in freed frames, or in whatever they became.
 *
 * A coherent buffer (or one the exporter never maps into the kernel) has no owner to check.
 * @module
 */
import type { CallSite } from "./report.js";
import { Checker } from "./checker.js";

/** What the checker needs of a buffer and its attachments. */
export interface OwnedBuffer {
  readonly name: string;
  readonly coherent: boolean;
}

export interface OwningDevice {
  readonly name: string;
  /** Devices of one coherency domain share caches: their concurrent use is coherent. */
  readonly coherencyDomain?: string;
}

interface Owner {
  dev: OwningDevice;
  /** The mapping's direction lets the device write. */
  write: boolean;
  site: CallSite;
}

interface State {
  owners: Map<object, Owner>;
  cpuBracket: number;
}

export class OwnershipChecker extends Checker {
  readonly #state = new WeakMap<OwnedBuffer, State>();
  /** Step counter of each buffer's events (the table's step numbers, for a scenario). */
  readonly #steps = new WeakMap<OwnedBuffer, number>();


  #of(b: OwnedBuffer): State {
    let s = this.#state.get(b);
    if (!s) this.#state.set(b, (s = { owners: new Map(), cpuBracket: 0 }));
    return s;
  }


  #step(b: OwnedBuffer): number {
    const n = (this.#steps.get(b) ?? 0) + 1;
    this.#steps.set(b, n);
    return n;
  }

  #emit(b: OwnedBuffer, rule: string, step: number, message: string, sites: Record<string, CallSite>): void {
    this.report({
      checker: "dma-buf-ownership", rule, message: `${b.name}, event ${step}: ${message}`, time: this.k.clock.now, pfn: -1, file: null, pids: [], sites,
    });
  }

  /** @attach of @dev mapped @b (device ownership begins). */
  mapped(b: OwnedBuffer, attach: object, dev: OwningDevice, write: boolean, fn: string): void {
    this.#step(b);
    if (b.coherent) return;
    this.#of(b).owners.set(attach, { dev, write, site: this.site(fn) });
  }

  /** @attach unmapped @b (device ownership ends). */
  unmapped(b: OwnedBuffer, attach: object): void {
    this.#step(b);
    this.#state.get(b)?.owners.delete(attach);
  }

  /** begin_cpu_access / end_cpu_access. */
  cpuBracket(b: OwnedBuffer, begin: boolean): void {
    this.#step(b);
    const s = this.#of(b);
    s.cpuBracket = Math.max(0, s.cpuBracket + (begin ? 1 : -1));
  }

  /** A driver (@who) read or wrote the buffer with the CPU. */
  cpuAccess(b: OwnedBuffer, who: string, write: boolean, fn: string): void {
    const step = this.#step(b);
    if (b.coherent) return;
    const s = this.#of(b);
    if (s.cpuBracket > 0 || !s.owners.size) return;
    const [owner] = s.owners.values();
    this.#emit(b, "D1", step, `${who} ${write ? "writes" : "reads"} it with the CPU while ${owner!.dev.name} owns it (mapped for DMA); a streaming buffer must be unmapped, or bracketed by begin/end_cpu_access, first`, {
      access: this.site(fn), owner: owner!.site,
    });
  }

  /** A DMA through a table whose frames the buffer no longer holds ([D4]); @stale lists them. */
  staleDma(b: OwnedBuffer, dev: OwningDevice, stale: number[], fn: string): void {
    const step = this.#step(b);
    this.#emit(b, "D4", step, `${dev.name} does DMA through a mapping made before the buffer moved: frames ${stale.slice(0, 4).join(", ")}${stale.length > 4 ? ", ..." : ""} are no longer the buffer's (free, or someone else's); the importer must map again after moveNotify`, {
      dma: this.site(fn),
    });
  }

  /** The device of @attach did DMA into (@write) or out of the buffer. */
  dma(b: OwnedBuffer, attach: object, dev: OwningDevice, write: boolean, fn: string): void {
    const step = this.#step(b);
    if (b.coherent) return;
    const s = this.#of(b);
    const me = s.owners.get(attach);
    if (!me) {
      this.#emit(b, "D3", step, `${dev.name} does DMA through an attachment with no mapping`, { dma: this.site(fn) });
      return;
    }
    for (const [other, o] of s.owners) {
      if (other === attach) continue;
      if (!(write || o.write)) continue; // two readers
      if (dev.coherencyDomain !== undefined && dev.coherencyDomain === o.dev.coherencyDomain) continue;
      this.#emit(b, "D2", step, `${dev.name} does DMA (${write ? "write" : "read"}) while ${o.dev.name} also owns it (mapped${o.write ? " for writing" : ""}): two devices own a non-coherent buffer, with a writer among them`, {
        dma: this.site(fn), owner: o.site,
      });
      return;
    }
  }
}
