/**
 * The TLB: PCID tagging, global pages, INVLPG / INVPCID / MOV CR3 scopes, stale entries,
 * page-size tags and LRU replacement (SDM vol. 3 §4.10).
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { Cpu, Machine, PageTable, Translation } from "../../src/index.js";
import { smallMachine } from "../helpers.js";

let m: Machine;
let a: PageTable;
let b: PageTable;
let cpu: Cpu;
const VA = 0x4000_0000;

function hit(t: Translation): boolean {
  if (!t.ok) throw new Error(`fault ${t.fault.errorCode}`);
  return t.tlbHit;
}

beforeEach(async () => {
  m = await smallMachine(); // TLB: 16 sets x 4 ways
  a = m.pgdAlloc();
  b = m.pgdAlloc();
  a.remapPfnRange(VA, 0x1000, 4096, { user: true, write: true });
  b.remapPfnRange(VA, 0x2000, 4096, { user: true, write: true });
  cpu = m.cpu(0);
});

describe("PCIDs", () => {
  it("keeps each address space's entries apart and keeps them across a no-flush switch", () => {
    cpu.writeCr3(a, { pcid: 1 });
    expect(hit(cpu.translate(VA))).toBe(false);
    cpu.writeCr3(b, { pcid: 2, noflush: true });
    const tb = cpu.translate(VA);
    expect(tb.ok && tb.pa).toBe(0x2000000); // not a's translation
    cpu.writeCr3(a, { pcid: 1, noflush: true });
    const ta = cpu.translate(VA);
    expect(ta.ok && ta.pa).toBe(0x1000000);
    expect(hit(ta)).toBe(true); // survived the switches
  });

  it("drops the PCID's entries on a MOV CR3 without the no-flush bit", () => {
    cpu.writeCr3(a, { pcid: 1 });
    cpu.translate(VA);
    cpu.writeCr3(a, { pcid: 1 });
    expect(hit(cpu.translate(VA))).toBe(false);
  });

  it("flushes everything on a CR3 write when PCIDs are off", () => {
    cpu.setControl({ pcide: false });
    cpu.writeCr3(a);
    cpu.translate(VA);
    cpu.writeCr3(b, { noflush: true }); // the bit means nothing without CR4.PCIDE
    const t = cpu.translate(VA);
    expect(t.ok && t.pa).toBe(0x2000000);
    expect(hit(t)).toBe(false);
    expect(() => cpu.writeCr3(a, { pcid: 3 })).toThrow(/pcid/);
  });
});

describe("global pages", () => {
  beforeEach(() => {
    a.remapPfnRange(0x5000_0000, 0x3000, 4096, { user: false, global: true });
    cpu.writeCr3(a, { pcid: 1 });
    cpu.translate(0x5000_0000, { user: false });
    cpu.translate(VA);
  });

  it("survive a MOV CR3 and INVPCID types 1 and 3, and are used by every PCID", () => {
    cpu.writeCr3(b, { pcid: 2 });
    const g = cpu.translate(0x5000_0000, { user: false }); // b does not map it at all
    expect(g.ok && g.pa).toBe(0x3000000);
    expect(hit(g)).toBe(true);
    cpu.invpcid(1, 2);
    cpu.invpcid(3);
    expect(hit(cpu.translate(0x5000_0000, { user: false }))).toBe(true);
    expect(cpu.tlbEntries().every((e) => e.global)).toBe(true);
  });

  it("go with INVPCID type 2, INVLPG, or toggling CR4.PGE", () => {
    cpu.invpcid(2);
    expect(cpu.tlbEntries()).toEqual([]);
    cpu.translate(0x5000_0000, { user: false });
    expect(cpu.invlpg(0x5000_0000)).toBe(1);
    cpu.translate(0x5000_0000, { user: false });
    cpu.setControl({ pge: false });
    expect(cpu.tlbEntries()).toEqual([]);
    cpu.translate(0x5000_0000, { user: false });
    expect(cpu.tlbEntries()[0]!.global).toBe(false); // G is ignored without CR4.PGE
  });

  it("are kept by INVPCID type 0 (one address, not global)", () => {
    expect(cpu.invpcid(0, 1, 0x5000_0000)).toBe(0);
    expect(cpu.invpcid(0, 1, VA)).toBe(1);
  });
});

describe("stale entries and flushes", () => {
  beforeEach(() => cpu.writeCr3(a, { pcid: 1 }));

  it("keeps using a translation after unmap until INVLPG (why unmap must flush)", () => {
    cpu.translate(VA);
    a.unmapPageRange(VA, 4096);
    const stale = cpu.translate(VA);
    expect(stale.ok && stale.pa).toBe(0x1000000);
    cpu.invlpg(VA);
    expect(cpu.translate(VA).ok).toBe(false);
  });

  it("re-walks when a cached entry is more restrictive than the page table (spurious fault)", () => {
    a.changeProtection(VA, 4096, { write: false });
    cpu.translate(VA); // cached read-only
    a.changeProtection(VA, 4096, { write: true }); // gaining rights needs no flush
    const w = cpu.translate(VA, { write: true });
    expect(w.ok).toBe(true);
    expect(cpu.stats.spurious).toBe(1);
  });

  it("drops the 2 MiB entry that covers any page INVLPG names", () => {
    a.remapPfnRange(0x4020_0000, 0x400, 2 << 20, { user: true }, "2M");
    cpu.translate(0x4020_0000);
    const e = cpu.tlbEntries().find((x) => x.pageSize === 2 << 20);
    expect(e?.pfn).toBe(0x400);
    expect(cpu.invlpg(0x4020_0000 + 0x1ff000)).toBe(1);
    expect(cpu.tlbEntries().some((x) => x.pageSize === 2 << 20)).toBe(false);
  });

  it("flushTlbRange drops exactly the entries overlapping the range", () => {
    a.remapPfnRange(0x1000_0000, 0x5000, 64 * 4096, { user: true });
    cpu.translateMany(Array.from({ length: 40 }, (_, i) => 0x1000_0000 + i * 4096));
    const before = cpu.tlbEntries().length;
    expect(cpu.flushTlbRange(0x1000_0000 + 4 * 4096, 8 * 4096)).toBe(8);
    expect(cpu.tlbEntries().length).toBe(before - 8);
    const left = cpu.tlbEntries().map((e) => Number(e.linear));
    for (let i = 4; i < 12; i++) expect(left).not.toContain(0x1000_0000 + i * 4096);
  });
});

describe("geometry and replacement", () => {
  it("evicts the least recently used way of a full set", () => {
    cpu.writeCr3(a, { pcid: 1 });
    // Pages 16 apart fall in the same set of a 16-set TLB; the set has 4 ways.
    const same = [0, 1, 2, 3, 4].map((i) => 0x2000_0000 + i * 16 * 4096);
    a.remapPfnRange(0x2000_0000, 0x6000, 5 * 16 * 4096, { user: true });
    for (const va of same.slice(0, 4)) cpu.translate(va);
    cpu.translate(same[0]!); // now same[1] is the LRU way
    cpu.translate(same[4]!); // evicts same[1]
    expect(hit(cpu.translate(same[0]!))).toBe(true);
    expect(hit(cpu.translate(same[2]!))).toBe(true);
    expect(hit(cpu.translate(same[1]!))).toBe(false);
  });

  it("counts hits, misses and walk loads, and charges them to the clock", () => {
    cpu.writeCr3(a, { pcid: 1 });
    const t0 = m.clock.now;
    cpu.translate(VA);
    cpu.translate(VA);
    expect(cpu.stats).toMatchObject({ hits: 1, misses: 1, walks: 1, loads: 4 });
    const k = m.costs;
    expect(m.clock.now - t0).toBe(k.tlbHit.ns + k.tlbMiss.ns + 4 * k.walkLevel.ns);
  });

  it("bypasses the TLB entirely when asked", () => {
    cpu.writeCr3(a, { pcid: 1 });
    cpu.translate(VA, {}, { tlb: false });
    cpu.translate(VA, {}, { tlb: false });
    expect(cpu.tlbEntries()).toEqual([]);
    expect(cpu.stats.walks).toBe(2);
  });
});
