/**
 * dmirror: the kernel's HMM test driver (lib/test_hmm.c) as a device model. A device with
 * its own page table (an xarray of struct page pointers, tagged writable or not) that
 * mirrors one process's address space through an interval notifier over all of it and
 * hmm_range_fault, and reads and writes that memory through its mirror:
 *
 * - READ / WRITE: copy pages through the device page table; on the first page missing (or,
 *   for a write, not writable there) fault the rest of the range in with hmmRangeFault
 *   (REQ_FAULT, REQ_WRITE for a write) in batches of 64 pages, count one fault, go on;
 * - SNAPSHOT: what hmm_range_fault reports for each page without faulting, one byte per page
 *   (HMM_DMIRROR_PROT_*), each 64-page batch under its own temporary interval notifier;
 * - the invalidate callback erases the device entries of the range, under the driver
 *   mutex (trylock when the range is non-blockable: false if it is held).
 *
 * Each call takes a HmmDmirrorCmd and fills cpages and faults. As the ioctl copies the
 * command back only on success, a call that fails leaves the caller's command unchanged.
 * @module
 */
import { type Address, addressOf, splitAddress } from "../core/addr.js";
import { DmaError } from "../errors.js";
import {
  HMM_PFN_ERROR, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_VALID, HMM_PFN_WRITE, HMM_RANGE_DEFAULT_TIMEOUT, type HmmRange,
  hmmPfnToMapOrder, hmmPfnToPfn, hmmRangeFault,
} from "../hmm/hmm.js";
import { makeDeviceExclusive } from "../hmm/device-exclusive.js";
import { pagemapOf } from "../hmm/memremap.js";
import { Mutex } from "../locking/mutex.js";
import { framePageBytes, frameWrite } from "../mm/filemap.js";
import { type DmirrorDevice, dmirrorDevice } from "./dmirror-device.js";
import { dmirrorDevmemFault, dmirrorMigrateToDevice, dmirrorMigrateToSystem } from "./dmirror-migrate.js";
import type { Process } from "../mm/process.js";
import {
  type MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalNotifierRemove, mmuIntervalReadBegin, mmuIntervalReadRetry,
  mmuIntervalSetSeq,
} from "../notifier/interval.js";
import type { MmuNotifierRange } from "../notifier/range.js";

/* include/uapi (lib/test_hmm_uapi.h) */
export const HMM_DMIRROR_READ = 0x00;
export const HMM_DMIRROR_WRITE = 0x01;
export const HMM_DMIRROR_MIGRATE_TO_DEV = 0x02;
export const HMM_DMIRROR_MIGRATE_TO_SYS = 0x03;
export const HMM_DMIRROR_SNAPSHOT = 0x04;
export const HMM_DMIRROR_EXCLUSIVE = 0x05;
export const HMM_DMIRROR_CHECK_EXCLUSIVE = 0x06;
export const HMM_DMIRROR_RELEASE = 0x07;

export const HMM_DMIRROR_PROT_ERROR = 0xff;
export const HMM_DMIRROR_PROT_NONE = 0x00;
export const HMM_DMIRROR_PROT_READ = 0x01;
export const HMM_DMIRROR_PROT_WRITE = 0x02;
export const HMM_DMIRROR_PROT_PMD = 0x04;
export const HMM_DMIRROR_PROT_PUD = 0x08;
export const HMM_DMIRROR_PROT_ZERO = 0x10;
export const HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20;
export const HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30;

/** struct hmm_dmirror_cmd: addr, ptr and npages in; cpages and faults out. */
export interface HmmDmirrorCmd {
  addr: Address;
  /** The user buffer: what READ fills and WRITE takes (npages * 4096 bytes), or SNAPSHOT's bytes. */
  ptr: Uint8Array;
  npages: number;
  cpages: number;
  faults: number;
}

/** The pfns one hmm_range_fault call covers (dmirror_fault's pfns[64]). */
const BATCH = 64;

interface Entry {
  pfn: number;
  /** DPT_XA_TAG_WRITE. */
  write: boolean;
  /** DPT_XA_TAG_ATOMIC: the device holds the page exclusively (make_device_exclusive). */
  atomic?: boolean;
}

export interface DmirrorOptions {
  /** Which /dev/hmm_dmirrorN (0..3); default 0. Files on the same device share its memory. */
  device?: number;
  /** HMM_RANGE_DEFAULT_TIMEOUT: how long (modeled ms) a range fault keeps retrying on EBUSY. */
  timeoutMs?: number;
  /**
   * Called between a successful hmmRangeFault and taking the driver mutex: where another
   * CPU's invalidation can slip in (the race the sequence protocol catches).
   */
  betweenFaultAndLock?: (d: Dmirror) => void;
}

