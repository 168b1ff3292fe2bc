/**
 * CPU accesses of a process: translate each page on the process's CPU (a ring's worth of
 * pages per core call), take the page faults the translations raise as the CPU would (the
 * kernel handles them; the access retries), then copy bytes at the physical addresses.
 * @module
 */
import { DmaError } from "../errors.js";
import { type Address, addressOf, hex, splitAddress } from "../core/addr.js";
import type { Translation } from "../mmu/access.js";
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
  p.switchTo();
  let faulted = false;
  for (let at = 0; at < pages; at += cap) {
    const n = Math.min(cap, pages - at);
    const vas: Address[] = [];
    for (let i = 0; i < n; i++) vas.push(addressOf(vpn0 + at + i));
    const ts = cpu.translateMany(vas, { write, user: true });
    for (let i = 0; i < n; i++) {
      let t: Translation = ts[i]!;
      // A fault handled for an earlier page may have mapped this one too (a THP): the CPU
      // would retry the access, not take the stale fault.
      if (!t.ok && faulted) t = cpu.translate(addressOf(vpn0 + at + i), { write, user: true });
      for (let tries = 0; !t.ok; tries++) {
        const vpn = vpn0 + at + i;
        if (t.fault.vector === "#GP" || tries === MAX_FAULTS) {
          throw new DmaError("EFAULT", `SIGSEGV: pid ${p.pid} ${write ? "write" : "read"} at ${hex(addressOf(vpn))} (${t.fault.vector})`, { arg: "va" });
        }
        const r = p.fault(vpn, write);
        faulted = true;
        if (r !== "ok") {
          throw new DmaError("EFAULT", `${r}: pid ${p.pid} ${write ? "write" : "read"} at ${hex(addressOf(vpn))}`, { arg: "va" });
        }
        p.switchTo();
        t = cpu.translate(addressOf(vpn), { write, user: true });
      }
      if (touch) continue;
      // Bytes of this page that the access covers.
      const pageStart = (at + i) * 4096 - off0; // offset in the buffer of this page's byte 0
      const from = Math.max(0, pageStart);
      const to = Math.min(length, pageStart + 4096);
      const pfn = Math.floor(t.pa / 4096);
      const inPage = from - pageStart;
      const c = k.core;
      if (data) {
        const addr = k.check(c.x.frameBytes(pfn, 1), "write");
        c.u8.set(data.subarray(from, to), addr + inPage);
      } else {
        const addr = k.check(c.x.frameBytes(pfn, 0), "read");
        if (addr) out.set(c.u8.subarray(addr + inPage, addr + inPage + (to - from)), from);
      }
    }
  }
  return out;
}
