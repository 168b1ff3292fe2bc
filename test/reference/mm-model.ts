/**
 * A reference model of processes' address spaces, written from the Linux rules rather than
 * from the emulator: per process a list of VMAs (start, end, rights, shared or private,
 * backing object and offset, anon_vma), per backing object (a file, or the shmem object
 * behind MAP_SHARED|MAP_ANONYMOUS) its pages, and per process page the private copy a write
 * made (copy-on-write after fork: a private page is shared by reference until one side
 * writes). It knows nothing of frames, page tables or TLBs: it says what a process reads,
 * which calls fail with which errno or signal, what /proc/pid/maps shows, and how many
 * anonymous pages a process maps.
 *
 * The rules it follows (mm/mmap.c, mm/vma.c, mm/mprotect.c, mm/madvise.c, mm/memory.c):
 * - mmap: MAP_FIXED replaces what is there; MAP_FIXED_NOREPLACE fails with EEXIST over a
 *   mapping; a free hint is used as is; otherwise the highest free range below mmap_base
 *   (top down), 2 MiB-aligned for private anonymous mappings of 2 MiB or more unless THP
 *   is "never". A private anonymous VMA's vm_pgoff is its first page number.
 * - A new or changed VMA merges with a neighbour that continues it: same rights and flags,
 *   same backing, file offsets continuing, and compatible anon_vmas (the same one, or one
 *   side has none and the other's anon_vma_chain is singular, i.e. not inherited by fork).
 *   When both neighbours could merge but their anon_vmas differ, the left one wins.
 * - anon_vma_prepare (on a VMA's first anonymous page) reuses an adjacent VMA's anon_vma
 *   when the two differ only in access rights and that VMA's chain is singular
 *   (find_mergeable_anon_vma); else it makes a new one. fork gives each child VMA whose
 *   parent had an anon_vma a new one chained to it (never singular).
 * - munmap splits and removes (no merge); mprotect changes only VMAs whose rights change
 *   (split, then merge); MADV_HUGEPAGE likewise with VM_HUGEPAGE; MADV_DONTNEED drops
 *   private copies (anonymous memory reads zeros again, private file pages the file);
 *   madvise of a range with unmapped pages is ENOMEM.
 * - Accesses go page by page: no VMA or no right -> SIGSEGV; a file page at or past the
 *   end of file -> SIGBUS; pages before the failing one are done.
 *
 * Not modeled: VM_ACCOUNT, mlock, swap, reclaim, truncation, pins.
 * @module
 */

export type MmKind = "anon" | "shmem" | "file";
export type ThpMode = "always" | "madvise" | "never";

export interface ModelProt {
  read: boolean;
  write: boolean;
  exec: boolean;
}

/** A call's failure: errno name, the argument, and for EFAULT the signal. */
export class ModelError extends Error {
  readonly code: string;
  readonly arg: string;
  readonly signal: string | null;
  constructor(code: string, arg: string, signal: string | null = null) {
    super(`${code}${signal ? ` (${signal})` : ""}: ${arg}`);
    this.code = code;
    this.arg = arg;
    this.signal = signal;
  }
}

/** A file or a shmem object: its size and the pages written to it. */
export class MemObject {
  readonly id: number;
  readonly kind: "file" | "shmem";
  readonly path: string | null;
  size: number;
  readonly pages = new Map<number, Uint8Array>();
  constructor(id: number, kind: "file" | "shmem", path: string | null, size: number) {
    this.id = id;
    this.kind = kind;
    this.path = path;
    this.size = size;
  }
  page(index: number): Uint8Array | undefined {
    return this.pages.get(index);
  }
  pageForWrite(index: number): Uint8Array {
    let b = this.pages.get(index);
    if (!b) {
      b = new Uint8Array(4096);
      this.pages.set(index, b);
    }
    return b;
  }
}

/** An anon_vma: its identity is what matters for merging. */
export interface AnonVmaRef {
  readonly id: number;
}

