/**
 * Reference model of the core's unpinPages (assembly/mm/unpin.ts): runs of entries in one
 * folio, the one-pass release with rollback, the checked release for make_dirty and
 * UNPIN_CHECK, the same errors with the same entry index.
 */
import * as E from "../../src/abi/errno.js";
import * as F from "../../src/abi/frame.js";
import * as G from "../../src/abi/gup.js";
import * as R from "../../src/abi/reason.js";
import { fail } from "./buddy.js";
import type { RefGup } from "./gup.js";

const NONE = 0xffffffff;

export interface UnpinResult {
  freed: number;
  folios: number;
  dirtied: number;
}

/** unpinPages over @entries (the f64 values the host wrote to the ring), as the core's export. */
export function refUnpinPages(g: RefGup, entries: number[], flags: number, ringEntries: number): UnpinResult {
  const p = g.p;
  const n = entries.length;
  if (flags & ~(G.UNPIN_DIRTY | G.UNPIN_PUT | G.UNPIN_CHECK)) fail(E.EINVAL, R.R_FLAGS, flags);
  if (n > Math.floor((ringEntries * 24) / 8)) fail(E.EINVAL, R.R_COUNT, n);
  const ring = entries.slice();
  const entry = (i: number): number => {
    const v = ring[i]!;
    return v >= 0 && v < 2 ** 32 && v === Math.floor(v) ? v : NONE;
  };
  const headAt = (i: number): number => {
    const e = entry(i);
    return e < p.nrFrames ? g.head(e) : NONE;
  };
  const order = (h: number): number => {
    const f = p.flags[h]!;
    return f & F.PG_head ? (f >>> F.FLAGS_ORDER_SHIFT) & F.FLAGS_ORDER_MASK : 0;
  };
  // The runs (gup_folio_next), as the core's nextRun finds them.
  const runs: { start: number; len: number; head: number }[] = [];
  let nextHead = n > 0 ? headAt(0) : NONE;
  for (let start = 0; start < n; ) {
    const head = nextHead;
    let k = 1;
    nextHead = NONE;
    const end = head === NONE ? 0 : head + 2 ** order(head);
    let prev = entry(start);
    while (start + k < n) {
      const e = entry(start + k);
      if (e === ((prev + 1) >>> 0) && e < end && prev !== NONE) {
        prev = e;
        k++;
        continue;
      }
      prev = e;
      const h = e < p.nrFrames ? g.head(e) : NONE;
      if (h !== head || h === NONE) {
        nextHead = h;
        break;
      }
      k++;
    }
    runs.push({ start, len: k, head });
    start += k;
  }
  const pin = (flags & G.UNPIN_PUT) === 0;
  const zero = g.zeroPfn;
  const pincount = (h: number): number => p.index[h + 1]! | 0;
  const holds = (h: number, k: number): boolean => {
    if (pin && h === zero) return true;
    const ref = p.refcount[h]!;
    if (!pin) return ref >= k;
    if (p.flags[h]! & F.PG_head) return pincount(h) >= k && ref >= k;
    return ref >= k * F.GUP_PIN_COUNTING_BIAS;
  };
  const notRam = (h: number): boolean => h === NONE || !p.zoneOf(h);

  if ((flags & (G.UNPIN_DIRTY | G.UNPIN_CHECK)) === 0) {
    // releaseRuns: one pass; on a refusal, the runs before it get theirs back.
    let released = 0;
    let ops = 0;
    const pending: number[] = [];
    const undo = (upto: number, reason: number): never => {
      for (const r of runs) {
        if (r.start >= upto) break;
        if (pin && r.head === zero) continue;
        if (!pin) p.refcount[r.head] = p.refcount[r.head]! + r.len;
        else if (p.flags[r.head]! & F.PG_head) {
          p.index[r.head + 1] = p.index[r.head + 1]! + r.len;
          p.refcount[r.head] = p.refcount[r.head]! + r.len;
        } else p.refcount[r.head] = p.refcount[r.head]! + r.len * F.GUP_PIN_COUNTING_BIAS;
      }
      const h = headAt(upto);
      return fail(E.EINVAL, notRam(h) ? R.R_PFN_NOT_RAM : reason, upto);
    };
    /** Subtract @k from the counter @a[@i] unless that takes it below zero: the new value or -1. */
    const sub = (a: Int32Array | Uint32Array, i: number, k: number): number => {
      const old = a[i]! | 0;
      if (old < k) return -1;
      a[i] = old - k;
      return old - k;
    };
    for (const r of runs) {
      const h = r.head;
      if (h === NONE) undo(r.start, R.R_PFN_NOT_RAM);
      if (pin && h === zero) continue;
      const k = r.len;
      let left: number;
      if (!pin) {
        left = sub(p.refcount, h, k);
      } else if (p.flags[h]! & F.PG_head) {
        if (sub(p.index, h + 1, k) < 0) undo(r.start, R.R_NOT_PINNED);
        left = sub(p.refcount, h, k);
        if (left < 0) {
          p.index[h + 1] = p.index[h + 1]! + k;
          undo(r.start, R.R_NOT_PINNED);
        }
        released += k;
      } else {
        left = sub(p.refcount, h, k * F.GUP_PIN_COUNTING_BIAS);
        if (left >= 0) released += k;
      }
      if (left < 0) undo(r.start, R.R_NOT_PINNED);
      if (left === 0) pending.push(h);
      ops++;
    }
    for (const h of pending) p.freeBlock(h, order(h));
    g.pinReleased += released;
    return { freed: pending.length, folios: ops, dirtied: 0 };
  }
  // Checked first, then released.
  let prev = -1;
  let ascending = true;
  for (const r of runs) {
    if (r.head === NONE) fail(E.EINVAL, R.R_PFN_NOT_RAM, r.start);
    if (r.head <= prev) ascending = false;
    prev = r.head;
    if (!holds(r.head, r.len)) fail(E.EINVAL, notRam(r.head) ? R.R_PFN_NOT_RAM : R.R_NOT_PINNED, r.start);
  }
  if (!ascending) {
    for (let i = 0; i < n; ) {
      const head = headAt(i);
      let k = 1;
      while (i + k < n && headAt(i + k) === head) k++;
      let total = k;
      for (let j = i + k; j < n; j++) if (headAt(j) === head) total++;
      if (!holds(head, total)) fail(E.EINVAL, R.R_NOT_PINNED, i);
      i += k;
    }
  }
  if (flags & G.UNPIN_CHECK) return { freed: 0, folios: 0, dirtied: 0 };
  let freed = 0;
  let ops = 0;
  let dirtied = 0;
  for (const r of runs) {
    if (flags & G.UNPIN_DIRTY && !(p.flags[r.head]! & F.PG_dirty) && !(pin && r.head === zero)) {
      p.flags[r.head] = p.flags[r.head]! | F.PG_dirty;
      dirtied++;
    }
    if (g.putFolio(r.head, r.len, pin ? G.FOLL_PIN : 0)) freed++;
    ops++;
  }
  g.pinReleased += g.relPending;
  g.relPending = 0;
  return { freed, folios: ops, dirtied };
}
