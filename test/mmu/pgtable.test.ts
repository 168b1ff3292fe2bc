/**
 * Page-table structure: tables as frames, huge-leaf splits, freeing empty tables, and
 * all-or-nothing range operations.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { DmaError, type Machine, type PageTable } from "../../src/index.js";
import { MiB, smallMachine, snapshot } from "../helpers.js";

let m: Machine;
let pt: PageTable;
const VA = 0x7000_0000_0000;

beforeEach(async () => {
  m = await smallMachine();
  pt = m.pgdAlloc();
});

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaError) return `${e.code}:${e.arg}`;
    throw e;
  }
  return "ok";
}

describe("tables are frames", () => {
  it("allocates one table per level on the way down, from NORMAL, and frees them on unmap", () => {
    const free = m.phys.nrFreePages("NORMAL");
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true });
    expect(m.phys.nrFreePages("NORMAL")).toBe(free - 3); // PDPT, PD, PT
    const pdFrame = Number((pt.ptepGet(VA, 3).pte >> 12n) & 0xffffffffn);
    expect(m.page(pdFrame)).toMatchObject({ flags: ["pgtable"], mapping: 2, index: 1, backed: true });
    const r = pt.unmapPageRange(VA, 4096);
    expect(r).toMatchObject({ leaves: 1, pages: 1, tables: 3 });
    expect(m.phys.nrFreePages("NORMAL")).toBe(free);
    expect(m.page(pt.pfn).index).toBe(0); // the root is empty again
    pt.free();
  });

  it("maps a whole range in one call and counts the tables it needs exactly", () => {
    // 3 MiB across a 2 MiB boundary: one PT for each of two PDs' entries.
    pt.remapPfnRange(VA + MiB, 0x1000, 3 * MiB, { user: true });
    expect(m.page(pt.pfn).index).toBe(1);
    expect(pt.ptepGet(VA + MiB).level).toBe(1);
    expect(pt.ptepGet(VA + 4 * MiB - 4096).info.pfn).toBe(0x1000 + 767);
  });

  it("refuses to free a root that still maps something (EBUSY)", () => {
    pt.remapPfnRange(VA, 0x1000, 4096);
    expect(code(() => pt.free())).toBe("EBUSY:pgd");
  });
});

describe("huge leaves", () => {
  it("splits a 2 MiB leaf cut by a partial unmap into 512 PTEs with the same bits", () => {
    // WT is PAT index 7: PAT (bit 12 in a 2 MiB leaf, bit 7 in a PTE), PCD and PWT.
    pt.remapPfnRange(VA, 0x200, 2 * MiB, { user: true, write: true, cache: "WT" }, "2M");
    expect(pt.ptepGet(VA).info.cache).toBe("WT");
    const r = pt.unmapPageRange(VA + 4096, 4096, { collect: true });
    expect(r.leaves).toBe(1);
    expect(r.records[0]!.info.pfn).toBe(0x201);
    const left = pt.ptepGet(VA);
    expect(left.level).toBe(1);
    expect(left.info).toMatchObject({ pfn: 0x200, write: true, user: true, cache: "WT" });
    expect(left.pte & 0x80n).toBe(0x80n); // PAT moved to bit 7
    expect(pt.ptepGet(VA + 2 * MiB - 4096).info.pfn).toBe(0x3ff);
    expect(pt.ptepGet(VA + 4096).pte).toBe(0n);
  });

  it("splits a 1 GiB leaf down to the page the range starts at", () => {
    pt.remapPfnRange(VA, 0x40000, 1024 * MiB, { user: true }, "1G");
    pt.changeProtection(VA + 3 * MiB + 4096, 4096, { write: true });
    expect(pt.ptepGet(VA).level).toBe(2); // the 1 GiB leaf became 2 MiB leaves
    expect(pt.ptepGet(VA + 2 * MiB).level).toBe(1); // and the cut one became PTEs
    expect(pt.ptepGet(VA + 3 * MiB + 4096).info.write).toBe(true);
    expect(pt.ptepGet(VA + 3 * MiB).info.write).toBe(false);
    expect(pt.ptepGet(VA + 4 * MiB).level).toBe(2);
  });

  it("unmaps whole huge leaves without splitting them", () => {
    pt.remapPfnRange(VA, 0x200, 4 * MiB, { user: true }, "2M");
    const free = m.phys.nrFreePages("NORMAL");
    const r = pt.unmapPageRange(VA, 4 * MiB, { collect: true });
    expect(r).toMatchObject({ leaves: 2, pages: 1024 });
    expect(r.records.map((x) => x.level)).toEqual([2, 2]);
    expect(m.phys.nrFreePages("NORMAL")).toBe(free + 2); // the PD and the PDPT; the root stays
  });
});

describe("all or nothing", () => {
  it("refuses to map over anything already mapped (EEXIST), changing nothing", () => {
    pt.remapPfnRange(VA + 8 * 4096, 0x1000, 4096);
    pt.remapPfnRange(VA + 4 * MiB, 0x400, 2 * MiB, {}, "2M");
    const before = snapshot(m, [pt], [[VA, VA + 64 * 4096]]);
    expect(code(() => pt.remapPfnRange(VA, 0x2000, 16 * 4096))).toBe("EEXIST:va");
    expect(code(() => pt.remapPfnRange(VA + 4 * MiB + 4096, 0x2000, 4096))).toBe("EEXIST:va");
    expect(code(() => pt.remapPfnRange(VA, 0x2000, 2 * MiB, {}, "2M"))).toBe("EEXIST:va");
    expect(snapshot(m, [pt], [[VA, VA + 64 * 4096]])).toBe(before);
  });

  it("fails with ENOMEM when NORMAL cannot hold the tables, changing nothing", () => {
    const held: number[] = [];
    while (m.phys.nrFreePages("NORMAL") > 2) held.push(m.phys.allocPages(0));
    const before = snapshot(m, [pt]);
    // Three tables are needed below the root; two frames are left.
    expect(code(() => pt.remapPfnRange(VA, 0x1000, 4096))).toBe("ENOMEM:memory");
    expect(snapshot(m, [pt])).toBe(before);
    m.phys.freePages(held.pop()!);
    pt.remapPfnRange(VA, 0x1000, 4096);
    expect(m.phys.nrFreePages("NORMAL")).toBe(0);
  });

  it("fails with ENOMEM before splitting when no table is left for the split", () => {
    pt.remapPfnRange(VA, 0x200, 2 * MiB, {}, "2M");
    while (m.phys.nrFreePages("NORMAL") > 0) m.phys.allocPages(0);
    const before = snapshot(m, [pt], [[VA, VA + 4 * 4096]]);
    expect(code(() => pt.unmapPageRange(VA, 4096))).toBe("ENOMEM:memory");
    expect(code(() => pt.changeProtection(VA, 4096, { write: true }))).toBe("ENOMEM:memory");
    expect(snapshot(m, [pt], [[VA, VA + 4 * 4096]])).toBe(before);
    expect(pt.unmapPageRange(VA, 2 * MiB).leaves).toBe(1); // a whole leaf needs no split
  });

  it("rejects bad arguments with the argument's name", () => {
    const before = snapshot(m, [pt]);
    expect(code(() => pt.remapPfnRange(VA + 1, 0x1000, 4096))).toBe("EINVAL:va");
    expect(code(() => pt.remapPfnRange(VA + 4096, 0x200, 2 * MiB, {}, "2M"))).toBe("EINVAL:va");
    expect(code(() => pt.remapPfnRange(VA, 0x201, 2 * MiB, {}, "2M"))).toBe("EINVAL:pfn");
    expect(code(() => pt.remapPfnRange(VA, 0x200, MiB, {}, "2M"))).toBe("EINVAL:size");
    expect(code(() => pt.remapPfnRange(VA, 0x1000, 0))).toBe("EINVAL:size");
    expect(code(() => pt.remapPfnRange(VA, 0x1000, 4095))).toBe("EINVAL:size");
    expect(code(() => pt.remapPfnRange(0x8000_0000_0000, 0x1000, 4096))).toBe("EINVAL:va");
    expect(code(() => pt.remapPfnRange(0x7fff_ffff_f000, 0x1000, 2 * 4096))).toBe("EINVAL:size");
    expect(code(() => pt.remapPfnRange(VA, 2 ** 34, 4096))).toBe("EINVAL:pfn");
    expect(code(() => pt.remapPfnRange(VA, 0x1000, 4096, { pkey: 16 }))).toBe("EINVAL:prot.pkey");
    expect(code(() => pt.remapPfnRange(VA, 0x1000, 4096, {}, "4M" as "2M"))).toBe("EINVAL:pageSize");
    expect(code(() => pt.remapPfnRange(-4096, 0x1000, 4096))).toBe("EINVAL:va");
    expect(code(() => pt.remapPfnRange(2 ** 60, 0x1000, 4096))).toBe("EINVAL:va");
    expect(code(() => pt.unmapPageRange(VA, 3))).toBe("EINVAL:size");
    expect(code(() => m.pageTable(300))).toBe("EINVAL:pfn");
    expect(snapshot(m, [pt])).toBe(before);
  });
});

describe("single entries", () => {
  it("setPteAt keeps the structure: table pointers keep their frame, none are created", () => {
    pt.remapPfnRange(VA, 0x1000, 4096);
    const pde = pt.ptepGet(VA, 2).pte;
    expect(code(() => pt.setPteAt(VA, 2, pde + 0x1000n))).toBe("EINVAL:value");
    expect(code(() => pt.setPteAt(VA, 2, 0x1007n))).toBe("EINVAL:value"); // a table pointer
    expect(code(() => pt.setPteAt(VA + 2 ** 39, 1, 0x1007n))).toBe("ENOENT:va"); // no tables there
    pt.setPteAt(VA, 2, pde | 0x8000000000000000n); // flags of a table pointer may change
    expect(pt.ptepGet(VA, 2).info.nx).toBe(true);
  });

  it("setPteAt with 0 unmaps and frees the tables it empties", () => {
    const free = m.phys.nrFreePages("NORMAL");
    pt.remapPfnRange(VA, 0x1000, 4096);
    pt.setPteAt(VA, 1, 0n);
    expect(m.phys.nrFreePages("NORMAL")).toBe(free);
  });

  it("setPteAt stores non-present entries at level 1 (swap entries later), kept by unmap counts", () => {
    pt.remapPfnRange(VA, 0x1000, 4096);
    pt.setPteAt(VA + 4096, 1, 0xabc00n); // not present, non-zero
    pt.unmapPageRange(VA, 4096);
    expect(pt.ptepGet(VA + 4096).pte).toBe(0xabc00n); // its table survived
    const r = pt.unmapPageRange(VA + 4096, 4096, { collect: true });
    expect(r.records[0]!.pte).toBe(0xabc00n);
    expect(m.page(pt.pfn).index).toBe(0);
  });
});
