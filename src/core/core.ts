/**
 * One thread's handle on the core: its exports, typed views over the shared memory
 * (rebuilt when the backing pool grows the memory), its ring, and the errno check.
 * @module
 */
import * as H from "../abi/header.js";
import type { CoreExports } from "./loader.js";
import { DmaError } from "../errors.js";
import { coreError } from "./reasons.js";

export class Core {
  readonly #x: CoreExports;
  readonly memory: WebAssembly.Memory;
  #detached = false;
  /** This instance's ring index (its thread slot). */
  thread = -1;
  /** Byte address of this thread's ring. */
  ring = 0;
  #buf: ArrayBufferLike | undefined;
  #u8!: Uint8Array;
  #u32!: Uint32Array;
  #i32!: Int32Array;
  #f64!: Float64Array;

  constructor(x: CoreExports, memory: WebAssembly.Memory) {
    this.#x = x;
    this.memory = memory;
  }

  /** The core's exports; EBADF once this handle has detached. */
  get x(): CoreExports {
    if (this.#detached) throw new DmaError("EBADF", "this machine handle is detached", { arg: "machine" });
    return this.#x;
  }

  /** detach - give the ring back; every later call through this handle fails. */
  detach(): void {
    if (this.#detached) return;
    this.#x.coreDetach();
    this.#detached = true;
    this.thread = -1;
    this.ring = 0;
  }

  /** HDR_POOL_SLOTS when the views were made: the memory grows only with the pool. */
  #slots = -1;

  /**
   * The views over the memory, remade when it has grown. Reading memory.buffer of a shared
   * memory is slow (a fifth of a GUP call's time when done per access), so the check is the
   * pool's slot count in the header, which the core bumps after every memory.grow().
   */
  #views(): void {
    if (this.#buf !== undefined && this.#u32[(H.HDR_ADDR + H.HDR_POOL_SLOTS) >>> 2] === this.#slots) return;
    const buf = this.memory.buffer;
    if (buf !== this.#buf || buf.byteLength !== this.#u8.byteLength) this.#make(buf);
    this.#slots = this.#u32[(H.HDR_ADDR + H.HDR_POOL_SLOTS) >>> 2]!;
  }

  /** invalidateViews - the host grew the memory itself: remake the views on next use. */
  invalidateViews(): void {
    this.#buf = undefined;
  }

  /** Every buffer object views were made on: a shared memory hands out a new one each time it grows. */
  readonly #bufs = new WeakSet<ArrayBufferLike>();

  #kheap: [number, number] | undefined;

  /**
   * kheapAddr - the byte address of entries [@off, @off + @n) of @a when they lie in the
   * kernel heap (src/mm/kvmalloc.ts), where the core may write them in place; else 0.
   */
  kheapAddr(a: Float64Array | number[], off: number, n: number): number {
    if (!(a instanceof Float64Array)) return 0;
    const b = a.buffer;
    if (b !== this.#buf && !this.#bufs.has(b)) return 0;
    this.#kheap ??= [this.hdr(H.HDR_KHEAP_BASE), this.hdr(H.HDR_KHEAP_BASE) + this.hdr(H.HDR_KHEAP_BYTES)];
    const at = a.byteOffset + off * 8;
    return at >= this.#kheap[0] && at + n * 8 <= this.#kheap[1] && off + n <= a.length ? at : 0;
  }

  #make(buf: ArrayBufferLike): void {
    this.#bufs.add(buf);
    this.#buf = buf;
    this.#u8 = new Uint8Array(buf);
    this.#u32 = new Uint32Array(buf);
    this.#i32 = new Int32Array(buf);
    this.#f64 = new Float64Array(buf);
  }

  get u8(): Uint8Array {
    this.#views();
    return this.#u8;
  }
  get u32(): Uint32Array {
    this.#views();
    return this.#u32;
  }
  get i32(): Int32Array {
    this.#views();
    return this.#i32;
  }
  get f64(): Float64Array {
    this.#views();
    return this.#f64;
  }
  /** The f64 view, right after another view getter checked the memory has not grown. */
  get f64Fresh(): Float64Array {
    return this.#f64;
  }

  /** A u32 field of the header. */
  hdr(off: number): number {
    return this.u32[(H.HDR_ADDR + off) >>> 2]!;
  }

  setHdr(off: number, v: number): void {
    this.u32[(H.HDR_ADDR + off) >>> 2] = v;
  }

  /** check - @rc if it is not negative, else throw the DmaError the core's reason names. */
  check(rc: number, fn: string): number {
    if (rc >= 0) return rc;
    throw coreError(fn, rc, this.x.coreReason(), this.x.coreReasonArg());
  }

  /** Claim a ring for this instance. */
  attach(): void {
    this.thread = this.check(this.x.coreAttach(), "attach");
    this.ring = this.hdr(H.HDR_RINGS_BASE) + this.thread * this.hdr(H.HDR_RING_STRIDE);
  }

  #gupMax = 0;
  /** The most pages one gupRange / unpinPages call handles (the ring's u32 slots). */
  get gupMax(): number {
    if (this.#gupMax === 0) this.#gupMax = this.x.gupMaxPages();
    return this.#gupMax;
  }

  /**
   * The most pages one checked unpinPages call (UNPIN_CHECK, UNPIN_DIRTY) takes in O(n): half
   * the ring's entries, leaving the rest for its table of per-folio totals.
   */
  get unpinCheckedMax(): number {
    return Math.max(1, this.hdr(H.HDR_RING_ENTRIES) >>> 1);
  }

  /** A u32 result register of this thread's ring. */
  reg32(off: number): number {
    return this.u32[(this.ring + off) >>> 2]!;
  }

  /** An f64 result register of this thread's ring. */
  regF64(off: number): number {
    return this.f64[(this.ring + off) >>> 3]!;
  }

  /** Byte address of ring entry @i; EBADF once detached (the ring is someone else's). */
  entry(i: number): number {
    if (this.#detached) throw new DmaError("EBADF", "this machine handle is detached", { arg: "machine" });
    return this.ring + H.RING_ENTRY0 + i * H.RENT_SIZE;
  }
}
