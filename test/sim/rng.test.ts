/**
 * The machine's seeded random numbers: a seed reproduces the sequence, different seeds give
 * different ones, and int() stays inside its bounds.
 */
import { describe, expect, it } from "vitest";
import { parseMachineOptions, Rng } from "../../src/index.js";
import { smallMachine } from "../helpers.js";

function ints(r: Rng, n: number, from = 0, to = 2 ** 31 - 1): number[] {
  return Array.from({ length: n }, () => r.int(from, to));
}

describe("Rng", () => {
  it("reproduces the same sequence from the same seed", () => {
    const a = new Rng(42);
    const b = new Rng(42);
    expect(ints(a, 100)).toEqual(ints(b, 100));
    expect(Array.from({ length: 20 }, () => a.float())).toEqual(Array.from({ length: 20 }, () => b.float()));
    expect(a.seed).toBe(42);
  });

  it("gives different sequences for different seeds", () => {
    const seqs = [0, 1, 2, 42, -1, 0x7fffffff].map((s) => JSON.stringify(ints(new Rng(s), 20)));
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it("int(from, to) stays within [from, to], both ends included and both reached", () => {
    const r = new Rng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = r.int(-3, 3);
      expect(Number.isInteger(v)).toBe(true);
      expect(v >= -3 && v <= 3).toBe(true);
      seen.add(v);
    }
    expect([...seen].sort((x, y) => x - y)).toEqual([-3, -2, -1, 0, 1, 2, 3]);
    for (let i = 0; i < 100; i++) expect(r.int(5, 5)).toBe(5);
    for (const v of ints(r, 1000, 2 ** 40, 2 ** 40 + 10)) expect(v >= 2 ** 40 && v <= 2 ** 40 + 10).toBe(true);
  });

  it("float() is in [0, 1)", () => {
    const r = new Rng(3);
    for (let i = 0; i < 2000; i++) {
      const f = r.float();
      expect(f >= 0 && f < 1).toBe(true);
    }
  });

  it("fork() is deterministic and independent of its parent's later draws", () => {
    const a = new Rng(9);
    const b = new Rng(9);
    const fa = a.fork();
    const fb = b.fork();
    expect(fa.seed).toBe(fb.seed);
    ints(a, 10);
    expect(ints(fa, 20)).toEqual(ints(fb, 20));
    expect(ints(fa, 20)).not.toEqual(ints(new Rng(9), 20));
  });

  it("is the machine's: seeded from the configuration (default 1), so two machines agree", async () => {
    const a = await smallMachine({ seed: 1234 });
    const b = await smallMachine({ seed: 1234 });
    expect(a.rng.seed).toBe(1234);
    expect(ints(a.rng, 50)).toEqual(ints(b.rng, 50));
    expect(ints((await smallMachine()).rng, 20)).toEqual(ints(new Rng(1), 20));
  });

  it("does not silently alias seeds the configuration accepts: seed 2^32 + 1 is refused or differs from seed 1", () => {
    let config: ReturnType<typeof parseMachineOptions> | undefined;
    try {
      config = parseMachineOptions({ seed: 2 ** 32 + 1 });
    } catch (e) {
      expect((e as { code?: string; arg?: string }).code).toBe("EINVAL");
      expect((e as { arg?: string }).arg).toBe("seed");
      return;
    }
    expect(ints(new Rng(config.seed), 20)).not.toEqual(ints(new Rng(1), 20));
  });
});