export interface VmaModel {
  start: number;
  end: number;
  prot: ModelProt;
  shared: boolean;
  hugepage: boolean;
  kind: MmKind;
  obj: MemObject | null;
  pgoff: number;
  anonVma: AnonVmaRef | null;
  /** Whether the VMA's anon_vma_chain is singular (false for VMAs inherited by fork). */
  singular: boolean;
}

/** A private page (an anonymous page, or the private copy of a file page). */
interface PageRec {
  /** Its bytes, or null for zeros. */
  bytes: Uint8Array | null;
  /** Processes mapping it (after fork, until one writes). */
  refs: number;
}

export interface ModelProc {
  readonly pid: number;
  alive: boolean;
  vmas: VmaModel[];
  priv: Map<number, PageRec>;
}

export interface ModelMapsEntry {
  start: number;
  end: number;
  perms: string;
  offset: number;
  kind: MmKind;
  path: string | null;
}

export interface ModelMmapRequest {
  addr?: number;
  length: number;
  prot: ModelProt;
  shared?: boolean;
  fixed?: boolean;
  fixedNoReplace?: boolean;
  hugepage?: boolean;
  /** A file path; without it, anonymous memory. */
  file?: string;
  offset?: number;
}

export interface MmModelConfig {
  /** TASK_SIZE_MAX in pages (the first page above user space). */
  taskSizePages: number;
  /** mmap_base in pages: new mappings go below it. */
  mmapBase: number;
  /** The lowest page a search may return. */
  lowLimit: number;
  thp: ThpMode;
}

const PAGE = 4096;
const ZERO = new Uint8Array(PAGE);

function protStr(v: VmaModel): string {
  return (v.prot.read ? "r" : "-") + (v.prot.write ? "w" : "-") + (v.prot.exec ? "x" : "-") + (v.shared ? "s" : "p");
}

function sameProt(a: ModelProt, b: ModelProt): boolean {
  return a.read === b.read && a.write === b.write && a.exec === b.exec;
}

export class MmModel {
  readonly cfg: MmModelConfig;
  readonly procs = new Map<number, ModelProc>();
  readonly files = new Map<string, MemObject>();
  #nextId = 1;
  #nextPid = 1;

  constructor(cfg: MmModelConfig) {
    this.cfg = cfg;
  }

  /* ---------- objects and processes ---------- */

  createFile(path: string, size: number): void {
    this.files.set(path, new MemObject(this.#nextId++, "file", path, size));
  }

  spawn(): number {
    const pid = this.#nextPid++;
    this.procs.set(pid, { pid, alive: true, vmas: [], priv: new Map() });
    return pid;
  }

  #proc(pid: number): ModelProc {
    const p = this.procs.get(pid);
    if (!p || !p.alive) throw new ModelError("ESRCH", "process");
    return p;
  }

  /* ---------- VMA bookkeeping ---------- */

  #find(p: ModelProc, vpn: number): VmaModel | null {
    for (const v of p.vmas) if (v.start <= vpn && vpn < v.end) return v;
    return null;
  }

