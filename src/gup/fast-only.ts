/**
 * GUP-fast alone, from any thread: get_user_pages_fast_only and pin_user_pages_fast_only
 * (the latter in the kernel from v5.9 to v6.5). They never fault and never take mmap_lock,
 * so they run where the kernel's own do (atomic context) and where dmalab's kernel is not:
 * in a Worker holding its own handle on the machine. There the address space is a
 * RemoteMm, made from what mm.share() gave the Worker.
 *
 * ```ts
 * // main thread
 * worker.postMessage({ machine: m.share(), mm: p.mm.share(), va });
 * // worker
 * const m = await attachMachine(data.machine);
 * const mm = remoteMm(m, data.mm);
 * const n = pinUserPagesFastOnly(mm, data.va, 512, { write: true }, pages);
 * unpinUserPages(m, pages, n);
 * ```
 * @module
 */
import * as G from "../abi/gup.js";
import { DmaError } from "../errors.js";
import { type Address, hex, splitAddress } from "../core/addr.js";
import type { Machine } from "../machine.js";
import type { Core } from "../core/core.js";
import type { Clock } from "../sim/clock.js";
import type { CostTable } from "../sim/cost.js";
import type { Trace } from "../trace/trace.js";
import { LINUX_PKRU } from "../mmu/cpu.js";
import { Process } from "../mm/process.js";
import { GUP_STOP_NAMES, type GupFlags, foll, follNames, isValidGupArgs } from "./flags.js";
import { getUserPagesFastOnly as fastOnlyOfProcess } from "./gup.js";
import { type PagesArray, gupModeledNs, gupRangeChunked, newGupRangeStats } from "./range.js";

/** An address space as a Worker sees it: its root table and its pid (plain data: it crosses postMessage). */
export interface SharedMm {
  pgd: number;
  pid: number;
  levels: number;
}

/** An address space on a machine handle of this thread. */
export interface RemoteMm {
  readonly machine: Machine;
  readonly pgd: number;
  readonly pid: number;
  /** The PKRU of the thread that walks (Linux's initial value unless set). */
  pkru: number;
  readonly taskSizePages: number;
}

/** remoteMm - the address space @shared (from mm.share()) on this thread's handle @m. */
export function remoteMm(m: Machine, shared: SharedMm): RemoteMm {
  if (!shared || !Number.isSafeInteger(shared.pgd) || !Number.isSafeInteger(shared.pid)) {
    throw new DmaError("EINVAL", "remoteMm: shared is not what mm.share() returns", { arg: "shared" });
  }
  return { machine: m, pgd: shared.pgd, pid: shared.pid, pkru: LINUX_PKRU, taskSizePages: shared.levels === 5 ? 2 ** 44 - 1 : 2 ** 35 - 1 };
}

const st = newGupRangeStats();

interface Env {
  core: Core;
  clock: Clock;
  costs: CostTable;
  trace: Trace;
}

function fastOnly(
  env: Env, pgd: number, pid: number, pkru: number, taskSize: number,
  fn: string, start: Address, nrPages: number, flags: number, pages: PagesArray,
): number {
  if (!Number.isSafeInteger(nrPages) || nrPages < 0) throw new DmaError("EINVAL", `${fn}: nrPages: ${nrPages} is not a page count`, { arg: "nrPages" });
  if (!(pages instanceof Float64Array) && !Array.isArray(pages)) throw new DmaError("EINVAL", `${fn}: pages must be a Float64Array or an array`, { arg: "pages" });
  if (pages.length < nrPages) throw new DmaError("EINVAL", `${fn}: pages holds ${pages.length} entries, fewer than nrPages`, { arg: "pages" });
  const [vpn] = splitAddress(start, "start");
  if (vpn + nrPages > taskSize) throw new DmaError("EFAULT", `${fn}: the range ends above the user address space`, { arg: "start" });
  const ts = env.clock.now;
  env.clock.advance(env.costs.gupCall.ns);
  if (nrPages === 0) return 0;
  gupRangeChunked(env.core, pgd, vpn, nrPages, flags & ~G.FOLL_FAST_ONLY, pkru, pages, 0, st);
  env.clock.advance(gupModeledNs(env.costs, st));
  if (env.trace.enabled) {
    env.trace.emit(
      "gup.call",
      { pid, fn, va: hex(start), nr: nrPages, got: st.taken, flags: follNames(flags), fast: st.taken, stop: GUP_STOP_NAMES[st.stop] ?? "?", faults: 0 },
      ts, env.clock.now - ts, env.core.thread,
    );
  }
  return st.taken;
}

function remoteEnv(mm: RemoteMm): Env {
  const m = mm.machine;
  return { core: m.core, clock: m.clock, costs: m.costs, trace: m.trace };
}

/**
 * getUserPagesFastOnly - get_user_pages_fast_only: a reference on each page GUP-fast can
 * take, from @start, stopping at the first it cannot; never faults. For a Process or a RemoteMm.
 */
export function getUserPagesFastOnly(mm: Process | RemoteMm, start: Address, nrPages: number, gupFlags: GupFlags | number, pages: PagesArray): number {
  if (mm instanceof Process) return fastOnlyOfProcess(mm, start, nrPages, gupFlags, pages);
  const f = isValidGupArgs(foll(gupFlags), G.FOLL_GET | G.FOLL_FAST_ONLY, pages !== undefined);
  if (f === null || f & ~G.FOLL_FAST_ALLOWED) throw new DmaError("EINVAL", `getUserPagesFastOnly: invalid gupFlags ${follNames(foll(gupFlags))}`, { arg: "gupFlags" });
  return fastOnly(remoteEnv(mm), mm.pgd, mm.pid, mm.pkru, mm.taskSizePages, "getUserPagesFastOnly", start, nrPages, f, pages);
}

/**
 * pinUserPagesFastOnly - pin_user_pages_fast_only: pin each page GUP-fast can take, from
 * @start, stopping at the first it cannot; never faults. For a Process or a RemoteMm.
 */
export function pinUserPagesFastOnly(mm: Process | RemoteMm, start: Address, nrPages: number, gupFlags: GupFlags | number, pages: PagesArray): number {
  const f = isValidGupArgs(foll(gupFlags), G.FOLL_PIN | G.FOLL_FAST_ONLY, pages !== undefined);
  if (f === null || f & ~G.FOLL_FAST_ALLOWED) throw new DmaError("EINVAL", `pinUserPagesFastOnly: invalid gupFlags ${follNames(foll(gupFlags))}`, { arg: "gupFlags" });
  if (!(mm instanceof Process)) {
    return fastOnly(remoteEnv(mm), mm.pgd, mm.pid, mm.pkru, mm.taskSizePages, "pinUserPagesFastOnly", start, nrPages, f, pages);
  }
  if (mm.exited) throw new DmaError("ESRCH", `pinUserPagesFastOnly: process ${mm.pid} has exited`, { arg: "process" });
  const k = mm.kernel;
  const n = fastOnly(k, mm.mm.pgd.pfn, mm.pid, mm.cpu.pkru, k.taskSizePages(), "pinUserPagesFastOnly", start, nrPages, f, pages);
  if (n > 0) k.checkers.pinned(mm, "pinUserPagesFastOnly", splitAddress(start, "start")[0], pages, n, st.hugePages === n);
  return n;
}
