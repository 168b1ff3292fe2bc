/**
 * The OOM killer and the OOM reaper (mm/oom_kill.c).
 *
 * - oomKill (out_of_memory): picks the process with the highest oom_badness (resident
 *   anonymous, file and shmem pages plus swap entries), kills it and reaps it. While an
 *   earlier victim is alive and not yet given up on (MMF_OOM_SKIP), nobody else is chosen:
 *   its memory is on the way back.
 * - oomReapTask (oom_reap_task_mm, __oom_reap_task_mm): frees a victim's memory without
 *   waiting for it to exit. It takes the mmap_lock for read with a trylock; if someone holds
 *   it for write the attempt fails and is retried (the reaper sleeps HZ/10 between tries and
 *   gives up after MAX_OOM_REAP_RETRIES, setting MMF_OOM_SKIP). Each call here is one
 *   attempt: the emulator has no reaper thread, so the caller retries.
 * - What is reaped: every VMA except VM_PFNMAP (and hugetlb, not modeled) that is anonymous
 *   or private (!VM_SHARED), zapped whole: present pages unmapped and freed with their last
 *   reference, swap entries dropped. Shared mappings are left to exit. VM_LOCKED VMAs are
 *   reaped too, as Linux does since "mm: drop oom code from exit_mmap" (2022); older
 *   kernels skipped them (can_madv_lru_vma), which `skipLocked` reproduces.
 * - Each VMA's invalidation is non-blockable (mmu_notifier_invalidate_range_start_nonblock,
 *   KERNEL-SPEC 4.3): a subscriber that would have to sleep answers -EAGAIN, and the reaper
 *   then skips that VMA, does not call range_end, and reports a retry.
 *
 * The mm's registered mmu notifiers (src/notifier) hear each VMA's non-blockable UNMAP;
 * OomReapOptions.invalidateRangeStart / invalidateRangeEnd add a stand-in subscriber. Every
 * range invalidated, each marked non-blockable, is returned for the checkers.
 * Not modeled: oom_score_adj, page-table pages in oom_badness, memory cgroups, the 2 s delay
 * before the reaper runs (OOM_REAPER_DELAY).
 * @module
 */
import { EAGAIN } from "../abi/errno.js";
import { mmuNotifierInvalidateRangeEnd, mmuNotifierInvalidateRangeStartNonblock } from "../notifier/mmu-notifier.js";
import { type MmuNotifierRange, mmuNotifierRangeInit } from "../notifier/range.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct } from "./mm.js";
import { zapVmaRange } from "./mmap.js";
import type { Process } from "./process.js";
import { flushTlbMmRange } from "./tlbflush.js";
import { VM_LOCKED, VM_PFNMAP, VM_SHARED } from "./vma.js";

/** MAX_OOM_REAP_RETRIES. */
export const MAX_OOM_REAP_RETRIES = 10;

export interface OomReapOptions {
  /**
   * An extra non-blockable start for one VMA, after the mm's registered notifiers accepted
   * it: 0, or -EAGAIN when it would have to sleep (a test's stand-in for a subscriber).
   */
  invalidateRangeStart?: (range: MmuNotifierRange) => number;
  /** mmu_notifier_invalidate_range_end, after the range was zapped (never after a refusal). */
  invalidateRangeEnd?: (range: MmuNotifierRange) => void;
  /** Skip VM_LOCKED VMAs, as kernels before 2022 did. Default false. */
  skipLocked?: boolean;
}

export interface OomReapResult {
  pid: number;
  /** The whole address space was reaped. */
  reaped: boolean;
  /** The attempt failed (mmap_lock held for write, or a notifier refused): try again. */
  retry: boolean;
  /** MAX_OOM_REAP_RETRIES attempts failed: the reaper gave up (MMF_OOM_SKIP). */
  gaveUp: boolean;
  /** Attempts made on this mm so far. */
  attempts: number;
  /** Present pages unmapped, pages freed, swap entries dropped. */
  pages: number;
  freed: number;
  swap: number;
  /** The ranges invalidated, all non-blockable (what the notifier layer was told). */
  ranges: MmuNotifierRange[];
  /** Ranges whose non-blockable start was refused (skipped; range_end not called). */
  refused: MmuNotifierRange[];
  /** Illegal notifier answers (non-blockable start returning neither 0 nor -EAGAIN). */
  warnings: string[];
}

/** Per-mm OOM state (mm->flags MMF_OOM_SKIP, the reaper's attempts). */
interface OomState {
  attempts: number;
  /** MMF_OOM_SKIP: reaped, or given up on; the OOM killer ignores this mm. */
  skip: boolean;
}

const states = new WeakMap<MmStruct, OomState>();
const victims = new WeakSet<Process>();

function stateOf(mm: MmStruct): OomState {
  let s = states.get(mm);
  if (!s) states.set(mm, (s = { attempts: 0, skip: false }));
  return s;
}

/** mmOomSkip - MMF_OOM_SKIP: the OOM killer no longer waits for or picks this mm. */
export function mmOomSkip(mm: MmStruct): boolean {
  return states.get(mm)?.skip ?? false;
}

/** isOomVictim - tsk_is_oom_victim: @p was killed by the OOM killer. */
export function isOomVictim(p: Process): boolean {
  return victims.has(p);
}

