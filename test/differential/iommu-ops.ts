/**
 * The operations of the IOMMU differential test (iommu.diff.test.ts) and their fast-check
 * arbitraries: IO page tables, the device table, batched translation (request records and
 * IOVA lists), invalidation, root frees, frame allocation and DMA. The test turns each into
 * the same calls on the core and on the reference model.
 * @module
 */
import fc from "fast-check";
import * as I from "../../src/abi/iommu.js";
import * as X from "../../src/abi/x86.js";

/** A page: near a recent map, in the IOVA window, or one of a few edge pages. */
export type VpnSel = { recent: number; delta: number } | { win: number } | { edge: number };
/**
 * A frame to map or (identity domains, bypass requests) to DMA to: 0 the movable zone and
 * just past RAM, 1 reserved low frames, 2 an allocation, 3 the P2PDMA zone (mostly its first
 * 8 frames; without one, as 0), 4 a frame past 2^32 (its low 32 bits are RAM).
 */
export type PfnSel = { z: 0 | 1 | 2 | 3 | 4; off: number };
/**
 * A DMA request's P2P window: 0 none, 1 the whole P2PDMA zone, 2 [start + a, start + a + b)
 * (over the frames PfnSel 3 favours; b = 0: empty), 3 [0, 2^32 - 1), 4 inverted (empty).
 */
export type WinSel = { w: 0 | 1 | 2 | 3 | 4; a: number; b: number };
export type DevReq = { dev: number; pasid: number; vpn: VpnSel; off: number; acc: number; wild: number };
export type DmaOp = { dev: number; pasid: number; vpn: VpnSel; pa: PfnSel; off: number; len: number; dir: number; at: number; bypass: boolean; win: WinSel };

export type Op =
  | { k: "alloc"; order: number; compound: boolean; p2p: boolean }
  | { k: "free"; pick: number }
  | { k: "split"; pick: number; bad: boolean }
  | { k: "pgdAlloc" }
  | { k: "pgdFree"; root: number }
  | { k: "map"; root: number; win: number; n: number; pfn: PfnSel; lo: number; hi: number; level: number }
  | { k: "unmap"; root: number; vpn: VpnSel; n: number }
  | { k: "protect"; root: number; vpn: VpnSel; n: number; bits: [number, number, number, number] }
  | { k: "perturb"; root: number; vpn: VpnSel; lo: number; hi: number }
  | { k: "dev"; dev: number; flags: number; type: number; domain: number; root: number }
  | { k: "pasid"; dev: number; pasid: number; domain: number; root: number; clear: boolean }
  | { k: "xlate"; reqs: DevReq[]; flags: number; tooMany: boolean; spoil: number }
  | { k: "again"; write: boolean; flags: number }
  | { k: "iovas"; dev: number; pasid: number; acc: number; flags: number; reqs: DevReq[]; place: number; tooMany: boolean; spoil: number; again: boolean }
  | { k: "iotlbInv"; gran: number; domain: number; pasid: number; vpn: VpnSel; n: number }
  | { k: "atcInv"; dev: number; pasid: number; vpn: VpnSel; n: number; all: boolean }
  | { k: "dma"; reqs: DmaOp[]; flags: number; count: number; seed: number; spoil: number }
  | { k: "burst"; dev: number; pa: PfnSel; win: WinSel };

