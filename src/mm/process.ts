/**
 * A process: an mm running on a CPU, with the system calls that change its address space
 * (mmap, munmap, mprotect, madvise, fork, exit) and CPU accesses that go through the MMU:
 * read, write and touch translate on the process's CPU and take page faults as a CPU would,
 * retrying after each. A fault the kernel cannot handle is a SIGSEGV or SIGBUS, reported
 * as DmaError EFAULT (with the signal and address in the message).
 * @module
 */
import { DmaError, einval } from "../errors.js";
import { type Address, addressOf, pageCount, pageNumber, splitAddress } from "../core/addr.js";
import type { Cpu } from "../mmu/cpu.js";
import type { Inode } from "../fs/inode.js";
import { handleMmFault } from "./fault.js";
import { dupMmap, type ForkStats } from "./fork.js";
import type { Kernel } from "./kernel.js";
import { MmStruct } from "./mm.js";
import { doMmap, doMunmap, type MmapRequest, zapVmaRange } from "./mmap.js";
import { doMadviseDontneed, doMprotect, type Prot } from "./mprotect.js";
import { flushTlbMm } from "./tlbflush.js";
import { mergeAround, splitVma, vmaUnlink } from "./vma-ops.js";
import { VM_HUGEPAGE, vmaPermString, type Vma } from "./vma.js";
import { accessCopy } from "./access.js";
import { doMlock } from "./mlock.js";
import { mmuNotifierRelease, withInvalidation } from "../notifier/mmu-notifier.js";

export type ProtSpec = Partial<Prot> | string;

export interface MmapOptions {
  /** Address hint (or the address, with fixed). */
  addr?: Address;
  length: Address;
  /** {read, write, exec}, or a string like "rw" / "r-x". Default "rw". */
  prot?: ProtSpec;
  /** MAP_SHARED (default MAP_PRIVATE). */
  shared?: boolean;
  /** MAP_FIXED: at exactly addr, replacing what is there. */
  fixed?: boolean;
  /** MAP_FIXED_NOREPLACE: at exactly addr, EEXIST if something is there. */
  fixedNoReplace?: boolean;
  /** MAP_POPULATE: fault every page in now. */
  populate?: boolean;
  /** madvise(MADV_HUGEPAGE) at once (for THP mode "madvise"). */
  hugepage?: boolean;
  /** A file (path or inode) and the byte offset into it. Without one: anonymous memory. */
  file?: string | Inode;
  offset?: number;
  /** Device frames to map (VM_IO | VM_PFNMAP, no struct page), from this frame on. */
  devicePfn?: number;
}

export interface MapsEntry {
  start: Address;
  end: Address;
  perms: string;
  offset: number;
  kind: string;
  path: string | null;
}

export function parseProt(p: ProtSpec | undefined): Prot {
  if (p === undefined) return { read: true, write: true, exec: false };
  if (typeof p === "string") {
    if (!/^[rwx-]*$/.test(p)) throw einval("prot", `"${p}" is not made of r, w, x and -`);
    return { read: p.includes("r"), write: p.includes("w"), exec: p.includes("x") };
  }
  return { read: !!p.read, write: !!p.write, exec: !!p.exec };
}

export class Process {
  readonly pid: number;
  readonly mm: MmStruct;
  readonly kernel: Kernel;
  /** The CPU the process runs on. */
  cpu: Cpu;
  exited = false;

  constructor(kernel: Kernel, cpu: Cpu, mm?: MmStruct) {
    this.kernel = kernel;
    this.pid = kernel.pid();
    this.cpu = cpu;
    if (mm) this.mm = mm;
    else {
      const pgd = kernel.pgdAlloc();
      const base = kernel.taskSizePages() - 2 ** 23; // 32 GiB below the top, for a stack
      this.mm = new MmStruct(kernel, pgd, kernel.allocPcid(), this.pid, base);
    }
    kernel.processes.set(this.pid, this);
  }

