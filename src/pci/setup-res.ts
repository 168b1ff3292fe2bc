/**
 * A fabric described as the firmware left it: every BAR under a host bridge has its bus
 * address, and the kernel claims them (pci_claim_resource, drivers/pci/setup-res.c) instead
 * of laying them out. A description the hardware could not decode is EINVAL naming the BAR
 * or bridge: a BAR without an address among ones with, an address not aligned to the BAR's
 * size, outside the host bridge's aperture for its kind, or overlapping another BAR ("address
 * space collision"). Each bridge's windows are then the 1 MiB-aligned span of what is below
 * it, and two sibling bridges whose windows overlap are EINVAL too (a TLP would have two
 * ways down).
 * @module
 */
import { DmaError } from "../errors.js";
import type { Bar, PciDev } from "./topology.js";

const MiB = 1 << 20;

/** A BAR for the 64-bit prefetchable window (prefetchable and 64-bit); the rest go below 4 GiB. */
export const highPref = (b: Bar): boolean => b.prefetchable && b.bits64;

/** Every BAR of the endpoints below @d, in bus order. */
export function barsBelow(d: PciDev): Bar[] {
  return [...d.bars, ...d.children.flatMap(barsBelow)];
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** claimBars - check the firmware's BAR addresses under host bridge @root and derive the bridge windows. */
export function claimBars(root: PciDev, mem32: [number, number], mem64: [number, number]): void {
  const bars = barsBelow(root);
  for (const b of bars) {
    if (!b.fixed) throw new DmaError("EINVAL", `topology: ${b.path}.start missing: the other BARs under ${root.name} have firmware addresses`, { arg: `${b.path}.start` });
    if (!Number.isSafeInteger(b.start) || b.start < 0 || b.start % b.size) {
      throw new DmaError("EINVAL", `topology: ${b.path}.start ${hex(b.start)} is not aligned to its size ${hex(b.size)}`, { arg: `${b.path}.start` });
    }
    const [lo, hi] = highPref(b) ? mem64 : mem32;
    if (b.start < lo || b.start + b.size > hi) {
      throw new DmaError("EINVAL", `topology: ${b.path}.start ${hex(b.start)} is outside ${root.name}'s ${highPref(b) ? "mem64" : "mem32"} aperture [${hex(lo)}, ${hex(hi)})`, { arg: `${b.path}.start` });
    }
  }
  const sorted = [...bars].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.start < a.start + a.size) {
      throw new DmaError("EINVAL", `topology: ${b.path} [${hex(b.start)}, +${hex(b.size)}) overlaps ${a.path} (address space collision)`, { arg: `${b.path}.start` });
    }
  }
  windows(root);
  root.window = mem32;
  root.prefWindow = mem64;
}

/** The windows of the bridges below @d (bottom up), checking siblings do not overlap. */
function windows(d: PciDev): void {
  for (const c of d.children) windows(c);
  for (const pref of [false, true]) {
    const spans = d.children.filter((c) => c.isBridge).map((c) => [c, pref ? c.prefWindow : c.window] as const).filter(([, [lo, hi]]) => hi > lo);
    spans.sort((a, b) => a[1][0] - b[1][0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]![1][0] < spans[i - 1]![1][1]) {
        const [c] = spans[i]!;
        throw new DmaError("EINVAL", `topology: the ${pref ? "prefetchable " : ""}window of ${c.name} overlaps that of ${spans[i - 1]![0].name}: their BARs interleave`, { arg: c.name });
      }
    }
  }
  if (!d.isBridge) return;
  for (const pref of [false, true]) {
    const mine = barsBelow(d).filter((b) => highPref(b) === pref);
    if (!mine.length) continue;
    const lo = Math.floor(Math.min(...mine.map((b) => b.start)) / MiB) * MiB;
    const hi = Math.ceil(Math.max(...mine.map((b) => b.start + b.size)) / MiB) * MiB;
    if (pref) d.prefWindow = [lo, hi];
    else d.window = [lo, hi];
  }
}