  #overlapping(p: ModelProc, start: number, end: number): VmaModel[] {
    return p.vmas.filter((v) => v.start < end && v.end > start);
  }

  #insert(p: ModelProc, v: VmaModel): void {
    p.vmas.push(v);
    p.vmas.sort((a, b) => a.start - b.start);
  }

  #remove(p: ModelProc, v: VmaModel): void {
    p.vmas.splice(p.vmas.indexOf(v), 1);
  }

  /** split_vma: cut @v at @at; returns the upper piece (the lower one is @v). */
  #split(p: ModelProc, v: VmaModel, at: number): VmaModel {
    const upper: VmaModel = { ...v, prot: { ...v.prot }, start: at, pgoff: v.pgoff + (at - v.start) };
    v.end = at;
    this.#insert(p, upper);
    return upper;
  }

  /** Make [start, end) of @v a VMA of its own; returns it. */
  #isolate(p: ModelProc, v: VmaModel, start: number, end: number): VmaModel {
    let mid = v;
    if (start > mid.start) mid = this.#split(p, mid, start);
    if (end < mid.end) this.#split(p, mid, end);
    return mid;
  }

  /** is_mergeable_anon_vma for VMAs @a and @b. */
  static #anonCompatible(a: VmaModel, b: VmaModel): boolean {
    if (a.anonVma && b.anonVma) return a.anonVma === b.anonVma;
    if (!a.anonVma && !b.anonVma) return true;
    return a.anonVma ? a.singular : b.singular;
  }

  /** Whether @b continues @a (vma_merge's can_vma_merge_after/before). */
  static #continues(a: VmaModel, b: VmaModel): boolean {
    return (
      a.end === b.start &&
      sameProt(a.prot, b.prot) &&
      a.shared === b.shared &&
      a.hugepage === b.hugepage &&
      a.kind === b.kind &&
      a.obj === b.obj &&
      b.pgoff === a.pgoff + (a.end - a.start) &&
      MmModel.#anonCompatible(a, b)
    );
  }

  /** Join @b into @a (a before b). */
  #absorb(p: ModelProc, a: VmaModel, b: VmaModel): void {
    if (!a.anonVma && b.anonVma) {
      a.anonVma = b.anonVma;
      a.singular = b.singular;
    }
    a.end = b.end;
    this.#remove(p, b);
  }

  /** vma_merge around a new or changed @v: returns the VMA now holding its range. */
  #merge(p: ModelProc, v: VmaModel): VmaModel {
    const i = p.vmas.indexOf(v);
    const prev = i > 0 ? p.vmas[i - 1]! : null;
    const next = i + 1 < p.vmas.length ? p.vmas[i + 1]! : null;
    const left = !!prev && MmModel.#continues(prev, v);
    let right = !!next && MmModel.#continues(v, next);
    // Merging all three needs prev's and next's anon_vmas to agree too (are_anon_vmas_compatible).
    if (left && right && prev!.anonVma && next!.anonVma && prev!.anonVma !== next!.anonVma) right = false;
    let cur = v;
    if (left) {
      this.#absorb(p, prev!, cur);
      cur = prev!;
    }
    if (right) this.#absorb(p, cur, next!);
    return cur;
  }

  /** anon_vma_prepare: the VMA's anon_vma, reusing a compatible neighbour's. */
  #anonVmaPrepare(p: ModelProc, v: VmaModel): void {
    if (v.anonVma) return;
    const i = p.vmas.indexOf(v);
    const near = [p.vmas[i + 1], p.vmas[i - 1]];
    for (const n of near) {
      if (!n || !n.anonVma || !n.singular) continue;
      const [a, b] = n.start > v.start ? [v, n] : [n, v];
      const compatible =
        a.end === b.start && a.obj === b.obj && a.kind === b.kind && a.shared === b.shared &&
        a.hugepage === b.hugepage && b.pgoff === a.pgoff + (a.end - a.start);
      if (compatible) {
        v.anonVma = n.anonVma;
        v.singular = true;
        return;
      }
    }
    v.anonVma = { id: this.#nextId++ };
    v.singular = true;
  }

  /** Drop the private pages of [start, end). */
  #dropPrivate(p: ModelProc, start: number, end: number): void {
    if (end - start < p.priv.size) {
      for (let vpn = start; vpn < end; vpn++) this.#putPage(p, vpn);
    } else {
      for (const vpn of [...p.priv.keys()]) if (vpn >= start && vpn < end) this.#putPage(p, vpn);
    }
  }

  #putPage(p: ModelProc, vpn: number): void {
    const r = p.priv.get(vpn);
    if (!r) return;
    r.refs--;
    p.priv.delete(vpn);
  }

  #unmap(p: ModelProc, start: number, end: number): void {
    for (const v of this.#overlapping(p, start, end)) {
      const mid = this.#isolate(p, v, Math.max(start, v.start), Math.min(end, v.end));
      this.#remove(p, mid);
    }
    this.#dropPrivate(p, start, end);
  }

  /* ---------- system calls ---------- */

  #pages(len: number): number {
    if (!Number.isSafeInteger(len) || len <= 0 || len % PAGE) throw new ModelError("EINVAL", "length");
    return len / PAGE;
  }

  #page(addr: number, arg: string): number {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE) throw new ModelError("EINVAL", arg);
    return addr / PAGE;
  }

  /** get_unmapped_area, top down below mmap_base. */
  #search(p: ModelProc, pages: number, align: number): number | null {
    const { mmapBase, lowLimit } = this.cfg;
    const gaps: [number, number][] = [];
    let lo = lowLimit;
    for (const v of p.vmas) {
      gaps.push([lo, v.start]);
      lo = Math.max(lo, v.end);
    }
    gaps.push([lo, mmapBase]);
    for (let i = gaps.length - 1; i >= 0; i--) {
      const g0 = gaps[i]![0];
      const g1 = Math.min(gaps[i]![1], mmapBase);
      if (g1 - g0 < pages) continue;
      let s = g1 - pages;
      s -= s % align;
      if (s >= g0) return s;
    }
    return null;
  }

  mmap(pid: number, r: ModelMmapRequest): number {
    const p = this.#proc(pid);
    const pages = this.#pages(r.length);
    const offset = r.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE) throw new ModelError("EINVAL", "offset");
    let obj: MemObject | null = null;
    let kind: MmKind = "anon";
    if (r.file !== undefined) {
      obj = this.files.get(r.file) ?? null;
      if (!obj) throw new ModelError("ENOENT", "path");
      kind = "file";
    }
    const fixed = !!(r.fixed || r.fixedNoReplace);
    const hint = r.addr === undefined ? null : this.#page(r.addr, "addr");
    if (fixed && hint === null) throw new ModelError("EINVAL", "addr");
    let start: number;
    if (fixed) {
      start = hint!;
      if (start + pages > this.cfg.taskSizePages) throw new ModelError("EINVAL", "addr");
      if (this.#overlapping(p, start, start + pages).length) {
        if (r.fixedNoReplace) throw new ModelError("EEXIST", "addr");
        this.#unmap(p, start, start + pages);
      }
    } else {
      const free = (s: number) => s >= 16 && s + pages <= this.cfg.taskSizePages && this.#overlapping(p, s, s + pages).length === 0;
      const align = kind === "anon" && !r.shared && pages >= 512 && this.cfg.thp !== "never" ? 512 : 1;
      const found = hint !== null && hint > 0 && free(hint) ? hint : this.#search(p, pages, align);
      if (found === null) throw new ModelError("ENOMEM", "length");
      start = found;
    }
    if (r.shared && kind === "anon") {
      kind = "shmem";
      obj = new MemObject(this.#nextId++, "shmem", null, pages * PAGE);
    }
    const v: VmaModel = {
      start, end: start + pages, prot: { ...r.prot }, shared: !!r.shared, hugepage: !!r.hugepage, kind, obj,
      pgoff: kind === "anon" ? start : kind === "shmem" ? 0 : offset / PAGE, anonVma: null, singular: true,
    };
    this.#insert(p, v);
    this.#merge(p, v);
    return start * PAGE;
  }

  munmap(pid: number, addr: number, length: number): void {
    const p = this.#proc(pid);
    const start = this.#page(addr, "addr");
    const pages = this.#pages(length);
    if (start + pages > this.cfg.taskSizePages) throw new ModelError("EINVAL", "length");
    this.#unmap(p, start, start + pages);
  }

  /** Change the flags of [start, end) VMA by VMA (mprotect_fixup / madvise_update_vma). */
  #modify(p: ModelProc, start: number, end: number, change: (v: VmaModel) => boolean): void {
    let at = start;
    while (at < end) {
      const v = this.#find(p, at);
      if (!v) {
        at = this.#overlapping(p, at, end)[0]?.start ?? end;
        continue;
      }
      const e = Math.min(end, v.end);
      const probe: VmaModel = { ...v, prot: { ...v.prot } };
      if (!change(probe)) {
        at = e;
        continue;
      }
      const mid = this.#isolate(p, v, at, e);
      change(mid);
      this.#merge(p, mid);
      at = e;
    }
  }

  mprotect(pid: number, addr: number, length: number, prot: ModelProt): void {
    const p = this.#proc(pid);
    const start = this.#page(addr, "addr");
    const end = start + this.#pages(length);
    let at = start;
    for (const v of this.#overlapping(p, start, end)) {
      if (v.start > at) break;
      at = v.end;
    }
    if (at < end) throw new ModelError("ENOMEM", "addr");
    this.#modify(p, start, end, (v) => {
      if (sameProt(v.prot, prot)) return false;
      v.prot = { ...prot };
      return true;
    });
  }

  madvise(pid: number, addr: number, length: number, advice: "dontneed" | "hugepage"): void {
    const p = this.#proc(pid);
    const start = this.#page(addr, "addr");
    const end = start + this.#pages(length);
    // A range with unmapped pages: ENOMEM (Linux still advises the mapped part; the
    // emulator refuses the whole call, and the tests only ask this of unmapped ranges).
    let at = start;
    for (const v of this.#overlapping(p, start, end)) {
      if (v.start > at) break;
      at = v.end;
    }
    if (at < end) throw new ModelError("ENOMEM", "addr");
    if (advice === "dontneed") {
      this.#dropPrivate(p, start, end);
      return;
    }
    this.#modify(p, start, end, (v) => {
      if (v.hugepage) return false;
      v.hugepage = true;
      return true;
    });
  }

  fork(pid: number): number {
    const p = this.#proc(pid);
    const cpid = this.spawn();
    const c = this.procs.get(cpid)!;
    for (const v of p.vmas) {
      c.vmas.push({ ...v, prot: { ...v.prot }, anonVma: v.anonVma ? { id: this.#nextId++ } : null, singular: !v.anonVma });
    }
    for (const [vpn, r] of p.priv) {
      r.refs++;
      c.priv.set(vpn, r);
    }
    return cpid;
  }

  exit(pid: number): void {
    const p = this.procs.get(pid);
    if (!p || !p.alive) return;
    this.#dropPrivate(p, 0, Number.MAX_SAFE_INTEGER);
    p.vmas = [];
    p.alive = false;
  }

  /* ---------- accesses ---------- */

  /** The page a process sees at @vpn (read), or the signal. */
  #check(p: ModelProc, vpn: number, write: boolean): VmaModel {
    const v = this.#find(p, vpn);
    if (!v) throw new ModelError("EFAULT", "va", "SIGSEGV");
    const ok = write ? v.prot.write : v.prot.read || v.prot.write || v.prot.exec;
    if (!ok) throw new ModelError("EFAULT", "va", "SIGSEGV");
    if (v.obj) {
      const index = v.pgoff + (vpn - v.start);
      if (index >= Math.ceil(v.obj.size / PAGE)) throw new ModelError("EFAULT", "va", "SIGBUS");
    }
    return v;
  }

  #view(p: ModelProc, v: VmaModel, vpn: number): Uint8Array {
    const r = p.priv.get(vpn);
    if (r) return r.bytes ?? ZERO;
    if (!v.obj) return ZERO;
    return v.obj.page(v.pgoff + (vpn - v.start)) ?? ZERO;
  }

  /** The private page at @vpn, made (copy of the file page, or zeros) or unshared. */
  #privForWrite(p: ModelProc, v: VmaModel, vpn: number, withBytes: boolean): PageRec {
    let r = p.priv.get(vpn);
    if (r && r.refs === 1) {
      if (withBytes && !r.bytes) r.bytes = new Uint8Array(PAGE);
      return r;
    }
    this.#anonVmaPrepare(p, v);
    const src = r ? r.bytes : v.obj ? v.obj.page(v.pgoff + (vpn - v.start)) ?? null : null;
    if (r) r.refs--;
    r = { bytes: src ? src.slice() : withBytes ? new Uint8Array(PAGE) : null, refs: 1 };
    p.priv.set(vpn, r);
    return r;
  }

  /** The bytes a write to @vpn lands in. */
  #target(p: ModelProc, v: VmaModel, vpn: number): Uint8Array {
    if (v.shared) return v.obj!.pageForWrite(v.pgoff + (vpn - v.start));
    return this.#privForWrite(p, v, vpn, true).bytes!;
  }

  read(pid: number, va: number, length: number): Uint8Array {
    const p = this.#proc(pid);
    const out = new Uint8Array(length);
    for (let at = 0; at < length; ) {
      const vpn = Math.floor((va + at) / PAGE);
      const off = (va + at) % PAGE;
      const n = Math.min(PAGE - off, length - at);
      const v = this.#check(p, vpn, false);
      out.set(this.#view(p, v, vpn).subarray(off, off + n), at);
      at += n;
    }
    return out;
  }

  write(pid: number, va: number, data: Uint8Array): void {
    const p = this.#proc(pid);
    for (let at = 0; at < data.length; ) {
      const vpn = Math.floor((va + at) / PAGE);
      const off = (va + at) % PAGE;
      const n = Math.min(PAGE - off, data.length - at);
      const v = this.#check(p, vpn, true);
      this.#target(p, v, vpn).set(data.subarray(at, at + n), off);
      at += n;
    }
  }

  /** touch: one access per page of [va, va + length), a write making private pages. */
  touch(pid: number, va: number, length: number, mode: "r" | "w"): void {
    const p = this.#proc(pid);
    const start = this.#page(va, "va");
    const pages = this.#pages(length);
    for (let vpn = start; vpn < start + pages; vpn++) {
      const v = this.#check(p, vpn, mode === "w");
      if (mode === "w" && !v.shared) this.#privForWrite(p, v, vpn, false);
    }
  }

  /* ---------- files ---------- */

  fsRead(path: string, off: number, len: number): Uint8Array {
    const f = this.files.get(path);
    if (!f) throw new ModelError("ENOENT", "path");
    const end = Math.min(off + len, f.size);
    const out = new Uint8Array(Math.max(0, end - off));
    for (let at = off; at < end; ) {
      const index = Math.floor(at / PAGE);
      const o = at % PAGE;
      const n = Math.min(PAGE - o, end - at);
      out.set((f.page(index) ?? ZERO).subarray(o, o + n), at - off);
      at += n;
    }
    return out;
  }

  fsWrite(path: string, off: number, data: Uint8Array): void {
    const f = this.files.get(path);
    if (!f) throw new ModelError("ENOENT", "path");
    for (let at = 0; at < data.length; ) {
      const index = Math.floor((off + at) / PAGE);
      const o = (off + at) % PAGE;
      const n = Math.min(PAGE - o, data.length - at);
      f.pageForWrite(index).set(data.subarray(at, at + n), o);
      at += n;
    }
    f.size = Math.max(f.size, off + data.length);
  }

  /* ---------- what can be observed ---------- */

  maps(pid: number): ModelMapsEntry[] {
    const p = this.procs.get(pid);
    if (!p || !p.alive) return [];
    return p.vmas.map((v) => ({
      start: v.start * PAGE,
      end: v.end * PAGE,
      perms: protStr(v),
      offset: v.kind === "anon" ? 0 : v.pgoff * PAGE,
      kind: v.kind,
      path: v.kind === "file" ? v.obj!.path : null,
    }));
  }

  vmas(pid: number): readonly VmaModel[] {
    return this.procs.get(pid)?.vmas ?? [];
  }

  /** MM_ANONPAGES: the private pages a process maps (without THP). */
  rssAnon(pid: number): number {
    return this.procs.get(pid)?.priv.size ?? 0;
  }

  alive(pid: number): boolean {
    return this.procs.get(pid)?.alive ?? false;
  }
}
