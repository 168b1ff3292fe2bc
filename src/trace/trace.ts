/**
 * The trace: a bounded record of typed events plus named counters. When full it keeps the
 * newest events (what led up to a problem) and counts what it dropped.
 * @module
 */
import type { TraceEvent, TraceEventArgs, TraceEventName } from "./events.js";

export interface TraceOptions {
  /** Record events at all (counters are always kept). Default true. */
  enabled?: boolean;
  /** Events kept before the oldest are dropped. Default 100,000. */
  maxEvents?: number;
}

export class Trace {
  enabled: boolean;
  readonly maxEvents: number;
  /** Events dropped because the buffer was full. */
  dropped = 0;
  readonly counters = new Map<string, number>();
  #buf: TraceEvent[] = [];
  #head = 0;

  constructor(options: TraceOptions = {}) {
    this.enabled = options.enabled ?? true;
    this.maxEvents = options.maxEvents ?? 100_000;
  }

  /** emit - record event @name at @ts (lasting @dur modeled ns, on track @tid). */
  emit<K extends TraceEventName>(
    name: K,
    args: TraceEventArgs[K],
    ts: number,
    dur?: number,
    tid = -1,
  ): void {
    if (!this.enabled) return;
    const ev: TraceEvent<K> = { name, cat: name.slice(0, name.indexOf(".")), ts, tid, args };
    if (dur !== undefined) ev.dur = dur;
    if (this.#buf.length < this.maxEvents) {
      this.#buf.push(ev as unknown as TraceEvent);
      return;
    }
    this.#buf[this.#head] = ev as unknown as TraceEvent;
    this.#head = (this.#head + 1) % this.maxEvents;
    this.dropped++;
  }

  /** count - add @delta to counter @name. */
  count(name: string, delta = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + delta);
  }

  /** The events kept, oldest first. */
  events(): TraceEvent[] {
    return [...this.#buf.slice(this.#head), ...this.#buf.slice(0, this.#head)];
  }

  clear(): void {
    this.#buf = [];
    this.#head = 0;
    this.dropped = 0;
    this.counters.clear();
  }
}