/** A dmirror device open on one process (open("/dev/hmm_dmirror0") in that process). */
export class Dmirror {
  readonly process: Process;
  readonly notifier: MmuIntervalNotifier;
  /** The device page table: pfn by virtual page number. */
  readonly pt = new Map<number, Entry>();
  /** dmirror->mutex. */
  readonly mutex: Mutex;
  /** The device this file is open on (the owner of its device-private memory). */
  readonly device: DmirrorDevice;
  #closed = false;
  readonly options: DmirrorOptions;

  /** open: an interval notifier over the whole address space (0 .. ULONG_MAX & PAGE_MASK). */
  constructor(p: Process, options: DmirrorOptions = {}) {
    this.process = p;
    this.options = options;
    this.device = dmirrorDevice(p.kernel, options.device ?? 0);
    this.mutex = new Mutex(p.kernel, `dmirror${this.device.index} mutex`);
    this.device.migrateToRamHook = dmirrorDevmemFault;
    this.notifier = mmuIntervalNotifierInsert(p.mm, 0, (1n << 64n) - 4096n, { invalidate: (sub, r, cur) => this.#invalidate(sub, r, cur) });
  }

  /** release of the file: the notifier goes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    mmuIntervalNotifierRemove(this.notifier);
  }

  #lock(): void {
    this.mutex.lock("dmirror");
  }

  #unlock(): void {
    this.mutex.unlock();
  }

  /** dmirror_interval_invalidate. */
  #invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean {
    if (range.event === "migrate" && range.owner === this.device) return true; // its own migration
    if (!range.blockable) {
      if (!this.mutex.trylock("dmirror_interval_invalidate")) return false;
    } else this.mutex.lock("dmirror_interval_invalidate");
    try {
      mmuIntervalSetSeq(sub, curSeq);
      this.#doUpdate(range);
    } finally {
      this.#unlock();
    }
    return true;
  }

  /**
   * dmirror_do_update: erase the device entries of the range. xa_for_each_range's last index
   * is inclusive, so the page at range.end goes too, as in the kernel.
   */
  #doUpdate(range: MmuNotifierRange): void {
    const [s] = splitAddress(range.start, "range.start");
    const [e] = splitAddress(range.end, "range.end");
    if (e - s <= this.pt.size) {
      for (let v = s; v <= e; v++) this.pt.delete(v);
    } else {
      for (const v of [...this.pt.keys()]) if (v >= s && v <= e) this.pt.delete(v);
    }
  }

  /** ioctl(fd, @cmd, @c). Throws DmaError (EINVAL, EFAULT, EPERM, EBUSY, ENOENT) with @c unchanged. */
  ioctl(cmd: number, c: HmmDmirrorCmd): void {
    if (this.#closed) throw new DmaError("EBADF", "dmirror: the device is closed", { arg: "fd" });
    const [first, off] = splitAddress(c.addr, "cmd.addr");
    if (off) throw new DmaError("EINVAL", "dmirror: cmd.addr is not page aligned", { arg: "cmd.addr" });
    if (!Number.isSafeInteger(c.npages) || c.npages <= 0) throw new DmaError("EINVAL", `dmirror: cmd.npages ${c.npages} gives an empty range`, { arg: "cmd.npages" });
    const out = { cpages: 0, faults: 0 };
    switch (cmd) {
      case HMM_DMIRROR_READ:
        this.#read(first, c, out);
        break;
      case HMM_DMIRROR_WRITE:
        this.#write(first, c, out);
        break;
      case HMM_DMIRROR_SNAPSHOT:
        this.#snapshot(first, c, out);
        break;
      case HMM_DMIRROR_MIGRATE_TO_DEV:
        dmirrorMigrateToDevice(this, first, c.npages, out);
        this.#readBack(first, c, out);
        break;
      case HMM_DMIRROR_MIGRATE_TO_SYS:
        out.cpages = dmirrorMigrateToSystem(this, first, c.npages);
        break;
      case HMM_DMIRROR_RELEASE:
        this.device.release();
        break;
      case HMM_DMIRROR_EXCLUSIVE:
        this.#exclusive(first, c, out);
        break;
      case HMM_DMIRROR_CHECK_EXCLUSIVE:
        for (let v = first; v < first + c.npages; v++) {
          if (this.pt.get(v)?.atomic) throw new DmaError("EPERM", `dmirror: 0x${(v * 4096).toString(16)} is still held exclusively by the device`, { arg: "cmd.addr" });
        }
        break;
      default:
        throw new DmaError("EINVAL", `dmirror: command ${cmd} is not supported`, { arg: "cmd" });
    }
    c.cpages = out.cpages;
    c.faults = out.faults;
  }

  /** The user buffer of @c, @per bytes a page (copy_to_user / copy_from_user fail: EFAULT). */
  /** dmirror_exclusive: take each page for atomic access, then read the range back. */
  #exclusive(first: number, c: HmmDmirrorCmd, out: { cpages: number; faults: number }): void {
    const p = this.process;
    p.mm.mmapLock.with("read", `dmirror${this.device.index} exclusive`, () => {
      for (let v = first; v < first + c.npages; v++) {
        const pfn = makeDeviceExclusive(p, addressOf(v), null);
        this.mutex.with("dmirror_atomic_map", () => this.pt.set(v, { pfn, write: false, atomic: true }));
      }
    });
    this.#readBack(first, c, out);
  }

