/**
 * Reference model: the set-associative translation cache of the IOMMU, the twin of
 * assembly/iommu/iocache.ts, shared by the IOTLB and the device ATCs (test/reference/iommu.ts).
 * Invalidation sweeps every entry: the core probes set by set for small ranges, with the
 * same result.
 */

/** One cache entry, as a state snapshot shows it (core and reference alike). */
export function ioEntryString(e: number, vpnS: number, size: number, id: number, dlo: number, dhi: number, stamp: number): string {
  return `${e}:${vpnS}:${size}:${id >>> 0}:${(dlo >>> 0).toString(16)}:${(dhi >>> 0).toString(16)}:${stamp}`;
}

/** The twin of assembly/iommu/iocache.ts: sets x ways entries, live counts by page size. */
export class RefIoCache {
  readonly sets: number;
  readonly ways: number;
  readonly valid: Uint8Array;
  readonly vpnS: Float64Array;
  readonly size: Uint8Array;
  readonly id: Uint32Array;
  readonly dlo: Uint32Array;
  readonly dhi: Uint32Array;
  readonly stamp: Float64Array;
  readonly live: [number, number, number] = [0, 0, 0];

  constructor(sets: number, ways: number) {
    this.sets = sets;
    this.ways = ways;
    const n = sets * ways;
    this.valid = new Uint8Array(n);
    this.vpnS = new Float64Array(n);
    this.size = new Uint8Array(n);
    this.id = new Uint32Array(n);
    this.dlo = new Uint32Array(n);
    this.dhi = new Uint32Array(n);
    this.stamp = new Float64Array(n);
  }

  /** The entry translating page @lvpn for @id (sizes ascending, ways in order), or -1. */
  lookup(lvpn: number, id: number): number {
    for (let size = 0; size < 3; size++) {
      if (this.live[size] === 0) continue;
      const vpnS = Math.floor(lvpn / 2 ** (9 * size));
      const base = (vpnS % this.sets) * this.ways;
      for (let e = base; e < base + this.ways; e++) {
        if (this.valid[e] && this.size[e] === size && this.vpnS[e] === vpnS && this.id[e] === id >>> 0) return e;
      }
    }
    return -1;
  }

  /** Insert; victim: the first invalid way, else the smallest stamp. */
  fill(lvpn: number, id: number, size: number, dlo: number, dhi: number, stamp: number): void {
    const vpnS = Math.floor(lvpn / 2 ** (9 * size));
    const base = (vpnS % this.sets) * this.ways;
    let victim = -1;
    let oldest = Infinity;
    for (let e = base; e < base + this.ways; e++) {
      if (!this.valid[e]) {
        victim = e;
        break;
      }
      if (this.stamp[e]! < oldest) {
        oldest = this.stamp[e]!;
        victim = e;
      }
    }
    if (this.valid[victim]) this.live[this.size[victim]!]!--;
    this.valid[victim] = 1;
    this.vpnS[victim] = vpnS;
    this.size[victim] = size;
    this.id[victim] = id >>> 0;
    this.dlo[victim] = dlo >>> 0;
    this.dhi[victim] = dhi >>> 0;
    this.stamp[victim] = stamp;
    this.live[size]!++;
  }

  drop(e: number): void {
    this.valid[e] = 0;
    this.live[this.size[e]!]!--;
  }

  /** Drop entries with (id & @mask) == (@id & @mask) overlapping pages [@lo, @hi). */
  invalidate(id: number, mask: number, lo: number, hi: number): number {
    if (this.live.every((n) => n === 0) || hi <= lo) return 0;
    const want = (id & mask) >>> 0;
    let dropped = 0;
    for (let e = 0; e < this.sets * this.ways; e++) {
      if (!this.valid[e] || (this.id[e]! & mask) >>> 0 !== want) continue;
      const first = this.vpnS[e]! * 2 ** (9 * this.size[e]!);
      if (first < hi && lo < first + 2 ** (9 * this.size[e]!)) {
        this.drop(e);
        dropped++;
      }
    }
    return dropped;
  }

  /** Every valid entry, by index. */
  entries(): string[] {
    const out: string[] = [];
    for (let e = 0; e < this.sets * this.ways; e++) {
      if (this.valid[e]) out.push(ioEntryString(e, this.vpnS[e]!, this.size[e]!, this.id[e]!, this.dlo[e]!, this.dhi[e]!, this.stamp[e]!));
    }
    return out;
  }
}
