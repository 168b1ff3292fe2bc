/**
 * Where two machine states (core and reference) differ, shortly: what a differential test
 * prints on a mismatch instead of two whole states.
 */
import type { MachineState } from "./driver.js";

/** A short account of where two machine states differ (the first few differences of each kind). */
export function stateDiff(a: MachineState, b: MachineState, limit = 8): string {
  const out: string[] = [];
  const add = (s: string) => out.length < limit * 4 && out.push(s);
  a.zones.forEach((z, i) => {
    const y = b.zones[i];
    if (JSON.stringify(z) !== JSON.stringify(y)) add(`zone ${i}: nrFree ${z.nrFree} vs ${y?.nrFree}, lists ${JSON.stringify(z.lists)} vs ${JSON.stringify(y?.lists)}`);
  });
  let n = 0;
  a.frames.forEach((f, i) => f !== b.frames[i] && n++ < limit && add(`frame ${f} vs ${b.frames[i]}`));
  const keys = new Set([...Object.keys(a.tables), ...Object.keys(b.tables)]);
  for (const k of keys) {
    const x = a.tables[Number(k)];
    const y = b.tables[Number(k)];
    if (!x || !y) add(`table ${k}: ${x ? "only first" : "only second"}`);
    else x.forEach((v, i) => v !== y[i] && add(`table ${k}[${i}]: ${v.toString(16)} vs ${y[i]!.toString(16)}`));
  }
  if (JSON.stringify(a.cpus) !== JSON.stringify(b.cpus)) add("cpus differ");
  if (a.poolUsed !== b.poolUsed) add(`poolUsed ${a.poolUsed} vs ${b.poolUsed}`);
  if (a.pins.join() !== b.pins.join()) add(`pins ${a.pins} vs ${b.pins}`);
  return out.join("\n");
}
