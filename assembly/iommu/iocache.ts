/**
 * The set-associative translation cache shared by the IOTLB (assembly/iommu/iotlb.ts) and the
 * device TLBs (assembly/iommu/atc.ts): entries tagged by page number, page size and an id
 * (domain << 20 | PASID in the IOTLB, the PASID in an ATC), LRU replacement.
 *
 * - A cache is {base, setMask, ways, live}: `live` points at 3 u32 counts of live entries
 *   by page size, so a lookup skips sizes that hold nothing, as the CPU TLB does.
 * - Set index: the page number at the entry's size modulo the number of sets.
 * - Victim: the first invalid way, else the least recently used (smallest stamp).
 * - Invalidation drops every entry whose id matches under a mask and whose pages overlap
 *   [lo, hi); it probes set by set when the range is small and sweeps the cache otherwise,
 *   with the same result either way.
 */
import { IOTE_TAG, IOTE_ID, IOTE_DATA, IOTE_STAMP, IOTE_SIZE, IOTE_TAG_V, IOTE_TAG_SIZE_SHIFT, IOTE_TAG_VPN_SHIFT } from "../../src/abi/iommu";

// @ts-ignore: decorator
@inline export function ioTag(vpnS: u64, size: u32): u64 {
  return (vpnS << IOTE_TAG_VPN_SHIFT) | (<u64>size << IOTE_TAG_SIZE_SHIFT) | IOTE_TAG_V;
}

// @ts-ignore: decorator
@inline function liveAdd(live: usize, size: u32, d: i32): void {
  const a = live + (<usize>size << 2);
  store<u32>(a, <u32>(<i32>load<u32>(a) + d));
}

/** ioLookup - the entry translating page @lvpn for @id, or 0 on a miss. */
// @ts-ignore: decorator
@inline export function ioLookup(base: usize, setMask: u64, ways: u32, live: usize, lvpn: u64, id: u32): usize {
  const setBytes = <usize>ways * IOTE_SIZE;
  for (let size: u32 = 0; size < 3; size++) {
    if (load<u32>(live + (<usize>size << 2)) == 0) continue;
    const vpnS = lvpn >> (<u64>size * 9);
    const want = ioTag(vpnS, size);
    let e = base + <usize>(vpnS & setMask) * setBytes;
    const end = e + setBytes;
    for (; e < end; e += IOTE_SIZE) {
      if (load<u64>(e + IOTE_TAG) == want && load<u32>(e + IOTE_ID) == id) return e;
    }
  }
  return 0;
}

/** ioFill - insert a translation of @size for @id, evicting the set's LRU entry if full. */
export function ioFill(
  base: usize, setMask: u64, ways: u32, live: usize, lvpn: u64, id: u32, size: u32, data: u64, stamp: u64,
): void {
  const vpnS = lvpn >> (<u64>size * 9);
  let e = base + <usize>(vpnS & setMask) * <usize>ways * IOTE_SIZE;
  const end = e + <usize>ways * IOTE_SIZE;
  let victim: usize = 0;
  let oldest: u64 = U64.MAX_VALUE;
  for (; e < end; e += IOTE_SIZE) {
    const tag = load<u64>(e + IOTE_TAG);
    if ((tag & IOTE_TAG_V) == 0) {
      victim = e;
      break;
    }
    const st = load<u64>(e + IOTE_STAMP);
    if (st < oldest) {
      oldest = st;
      victim = e;
    }
  }
  const old = load<u64>(victim + IOTE_TAG);
  if (old & IOTE_TAG_V) liveAdd(live, <u32>(old >> IOTE_TAG_SIZE_SHIFT) & 3, -1);
  store<u64>(victim + IOTE_TAG, ioTag(vpnS, size));
  store<u32>(victim + IOTE_ID, id);
  store<u64>(victim + IOTE_DATA, data);
  store<u64>(victim + IOTE_STAMP, stamp);
  liveAdd(live, size, 1);
}

/** ioDrop - invalidate entry @e. */
export function ioDrop(live: usize, e: usize): void {
  const tag = load<u64>(e + IOTE_TAG);
  store<u64>(e + IOTE_TAG, 0);
  liveAdd(live, <u32>(tag >> IOTE_TAG_SIZE_SHIFT) & 3, -1);
}

/**
 * ioInvalidate - drop the entries with (id & @mask) == (@id & @mask) that overlap pages
 * [@lo, @hi). Returns how many were dropped.
 */
export function ioInvalidate(
  base: usize, sets: u32, ways: u32, live: usize, id: u32, mask: u32, lo: u64, hi: u64,
): u32 {
  let dropped: u32 = 0;
  const want = id & mask;
  let sizes: u64 = 0;
  for (let s: u32 = 0; s < 3; s++) if (load<u32>(live + (<usize>s << 2)) != 0) sizes++;
  if (sizes == 0 || hi <= lo) return 0;
  const entries = <u64>sets * ways;
  const setBytes = <usize>ways * IOTE_SIZE;
  if (hi - lo < entries && (hi - lo) * sizes * <u64>ways < entries) {
    const setMask = <u64>(sets - 1);
    for (let p = lo; p < hi; p++) {
      for (let size: u32 = 0; size < 3; size++) {
        if (load<u32>(live + (<usize>size << 2)) == 0) continue;
        const vpnS = p >> (<u64>size * 9);
        const tag = ioTag(vpnS, size);
        let e = base + <usize>(vpnS & setMask) * setBytes;
        const end = e + setBytes;
        for (; e < end; e += IOTE_SIZE) {
          if (load<u64>(e + IOTE_TAG) == tag && (load<u32>(e + IOTE_ID) & mask) == want) {
            ioDrop(live, e);
            dropped++;
          }
        }
      }
    }
    return dropped;
  }
  let e = base;
  const end = base + <usize>entries * IOTE_SIZE;
  for (; e < end; e += IOTE_SIZE) {
    const tag = load<u64>(e + IOTE_TAG);
    if ((tag & IOTE_TAG_V) == 0 || (load<u32>(e + IOTE_ID) & mask) != want) continue;
    const size = <u32>(tag >> IOTE_TAG_SIZE_SHIFT) & 3;
    const first = (tag >> IOTE_TAG_VPN_SHIFT) << (<u64>size * 9);
    const last = first + (<u64>1 << (<u64>size * 9));
    if (first < hi && lo < last) {
      ioDrop(live, e);
      dropped++;
    }
  }
  return dropped;
}
