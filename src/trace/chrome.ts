/**
 * Export to the Chrome trace-event JSON format (the "JSON Object Format" of the Trace Event
 * Format document), which Perfetto (ui.perfetto.dev) and chrome://tracing open.
 *
 * - Modeled ns become the format's microseconds (fractions kept).
 * - Each CPU is a thread of process 1 named "cpu N"; machine-wide events are on "machine".
 * - Counters are written once, at the end of the trace, as "C" events.
 * @module
 */
import type { Trace } from "./trace.js";

export interface ChromeTraceEvent {
  name: string;
  cat?: string;
  ph: "X" | "i" | "C" | "M";
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  s?: "t" | "p" | "g";
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: ChromeTraceEvent[];
  displayTimeUnit: "ns";
  otherData: Record<string, unknown>;
}

const MACHINE_TID = 1000;

/** toChromeTrace - the trace as a Chrome/Perfetto JSON object (JSON.stringify it to save). */
export function toChromeTrace(trace: Trace, otherData: Record<string, unknown> = {}): ChromeTrace {
  const out: ChromeTraceEvent[] = [];
  const tids = new Set<number>();
  let end = 0;
  for (const e of trace.events()) {
    const tid = e.tid < 0 ? MACHINE_TID : e.tid;
    tids.add(tid);
    const ev: ChromeTraceEvent = { name: e.name, cat: e.cat, ph: "i", ts: e.ts / 1000, pid: 1, tid, args: e.args as unknown as Record<string, unknown> };
    if (e.dur !== undefined) {
      ev.ph = "X";
      ev.dur = e.dur / 1000;
    } else {
      ev.s = "t";
    }
    out.push(ev);
    end = Math.max(end, e.ts + (e.dur ?? 0));
  }
  const meta: ChromeTraceEvent[] = [{ name: "process_name", ph: "M", ts: 0, pid: 1, tid: 0, args: { name: "dmalab" } }];
  for (const tid of [...tids].sort((a, b) => a - b)) {
    const name = tid === MACHINE_TID ? "machine" : `cpu ${tid}`;
    meta.push({ name: "thread_name", ph: "M", ts: 0, pid: 1, tid, args: { name } });
  }
  out.unshift(...meta);
  for (const [name, value] of trace.counters) {
    out.push({ name, ph: "C", ts: end / 1000, pid: 1, tid: MACHINE_TID, args: { value } });
  }
  return {
    traceEvents: out,
    displayTimeUnit: "ns",
    otherData: { ...otherData, droppedEvents: trace.dropped },
  };
}