  /**
   * After MIGRATE_TO_DEV: read the range back through the device page table (dmirror_do_read
   * under the mutex): ENOENT if any page did not move; cpages = pages read.
   */
  #readBack(first: number, c: HmmDmirrorCmd, out: { cpages: number; faults: number }): void {
    const user = this.#buffer(c);
    const k = this.process.kernel;
    out.cpages = 0;
    this.mutex.with("dmirror_do_read", () => {
      for (let v = first; v < first + c.npages; v++) {
        const e = this.pt.get(v);
        if (!e) throw new DmaError("ENOENT", `dmirror: 0x${(v * 4096).toString(16)} did not migrate to the device`, { arg: "cmd.addr" });
        user.set(framePageBytes(k, e.pfn), out.cpages * 4096);
        out.cpages++;
      }
    });
  }

  #buffer(c: HmmDmirrorCmd, per = 4096): Uint8Array {
    if (!(c.ptr instanceof Uint8Array) || c.ptr.length < c.npages * per) {
      throw new DmaError("EFAULT", `dmirror: cmd.ptr must hold ${c.npages * per} bytes`, { arg: "cmd.ptr" });
    }
    return c.ptr;
  }

  /** dmirror_read. */
  #read(first: number, c: HmmDmirrorCmd, out: { cpages: number; faults: number }): void {
    const user = this.#buffer(c);
    const bounce = new Uint8Array(c.npages * 4096);
    const k = this.process.kernel;
    this.#copyPages(first, c.npages, false, out, (pfn, at) => bounce.set(framePageBytes(k, pfn), at));
    user.set(bounce);
  }

  /** dmirror_write. */
  #write(first: number, c: HmmDmirrorCmd, out: { cpages: number; faults: number }): void {
    const bounce = this.#buffer(c).slice(0, c.npages * 4096);
    const k = this.process.kernel;
    this.#copyPages(first, c.npages, true, out, (pfn, at) => frameWrite(k, pfn, 0, bounce.subarray(at, at + 4096)));
  }

  /**
   * dmirror_do_read / dmirror_do_write's loop: under the mirror's lock, copy page by page
   * while the mirror maps the page (writably, for @write); at the first page it lacks, drop
   * the lock, fault the rest of the range into the mirror and go on from there.
   */
  #copyPages(first: number, npages: number, write: boolean, out: { cpages: number; faults: number }, copy: (pfn: number, at: number) => void): void {
    const end = first + npages;
    for (;;) {
      this.#lock();
      let missing = -1;
      try {
        for (let v = first + out.cpages; v < end; v++) {
          const e = this.pt.get(v);
          if (!e || (write && !e.write)) {
            missing = v;
            break;
          }
          copy(e.pfn, out.cpages * 4096);
          out.cpages++;
        }
      } finally {
        this.#unlock();
      }
      if (missing < 0) return;
      this.#fault(missing, end, write);
      out.faults++;
    }
  }

  /** dmirror_fault: the rest of the range through hmmRangeFault, 64 pages at a time. */
  #fault(start: number, end: number, write: boolean): void {
    if (this.process.exited) return; // mmget_not_zero failed
    const pfns = new BigUint64Array(BATCH);
    for (let v = start; v < end; v += BATCH) {
      const next = Math.min(end, v + BATCH);
      const range: HmmRange = {
        notifier: this.notifier, notifierSeq: 0, start: addressOf(v), end: addressOf(next), hmmPfns: pfns,
        defaultFlags: HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0n), pfnFlagsMask: 0n, devPrivateOwner: this.device,
      };
      this.#rangeFault(range, () => this.#doFault(range, v, next));
    }
  }

  /**
   * dmirror_range_fault: read_begin, hmmRangeFault under the mmap read lock (EBUSY: again),
   * the driver mutex, read_retry (again if an invalidation came in between), then @commit
   * under the mutex. EBUSY once the timeout passes (modeled time).
   */
  #rangeFault(range: HmmRange, commit: () => void, notifier = this.notifier): void {
    const p = this.process;
    const k = p.kernel;
    const deadline = k.clock.now + (this.options.timeoutMs ?? HMM_RANGE_DEFAULT_TIMEOUT) * 1e6;
    for (;;) {
      if (k.clock.now > deadline) throw new DmaError("EBUSY", "dmirror: the range kept being invalidated until the timeout", { arg: "cmd" });
      range.notifierSeq = mmuIntervalReadBegin(notifier);
      try {
        p.mm.mmapLock.with("read", `dmirror pid ${p.pid}`, () => hmmRangeFault(range));
      } catch (e) {
        if (e instanceof DmaError && e.code === "EBUSY") continue;
        throw e;
      }
      this.options.betweenFaultAndLock?.(this);
      this.#lock();
      try {
        if (mmuIntervalReadRetry(notifier, range.notifierSeq)) {
          k.trace.count("dmirror.retry");
          continue;
        }
        commit();
        return;
      } finally {
        this.#unlock();
      }
    }
  }

  /** dmirror_do_fault: store each page in the device page table, tagged writable or not. */
  #doFault(range: HmmRange, first: number, end: number): void {
    for (let v = first; v < end; v++) {
      const e = range.hmmPfns[v - first]!;
      this.pt.set(v, { pfn: hmmPfnToPfn(e), write: (e & HMM_PFN_WRITE) !== 0n });
    }
  }

  /** dmirror_snapshot: one HMM_DMIRROR_PROT_* byte per page, nothing faulted. */
  #snapshot(first: number, c: HmmDmirrorCmd, out: { cpages: number; faults: number }): void {
    const end = first + c.npages;
    const user = this.#buffer(c, 1);
    const p = this.process;
    const pfns = new BigUint64Array(BATCH);
    for (let v = first; v < end; v += BATCH) {
      const next = Math.min(end, v + BATCH);
      const n = next - v;
      // A notifier on exactly this batch for the duration (dmirror_range_snapshot).
      const notifier = mmuIntervalNotifierInsert(p.mm, addressOf(v), n * 4096, {
        invalidate: (sub, r, cur) => {
          if (this.mutex.isLocked && !r.blockable) return false;
          mmuIntervalSetSeq(sub, cur);
          return true;
        },
      });
      try {
        const range: HmmRange = {
          notifier, notifierSeq: 0, start: addressOf(v), end: addressOf(next), hmmPfns: pfns,
          defaultFlags: 0n, pfnFlagsMask: 0n, devPrivateOwner: this.device,
        };
        this.#rangeFault(range, () => {
          for (let i = 0; i < n; i++) user[v - first + i] = this.#mkentry(pfns[i]!);
        }, notifier);
      } finally {
        mmuIntervalNotifierRemove(notifier);
      }
      out.cpages += n;
    }
  }

  /** dmirror_mkentry. */
  #mkentry(e: bigint): number {
    if (e & HMM_PFN_ERROR) return HMM_DMIRROR_PROT_ERROR;
    if (!(e & HMM_PFN_VALID)) return HMM_DMIRROR_PROT_NONE;
    const pfn = hmmPfnToPfn(e);
    const k = this.process.kernel;
    const pgmap = pagemapOf(k, pfn);
    let perm = pgmap
      ? pgmap.owner === this.device ? HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL : HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE
      : pfn === k.zeroPfn ? HMM_DMIRROR_PROT_ZERO : HMM_DMIRROR_PROT_NONE;
    perm |= e & HMM_PFN_WRITE ? HMM_DMIRROR_PROT_WRITE : HMM_DMIRROR_PROT_READ;
    const order = hmmPfnToMapOrder(e);
    if (order === 9) perm |= HMM_DMIRROR_PROT_PMD;
    else if (order === 18) perm |= HMM_DMIRROR_PROT_PUD;
    return perm;
  }
}
