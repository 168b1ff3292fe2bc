/**
 * The virtual clock: modeled nanoseconds that only move forward, by what an action costs.
 */
import { describe, expect, it } from "vitest";
import { Clock } from "../../src/index.js";
import { smallMachine } from "../helpers.js";

describe("Clock", () => {
  it("starts at 0 and advances by the amounts given, returning the new time", () => {
    const c = new Clock();
    expect(c.now).toBe(0);
    expect(c.advance(90)).toBe(90);
    expect(c.advance(0)).toBe(90);
    expect(c.advance(0.5)).toBe(90.5);
    expect(c.now).toBe(90.5);
  });

  it("only moves forward: a negative or NaN advance throws and leaves the time alone", () => {
    const c = new Clock();
    c.advance(10);
    for (const bad of [-1, -0.001, NaN, -Infinity]) {
      expect(() => c.advance(bad), String(bad)).toThrow(RangeError);
      expect(c.now).toBe(10);
    }
  });

  it("cannot be set from outside: `now` is read-only", () => {
    const c = new Clock();
    expect(() => {
      (c as unknown as { now: number }).now = 5;
    }).toThrow(TypeError);
    expect(c.now).toBe(0);
  });

  it("is a machine's modeled time: it starts at 0 after boot and each handle has its own", async () => {
    const a = await smallMachine();
    const b = await smallMachine();
    expect(a.clock.now).toBe(0);
    a.cpu(0).flushTlbAll();
    expect(a.clock.now).toBeGreaterThan(0);
    expect(b.clock.now).toBe(0);
  });
});