/** The IOVA window (1 GiB-aligned, in pages) where maps land, and one for 1 GiB leaves. */
export const IOW = 3 * 2 ** 18;
export const IOW_1G = 5 * 2 ** 18;
const DOMAINS = [1, 2, 3, 4095];
const PASIDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0xfffff];

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const vpnArb: fc.Arbitrary<VpnSel> = fc.oneof(
  w(6, fc.record({ recent: fc.nat(), delta: fc.oneof(w(4, fc.integer({ min: -1, max: 10 })), w(1, fc.integer({ min: -2, max: 20 }))) })),
  w(3, fc.record({ win: fc.integer({ min: 0, max: 3 * 512 }) })),
  w(1, fc.record({ edge: fc.nat(7) })),
);
/** Requests go mostly near recent maps of the table their device and PASID walk. */
const reqVpnArb: fc.Arbitrary<VpnSel> = fc.oneof(
  w(10, fc.record({ recent: fc.nat(), delta: fc.integer({ min: -1, max: 8 }) })),
  w(2, fc.record({ win: fc.integer({ min: 0, max: 3 * 512 }) })),
  w(1, fc.record({ edge: fc.nat(7) })),
);
const pfnArb: fc.Arbitrary<PfnSel> = fc.record({
  z: fc.oneof(w(6, fc.constant(0)), w(2, fc.constant(1)), w(2, fc.constant(2)), w(4, fc.constant(3)), w(1, fc.constant(4))) as fc.Arbitrary<PfnSel["z"]>,
  off: fc.nat(100000),
});
const winArb: fc.Arbitrary<WinSel> = fc.record({
  w: fc.oneof(w(4, fc.constant(0)), w(2, fc.constant(1)), w(5, fc.constant(2)), w(1, fc.constant(3)), w(1, fc.constant(4))) as fc.Arbitrary<WinSel["w"]>,
  a: fc.nat(9), b: fc.nat(9),
});
const devArb = fc.oneof(w(20, fc.nat(3)), w(1, fc.constantFrom(4, 1000)));
const pasidArb = fc.oneof(w(8, fc.constant(0)), w(6, fc.constantFrom(...PASIDS)), w(1, fc.constantFrom(0x100000, 0xffffffff)));
/** Inside a batch one bad request fails it all: bad values come from the op's `spoil`. */
const reqDevArb = fc.oneof(w(3, fc.constant(0)), w(4, fc.nat(3)));
const reqPasidArb = fc.oneof(w(14, fc.constant(0)), w(3, fc.constantFrom(1, 2, 3)), w(1, fc.constantFrom(...PASIDS)));
const spoilArb = fc.oneof(w(24, fc.constant(0)), w(1, fc.integer({ min: 1, max: 5 })));
/** DMA's spoils add direction words with bits beside IODIR_* and IODF_BYPASS. */
const dmaSpoilArb = fc.oneof(w(24, fc.constant(0)), w(1, fc.integer({ min: 1, max: 8 })));
const domainArb = fc.oneof(w(12, fc.constantFrom(...DOMAINS)), w(1, fc.constantFrom(0, 4096)));
/** A root: an index into the live roots (mostly the first two; 15 = the newest), or a bad one (12..14). */
const rootArb = fc.oneof(w(16, fc.nat(11)), w(3, fc.constant(15)), w(1, fc.constantFrom(12, 13, 14)));
const flagsArb = fc.oneof(w(10, fc.constant(0)), w(6, fc.constantFrom(I.IOX_CHECK, I.IOX_NOCACHE, I.IOX_CHECK | I.IOX_NOCACHE)), w(1, fc.constantFrom(4, 0x80000000)));
const accArb = fc.oneof(w(8, fc.constantFrom(I.IOA_READ, I.IOA_WRITE, I.IOA_READ | I.IOA_WRITE)), w(6, fc.nat(15)));
const protLo = fc.nat(0xfff).map((b) => b & (X.PTE_RW | X.PTE_US | X.PTE_A | X.PTE_D | X.PTE_G));
const mapLo = fc.oneof(w(2, fc.constantFrom(X.PTE_RW | X.PTE_US, X.PTE_RW | X.PTE_US | X.PTE_A | X.PTE_D, X.PTE_US)), w(2, protLo));
const protHi = fc.constantFrom(0, 0, 0, 0x80000000, 0x08000000);
const nArb = fc.oneof(w(6, fc.integer({ min: 1, max: 24 })), w(2, fc.integer({ min: 1, max: 1600 })), w(1, fc.constantFrom(0, 1.5, 2 ** 52)));

