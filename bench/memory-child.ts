/**
 * Run by bench/memory.bench.ts in a fresh process: argv[2] = memory size, argv[3] = "touch"
 * to allocate (and so write the record of) every frame once. Reports the resident bytes of
 * the core's shared memory itself, read from /proc/self/smaps (the read-write mapping of
 * exactly the memory's size inside V8's reservation), and the process's RSS growth.
 */
import { readFileSync } from "node:fs";
import * as F from "../src/abi/frame.js";
import { createMachine } from "../src/index.js";

/** Resident bytes of the anonymous read-write mapping of exactly @bytes, or NaN. */
function mappingResident(bytes: number): number {
  let text: string;
  try {
    text = readFileSync("/proc/self/smaps", "utf8");
  } catch {
    return NaN;
  }
  for (const m of text.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const size = Number(/\nSize:\s+(\d+) kB/.exec(m)?.[1] ?? 0) * 1024;
    if (size === bytes && / rw-p /.test(m.split("\n")[0]!)) {
      return Number(/\nRss:\s+(\d+) kB/.exec(m)?.[1] ?? NaN) * 1024;
    }
  }
  return NaN;
}

const size = process.argv[2] ?? "64GiB";
const touch = process.argv[3] === "touch";
globalThis.gc?.();
const rss0 = process.memoryUsage().rss;
const m = await createMachine({ memory: { normal: size, movable: 0, cma: 0 }, cpus: 1, trace: false });
globalThis.gc?.();
const rssCreated = process.memoryUsage().rss - rss0;
const residentCreated = mappingResident(m.memory.buffer.byteLength);
let residentTouched = residentCreated;
if (touch) {
  // Allocate every free frame at order 0, then free them: every record has been written.
  const pfns: number[] = [];
  for (let n = m.phys.nrFreePages(); n > 0; n--) pfns.push(m.phys.allocPages(0));
  residentTouched = mappingResident(m.memory.buffer.byteLength);
  for (const p of pfns) m.phys.freePages(p, 0);
}
console.log(
  JSON.stringify({
    frames: m.config.nrFrames,
    recordBytes: F.FRAME_SIZE,
    wasmBytes: m.memory.buffer.byteLength,
    rssCreated,
    residentCreated,
    residentTouched,
  }),
);