/** __oom_reap_task_mm: zap what can be zapped; false if a notifier refused a VMA. */
function reapMm(mm: MmStruct, o: OomReapOptions, out: OomReapResult): boolean {
  let ok = true;
  const totals = { anon: 0, file: 0, freed: 0, swap: 0 };
  for (const v of [...mm.vmas.all()]) {
    if (v.flags & VM_PFNMAP) continue;
    if (o.skipLocked && v.flags & VM_LOCKED) continue;
    if (v.kind !== "anon" && v.flags & VM_SHARED) continue;
    const range = mmuNotifierRangeInit("unmap", false, mm, v.start, v.end);
    // mmu_notifier_invalidate_range_start_nonblock: the registered notifiers, then the hook.
    let rc = mmuNotifierInvalidateRangeStartNonblock(range);
    if (rc === 0 && o.invalidateRangeStart) {
      rc = o.invalidateRangeStart(range);
      if (rc !== 0) mmuNotifierInvalidateRangeEnd(range); // the notifiers' bracket is closed
    }
    if (rc !== 0) {
      if (rc !== -EAGAIN) out.warnings.push(`non-blockable invalidate_range_start returned ${rc}, not 0 or -EAGAIN`);
      out.refused.push(range);
      ok = false;
      continue;
    }
    out.ranges.push(range);
    zapVmaRange(mm, v, v.start, v.end, totals);
    o.invalidateRangeEnd?.(range);
    mmuNotifierInvalidateRangeEnd(range);
    flushTlbMmRange(mm, v.start, v.end); // tlb_finish_mmu
  }
  out.pages += totals.anon + totals.file;
  out.freed += totals.freed;
  out.swap += totals.swap;
  return ok;
}

/**
 * oomReapTask - one attempt of the OOM reaper on @p's address space (oom_reap_task_mm).
 * Returns what was reaped; retry is set when the mmap_lock was write-held or a notifier
 * refused, gaveUp after MAX_OOM_REAP_RETRIES failed attempts. Emits "mm.oom_reap".
 */
export function oomReapTask(p: Process, o: OomReapOptions = {}): OomReapResult {
  const k = p.kernel;
  const mm = p.mm;
  const s = stateOf(mm);
  const out: OomReapResult = {
    pid: p.pid, reaped: false, retry: false, gaveUp: false, attempts: s.attempts,
    pages: 0, freed: 0, swap: 0, ranges: [], refused: [], warnings: [],
  };
  // exit_mmap sets MMF_OOM_SKIP; a reaped or given-up mm is not reaped again.
  if (p.exited || mm.dead || s.skip) return out;
  const ts = k.clock.now;
  s.attempts++;
  out.attempts = s.attempts;
  const h = mm.mmapLock.tryLock("read", "oom_reaper");
  if (!h) {
    // mmap_read_trylock failed (trace_skip_task_reaping).
    k.trace.count("mm.oom_reap_lock_busy");
    out.retry = true;
  } else {
    try {
      out.reaped = reapMm(mm, o, out);
      out.retry = !out.reaped;
    } finally {
      mm.mmapLock.unlock(h);
    }
  }
  if (out.reaped) s.skip = true;
  else if (s.attempts >= MAX_OOM_REAP_RETRIES) {
    // "oom_reaper: unable to reap pid": hide the mm from the OOM killer anyway.
    s.skip = true;
    out.retry = false;
    out.gaveUp = true;
    k.trace.count("mm.oom_reap_gave_up");
  }
  k.trace.count("mm.oom_reap_pages", out.pages);
  if (out.warnings.length) k.trace.count("mm.notifier_illegal_nonblock_error", out.warnings.length);
  k.trace.emit("mm.oom_reap", { pid: p.pid, pages: out.pages, nonblock: true }, ts, k.clock.now - ts);
  return out;
}

/** oom_badness without oom_score_adj: resident pages plus swap entries. */
export function oomBadness(p: Process): number {
  const r = p.mm.rss;
  return r.anon + r.file + r.shmem + r.swap;
}

export interface OomKillResult {
  /** The process killed, or null (none killable, or an earlier victim still pending). */
  victim: Process | null;
  points: number;
  /** An earlier victim whose memory is still on its way back (the selection aborted). */
  pending: Process | null;
  reap: OomReapResult | null;
}

/**
 * oomKill - out_of_memory: choose the process with the highest oom_badness (the first, in
 * pid order, among equals), mark it an OOM victim (SIGKILL) and reap it. The victim's task
 * is not ended here: the caller exits it, as the killed task would on its way out.
 */
export function oomKill(k: Kernel, o: OomReapOptions = {}): OomKillResult {
  let victim: Process | null = null;
  let points = -Infinity;
  for (const p of k.processes.values()) {
    if (p.exited || p.mm.dead) continue;
    if (victims.has(p)) {
      if (mmOomSkip(p.mm)) continue;
      // oom_evaluate_task: an earlier victim still releasing memory aborts the selection.
      k.trace.count("mm.oom_kill_pending");
      return { victim: null, points: 0, pending: p, reap: null };
    }
    const pts = oomBadness(p);
    if (pts > points) {
      victim = p;
      points = pts;
    }
  }
  if (!victim) return { victim: null, points: 0, pending: null, reap: null };
  victims.add(victim);
  k.trace.count("mm.oom_kill");
  return { victim, points, pending: null, reap: oomReapTask(victim, o) };
}
