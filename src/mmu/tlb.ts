/**
 * Reading a CPU's TLB from the host, for inspection and tests (layout in src/abi/header.ts).
 * @module
 */
import * as H from "../abi/header.js";
import * as X from "../abi/x86.js";
import type { Core } from "../core/core.js";
import { type Address, addressOf } from "../core/addr.js";

export interface TlbEntry {
  set: number;
  way: number;
  /** First address the entry translates (linear: the canonical half's sign bits removed). */
  linear: Address;
  pageSize: 4096 | 2097152 | 1073741824;
  pcid: number;
  global: boolean;
  /** First physical frame of the page. */
  pfn: number;
  write: boolean;
  user: boolean;
  nx: boolean;
  dirty: boolean;
  stamp: number;
}

const SIZES = [4096, 2097152, 1073741824] as const;

export function readTlb(core: Core, cpu: number): TlbEntry[] {
  const sets = core.hdr(H.HDR_TLB_SETS);
  const ways = core.hdr(H.HDR_TLB_WAYS);
  const base = core.hdr(H.HDR_TLB_BASE) + cpu * core.hdr(H.HDR_TLB_STRIDE);
  const u32 = core.u32;
  const out: TlbEntry[] = [];
  for (let set = 0; set < sets; set++) {
    for (let way = 0; way < ways; way++) {
      const e = (base + (set * ways + way) * H.TLBE_SIZE) >>> 2;
      const tagLo = u32[e + H.TLBE_TAG / 4]!;
      if ((tagLo & H.TLB_TAG_V) === 0) continue;
      const tag = (BigInt(u32[e + 1]!) << 32n) | BigInt(tagLo);
      const dataLo = u32[e + H.TLBE_DATA / 4]!;
      const dataHi = u32[e + H.TLBE_DATA / 4 + 1]!;
      const size = Number((tag >> BigInt(H.TLB_TAG_SIZE_SHIFT)) & 3n);
      const vpnS = Number(tag >> BigInt(H.TLB_TAG_VPN_SHIFT));
      out.push({
        set,
        way,
        linear: addressOf(vpnS * 2 ** (9 * size)),
        pageSize: SIZES[size]!,
        pcid: Number((tag >> BigInt(H.TLB_TAG_PCID_SHIFT)) & 0xfffn),
        global: (tagLo & H.TLB_TAG_G) !== 0,
        pfn: (dataHi & 0xfffff) * 2 ** 20 + (dataLo >>> 12),
        write: (dataLo & X.PTE_RW) !== 0,
        user: (dataLo & X.PTE_US) !== 0,
        nx: dataHi >>> (X.PTE_BIT_NX - 32) === 1,
        dirty: (dataLo & X.PTE_D) !== 0,
        stamp: u32[e + H.TLBE_STAMP / 4 + 1]! * 4294967296 + u32[e + H.TLBE_STAMP / 4]!,
      });
    }
  }
  return out;
}
