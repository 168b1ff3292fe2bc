/**
 * Writes bench/native/bin/abi.h: every numeric constant of src/abi/ as a #define, so the
 * native C twin of the walker reads the core's memory with the core's own offsets.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import * as errno from "../../src/abi/errno.js";
import * as frame from "../../src/abi/frame.js";
import * as header from "../../src/abi/header.js";
import * as x86 from "../../src/abi/x86.js";

export function writeAbiHeader(dir: string): string {
  const lines = ["/* Generated from src/abi/ by bench/native/abi.ts: do not edit. */", "#pragma once"];
  for (const mod of [errno, frame, header, x86]) {
    for (const [name, value] of Object.entries(mod)) {
      if (typeof value === "number") lines.push(`#define ${name} (${value})`);
    }
  }
  mkdirSync(dir, { recursive: true });
  const path = `${dir}/abi.h`;
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
}
