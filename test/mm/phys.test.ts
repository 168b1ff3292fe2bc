/**
 * Physical memory contents: frames hold bytes only once written (the backing pool).
 */
import { describe, expect, it } from "vitest";
import { DmaError } from "../../src/index.js";
import { smallMachine, snapshot } from "../helpers.js";

describe("frame contents", () => {
  it("reads zeros from a frame never written, without giving it bytes", async () => {
    const m = await smallMachine();
    const pfn = m.phys.allocPages(0);
    expect(m.phys.read(pfn * 4096, 4096).every((b) => b === 0)).toBe(true);
    expect(m.page(pfn).backed).toBe(false);
    expect(m.phys.backing().slotsUsed).toBe(0);
  });

  it("keeps written bytes, across frame boundaries, and charges one slot per frame", async () => {
    const m = await smallMachine();
    const pfn = m.phys.allocPages(1);
    const data = new Uint8Array(100).map((_, i) => i + 1);
    m.phys.write(pfn * 4096 + 4050, data); // 46 bytes in the first frame, 54 in the second
    expect(m.phys.read(pfn * 4096 + 4050, 100)).toEqual(data);
    expect(m.phys.read(pfn * 4096, 4050).every((b) => b === 0)).toBe(true);
    expect(m.page(pfn).backed && m.page(pfn + 1).backed).toBe(true);
    expect(m.phys.backing().slotsUsed).toBe(2);
  });

  it("drops a frame's bytes when its block is freed: the next owner reads zeros", async () => {
    const m = await smallMachine();
    const pfn = m.phys.allocPages(0);
    m.phys.write(pfn * 4096, new Uint8Array([1, 2, 3]));
    m.phys.freePages(pfn);
    expect(m.phys.backing().slotsUsed).toBe(0);
    expect(m.phys.allocPages(0)).toBe(pfn);
    expect(m.phys.read(pfn * 4096, 3)).toEqual(new Uint8Array(3));
  });

  it("refuses addresses past memory and, when the pool is full, writes nothing", async () => {
    const m = await smallMachine({ backing: { max: "1MiB" } });
    const before = snapshot(m);
    const end = m.config.nrFrames * 4096;
    expect(() => m.phys.write(end - 2, new Uint8Array(4))).toThrow(DmaError);
    expect(() => m.phys.read(end, 1)).toThrow(/runs past/);
    expect(snapshot(m)).toBe(before);
    const pfn = m.phys.allocPages(9); // 2 MiB
    let err: unknown;
    try {
      m.phys.write(pfn * 4096, new Uint8Array(2 * 1024 * 1024)); // needs 512 slots; 256 exist
    } catch (e) {
      err = e;
    }
    expect((err as DmaError).code).toBe("ENOMEM");
    expect(m.phys.backing().slotsUsed).toBe(0);
  });

  it("costs only frame records for a large sparse machine: 64 GiB boots", async () => {
    const m = await smallMachine({ memory: { normal: "64GiB", movable: 0, cma: 0 } });
    expect(m.phys.nrFreePages()).toBe(64 * 262144 - 256);
    expect(m.phys.zones()[0]!.freeBlocks[18]).toBe(63); // the first GiB has the reserved MiB
    // The memory holds the records and the fixed regions, not 64 GiB.
    expect(m.memory.buffer.byteLength).toBeLessThan(64 * 262144 * 24 + 64 * 1024 * 1024);
  });
});
