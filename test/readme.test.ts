/**
 * The README's example runs as written (with "dmalab" resolved to src/), so it stays true.
 */
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import * as dmalab from "../src/index.js";

it("runs the README's example and prints what its comments say", async () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const block = /## Using it\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block).toBeDefined();
  // The example is TypeScript without type annotations: run it as an async function body.
  const body = block!.replace(/^import \{ ([^}]+) \} from "dmalab";$/m, "const { $1 } = dmalab;");
  const lines: unknown[][] = [];
  const console = { log: (...a: unknown[]) => lines.push(a) };
  const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...a: string[]) => (
    ...args: unknown[]
  ) => Promise<void>;
  await new AsyncFunction("dmalab", "console", body)(dmalab, console);
  const [page, pa, pte, stale, fault] = lines.map((l) => l[0]);
  expect(page).toMatchObject({ refcount: 1, mapcount: 0, zone: "NORMAL" });
  expect(Number.parseInt(pa as string, 16) % 4096).toBe(0x123);
  expect(pte).toMatchObject({ present: true, write: true, user: true, dirty: true, nx: true });
  expect(stale).toBe(true);
  expect(fault).toMatchObject({ vector: "#PF", errorCode: 4 });
  expect(lines.length).toBe(6);
});
