/**
 * dmirror's migration commands (lib/test_hmm.c): MIGRATE_TO_DEV, MIGRATE_TO_SYS and the
 * device page fault (dmirror_devmem_fault), each the migrate_vma sequence over at most 64
 * pages at a time, VMA by VMA:
 *
 * - to the device: SELECT_SYSTEM; each selected page gets a device page (zeroed for a hole),
 *   writable if the source was (or, for a hole, if the VMA is); the device page table maps
 *   the device page (dmirror_migrate_finalize_and_map);
 * - to the system: SELECT_DEVICE_PRIVATE of this device; each device page's data goes to a new
 *   system page and leaves the device page table; cpages counts the pages that moved.
 * @module
 */
import { addressOf } from "../core/addr.js";
import { DmaError } from "../errors.js";
import { type VmFault, devicePagePut, pagemapOf } from "../hmm/memremap.js";
import {
  MIGRATE_PFN_MIGRATE, MIGRATE_PFN_VALID, MIGRATE_PFN_WRITE, MIGRATE_VMA_SELECT_DEVICE_PRIVATE, MIGRATE_VMA_SELECT_SYSTEM,
  type MigrateVma, migratePfn, migratePfnToPage, migrateVmaFinalize, migrateVmaPages, migrateVmaSetup,
} from "../hmm/migrate-device.js";
import type { FaultResult } from "../mm/fault.js";
import { framePageBytes, frameWrite } from "../mm/filemap.js";
import { VM_READ, VM_WRITE, type Vma } from "../mm/vma.js";
import type { Dmirror } from "./dmirror.js";

const BATCH = 64;

/** For each VMA piece of [@first, @first + @n): @step(vma, start, end), 64 pages at most. EINVAL for a hole or an unreadable VMA. */
function eachPiece(d: Dmirror, first: number, n: number, step: (vma: Vma, start: number, end: number) => void): void {
  const mm = d.process.mm;
  mm.mmapLock.with("read", `dmirror${d.device.index} migrate`, () => {
    for (let a = first; a < first + n; ) {
      const vma = mm.vmas.find(a);
      if (!vma || !(vma.flags & VM_READ)) {
        throw new DmaError("EINVAL", `dmirror: 0x${(a * 4096).toString(16)} is not in a readable VMA`, { arg: "cmd.addr" });
      }
      const next = Math.min(first + n, a + BATCH, vma.end);
      step(vma, a, next);
      a = next;
    }
  });
}

function args(d: Dmirror, vma: Vma, start: number, end: number, flags: number): MigrateVma {
  return {
    vma, start: addressOf(start), end: addressOf(end), src: new Float64Array(end - start), dst: new Float64Array(end - start),
    cpages: 0, npages: 0, pgmapOwner: d.device, flags,
  };
}

/** dmirror_migrate_to_device (the read-back is the caller's). */
export function dmirrorMigrateToDevice(d: Dmirror, first: number, n: number, _out: { cpages: number; faults: number }): void {
  const k = d.process.kernel;
  eachPiece(d, first, n, (vma, start, end) => {
    const a = args(d, vma, start, end, MIGRATE_VMA_SELECT_SYSTEM);
    migrateVmaSetup(a);
    settle(a, () => {
      // dmirror_migrate_alloc_and_copy
      for (let i = 0; i < a.npages; i++) {
        const s = a.src[i]!;
        if (!(s & MIGRATE_PFN_MIGRATE)) continue;
        const dpage = d.device.allocPage(d);
        if (dpage === null) continue;
        const spage = migratePfnToPage(s);
        frameWrite(k, dpage, 0, spage === null ? new Uint8Array(4096) : framePageBytes(k, spage));
        k.clock.advance(k.costs.pageCopy.ns);
        const write = (s & MIGRATE_PFN_WRITE) !== 0 || (spage === null && (vma.flags & VM_WRITE) !== 0);
        a.dst[i] = migratePfn(dpage) + (write ? MIGRATE_PFN_WRITE : 0);
      }
      pages(a);
      // dmirror_migrate_finalize_and_map
      d.mutex.with("dmirror_migrate_finalize_and_map", () => {
        for (let i = 0; i < a.npages; i++) {
          if (!(a.src[i]! & MIGRATE_PFN_MIGRATE)) continue;
          const dpage = migratePfnToPage(a.dst[i]!);
          if (dpage === null) continue;
          d.pt.set(start + i, { pfn: dpage, write: (a.dst[i]! & MIGRATE_PFN_WRITE) !== 0 });
        }
      });
    });
  });
}

/**
 * Run the driver's part between migrateVmaSetup and migrateVmaFinalize (@work, which calls
 * migrateVmaPages), then always finalize: if @work threw before the pages moved, every entry
 * goes back to its source.
 */
function settle(a: MigrateVma, work: () => void): void {
  try {
    work();
  } catch (e) {
    if (!moved.has(a)) {
      // The destinations allocated so far go back; every source stays.
      const k = a.vma.mm.kernel;
      for (let i = 0; i < a.npages; i++) {
        const dst = migratePfnToPage(a.dst[i]!);
        if (dst === null) continue;
        if (pagemapOf(k, dst)) devicePagePut(k, dst);
        else k.folioRef(dst, -1);
      }
      a.dst.fill(0);
    }
    throw e;
  } finally {
    migrateVmaFinalize(a);
  }
}

const moved = new WeakSet<MigrateVma>();

/** migrateVmaPages, remembered (settle knows the pages moved). */
function pages(a: MigrateVma): void {
  migrateVmaPages(a);
  moved.add(a);
}

/** dmirror_migrate_alloc_and_copy to system pages (dmirror_devmem_fault_alloc_and_copy). */
function allocToSystem(d: Dmirror, a: MigrateVma, start: number): void {
  const k = d.process.kernel;
  for (let i = 0; i < a.npages; i++) {
    const s = a.src[i]!;
    const spage = migratePfnToPage(s);
    if (spage === null || !(s & MIGRATE_PFN_MIGRATE)) continue;
    const dpage = k.allocUserFolio(0);
    frameWrite(k, dpage, 0, framePageBytes(k, spage));
    k.clock.advance(k.costs.pageCopy.ns);
    d.mutex.with("dmirror: xa_erase", () => d.pt.delete(start + i));
    a.dst[i] = migratePfn(dpage) + (s & MIGRATE_PFN_WRITE ? MIGRATE_PFN_WRITE : 0);
  }
}

/** dmirror_migrate_to_system: the pages that moved back. */
export function dmirrorMigrateToSystem(d: Dmirror, first: number, n: number): number {
  let cpages = 0;
  eachPiece(d, first, n, (vma, start, end) => {
    const a = args(d, vma, start, end, MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
    migrateVmaSetup(a);
    settle(a, () => {
      allocToSystem(d, a, start);
      pages(a);
      for (let i = 0; i < a.npages; i++) {
        if ((a.src[i]! & (MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE)) === (MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE)) cpages++;
      }
    });
  });
  return cpages;
}

/** dmirror_devmem_fault: a CPU touched a device page: migrate that one page back. */
export function dmirrorDevmemFault(d: Dmirror, vmf: VmFault): FaultResult {
  const a = args(d, vmf.vma, vmf.vpn, vmf.vpn + 1, MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
  try {
    migrateVmaSetup(a);
  } catch {
    return "SIGBUS";
  }
  settle(a, () => {
    allocToSystem(d, a, vmf.vpn);
    pages(a);
  });
  return "ok";
}
