#!/usr/bin/env node
// Build the WASM core (when assembly/ or src/abi/ changed since the last build) and the
// TypeScript host (tsc -b is incremental). Used by `npm install` (prepare) and `npm test`.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => join(root, "node_modules", ".bin", name);

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

const wasm = join(root, "build", "core.wasm");
const inputs = Math.max(
  newest(join(root, "assembly")),
  newest(join(root, "src", "abi")),
  statSync(join(root, "asconfig.json")).mtimeMs,
);
const force = process.argv.includes("--force");
if (force || !existsSync(wasm) || statSync(wasm).mtimeMs < inputs) {
  console.log("build: asc assembly/index.ts -> build/core.wasm");
  execFileSync(bin("asc"), ["assembly/index.ts", "--target", "release"], { cwd: root, stdio: "inherit" });
}
execFileSync(bin("tsc"), ["-b", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
