/**
 * Building and running the native C twin of the core's translation path (bench/native/).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { writeAbiHeader } from "./native/abi.js";

const dir = fileURLToPath(new URL("./native/", import.meta.url));
const bin = `${dir}bin`;

/** compileNative - gcc -O2 the walker; returns the binary's path. Throws if gcc is missing. */
export function compileNative(): string {
  mkdirSync(bin, { recursive: true });
  writeAbiHeader(bin);
  const out = `${bin}/walk`;
  execFileSync("gcc", ["-O2", "-std=gnu11", "-Wall", "-Werror", "-I", bin, "-o", out, `${dir}walk.c`], { stdio: "inherit" });
  return out;
}

export interface NativeResult {
  nsPerOp: number;
  medianNsPerOp: number;
  /** The fastest batch: noise only ever adds time. */
  minNsPerOp: number;
  checksum: number;
}

/** runNative - translate ring 0's first @n requests on @cpu @iterations times over @memory's copy. */
export function runNative(exe: string, memory: Uint8Array, cpu: number, n: number, flags: number, iterations: number): NativeResult {
  const dump = `${bin}/memory.dump`;
  writeFileSync(dump, memory);
  const out = execFileSync(exe, [dump, String(cpu), String(n), String(flags), String(iterations)], { encoding: "utf8" });
  return JSON.parse(out) as NativeResult;
}