  #alive(): void {
    if (this.exited) throw new DmaError("ESRCH", `process ${this.pid} has exited`, { arg: "process" });
  }

  /** Put this process's mm on its CPU (a context switch keeping the PCID's TLB entries). */
  switchTo(): void {
    const cr3 = this.cpu.cr3;
    if (cr3.pgd !== this.mm.pgd.pfn || cr3.pcid !== this.mm.pcid) {
      this.cpu.writeCr3(this.mm.pgd, { pcid: this.mm.pcid, noflush: true });
    }
    this.mm.cpumask.add(this.cpu.index);
  }

  #who(call: string): string {
    return `pid ${this.pid} ${call}`;
  }

  /** mmap - map memory; returns its address. */
  mmap(o: MmapOptions): Address {
    this.#alive();
    const k = this.kernel;
    const pages = pageCount(o.length, "length");
    const prot = parseProt(o.prot);
    let file: Inode | null = null;
    let kind: Vma["kind"] = "anon";
    const offset = o.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 4096) throw einval("offset", `${offset} is not a page-aligned offset`);
    if (o.devicePfn !== undefined) {
      if (!Number.isSafeInteger(o.devicePfn) || o.devicePfn < 0) throw einval("devicePfn", `${o.devicePfn} is not a frame`);
      kind = "device";
    } else if (o.file !== undefined) {
      file = typeof o.file === "string" ? k.fs.lookup(o.file) : o.file;
      kind = file.kind === "dax" ? "dax" : "file";
    } else if (o.shared) {
      file = k.fs.shmemInode(pages * 4096);
      kind = "shmem";
    }
    const fixed = !!(o.fixed || o.fixedNoReplace);
    const addr = o.addr === undefined ? null : pageNumber(o.addr, "addr");
    if (fixed && addr === null) throw einval("addr", "MAP_FIXED needs an address");
    const req: MmapRequest = {
      addr, pages, prot, shared: !!o.shared, fixed, noreplace: !!o.fixedNoReplace, hugepage: !!o.hugepage,
      kind, file, pgoff: offset / 4096, pfn: o.devicePfn ?? null,
    };
    const ts = k.clock.now;
    const start = this.mm.mmapLock.with("write", this.#who("mmap"), () => doMmap(this.mm, req, this.cpu.index));
    k.trace.emit("mm.mmap", { pid: this.pid, start: start * 4096, size: pages * 4096, prot: vmaPermString(this.mm.vmas.find(start)!.flags), kind }, ts);
    if (o.populate) this.touch(start * 4096, pages * 4096, prot.write ? "w" : "r");
    return addressOf(start);
  }

  /** munmap - unmap [addr, addr + length); unmapped holes are fine (as in Linux). */
  munmap(addr: Address, length: Address): void {
    this.#alive();
    const start = pageNumber(addr, "addr");
    const pages = pageCount(length, "length");
    if (start + pages > this.kernel.taskSizePages()) throw einval("length", "the range ends above the user address space");
    const ts = this.kernel.clock.now;
    const r = this.mm.mmapLock.with("write", this.#who("munmap"), () => doMunmap(this.mm, start, pages, this.cpu.index));
    this.kernel.trace.emit("mm.munmap", { pid: this.pid, start: start * 4096, size: pages * 4096, ...{ anon: r.anon, file: r.file, freed: r.freed } }, ts);
  }

  /** mprotect - change the rights of [addr, addr + length); ENOMEM if part is unmapped. */
  mprotect(addr: Address, length: Address, prot: ProtSpec): void {
    this.#alive();
    const start = pageNumber(addr, "addr");
    const pages = pageCount(length, "length");
    const p = parseProt(prot);
    this.mm.mmapLock.with("write", this.#who("mprotect"), () => doMprotect(this.mm, start, pages, p, this.cpu.index));
    this.kernel.trace.emit("mm.mprotect", { pid: this.pid, start: start * 4096, size: pages * 4096, prot: `${p.read ? "r" : "-"}${p.write ? "w" : "-"}${p.exec ? "x" : "-"}` }, this.kernel.clock.now);
  }

  /** madvise - "dontneed" drops the pages of [addr, addr + length); "hugepage" allows THP. */
  madvise(addr: Address, length: Address, advice: "dontneed" | "hugepage"): void {
    this.#alive();
    const start = pageNumber(addr, "addr");
    const pages = pageCount(length, "length");
    if (advice === "dontneed" || advice === "hugepage") {
      let at = start;
      for (const v of this.mm.vmas.overlapping(start, start + pages)) {
        if (v.start > at) break;
        at = v.end;
      }
      if (at < start + pages) throw new DmaError("ENOMEM", "madvise: part of the range is not mapped", { arg: "addr" });
    }
    if (advice === "dontneed") {
      this.mm.mmapLock.with("read", this.#who("madvise"), () => doMadviseDontneed(this.mm, start, pages, this.cpu.index));
    } else if (advice === "hugepage") {
      this.mm.mmapLock.with("write", this.#who("madvise"), () => {
        // madvise_update_vma: only the advised range gets VM_HUGEPAGE (split, then merge).
        const end = start + pages;
        for (const v of this.mm.vmas.overlapping(start, end)) {
          if (v.flags & VM_HUGEPAGE) continue;
          const s0 = Math.max(start, v.start);
          const e0 = Math.min(end, v.end);
          let mid = v;
          if (s0 > mid.start) mid = splitVma(this.mm, mid, s0)[1];
          if (e0 < mid.end) splitVma(this.mm, mid, e0);
          mid.flags |= VM_HUGEPAGE;
          mergeAround(this.mm, mid);
        }
      });
    } else {
      throw einval("advice", `unknown advice ${String(advice)}`);
    }
  }

  /** mlock - lock [addr, addr + length) in memory: VM_LOCKED, every page faulted in. */
  mlock(addr: Address, length: Address): void {
    this.#alive();
    doMlock(this.mm, addr, length, true, this.cpu.index, this.#who("mlock"));
  }

  /** munlock - undo mlock over [addr, addr + length): the pages may be reclaimed again. */
  munlock(addr: Address, length: Address): void {
    this.#alive();
    doMlock(this.mm, addr, length, false, this.cpu.index, this.#who("munlock"));
  }

  /** read - @length bytes at @va, as the CPU reads them (faulting pages in). */
  read(va: Address, length: number): Uint8Array {
    this.#alive();
    return accessCopy(this, va, length, null);
  }

  /** write - store @bytes at @va through the MMU (faulting, breaking COW as needed). */
  write(va: Address, bytes: Uint8Array): void {
    this.#alive();
    accessCopy(this, va, bytes.length, bytes);
  }

  /** touch - access every page of [va, va + length) once, reading or writing a byte. */
  touch(va: Address, length: Address, mode: "r" | "w"): void {
    this.#alive();
    const [vpn] = splitAddress(va, "va");
    const pages = pageCount(length, "length");
    accessCopy(this, va, 0, null, { pages: pages + (vpn * 4096 === Number(va) ? 0 : 1), write: mode === "w" });
  }

  /** fork - a child with a copy-on-write copy of this address space, on the next CPU. */
  fork(): Process {
    this.#alive();
    const k = this.kernel;
    const cpu = k.cpus[(this.cpu.index + 1) % k.cpus.length]!;
    const child = new Process(k, cpu);
    const ts = k.clock.now;
    const stats: ForkStats = this.mm.mmapLock.with("write", this.#who("fork"), () => dupMmap(this.mm, child.mm, this.cpu.index));
    child.mm.hasPinned = false;
    k.trace.emit("mm.fork", { pid: this.pid, child: child.pid, anon: stats.anon, file: stats.file, copied: stats.copied }, ts);
    k.trace.count("mm.forks");
    return child;
  }

  /** exit - tear the address space down and free it. */
  exit(): void {
    if (this.exited) return;
    const k = this.kernel;
    const mm = this.mm;
    mm.mmapLock.with("write", this.#who("exit"), () => {
      // exit_mmap: the notifiers' release first, then one UNMAP of everything (only the
      // interval notifiers are left to hear it).
      mmuNotifierRelease(mm);
      const vmas = [...mm.vmas.all()];
      withInvalidation(mm, "unmap", 0, k.taskSizePages(), () => {
        for (const v of vmas) zapVmaRange(mm, v, v.start, v.end);
      });
      for (const v of vmas) vmaUnlink(mm, v);
      // Drop the PCID's translations everywhere before the PCID is reused.
      flushTlbMm(mm, this.cpu.index);
      for (const cpu of k.cpus) {
        if (cpu.cr3.pgd === mm.pgd.pfn) cpu.writeCr3(null);
      }
      mm.pgd.free();
    });
    k.freePcid(mm.pcid);
    mm.dead = true;
    this.exited = true;
    k.processes.delete(this.pid);
    k.trace.emit("mm.exit", { pid: this.pid }, k.clock.now);
  }

  /** maps - /proc/pid/maps. */
  maps(): MapsEntry[] {
    return this.mm.vmas.all().map((v) => ({
      start: addressOf(v.start),
      end: addressOf(v.end),
      perms: vmaPermString(v.flags),
      offset: v.kind === "anon" ? 0 : v.pgoff * 4096,
      kind: v.kind,
      path: v.file?.path ?? null,
    }));
  }

  /** The fault a CPU access takes, handled (used by access.ts). */
  fault(vpn: number, write: boolean): "ok" | "SIGSEGV" | "SIGBUS" | "OOM" {
    return handleMmFault(this.mm, vpn, { write, cpu: this.cpu.index }, this.#who("fault"));
  }
}
