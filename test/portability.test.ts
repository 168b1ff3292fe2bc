/**
 * Portability: the library runs in browsers as well as Node. Only src/platform/node.ts may
 * use Node-only APIs (node: modules, require, process, Buffer, __dirname/__filename); every
 * other file under src/ must not, in code (comments may mention them: the files are printed
 * back without comments by the TypeScript compiler before the scan).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SRC = join(ROOT, "src");
const ALLOWED = new Set(["src/platform/node.ts"]);

const NODE_ONLY: [string, RegExp][] = [
  ['from "node:', /\bfrom\s*["']node:/],
  ['import("node:', /\bimport\s*\(\s*["']node:/],
  ["require(", /\brequire\s*\(/],
  ["process.", /(?<![\w/.])process\s*\./],
  ["Buffer", /\bBuffer\b/],
  ["__dirname", /\b__dirname\b/],
  ["__filename", /\b__filename\b/],
];

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.isFile() && e.name.endsWith(".ts") ? [p] : [];
  });
}

/** @text printed back without its comments (the TypeScript printer knows strings and regexes). */
function stripComments(text: string, name = "x.ts"): string {
  const sf = ts.createSourceFile(name, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  return ts.createPrinter({ removeComments: true }).printFile(sf);
}

/** Offending "file: pattern: code line" entries of @files. */
function offenders(files: string[]): string[] {
  const out: string[] = [];
  for (const file of files) {
    const rel = relative(ROOT, file).split(sep).join("/");
    if (ALLOWED.has(rel)) continue;
    for (const line of stripComments(readFileSync(file, "utf8"), file).split("\n")) {
      for (const [name, re] of NODE_ONLY) if (re.test(line)) out.push(`${rel}: ${name}: ${line.trim()}`);
    }
  }
  return out;
}

describe("portability", () => {
  const files = tsFiles(SRC);

  it("scans every .ts file under src/, including the allowed Node adapter", () => {
    const rel = files.map((f) => relative(ROOT, f).split(sep).join("/"));
    expect(rel).toContain("src/index.ts");
    expect(rel).toContain("src/platform/node.ts");
    expect(rel.length).toBeGreaterThan(10);
  });

  it("uses no Node-only API in src/ outside src/platform/node.ts", () => {
    expect(offenders(files), "Node-only APIs outside src/platform/node.ts").toEqual([]);
  });

  it("would catch each pattern (the scan is not vacuous), but not in comments or in longer names", () => {
    // The allowed adapter itself is caught when it is not exempt.
    expect(stripComments(readFileSync(join(SRC, "platform", "node.ts"), "utf8"))).toMatch(NODE_ONLY[0]![1]);
    const code = [
      'import { readFile } from "node:fs";',
      'const m = await import("node:path");',
      'const x = require("fs");',
      "if (process.env.X) {}",
      "Buffer.from([1]);",
      "console.log(__dirname, __filename);",
    ].join("\n");
    const hits = NODE_ONLY.filter(([, re]) => re.test(stripComments(code))).map(([n]) => n);
    expect(hits).toEqual(NODE_ONLY.map(([n]) => n));
    const harmless = [
      "// process.env is read in Node only; Buffer too",
      "/* require(x) from \"node:fs\" */",
      "const b = new ArrayBuffer(8) as BufferSource;",
      'const s = "http://example.com/a";',
      "const subprocess = 1; const ok = subprocess;",
    ].join("\n");
    expect(NODE_ONLY.filter(([, re]) => re.test(stripComments(harmless)))).toEqual([]);
    // A quote inside a regex literal does not hide the code after it.
    expect(stripComments('const q = /"/;\nBuffer.alloc(1); // "')).toMatch(/\bBuffer\b/);
  });
});
