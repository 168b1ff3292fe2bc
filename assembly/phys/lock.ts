/**
 * Spinlocks over shared words (zone->lock, the pool lock). Critical sections are a few
 * dozen instructions, and a browser's main thread may not block in Atomics.wait, so the
 * lock spins.
 */
// @ts-ignore: decorator
@inline export function spinLock(addr: usize): void {
  while (atomic.cmpxchg<u32>(addr, 0, 1) != 0) {
    while (atomic.load<u32>(addr) != 0) {
      /* spin */
    }
  }
}

// @ts-ignore: decorator
@inline export function spinUnlock(addr: usize): void {
  atomic.store<u32>(addr, 0);
}
