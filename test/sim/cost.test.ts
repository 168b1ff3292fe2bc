/**
 * The cost table: every default has a positive cost and a source; overrides replace the
 * value and say where it came from; the machine charges modeled time from the table, so a
 * run's times are deterministic (clock deltas, never wall time).
 */
import { describe, expect, it } from "vitest";
import { costTable, createMachine, DEFAULT_COSTS, type CostName, type Machine } from "../../src/index.js";

const VA = 0x7f00_0000_0000;

describe("DEFAULT_COSTS", () => {
  it("gives every entry a positive, finite ns and a non-empty source", () => {
    const names = Object.keys(DEFAULT_COSTS) as CostName[];
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) {
      const e = DEFAULT_COSTS[name];
      expect(Number.isFinite(e.ns) && e.ns > 0, name).toBe(true);
      expect(typeof e.source === "string" && e.source.trim().length > 0, name).toBe(true);
    }
  });
});

describe("costTable", () => {
  it("without overrides is the defaults, entry for entry", () => {
    expect(costTable()).toEqual(DEFAULT_COSTS);
    expect(costTable({})).toEqual(DEFAULT_COSTS);
  });

  it("sets an overridden value and says it was set by the machine's configuration; others stay", () => {
    const t = costTable({ walkLevel: 10, invlpg: 0 });
    expect(t.walkLevel).toEqual({ ns: 10, source: "set by the machine's configuration" });
    expect(t.invlpg).toEqual({ ns: 0, source: "set by the machine's configuration" });
    for (const name of Object.keys(DEFAULT_COSTS) as CostName[]) {
      if (name !== "walkLevel" && name !== "invlpg") expect(t[name]).toEqual(DEFAULT_COSTS[name]);
    }
    expect(DEFAULT_COSTS.walkLevel.ns).toBe(90); // the defaults are not modified
  });

  it("is what a machine built with `costs` uses", async () => {
    const m = await createMachine({ memory: { normal: "16MiB", movable: 0, cma: 0 }, cpus: 1, costs: { tlbMiss: 7 } });
    expect(m.costs.tlbMiss).toEqual({ ns: 7, source: "set by the machine's configuration" });
    expect(m.costs.walkLevel).toEqual(DEFAULT_COSTS.walkLevel);
  });
});

async function machineWithMapping(costs: Partial<Record<CostName, number>>): Promise<Machine> {
  const m = await createMachine({ memory: { normal: "16MiB", movable: 0, cma: 0 }, cpus: 1, costs });
  const pt = m.pgdAlloc();
  pt.remapPfnRange(VA, m.phys.allocPages(0), 4096, { user: true });
  m.cpu(0).writeCr3(pt);
  return m;
}

/** Modeled ns one translate of @va costs on @m. */
function charge(m: Machine, va: number): number {
  const t0 = m.clock.now;
  const t = m.cpu(0).translate(va);
  expect(t.ok).toBe(true);
  return m.clock.now - t0;
}

describe("modeled time of a translation", () => {
  it("charges walkLevel ns per paging-structure load on a TLB miss (4 loads for a 4-level 4 KiB walk)", async () => {
    const m = await machineWithMapping({ walkLevel: 10 });
    const loads0 = m.cpu(0).stats.loads;
    const miss = charge(m, VA);
    expect(m.cpu(0).stats.loads - loads0).toBe(4);
    expect(miss).toBe(DEFAULT_COSTS.tlbMiss.ns + 4 * 10);
    // The next one hits the TLB: tlbHit only, no walk.
    expect(charge(m, VA + 8)).toBe(DEFAULT_COSTS.tlbHit.ns);
  });

  it("scales with the configured walkLevel, and is the same on every run", async () => {
    const runs: number[] = [];
    for (const walkLevel of [10, 20, 10]) runs.push(charge(await machineWithMapping({ walkLevel }), VA));
    expect(runs[1]! - runs[0]!).toBe(4 * 10);
    expect(runs[2]).toBe(runs[0]);
  });

  it("with the defaults charges tlbMiss + 4 x walkLevel for a miss", async () => {
    const m = await machineWithMapping({});
    expect(charge(m, VA)).toBe(DEFAULT_COSTS.tlbMiss.ns + 4 * DEFAULT_COSTS.walkLevel.ns);
    expect(m.cpu(0).stats.modeledNs).toBe(DEFAULT_COSTS.tlbMiss.ns + 4 * DEFAULT_COSTS.walkLevel.ns);
  });

  it("charges invlpg ns for an INVLPG, per page for a range flush", async () => {
    const m = await machineWithMapping({ invlpg: 33 });
    let t0 = m.clock.now;
    m.cpu(0).invlpg(VA);
    expect(m.clock.now - t0).toBe(33);
    t0 = m.clock.now;
    m.cpu(0).flushTlbRange(VA, 3 * 4096);
    expect(m.clock.now - t0).toBe(3 * 33);
  });
});
