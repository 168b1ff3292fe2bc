/**
 * Every import of the core, in one file: the core calls nothing else on the host.
 *
 * coreAbort replaces AssemblyScript's `abort` (asc --use abort=...): a failed assertion in
 * the core reaches the host as a thrown error naming the file and line, never as a bare
 * RuntimeError.
 */

// @ts-ignore: decorator
@external("env", "coreAbort")
declare function hostAbort(message: usize, fileName: usize, line: u32, column: u32): void;

export function coreAbort(
  message: string | null,
  fileName: string | null,
  lineNumber: u32,
  columnNumber: u32,
): void {
  hostAbort(changetype<usize>(message), changetype<usize>(fileName), lineNumber, columnNumber);
  unreachable();
}
