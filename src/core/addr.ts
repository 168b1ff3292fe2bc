/**
 * Addresses and sizes at the API edge. Addresses are numbers (exact up to 2^53) or bigints
 * (any 64-bit value, e.g. a kernel-half address); inside, they become 4 KiB page numbers,
 * which always fit a number exactly.
 * @module
 */
import { einval } from "../errors.js";

export type Address = number | bigint;

const TWO64 = 1n << 64n;

/** A 64-bit address as [page number, offset in page]; throws EINVAL naming @arg. */
export function splitAddress(a: Address, arg: string): [vpn: number, off: number] {
  if (typeof a === "bigint") {
    if (a < 0n || a >= TWO64) throw einval(arg, `${a} is not a 64-bit address`);
    return [Number(a >> 12n), Number(a & 0xfffn)];
  }
  if (!Number.isSafeInteger(a) || a < 0) {
    throw einval(arg, `${a} is not an address (a non-negative safe integer, or a bigint)`);
  }
  return [Math.floor(a / 4096), a % 4096];
}

/** The page number of a page-aligned address. */
export function pageNumber(a: Address, arg: string): number {
  const [vpn, off] = splitAddress(a, arg);
  if (off !== 0) throw einval(arg, `${hex(a)} is not aligned to 4 KiB`);
  return vpn;
}

/** Pages in a size that is a positive multiple of 4 KiB. */
export function pageCount(size: Address, arg: string): number {
  const bytes = typeof size === "bigint" ? size : BigInt(Number.isSafeInteger(size) ? size : -1);
  if (bytes <= 0n) throw einval(arg, `${size} is not a positive size`);
  if (bytes >= TWO64) throw einval(arg, `${size} is larger than a 64-bit address space`);
  if (bytes % 4096n !== 0n) throw einval(arg, `${size} is not a multiple of 4 KiB`);
  return Number(bytes / 4096n);
}

/** The address of page @vpn plus @off, as a number when exact, else a bigint. */
export function addressOf(vpn: number, off = 0): Address {
  const a = vpn * 4096 + off;
  return Number.isSafeInteger(a) ? a : (BigInt(vpn) << 12n) | BigInt(off);
}

/** [low 32 bits, high 32 bits] of an address. */
export function addressWords(a: Address): [lo: number, hi: number] {
  if (typeof a === "bigint") return [Number(a & 0xffffffffn), Number((a >> 32n) & 0xffffffffn)];
  const lo = a >>> 0;
  return [lo, (a - lo) / 4294967296];
}

export function hex(a: Address): string {
  return "0x" + a.toString(16);
}
