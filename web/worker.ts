/**
 * Browser smoke test, Worker side: create a machine, map one page, run CR3 + a translation,
 * write bytes at the translated PA, and post the results plus machine.share() back.
 * @module
 */
import { createMachine, type SharedMachine, type Translation } from "../src/index.js";

declare const self: DedicatedWorkerGlobalScope;

const VA = 0x7f0000000000;
const OFFSET = 0x123;
const BYTES = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04];

/** What the Worker posts to the page (main.ts imports this type only, never values). */
export type WorkerReport =
  | {
      ok: true;
      /** The mapped address, the accessed one, and the bytes written at its PA. */
      va: number;
      accessed: number;
      bytes: number[];
      pfn: number;
      root: number;
      translation: Translation;
      shared: SharedMachine;
    }
  | { ok: false; error: string };

async function run(): Promise<WorkerReport> {
  const m = await createMachine({ memory: { normal: "64MiB", movable: 0, cma: 0 }, cpus: 2 });
  const pfn = m.phys.allocPages(0);
  const pt = m.pgdAlloc();
  pt.remapPfnRange(VA, pfn, 4096, { write: true, user: true });
  m.cpu(0).writeCr3(pt, { pcid: 1 });
  const translation = m.cpu(0).translate(VA + OFFSET, { write: true });
  if (!translation.ok) throw new Error(`worker translation faulted: ${JSON.stringify(translation.fault)}`);
  m.phys.write(translation.pa, new Uint8Array(BYTES));
  return { ok: true, va: VA, accessed: VA + OFFSET, bytes: BYTES, pfn, root: pt.pfn, translation, shared: m.share() };
}

run().then(
  (report) => self.postMessage(report),
  (e: unknown) => self.postMessage({ ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }),
);
