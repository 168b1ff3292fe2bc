/**
 * A device that DMAs to a process's memory at user addresses (an RDMA memory region, a GPU
 * userptr buffer), built in one of the three coherency models of the Aug 2019 thread
 * (KERNEL-SPEC 6.1):
 *
 * - "registration-cache" (hfi1): register pins the pages (FOLL_LONGTERM) and caches the
 *   setup; invalidate_range_start only drops the cache entries it overlaps (never blocks, no
 *   invalidate_range_end), so the next operation pins what the address maps then. An
 *   operation already running keeps its pins: incoherent by design, system integrity holds.
 * - "shadow-pte" (an HMM mirror: ODP, amdgpu SVM): no pins; the device page table mirrors
 *   the CPU's. invalidate_range_start clears the device PTEs of the range and waits for the
 *   device TLB flush (modeled time), and puts the range in fault mode until
 *   invalidate_range_end; device accesses fault through hmmRangeFault under the interval
 *   notifier's sequence protocol.
 * - "pinned-no-end" (i915 userptr before 5.13): pins at register, and a start callback that
 *   only marks the object for a later release; no invalidate_range_end. Its pages stay in use
 *   after the CPU mapping changed: the coherency checker reports it ([C1]).
 *
 * Options that make a driver wrong in the ways lockdep-lite reports: waiting on a fence in the
 * callback (`fenceInCallback`), taking the driver mutex with mutex_lock even when the range is
 * non-blockable (`lockInNonblock`), allocating with that mutex held (`allocUnderLock`), holding
 * it across the device fault's mmap_lock (`faultUnderLock`).
 * @module
 */
import { EAGAIN } from "../abi/errno.js";
import type { DeviceMapping } from "../check/coherency.js";
import { type Address, addressOf, pageCount, pageNumber } from "../core/addr.js";
import { type DmaFence, dmaFenceWait } from "../dma-buf/dma-fence.js";
import { DmaError } from "../errors.js";
import { pinUserPages } from "../gup/gup.js";
import { unpinUserPages } from "../gup/unpin.js";
import { HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_WRITE, hmmPfnToPfn, hmmRangeFault } from "../hmm/hmm.js";
import { Mutex } from "../locking/mutex.js";
import { framePageBytes, frameWrite } from "../mm/filemap.js";
import type { Process } from "../mm/process.js";
import { type MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalReadBegin, mmuIntervalReadRetry, mmuIntervalSetSeq } from "../notifier/interval.js";
import { type MmuNotifier, mmuNotifierRegister, mmuNotifierUnregister } from "../notifier/mmu-notifier.js";
import type { MmuNotifierRange } from "../notifier/range.js";
import { rangePages } from "../notifier/range.js";

export type CoherencyModel = "registration-cache" | "shadow-pte" | "pinned-no-end";

export interface UserptrDeviceOptions {
  model: CoherencyModel;
  name?: string;
  /** The device TLB flush a shadow-PTE invalidation waits for (modeled ns). Default 2,000. */
  tlbFlushNs?: number;
  /** The callback waits for this fence (the GPU's current work) before returning. */
  fenceInCallback?: DmaFence;
  /** Take the driver mutex with mutex_lock even in a non-blockable invalidation (wrong). */
  lockInNonblock?: boolean;
  /** Allocate a registration's structures with the driver mutex held (wrong if the callback takes it). */
  allocUnderLock?: boolean;
  /** Hold the driver mutex across the device fault's mmap_lock and hmmRangeFault (wrong: munmap holds mmap_lock and calls the notifier, which takes the mutex). */
  faultUnderLock?: boolean;
}

interface Registration {
  start: number;
  end: number;
  pfns: Float64Array;
  /** pinned-no-end: marked by the callback, released by the (deferred) worker. */
  stale: boolean;
}

export class UserptrDevice implements DeviceMapping {
  readonly name: string;
  readonly process: Process;
  readonly model: CoherencyModel;
  readonly lock: Mutex;
  readonly #o: UserptrDeviceOptions;
  readonly #regs: Registration[] = [];
  /** shadow-pte: the device page table (vpn -> pfn and writable). */
  readonly spte = new Map<number, { pfn: number; write: boolean }>();
  /** shadow-pte: ranges in fault mode (between start and end). */
  readonly #faultMode: [number, number][] = [];
  readonly #notifier: MmuNotifier;
  readonly #interval: MmuIntervalNotifier | null = null;
  /** Counters: device faults (shadow-pte), registrations pinned, cache entries dropped. */
  readonly stats = { deviceFaults: 0, pinned: 0, dropped: 0, flushes: 0 };

