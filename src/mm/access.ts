/**
 * CPU accesses of a process: translate each page on the process's CPU (a ring's worth of
 * pages per core call), take the page faults the translations raise as the CPU would (the
 * kernel handles them; the access retries), then copy bytes at the physical addresses.
 * @module
 */
import { DmaError } from "../errors.js";
import { type Address, addressOf, hex, splitAddress } from "../core/addr.js";
import { accessBits, decodeStatus } from "../mmu/access.js";
import type { Process } from "./process.js";

/** Faults one access may take before it is a livelock (a bug), not progress. */
const MAX_FAULTS = 4;

/**
 * accessCopy - read @length bytes at @va (data null) or write @data there; or, with
 * @touch, access @touch.pages pages from @va's page without copying bytes.
 */
export function accessCopy(
  p: Process,
  va: Address,
  length: number,
  data: Uint8Array | null,
  touch?: { pages: number; write: boolean },
): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) throw new DmaError("EINVAL", `length: ${length} is not a length`, { arg: "length" });
  const [vpn0, off0] = splitAddress(va, "va");
  const write = touch ? touch.write : data !== null;
  const pages = touch ? touch.pages : length === 0 ? 0 : Math.ceil((off0 + length) / 4096);
  const out = new Uint8Array(data ? 0 : length);
  const k = p.kernel;
  const cpu = p.cpu;
  const cap = cpu.ring.capacity;
  const ring = cpu.ring;
  const bits = accessBits({ write, user: true });
  const pas = new Float64Array(Math.min(cap, pages));
  // Copy the bytes of pages [at + i0, at + i1) at the physical addresses translated.
  const copy = (at: number, i0: number, i1: number): void => {
    if (touch) return;
    const c = k.core;
    for (let i = i0; i < i1; i++) {
      const pageStart = (at + i) * 4096 - off0; // offset in the buffer of this page's byte 0
      const from = Math.max(0, pageStart);
      const to = Math.min(length, pageStart + 4096);
      const pfn = Math.floor(pas[i]! / 4096);
      const inPage = from - pageStart;
      if (data) {
        const addr = k.check(c.x.frameBytes(pfn, 1), "write");
        c.u8.set(data.subarray(from, to), addr + inPage);
      } else {
        const addr = k.check(c.x.frameBytes(pfn, 0), "read");
        if (addr) out.set(c.u8.subarray(addr + inPage, addr + inPage + (to - from)), from);
      }
    }
  };
  p.switchTo();
  for (let at = 0; at < pages; at += cap) {
    const n = Math.min(cap, pages - at);
    // As a CPU: run the accesses in order up to the first fault, take the fault, retry
    // from the faulting access. The kernel's fault path may use this thread's ring too
    // (zaps and copies leave records there), so after a fault the accesses are put back
    // a window at a time, the window doubling while they go through.
    let done = 0; // accesses [0, done) translated
    let window = n;
    let tries = 0; // faults taken in a row on the same access
    let faultedAt = -1;
    let copied = 0; // pages [0, copied) copied
    while (done < n) {
      const w = Math.min(window, n - done);
      for (let i = done; i < done + w; i++) ring.setTranslate(i, addressOf(vpn0 + at + i), bits);
      const got = cpu.translateRing(w, { first: done, stopAtFault: true });
      const last = done + got - 1;
      for (let i = done; i <= last; i++) pas[i] = ring.pa(i);
      const st = ring.status(last);
      if (st >= 0 && st < 0x10000) {
        done += got;
        window *= 2;
        continue;
      }
      done = last; // everything before the fault went through
      // ... and stored its bytes, before the kernel runs (its fault path may reclaim or
      // migrate those pages).
      copy(at, copied, last);
      copied = last;
      const vpn = vpn0 + at + last;
      tries = last === faultedAt ? tries + 1 : 0;
      faultedAt = last;
      const t = decodeStatus(st, addressOf(vpn), 0);
      if (t.ok) throw new Error("unreachable: a fault status decodes as a fault");
      if (t.fault.vector === "#GP" || tries === MAX_FAULTS) {
        throw new DmaError("EFAULT", `SIGSEGV: pid ${p.pid} ${write ? "write" : "read"} at ${hex(addressOf(vpn))} (${t.fault.vector})`, { arg: "va" });
      }
      const r = p.fault(vpn, write);
      if (r !== "ok") {
        throw new DmaError("EFAULT", `${r}: pid ${p.pid} ${write ? "write" : "read"} at ${hex(addressOf(vpn))}`, { arg: "va" });
      }
      p.switchTo();
      window = 8; // the faulting access and the next few: one core call per fault when each page faults
    }
    copy(at, copied, n);
  }
  return out;
}
