/**
 * FOLL_* flags as callers give them (an object of booleans, or the kernel's bit values) and
 * the argument rules of mm/gup.c is_valid_gup_args.
 * @module
 */
import * as G from "../abi/gup.js";
import { DmaError } from "../errors.js";

/** The FOLL_* values (v6.12), for callers that pass flags as a number. */
export const FOLL = {
  WRITE: G.FOLL_WRITE,
  GET: G.FOLL_GET,
  DUMP: G.FOLL_DUMP,
  FORCE: G.FOLL_FORCE,
  NOWAIT: G.FOLL_NOWAIT,
  NOFAULT: G.FOLL_NOFAULT,
  HWPOISON: G.FOLL_HWPOISON,
  ANON: G.FOLL_ANON,
  LONGTERM: G.FOLL_LONGTERM,
  SPLIT_PMD: G.FOLL_SPLIT_PMD,
  PCI_P2PDMA: G.FOLL_PCI_P2PDMA,
  INTERRUPTIBLE: G.FOLL_INTERRUPTIBLE,
  HONOR_NUMA_FAULT: G.FOLL_HONOR_NUMA_FAULT,
  TOUCH: G.FOLL_TOUCH,
  PIN: G.FOLL_PIN,
} as const;

/** The public FOLL_* flags a caller may pass, by name. */
export interface GupFlags {
  /** FOLL_WRITE: the caller (a device) will write to the pages. */
  write?: boolean;
  /** FOLL_FORCE: ignore the VMA's protection, as ptrace does (private mappings only for writes). */
  force?: boolean;
  /** FOLL_LONGTERM: the pin may last indefinitely (RDMA, VFIO): pages move out of MOVABLE and CMA first. */
  longterm?: boolean;
  /** FOLL_NOWAIT: do not wait for I/O in a fault. */
  nowait?: boolean;
  /** FOLL_NOFAULT: never fault; a missing page ends the call. */
  nofault?: boolean;
  /** FOLL_PCI_P2PDMA: PCI peer-to-peer memory is acceptable. */
  pciP2pdma?: boolean;
  /** FOLL_ANON: anonymous memory only. */
  anon?: boolean;
  /** FOLL_DUMP: a core dump; the zero page is an error. */
  dump?: boolean;
  /** FOLL_HONOR_NUMA_FAULT: respect NUMA-hinting PROT_NONE. */
  honorNumaFault?: boolean;
}

const BY_NAME: Record<keyof GupFlags, number> = {
  write: G.FOLL_WRITE,
  force: G.FOLL_FORCE,
  longterm: G.FOLL_LONGTERM,
  nowait: G.FOLL_NOWAIT,
  nofault: G.FOLL_NOFAULT,
  pciP2pdma: G.FOLL_PCI_P2PDMA,
  anon: G.FOLL_ANON,
  dump: G.FOLL_DUMP,
  honorNumaFault: G.FOLL_HONOR_NUMA_FAULT,
};

/** Every bit a caller may name (public flags, and the ones the kernel reserves to itself). */
const KNOWN = Object.values(BY_NAME).reduce((a, b) => a | b, 0) | G.FOLL_GET | G.FOLL_HWPOISON | G.FOLL_INTERRUPTIBLE |
  G.FOLL_SPLIT_PMD | G.FOLL_INTERNAL_FLAGS;

/** foll - the FOLL_* bits of @spec (an object of flags or a number); EINVAL for unknown names or bits. */
export function foll(spec: GupFlags | number | undefined): number {
  if (spec === undefined) return 0;
  if (typeof spec === "number") {
    if (!Number.isInteger(spec) || spec < 0 || (spec & ~KNOWN) !== 0) {
      throw new DmaError("EINVAL", `gupFlags: 0x${spec.toString(16)} has bits that are no FOLL_* flag`, { arg: "gupFlags" });
    }
    return spec;
  }
  if (typeof spec !== "object" || spec === null) throw new DmaError("EINVAL", "gupFlags: must be an object or a number", { arg: "gupFlags" });
  let f = 0;
  for (const [name, on] of Object.entries(spec)) {
    const bit = BY_NAME[name as keyof GupFlags];
    if (bit === undefined) throw new DmaError("EINVAL", `gupFlags: unknown flag "${name}"`, { arg: "gupFlags" });
    if (on) f |= bit;
  }
  return f;
}

/**
 * isValidGupArgs - the flags the call runs with, or null when the combination is invalid
 * (the kernel WARNs once and the entry point returns -EINVAL or 0): internal flags from the
 * caller, FOLL_GET with FOLL_PIN, FOLL_LONGTERM without FOLL_PIN, FOLL_GET or FOLL_PIN
 * without a pages array, FOLL_LONGTERM with FOLL_PCI_P2PDMA.
 */
export function isValidGupArgs(flags: number, toSet: number, hasPages: boolean): number | null {
  if (flags & G.FOLL_INTERNAL_FLAGS) return null;
  flags |= toSet;
  if ((flags & (G.FOLL_GET | G.FOLL_PIN)) === (G.FOLL_GET | G.FOLL_PIN)) return null;
  if ((flags & G.FOLL_LONGTERM) && !(flags & G.FOLL_PIN)) return null;
  if ((flags & (G.FOLL_GET | G.FOLL_PIN)) && !hasPages) return null;
  if ((flags & (G.FOLL_LONGTERM | G.FOLL_PCI_P2PDMA)) === (G.FOLL_LONGTERM | G.FOLL_PCI_P2PDMA)) return null;
  return flags;
}

/** The names of the flags set in @f, for messages and traces ("write|longterm|pin"). */
export function follNames(f: number): string {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(BY_NAME)) if (f & bit) names.push(name);
  if (f & G.FOLL_GET) names.push("get");
  if (f & G.FOLL_PIN) names.push("pin");
  if (f & G.FOLL_TOUCH) names.push("touch");
  if (f & G.FOLL_FAST_ONLY) names.push("fastOnly");
  return names.join("|") || "0";
}

/** Why GUP-fast (or a slow-path step) stopped, by GUP_STOP_* code. */
export const GUP_STOP_NAMES = [
  "none", "not-present", "permission", "special", "devmap", "grab", "changed", "longterm",
  "unshare", "file-pin", "p2pdma", "write-protect-seq", "no-page",
] as const;
export type GupStop = (typeof GUP_STOP_NAMES)[number];
