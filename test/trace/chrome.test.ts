/**
 * The trace and its export to the Chrome trace-event JSON format (what Perfetto and
 * chrome://tracing open): metadata names the process and threads, actions that took
 * modeled time are complete ("X") events, the rest instant ("i") events, counters "C"
 * events; times are modeled ns / 1000 (the format's microseconds). The trace buffer keeps
 * the newest events and counts what it dropped.
 */
import { describe, expect, it } from "vitest";
import { type ChromeTrace, type ChromeTraceEvent, type Machine, toChromeTrace, Trace } from "../../src/index.js";
import { smallMachine } from "../helpers.js";

const VA = 0x7f00_0000_0000;

/** allocPages, pgdAlloc, remapPfnRange, writeCr3, translate (on two CPUs) and invlpg. */
function activity(m: Machine): { translateNs: number; invlpgNs: number } {
  const pfn = m.phys.allocPages(0);
  const pt = m.pgdAlloc();
  pt.remapPfnRange(VA, pfn, 2 * 4096, { user: true });
  m.cpu(0).writeCr3(pt);
  let t0 = m.clock.now;
  m.cpu(0).translate(VA);
  const translateNs = m.clock.now - t0;
  m.cpu(1).writeCr3(pt);
  m.cpu(1).translate(VA + 4096);
  t0 = m.clock.now;
  m.cpu(0).invlpg(VA);
  const invlpgNs = m.clock.now - t0;
  return { translateNs, invlpgNs };
}

function ofPhase(t: ChromeTrace, ph: ChromeTraceEvent["ph"]): ChromeTraceEvent[] {
  return t.traceEvents.filter((e) => e.ph === ph);
}

describe("toChromeTrace", () => {
  it("is a JSON object with a traceEvents array, ns display unit, and survives JSON round trips", async () => {
    const m = await smallMachine();
    activity(m);
    const t = m.toChromeTrace();
    expect(Array.isArray(t.traceEvents)).toBe(true);
    expect(t.displayTimeUnit).toBe("ns");
    expect(t.otherData).toMatchObject({ seed: 1, modeledNs: m.clock.now, droppedEvents: 0 });
    const text = JSON.stringify(t);
    expect(JSON.parse(text)).toEqual(t);
    for (const e of t.traceEvents) {
      expect(typeof e.name).toBe("string");
      expect(["X", "i", "C", "M"]).toContain(e.ph);
      expect(Number.isFinite(e.ts)).toBe(true);
      expect(e.pid).toBe(1);
      expect(Number.isInteger(e.tid)).toBe(true);
    }
  });

  it("names the process and each thread that has events: 'cpu N' and 'machine'", async () => {
    const m = await smallMachine();
    activity(m);
    const t = m.toChromeTrace();
    const meta = ofPhase(t, "M");
    expect(meta.filter((e) => e.name === "process_name").map((e) => e.args)).toEqual([{ name: "dmalab" }]);
    const threads = new Map(meta.filter((e) => e.name === "thread_name").map((e) => [e.tid, e.args?.["name"]]));
    const used = new Set(t.traceEvents.filter((e) => e.ph === "X" || e.ph === "i").map((e) => e.tid));
    expect(new Set(threads.keys())).toEqual(used);
    expect([...threads.values()].sort()).toEqual(["cpu 0", "cpu 1", "machine"]);
    // CPU events are on their CPU's track; machine-wide ones on "machine".
    for (const e of t.traceEvents) {
      if (e.ph !== "X" && e.ph !== "i") continue;
      const cpu = (e.args as { cpu?: number }).cpu;
      expect(threads.get(e.tid), e.name).toBe(cpu === undefined ? "machine" : `cpu ${cpu}`);
    }
  });

  it("writes each recorded event once, in order: X with ts and dur = modeled ns / 1000, i with s: 't'", async () => {
    const m = await smallMachine();
    const { translateNs, invlpgNs } = activity(m);
    const recorded = m.trace.events();
    const t = m.toChromeTrace();
    const written = t.traceEvents.filter((e) => e.ph === "X" || e.ph === "i");
    expect(written.map((e) => e.name)).toEqual(recorded.map((e) => e.name));
    written.forEach((w, i) => {
      const r = recorded[i]!;
      expect(w.ts).toBe(r.ts / 1000);
      expect(w.cat).toBe(r.cat);
      expect(w.args).toEqual(r.args);
      if (r.dur === undefined) {
        expect(w.ph).toBe("i");
        expect(w.s).toBe("t");
        expect(w.dur).toBeUndefined();
      } else {
        expect(w.ph).toBe("X");
        expect(w.dur).toBe(r.dur / 1000);
        expect(w.s).toBeUndefined();
      }
    });
    const names = new Set(written.map((e) => `${e.name}:${e.ph}`));
    for (const n of ["phys.alloc:i", "pt.alloc:i", "pt.map:X", "cpu.cr3:i", "cpu.translate:X", "tlb.flush:X"]) {
      expect(names, n).toContain(n);
    }
    // The durations are the modeled time the clock was charged.
    const translate = written.find((e) => e.name === "cpu.translate")!;
    expect(translate.dur).toBe(translateNs / 1000);
    expect(translateNs).toBeGreaterThan(0);
    const flush = written.find((e) => e.name === "tlb.flush")!;
    expect(flush.dur).toBe(invlpgNs / 1000);
  });

  it("writes the counters as C events at the end of the trace", async () => {
    const m = await smallMachine();
    activity(m);
    const t = m.toChromeTrace();
    const counters = ofPhase(t, "C");
    expect(new Map(counters.map((c) => [c.name, c.args]))).toEqual(
      new Map([...m.trace.counters].map(([k, v]) => [k, { value: v }])),
    );
    expect(counters.map((c) => c.name)).toEqual(expect.arrayContaining(["phys.alloc", "pt.leaves_mapped", "tlb.flush"]));
    const end = Math.max(...t.traceEvents.map((e) => e.ts + (e.dur ?? 0)));
    for (const c of counters) expect(c.ts).toBe(end);
    expect(t.traceEvents.slice(-counters.length)).toEqual(counters);
  });

  it("keeps events in non-decreasing ts order", async () => {
    const m = await smallMachine();
    activity(m);
    activity(m);
    const ts = m.toChromeTrace().traceEvents.map((e) => e.ts);
    for (let i = 1; i < ts.length; i++) expect(ts[i]!).toBeGreaterThanOrEqual(ts[i - 1]!);
    expect(ts[ts.length - 1]).toBeGreaterThan(0);
  });

  it("of an empty trace is only the process name", () => {
    const t = toChromeTrace(new Trace());
    expect(t.traceEvents).toEqual([{ name: "process_name", ph: "M", ts: 0, pid: 1, tid: 0, args: { name: "dmalab" } }]);
    expect(t.otherData).toEqual({ droppedEvents: 0 });
  });
});

