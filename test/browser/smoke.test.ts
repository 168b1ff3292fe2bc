/**
 * Browser smoke test: the vite-built page in web/dist/ (see web/) served cross-origin
 * isolated, loaded in headless Chromium. A Worker creates a machine, maps a page and
 * writes through it; the main thread attaches to the shared memory and reads it all back.
 * Run with `npm run test:browser`.
 * @module
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";

import type { SmokeSummary } from "../../web/main.js";
import { serveStatic, type StaticServer } from "./server.js";

const CHROMIUM = "/usr/bin/chromium";
const DIST = fileURLToPath(new URL("../../web/dist/", import.meta.url));

let server: StaticServer | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  server = await serveStatic(DIST);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

test("a Worker's machine is readable from the main thread over shared memory", async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install it with \`apt-get install -y chromium\` (the test never downloads a browser)`);
  }
  if (!existsSync(DIST + "index.html")) {
    throw new Error(`${DIST}index.html not found: build the page first with \`vite build web\` (npm run test:browser does)`);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console.error: ${msg.text()} (${msg.location().url || "?"})`);
  });
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  page.on("requestfailed", (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ""}`));
  const diagnose = (): string => (problems.length ? `\npage problems:\n  ${problems.join("\n  ")}` : "");

  let summary: SmokeSummary;
  try {
    await page.goto(server!.url, { waitUntil: "load" });
    await page.waitForFunction(() => window.__dmalabSmoke !== undefined, null, { timeout: 60_000 });
    summary = (await page.evaluate(() => window.__dmalabSmoke))!;
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}${diagnose()}`, { cause: e });
  }
  const context_ = `summary: ${JSON.stringify(summary)}${diagnose()}`;

  expect(summary.crossOriginIsolated, context_).toBe(true);
  if (!summary.ok) throw new Error(`page reported failure: ${summary.error}\n${context_}`);
  const expectedPa = summary.pfn * 4096 + 0x123;
  expect(summary.workerPa, context_).toBe(expectedPa);
  expect(summary.mainPa, context_).toBe(expectedPa);
  expect(summary.refcount, context_).toBe(1);
  expect(summary.bytesMatch, context_).toBe(true);
  expect(summary.pte, context_).toMatchObject({ present: true, write: true, user: true, dirty: true, pfn: summary.pfn });
  expect(problems, context_).toEqual([]);
});
