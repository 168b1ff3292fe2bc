/**
 * memory: host bytes per emulated 4 KiB frame (target <= 24), and the cost of creating a
 * 64 GiB emulated machine (target <= 512 MiB), each measured in a fresh process.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { BenchReport } from "./lib.js";

interface Child {
  frames: number;
  recordBytes: number;
  wasmBytes: number;
  rssCreated: number;
  residentCreated: number;
  residentTouched: number;
}

function child(size: string, touch: boolean): Child {
  const script = fileURLToPath(new URL("./memory-child.ts", import.meta.url));
  const out = execFileSync(process.execPath, ["--expose-gc", "--import", "tsx", script, size, touch ? "touch" : ""], {
    encoding: "utf8",
  });
  return JSON.parse(out.trim().split("\n").pop()!) as Child;
}

const MiB = 2 ** 20;

export async function run(): Promise<BenchReport> {
  const touched = child("1GiB", true);
  const big = child("64GiB", false);
  // The frame records' share of the memory: what touching every record added.
  const perFrame = (touched.residentTouched - touched.residentCreated) / touched.frames;
  return {
    bench: "memory",
    cases: [
      {
        name: "bytes-per-frame/1GiB-all-touched", impl: "core", nsPerOp: NaN, bytesPerFrame: perFrame,
        recordBytes: touched.recordBytes, frames: touched.frames,
      },
      {
        name: "create/64GiB", impl: "core", nsPerOp: NaN, residentMiB: big.residentCreated / MiB,
        processRssMiB: big.rssCreated / MiB, spanMiB: big.wasmBytes / MiB, frames: big.frames,
      },
    ],
    ratios: {
      "bytes per frame (all records written)": perFrame,
      "64 GiB machine: memory at creation (MiB)": big.residentCreated / MiB,
      "64 GiB machine: process RSS growth (MiB)": big.rssCreated / MiB,
    },
    targets: { "bytes per frame (all records written)": "<= 24", "64 GiB machine: memory at creation (MiB)": "<= 512" },
    notes: [
      `frame record: ${touched.recordBytes} bytes (src/abi/frame.ts); measured: resident bytes of the core's memory (/proc/self/smaps) added by writing every record of a 1 GiB machine, per frame`,
      `64 GiB: ${big.frames} frames; the memory spans ${(big.wasmBytes / MiB).toFixed(0)} MiB (records + regions); only pages written are resident, so creation costs what the buddy allocator writes`,
    ],
  };
}