  get mm() {
    return this.process.mm;
  }

  constructor(p: Process, o: UserptrDeviceOptions) {
    this.process = p;
    this.model = o.model;
    this.name = o.name ?? `${o.model} device`;
    this.#o = o;
    this.lock = new Mutex(p.kernel, `${this.name} lock`);
    this.#notifier = mmuNotifierRegister(p.mm, {
      invalidateRangeStart: (_s, r) => this.#start(r),
      ...(o.model === "shadow-pte" ? { invalidateRangeEnd: (_s: MmuNotifier, r: MmuNotifierRange) => this.#end(r) } : {}),
    });
    if (o.model === "shadow-pte") {
      this.#interval = mmuIntervalNotifierInsert(p.mm, 0, (1n << 64n) - 4096n, { invalidate: (s, _r, cur) => (mmuIntervalSetSeq(s, cur), true) });
    }
    p.kernel.checkers.coherency?.track(this);
  }

  close(): void {
    for (const r of this.#regs.splice(0)) unpinUserPages(this.process.kernel.machine!, r.pfns, r.pfns.length);
    mmuNotifierUnregister(this.#notifier);
    this.process.kernel.checkers.coherency?.untrack(this);
  }

  /** The device's live entries (for the coherency checker). */
  *entries(start: number, end: number): Iterable<[number, number]> {
    if (this.model === "shadow-pte") {
      for (const [v, e] of this.spte) if (v >= start && v < end) yield [v, e.pfn];
      return;
    }
    for (const r of this.#regs) {
      for (let v = Math.max(start, r.start); v < Math.min(end, r.end); v++) yield [v, r.pfns[v - r.start]!];
    }
  }

  /** Register [@va, +@length) (ibv_reg_mr / the userptr ioctl): pins in the pinning models. */
  register(va: Address, length: Address): void {
    const start = pageNumber(va, "va");
    const n = pageCount(length, "length");
    if (this.model === "shadow-pte") return; // nothing to pin: pages come on device faults
    this.#pin(start, n);
  }

  #pin(start: number, n: number): Registration {
    const pfns = new Float64Array(n);
    const got = pinUserPages(this.process, addressOf(start), n, { write: true, longterm: this.model === "registration-cache" }, pfns);
    if (got !== n) {
      unpinUserPages(this.process.kernel.machine!, pfns, got);
      throw new DmaError("EFAULT", `${this.name}: only ${got} of ${n} pages could be pinned`, { arg: "va" });
    }
    const r: Registration = { start, end: start + n, pfns, stale: false };
    // The registration's own structures (the DMA mapping, the device's table), allocated with
    // GFP_KERNEL: under the driver lock if the driver does so (allocUnderLock).
    const setUp = () => {
      this.process.kernel.checkers.lockdep?.mightAlloc(`${this.name} register: kmalloc(GFP_KERNEL)`);
      this.#regs.push(r);
    };
    if (this.#o.allocUnderLock) this.lock.with(`${this.name} register`, setUp);
    else setUp();
    this.stats.pinned += n;
    return r;
  }

  /** invalidate_range_start. */
  #start(r: MmuNotifierRange): number {
    const [s, e] = rangePages(r);
    if (this.model === "registration-cache") {
      // Drop the cache entries it overlaps; never block.
      for (let i = this.#regs.length - 1; i >= 0; i--) {
        const g = this.#regs[i]!;
        if (g.end <= s || g.start >= e) continue;
        this.#regs.splice(i, 1);
        unpinUserPages(this.process.kernel.machine!, g.pfns, g.pfns.length);
        this.stats.dropped++;
      }
      return 0;
    }
    if (!r.blockable && !this.#o.lockInNonblock) {
      if (!this.lock.trylock(`${this.name} invalidate (nonblock)`)) return -EAGAIN;
    } else {
      this.lock.lock(`${this.name} invalidate`);
    }
    try {
      if (this.#o.fenceInCallback) dmaFenceWait(this.#o.fenceInCallback, `${this.name} invalidate: dma_fence_wait`);
      if (this.model === "pinned-no-end") {
        for (const g of this.#regs) if (g.end > s && g.start < e) g.stale = true; // released later, by a worker
        return 0;
      }
      // shadow-pte: clear the device PTEs, fault mode, wait for the device TLB flush.
      for (const v of [...this.spte.keys()]) if (v >= s && v < e) this.spte.delete(v);
      this.#faultMode.push([s, e]);
      this.process.kernel.clock.advance(this.#o.tlbFlushNs ?? 2000);
      this.stats.flushes++;
      return 0;
    } finally {
      this.lock.unlock();
    }
  }

  /** invalidate_range_end (shadow-pte only): the range leaves fault mode. */
  #end(r: MmuNotifierRange): void {
    const [s, e] = rangePages(r);
    const i = this.#faultMode.findIndex(([a, b]) => a === s && b === e);
    if (i >= 0) this.#faultMode.splice(i, 1);
  }

  /** The deferred worker of pinned-no-end: release the objects the callback marked. */
  releaseStale(): number {
    let n = 0;
    for (let i = this.#regs.length - 1; i >= 0; i--) {
      const g = this.#regs[i]!;
      if (!g.stale) continue;
      this.#regs.splice(i, 1);
      unpinUserPages(this.process.kernel.machine!, g.pfns, g.pfns.length);
      n++;
    }
    return n;
  }

  /**
   * dma - the device reads (@data null) or writes @data at [@va, +length) of the process:
   * through its registration (pinning models; a registration cache re-pins what was
   * dropped), or its shadow page table (device faults through hmmRangeFault). Returns what
   * it read.
   */
  dma(va: Address, length: number, data: Uint8Array | null = null): Uint8Array {
    const start = pageNumber(va, "va");
    const n = pageCount(length, "length");
    const k = this.process.kernel;
    const pfnOf = (v: number): number => {
      if (this.model === "shadow-pte") return this.#devicePage(v, data !== null);
      let g = this.#regs.find((x) => v >= x.start && v < x.end);
      if (!g && this.model === "registration-cache") g = this.#pin(v, Math.max(1, start + n - v));
      if (!g) throw new DmaError("EFAULT", `${this.name}: 0x${(v * 4096).toString(16)} is not registered`, { arg: "va" });
      return g.pfns[v - g.start]!;
    };
    const out = new Uint8Array(data ? 0 : n * 4096);
    for (let i = 0; i < n; i++) {
      const pfn = pfnOf(start + i);
      if (data) frameWrite(k, pfn, 0, data.subarray(i * 4096, i * 4096 + 4096));
      else out.set(framePageBytes(k, pfn), i * 4096);
    }
    return out;
  }

  /** The page the device maps at @v, faulting it in through HMM when missing. */
  #devicePage(v: number, write: boolean): number {
    const e = this.spte.get(v);
    if (e && (e.write || !write)) return e.pfn;
    if (this.#faultMode.some(([a, b]) => v >= a && v < b)) {
      throw new DmaError("EAGAIN", `${this.name}: 0x${(v * 4096).toString(16)} is being invalidated (device fault mode)`, { arg: "va" });
    }
    this.stats.deviceFaults++;
    if (this.#o.faultUnderLock) return this.lock.with(`${this.name} device fault (lock held)`, () => this.#deviceFault(v, write));
    return this.#deviceFault(v, write);
  }

  /** The device fault: hmmRangeFault under the sequence protocol, then the device PTE under the lock. */
  #deviceFault(v: number, write: boolean): number {
    const notifier = this.#interval!;
    const pfns = new BigUint64Array(1);
    const p = this.process;
    for (;;) {
      const range = {
        notifier, notifierSeq: mmuIntervalReadBegin(notifier), start: addressOf(v), end: addressOf(v + 1), hmmPfns: pfns,
        defaultFlags: HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0n), pfnFlagsMask: 0n, devPrivateOwner: this,
      };
      try {
        p.mm.mmapLock.with("read", `${this.name} device fault`, () => hmmRangeFault(range));
      } catch (err) {
        if (err instanceof DmaError && err.code === "EBUSY") continue;
        throw err;
      }
      const commit = (): boolean => {
        if (mmuIntervalReadRetry(notifier, range.notifierSeq)) return false;
        this.spte.set(v, { pfn: hmmPfnToPfn(pfns[0]!), write: (pfns[0]! & HMM_PFN_WRITE) !== 0n });
        return true;
      };
      const done = this.lock.isLocked ? commit() : this.lock.with(`${this.name} device fault`, commit);
      if (done) return this.spte.get(v)!.pfn;
    }
  }
}