const devReqArb: fc.Arbitrary<DevReq> = fc.record({
  dev: reqDevArb, pasid: reqPasidArb, vpn: reqVpnArb, off: fc.nat(4095), acc: accArb,
  wild: fc.oneof(w(20, fc.constant(0)), w(1, fc.constantFrom(0x8000, 0x800000, 0x80000000))),
});
const dmaReqArb: fc.Arbitrary<DmaOp> = fc.record({
  dev: reqDevArb, pasid: reqPasidArb, vpn: reqVpnArb, pa: pfnArb, off: fc.nat(4095),
  len: fc.oneof(w(8, fc.integer({ min: 1, max: 6000 })), w(1, fc.constant(0))),
  dir: fc.constantFrom(I.IODIR_TO_DEVICE, I.IODIR_FROM_DEVICE), at: fc.double({ min: 0, max: 1, noNaN: true }),
  bypass: fc.oneof(w(4, fc.constant(false)), w(1, fc.constant(true))), win: winArb,
});

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  w(3, fc.record({ k: fc.constant("alloc" as const), order: fc.oneof(w(12, fc.nat(3)), w(1, fc.constant(12))), compound: fc.boolean(), p2p: fc.oneof(w(2, fc.constant(false)), w(1, fc.constant(true))) })),
  w(2, fc.record({ k: fc.constant("free" as const), pick: fc.nat() })),
  w(1, fc.record({ k: fc.constant("split" as const), pick: fc.nat(), bad: fc.oneof(w(4, fc.constant(false)), w(1, fc.constant(true))) })),
  w(1, fc.constant({ k: "pgdAlloc" as const })),
  w(2, fc.record({ k: fc.constant("pgdFree" as const), root: rootArb })),
  w(10, fc.record({ k: fc.constant("map" as const), root: rootArb, win: fc.nat(3 * 512), n: fc.integer({ min: 1, max: 16 }), pfn: pfnArb, lo: mapLo, hi: protHi, level: fc.oneof(w(10, fc.constant(1)), w(3, fc.constant(2)), w(1, fc.constant(3))) })),
  w(3, fc.record({ k: fc.constant("unmap" as const), root: rootArb, vpn: vpnArb, n: fc.oneof(w(5, fc.integer({ min: 1, max: 8 })), w(1, fc.integer({ min: 1, max: 4000 }))) })),
  w(3, fc.record({ k: fc.constant("protect" as const), root: rootArb, vpn: vpnArb, n: fc.integer({ min: 1, max: 600 }), bits: fc.tuple(protLo, protHi, protLo, protHi) })),
  w(2, fc.record({ k: fc.constant("perturb" as const), root: rootArb, vpn: vpnArb, lo: fc.constantFrom(X.PTE_RW, X.PTE_US, X.PTE_A | X.PTE_D, X.PTE_D, 0x2000, 0), hi: fc.constantFrom(0, 0, 0x80000000, 0x80000) })),
  w(3, fc.record({
    k: fc.constant("dev" as const), dev: devArb,
    flags: fc.oneof(w(12, fc.nat(15).map((f) => f | I.DTE_VALID)), w(1, fc.nat(15)), w(1, fc.constantFrom(16, 0x80000000))),
    type: fc.oneof(w(12, fc.constant(I.IODOM_PAGING)), w(3, fc.constantFrom(I.IODOM_BLOCKED, I.IODOM_IDENTITY)), w(1, fc.constant(3))),
    domain: domainArb, root: rootArb,
  })),
  w(4, fc.record({ k: fc.constant("pasid" as const), dev: fc.oneof(w(4, fc.constant(0)), w(3, devArb)), pasid: fc.oneof(w(10, fc.constantFrom(...PASIDS)), w(1, fc.constantFrom(0, 0x100000))), domain: domainArb, root: rootArb, clear: fc.oneof(w(3, fc.constant(false)), w(1, fc.constant(true))) })),
  w(6, fc.record({
    k: fc.constant("iovas" as const), dev: devArb, pasid: reqPasidArb, acc: accArb, flags: flagsArb,
    reqs: fc.array(devReqArb, { minLength: 0, maxLength: 16 }), place: fc.nat(2),
    tooMany: fc.oneof(w(30, fc.constant(false)), w(1, fc.constant(true))), spoil: fc.oneof(w(24, fc.constant(0)), w(1, fc.integer({ min: 1, max: 4 }))),
    again: fc.boolean(),
  })),
  w(14, fc.record({ k: fc.constant("xlate" as const), reqs: fc.array(devReqArb, { minLength: 0, maxLength: 12 }), flags: flagsArb, tooMany: fc.oneof(w(40, fc.constant(false)), w(1, fc.constant(true))), spoil: spoilArb })),
  w(6, fc.record({ k: fc.constant("again" as const), write: fc.boolean(), flags: flagsArb })),
  w(4, fc.record({ k: fc.constant("iotlbInv" as const), gran: fc.oneof(w(12, fc.nat(3)), w(1, fc.constant(4))), domain: domainArb, pasid: pasidArb, vpn: vpnArb, n: nArb })),
  w(3, fc.record({ k: fc.constant("atcInv" as const), dev: devArb, pasid: pasidArb, vpn: vpnArb, n: nArb, all: fc.boolean() })),
  w(1, fc.record({ k: fc.constant("burst" as const), dev: fc.constantFrom(0, 3, 3), pa: pfnArb, win: winArb })),
  w(8, fc.record({ k: fc.constant("dma" as const), reqs: fc.array(dmaReqArb, { minLength: 1, maxLength: 4 }), flags: flagsArb, count: fc.oneof(w(30, fc.constant(-1)), w(1, fc.constantFrom(0, 28, 110))), seed: fc.nat(255), spoil: dmaSpoilArb })),
);