describe("the trace buffer", () => {
  it("starts empty after boot", async () => {
    const m = await smallMachine();
    expect(m.trace.events()).toEqual([]);
    expect(m.trace.dropped).toBe(0);
    expect(m.trace.counters.size).toBe(0);
  });

  it("keeps the newest maxEvents events, oldest first, and counts the dropped ones", async () => {
    const m = await smallMachine({ trace: { maxEvents: 5 } });
    const pfns = Array.from({ length: 8 }, () => m.phys.allocPages(0));
    const kept = m.trace.events();
    expect(kept.length).toBe(5);
    expect(kept.map((e) => (e.args as { pfn: number }).pfn)).toEqual(pfns.slice(3));
    expect(m.trace.dropped).toBe(3);
    expect(m.trace.counters.get("phys.alloc")).toBe(8); // counters count every event
    const t = m.toChromeTrace();
    expect(t.otherData["droppedEvents"]).toBe(3);
    expect(ofPhase(t, "i").map((e) => (e.args as { pfn: number }).pfn)).toEqual(pfns.slice(3));
    m.phys.allocPages(0);
    expect(m.trace.events().length).toBe(5);
    expect(m.trace.dropped).toBe(4);
  });

  it("with trace: false records no events (counters are still kept)", async () => {
    const m = await smallMachine({ trace: false });
    activity(m);
    expect(m.trace.enabled).toBe(false);
    expect(m.trace.events()).toEqual([]);
    expect(m.trace.dropped).toBe(0);
    const t = m.toChromeTrace();
    expect(t.traceEvents.filter((e) => e.ph === "X" || e.ph === "i")).toEqual([]);
    expect(ofPhase(t, "M").map((e) => e.name)).toEqual(["process_name"]);
    expect(m.trace.counters.get("phys.alloc")).toBe(1);
  });

  it("clear() empties the events, the dropped count and the counters", () => {
    const tr = new Trace({ maxEvents: 2 });
    for (let i = 0; i < 4; i++) tr.emit("pt.alloc", { pgd: i }, i);
    tr.count("x");
    expect(tr.dropped).toBe(2);
    tr.clear();
    expect(tr.events()).toEqual([]);
    expect(tr.dropped).toBe(0);
    expect(tr.counters.size).toBe(0);
    tr.emit("pt.alloc", { pgd: 9 }, 9);
    expect(tr.events().map((e) => e.args)).toEqual([{ pgd: 9 }]);
  });
});
