/**
 * The one error class of dmalab: a kernel errno name plus a message that names the bad
 * argument. Every public call either returns or throws a DmaError; a failed call changes
 * no state.
 * @module
 */
import * as errno from "./abi/errno.js";

export type ErrnoName = keyof typeof errno;

const byNumber = new Map<number, ErrnoName>(
  (Object.entries(errno) as [ErrnoName, number][]).map(([name, n]) => [n, name]),
);

/** errnoName - the name of a (positive or negative) errno value, e.g. -22 -> "EINVAL". */
export function errnoName(n: number): ErrnoName {
  const name = byNumber.get(Math.abs(n));
  if (!name) throw new RangeError(`unknown errno ${n}`);
  return name;
}

export interface DmaErrorOptions {
  /** The argument (or argument path) that was wrong, when one was. */
  arg?: string;
  cause?: unknown;
}

export class DmaError extends Error {
  override readonly name = "DmaError";
  /** Kernel errno name: "EINVAL", "ENOMEM", ... */
  readonly code: ErrnoName;
  /** Its positive value (22 for EINVAL). */
  readonly errno: number;
  readonly arg: string | undefined;

  constructor(code: ErrnoName, message: string, options: DmaErrorOptions = {}) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = errno[code];
    this.arg = options.arg;
  }
}

/** einval - shorthand for the common "bad argument" error. */
export function einval(arg: string, message: string): DmaError {
  return new DmaError("EINVAL", `${arg}: ${message}`, { arg });
}
