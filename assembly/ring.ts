/**
 * Thread attachment: each instance (main thread or Worker) claims one ring, its
 * request/response area in shared memory, and loads the layout into its own globals.
 */
import {
  HDR_ADDR, HDR_INIT_DONE, HDR_THREAD_MASK,
} from "../src/abi/header";
import { EINVAL, EBUSY } from "../src/abi/errno";
import { R_NOT_INIT, R_NO_THREAD, R_DETACHED } from "../src/abi/reason";
import { fail } from "./errno";
import { RINGS, RING_STRIDE, THREADS, layoutLoad } from "./layout";

export let RING: usize = 0;
export let THREAD: i32 = -1;

/** ringCheck - 0, or -EINVAL when this instance has no ring to put results in. */
export function ringCheck(): i32 {
  return RING != 0 ? 0 : fail(EINVAL, R_DETACHED, 0);
}

/** coreAttach - claim a ring for this instance. Returns the thread index or -errno. */
export function coreAttach(): i32 {
  if (atomic.load<u32>(HDR_ADDR + HDR_INIT_DONE) != 1) return fail(EINVAL, R_NOT_INIT, 0);
  if (THREAD >= 0) return THREAD;
  layoutLoad();
  while (true) {
    const mask = atomic.load<u32>(HDR_ADDR + HDR_THREAD_MASK);
    let t: u32 = 0;
    while (t < THREADS && (mask & (1 << t)) != 0) t++;
    if (t == THREADS) return fail(EBUSY, R_NO_THREAD, THREADS);
    if (atomic.cmpxchg<u32>(HDR_ADDR + HDR_THREAD_MASK, mask, mask | (1 << t)) == mask) {
      THREAD = t;
      RING = RINGS + <usize>t * RING_STRIDE;
      return t;
    }
  }
}

/** coreDetach - give this instance's ring back. */
export function coreDetach(): void {
  if (THREAD < 0) return;
  atomic.and<u32>(HDR_ADDR + HDR_THREAD_MASK, ~(<u32>1 << THREAD));
  THREAD = -1;
  RING = 0;
}
