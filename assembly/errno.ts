/**
 * Error reporting of the core: a negative errno as the return value, and the reason (with one
 * detail word) in this instance's globals, read by the host through coreReason().
 */
export let lastReason: u32 = 0;
export let lastArg: u32 = 0;

/** fail - record why a call is refused and return -errno. */
export function fail(errno: i32, reason: u32, arg: u32 = 0): i32 {
  lastReason = reason;
  lastArg = arg;
  return -errno;
}
