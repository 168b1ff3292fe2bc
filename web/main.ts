/**
 * Browser smoke test, main-thread side: start worker.ts, attach to the machine it shares
 * with this thread's own core instance, read its work back, and publish a JSON summary in
 * window.__dmalabSmoke (and the page body) for test/browser/smoke.test.ts.
 * @module
 */
import { attachMachine } from "../src/index.js";
import type { WorkerReport } from "./worker.js";

/** The page's verdict, read by the Playwright test. */
export type SmokeSummary =
  | {
      ok: true;
      crossOriginIsolated: boolean;
      pfn: number;
      workerPa: number;
      mainPa: number | null;
      refcount: number;
      pte: { present: boolean; write: boolean; user: boolean; dirty: boolean; pfn: number; raw: string };
      bytesMatch: boolean;
      bytes: number[];
      thread: number;
    }
  | { ok: false; crossOriginIsolated: boolean; error: string };

declare global {
  interface Window {
    __dmalabSmoke?: SmokeSummary;
  }
}

function fromWorker(): Promise<WorkerReport> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  return new Promise((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<WorkerReport>) => resolve(e.data);
    worker.onerror = (e) => reject(new Error(`worker error: ${e.message || "failed to load"}`));
    worker.onmessageerror = () => reject(new Error("worker message could not be deserialized"));
  });
}

async function run(): Promise<SmokeSummary> {
  if (!crossOriginIsolated) throw new Error("page is not cross-origin isolated (COOP/COEP headers missing?)");
  const report = await fromWorker();
  if (!report.ok) throw new Error(`in worker: ${report.error}`);
  if (!report.translation.ok) throw new Error("worker translation faulted");
  const m2 = await attachMachine(report.shared);
  const workerPa = report.translation.pa;
  const { info, pte } = m2.pageTable(report.root).ptepGet(report.va);
  const bytes = Array.from(m2.phys.read(workerPa, report.bytes.length));
  const t = m2.cpu(0).translate(report.accessed);
  return {
    ok: true,
    crossOriginIsolated,
    pfn: report.pfn,
    workerPa,
    mainPa: t.ok ? t.pa : null,
    refcount: m2.page(report.pfn).refcount,
    pte: { present: info.present, write: info.write, user: info.user, dirty: info.dirty, pfn: info.pfn, raw: "0x" + pte.toString(16) },
    bytesMatch: bytes.length === report.bytes.length && bytes.every((b, i) => b === report.bytes[i]),
    bytes,
    thread: m2.thread,
  };
}

function publish(summary: SmokeSummary): void {
  window.__dmalabSmoke = summary;
  const out = document.getElementById("result");
  if (out) out.textContent = JSON.stringify(summary, null, 2);
}

run().then(publish, (e: unknown) =>
  publish({ ok: false, crossOriginIsolated, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }),
);
