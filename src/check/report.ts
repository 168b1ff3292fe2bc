/**
 * What a checker reports, and where in the caller's code things happened.
 * @module
 */

/** A place in the user's code: the dmalab call, the process, the modeled time, the stack. */
export interface CallSite {
  /** The dmalab (kernel) function called: "pinUserPagesFast", "fs.writeback", ... */
  fn: string;
  pid: number | null;
  /** Modeled time of the call (ns). */
  time: number;
  /** The caller's frames, innermost first, without dmalab's own (empty when call sites are off). */
  stack: string[];
}

/** One broken rule. */
export interface CheckReport {
  /** The checker: "pinned-writeback", "lockdep", "coherency". */
  checker: string;
  /** The rule, as the design documents name it: "O1", "O2". */
  rule: string;
  message: string;
  /** Modeled time of the report (ns). */
  time: number;
  pfn: number;
  /** The file page, when the frame is one. */
  file: { path: string; index: number } | null;
  /** Processes involved: those that pinned the page, and those that map it. */
  pids: number[];
  /**
   * Where it happened, by role: the pin, the writeback, the unpin (pinned-writeback); the lock
   * held and the one taken, and where their order was seen before (lockdep L1); the sleep and
   * the non-block section (L2); the invalidation and the device mapping (coherency).
   */
  sites: Partial<Record<string, CallSite>>;
}

/** The directory of dmalab's own code (src/ or dist/), whose frames a call site leaves out. */
const OWN = new URL("..", import.meta.url).href;
const OWN_PATH = OWN.startsWith("file://") ? decodeURIComponent(new URL(OWN).pathname) : OWN;

/** An Error made here with a stack deep enough to reach the user's frames below dmalab's own. */
export function deepError(message: string): Error {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 64;
  try {
    return new Error(message);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** The frames of @e's stack outside dmalab and the test runner's machinery. */
export function userFrames(e: Error | null, max = 4): string[] {
  if (!e?.stack) return [];
  const out: string[] = [];
  for (const line of e.stack.split("\n").slice(1)) {
    const f = line.trim().replace(/^at /, "");
    if (f.includes(OWN) || f.includes(OWN_PATH) || f.includes("node_modules") || f.startsWith("node:")) continue;
    out.push(f);
    if (out.length === max) break;
  }
  return out;
}
