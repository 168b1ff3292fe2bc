/**
 * Access types and translation results: what a CPU (or, later, a device) asks a translation
 * for, and what it gets back: a physical address, or the fault the hardware would raise.
 * @module
 */
import * as H from "../abi/header.js";
import * as X from "../abi/x86.js";
import type { Address } from "../core/addr.js";

/** An access. Defaults: a user-mode data read. */
export interface Access {
  write?: boolean;
  /** Instruction fetch. */
  fetch?: boolean;
  /** CPL 3. Default true; false for a supervisor access. */
  user?: boolean;
  /** EFLAGS.AC: a supervisor access to user memory that SMAP lets through (stac). */
  ac?: boolean;
}

export function accessBits(a: Access): number {
  let bits = 0;
  if (a.write) bits |= H.ACC_WRITE;
  if (a.fetch) bits |= H.ACC_FETCH;
  if (a.user ?? true) bits |= H.ACC_USER;
  if (a.ac) bits |= H.ACC_AC;
  return bits;
}

/** A fault, as the hardware reports it. */
export interface Fault {
  /** #PF (page fault) or #GP (non-canonical address). */
  vector: "#PF" | "#GP";
  /** The error code the CPU pushes (#PF: P, W, U, RSVD, I, PK bits). */
  errorCode: number;
  /** #PF: a protection violation (true) or a not-present entry (false). */
  protection: boolean;
  write: boolean;
  user: boolean;
  /** A reserved bit was set in a paging entry. */
  reserved: boolean;
  fetch: boolean;
  /** A protection key denied the access. */
  pkey: boolean;
  /** CR2: the faulting linear address. */
  address: Address;
}

export type PageBytes = 4096 | 2097152 | 1073741824;
const PAGE_BYTES: PageBytes[] = [4096, 2097152, 1073741824];

export type Translation =
  | { ok: true; va: Address; pa: number; pageSize: PageBytes; tlbHit: boolean }
  | { ok: false; va: Address; fault: Fault };

/** decodeStatus - a translation result from a ring entry's status and physical address. */
export function decodeStatus(status: number, va: Address, pa: number): Translation {
  if (status >= 0 && status < 0x10000) {
    return { ok: true, va, pa, pageSize: PAGE_BYTES[status & 3]!, tlbHit: (status & H.XLATE_HIT) !== 0 };
  }
  const vector = status >>> 16;
  const ec = status & 0xffff;
  return {
    ok: false,
    va,
    fault: {
      vector: vector === X.X86_TRAP_GP ? "#GP" : "#PF",
      errorCode: ec,
      protection: (ec & X.PF_P) !== 0,
      write: (ec & X.PF_W) !== 0,
      user: (ec & X.PF_U) !== 0,
      reserved: (ec & X.PF_RSVD) !== 0,
      fetch: (ec & X.PF_I) !== 0,
      pkey: (ec & X.PF_PK) !== 0,
      address: va,
    },
  };
}
