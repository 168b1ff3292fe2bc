/**
 * The x86-64 page walk (SDM vol. 3 ch. 4): what each access gets, and what the walker
 * writes back.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { Cpu, Machine, PageTable, Translation } from "../../src/index.js";
import { smallMachine } from "../helpers.js";

let m: Machine;
let pt: PageTable;
let cpu: Cpu;

beforeEach(async () => {
  m = await smallMachine();
  pt = m.pgdAlloc();
  cpu = m.cpu(0);
  cpu.writeCr3(pt, { pcid: 1 });
});

function fault(t: Translation): number {
  if (t.ok) throw new Error(`expected a fault, got pa 0x${t.pa.toString(16)}`);
  return t.fault.errorCode;
}

function pa(t: Translation): number {
  if (!t.ok) throw new Error(`expected a translation, got ${t.fault.vector} 0x${t.fault.errorCode.toString(16)}`);
  return t.pa;
}

const VA = 0x7f00_0000_0000;

describe("translation", () => {
  it("maps a 4 KiB page: PA = frame | offset", () => {
    pt.remapPfnRange(VA, 0x1234, 4096, { user: true });
    expect(pa(cpu.translate(VA + 0xabc))).toBe(0x1234abc);
  });

  it("maps 2 MiB and 1 GiB leaves: the offset keeps 21 and 30 bits", () => {
    pt.remapPfnRange(VA, 0x200, 2 << 20, { user: true }, "2M");
    pt.remapPfnRange(VA + 2 ** 30, 0x40000, 2 ** 30, { user: true }, "1G");
    const t = cpu.translate(VA + 0x1f_f123);
    expect(pa(t)).toBe(0x200 * 4096 + 0x1f_f123);
    expect(t.ok && t.pageSize).toBe(2 << 20);
    const g = cpu.translate(VA + 2 ** 30 + 0x3abc_d123);
    expect(pa(g)).toBe(0x40000 * 4096 + 0x3abc_d123);
    expect(g.ok && g.pageSize).toBe(2 ** 30);
    expect(pt.ptepGet(VA).level).toBe(2);
    expect(pt.ptepGet(VA + 2 ** 30).level).toBe(3);
  });

  it("faults not-present with the access bits as the error code (user read = 0x4, write = 0x6)", () => {
    expect(fault(cpu.translate(VA))).toBe(0x4);
    expect(fault(cpu.translate(VA, { write: true }))).toBe(0x6);
    expect(fault(cpu.translate(VA, { user: false }))).toBe(0x0);
    expect(fault(cpu.translate(VA, { fetch: true }))).toBe(0x14);
  });

  it("raises #GP, not #PF, for a non-canonical address", () => {
    const t = cpu.translate(0x8000_0000_0000);
    expect(t.ok).toBe(false);
    expect(!t.ok && t.fault.vector).toBe("#GP");
    const kernelHalf = cpu.translate(0xffff_8000_0000_0000n);
    expect(!kernelHalf.ok && kernelHalf.fault.vector).toBe("#PF"); // canonical, just unmapped
  });

  it("translates kernel-half addresses through upper-level entries without US", () => {
    const kva = 0xffff_8880_0000_0000n;
    pt.remapPfnRange(kva, 0x300, 4096, { write: true, global: true });
    expect(pa(cpu.translate(kva + 0x10n, { user: false, write: true }))).toBe(0x300010);
    // A user access faults on protection: the PML4 entry (_KERNPG_TABLE, 0x63) lacks US.
    expect(fault(cpu.translate(kva, { user: true }))).toBe(0x5);
    expect(pt.ptepGet(kva, 4).pte & 0xfffn).toBe(0x63n); // _KERNPG_TABLE
    expect(pt.ptepGet(kva).info.global).toBe(true);
  });
});

describe("accessed and dirty bits", () => {
  it("sets A on a read and D only on a write, in the leaf; A in the upper levels", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true, write: true });
    expect(pt.ptepGet(VA).info).toMatchObject({ accessed: false, dirty: false });
    cpu.translate(VA);
    expect(pt.ptepGet(VA).info).toMatchObject({ accessed: true, dirty: false });
    cpu.translate(VA, { write: true });
    expect(pt.ptepGet(VA).info).toMatchObject({ accessed: true, dirty: true });
  });

  it("sets A in an upper-level entry it walks through (Linux creates them with A set)", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true });
    const pde = pt.ptepGet(VA, 2).pte;
    expect(pde & 0xfffn).toBe(0x67n);
    pt.setPteAt(VA, 2, pde & ~0x20n);
    cpu.translate(VA, {}, { sideEffects: false });
    expect(pt.ptepGet(VA, 2).info.accessed).toBe(false);
    cpu.translate(VA);
    expect(pt.ptepGet(VA, 2).info.accessed).toBe(true);
  });

  it("writes nothing on a faulting access or with side effects off", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true });
    cpu.translate(VA, { write: true }); // read-only: a protection fault
    expect(pt.ptepGet(VA).info.accessed).toBe(false);
    cpu.translate(VA, {}, { sideEffects: false });
    expect(pt.ptepGet(VA).info.accessed).toBe(false);
    expect(cpu.tlbEntries()).toEqual([]);
  });

  it("re-walks a write through a TLB entry not yet dirty, so D gets set", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true, write: true });
    cpu.translate(VA); // fills the TLB with D clear
    const w = cpu.translate(VA, { write: true });
    expect(w.ok && w.tlbHit).toBe(false);
    expect(pt.ptepGet(VA).info.dirty).toBe(true);
    const again = cpu.translate(VA, { write: true });
    expect(again.ok && again.tlbHit).toBe(true);
  });
});

describe("rights", () => {
  it("ANDs RW and US over the levels", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true, write: true });
    // Clear RW in the PDPT entry (a table pointer: only its flags may change).
    const tableEntry = pt.ptepGet(VA, 3).pte;
    expect(tableEntry & 0xfffn).toBe(0x67n); // Linux's _PAGE_TABLE
    pt.setPteAt(VA, 3, tableEntry & ~2n);
    expect(fault(cpu.translate(VA, { write: true }))).toBe(0x7);
    expect(pa(cpu.translate(VA))).toBe(0x1000000);
    pt.setPteAt(VA, 3, tableEntry & ~4n); // RW back, US off
    // Rights were removed: until a flush the CPU keeps using its cached translation.
    expect(pa(cpu.translate(VA))).toBe(0x1000000);
    cpu.invlpg(VA);
    expect(fault(cpu.translate(VA))).toBe(0x5);
  });

  it("honours CR0.WP for supervisor writes to read-only pages", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: false });
    expect(fault(cpu.translate(VA, { user: false, write: true }))).toBe(0x3);
    cpu.setControl({ wp: false });
    expect(pa(cpu.translate(VA, { user: false, write: true }))).toBe(0x1000000);
  });

  it("faults a fetch from an NX page (user fetch = 0x15) only with EFER.NXE", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true, nx: true });
    expect(fault(cpu.translate(VA, { fetch: true }))).toBe(0x15);
    cpu.setControl({ nxe: false });
    // Without NXE bit 63 is reserved: every access faults with RSVD (0x8) and P.
    expect(fault(cpu.translate(VA))).toBe(0xd);
  });

  it("applies SMEP to supervisor fetches and SMAP to supervisor data accesses of user pages", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true, write: true });
    expect(fault(cpu.translate(VA, { user: false, fetch: true }))).toBe(0x11);
    expect(fault(cpu.translate(VA, { user: false }))).toBe(0x1);
    expect(pa(cpu.translate(VA, { user: false, ac: true }))).toBe(0x1000000);
    cpu.setControl({ smap: false, smep: false });
    expect(pa(cpu.translate(VA, { user: false }))).toBe(0x1000000);
    expect(pa(cpu.translate(VA, { user: false, fetch: true }))).toBe(0x1000000);
  });

  it("applies protection keys to data accesses of user pages (write blocked by WD = 0x27)", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true, write: true, pkey: 3 });
    cpu.wrpkru(0); // all keys allowed
    expect(pa(cpu.translate(VA, { write: true }))).toBe(0x1000000);
    cpu.flushTlbAll();
    cpu.wrpkru(2 << 6); // key 3: write-disable
    expect(fault(cpu.translate(VA, { write: true }))).toBe(0x27);
    expect(pa(cpu.translate(VA))).toBe(0x1000000);
    cpu.wrpkru(1 << 6); // key 3: access-disable
    expect(fault(cpu.translate(VA))).toBe(0x25);
    expect(pa(cpu.translate(VA, { fetch: true }))).toBe(0x1000000); // never for fetches
    // Linux's default PKRU disables every key but 0.
    cpu.wrpkru(0x55555554);
    expect(fault(cpu.translate(VA))).toBe(0x25);
  });
});

describe("reserved bits", () => {
  it("faults RSVD for a frame above MAXPHYADDR", () => {
    pt.remapPfnRange(VA, 0x1000, 4096, { user: true });
    const pte = pt.ptepGet(VA).pte;
    pt.setPteAt(VA, 1, pte | (1n << 47n)); // physAddrBits is 46
    expect(fault(cpu.translate(VA))).toBe(0xd);
  });

  it("faults RSVD for PS in a PML4 entry and for low frame bits of a 2 MiB leaf", () => {
    pt.remapPfnRange(VA, 0x200, 2 << 20, { user: true }, "2M");
    const pde = pt.ptepGet(VA).pte;
    pt.setPteAt(VA, 2, pde | (1n << 13n));
    expect(fault(cpu.translate(VA))).toBe(0xd);
    pt.setPteAt(VA, 2, pde);
    expect(pa(cpu.translate(VA))).toBe(0x200000);
    const pml4e = pt.ptepGet(VA, 4).pte;
    pt.setPteAt(VA, 4, pml4e | 0x80n);
    cpu.flushTlbAll();
    expect(fault(cpu.translate(VA))).toBe(0xd);
  });
});

describe("5-level paging", () => {
  it("translates addresses above 2^47 with LA57 and keeps them non-canonical with 4 levels", async () => {
    const m5 = await smallMachine({ paging: { levels: 5 } });
    const pt5 = m5.pgdAlloc();
    const c5 = m5.cpu(0);
    c5.writeCr3(pt5);
    const high = 0x00ff_f000_0000_0000n; // bit 55 set: canonical only with 57-bit addresses
    pt5.remapPfnRange(high, 0x1000, 4096, { user: true });
    expect(pa(c5.translate(high + 0x42n))).toBe(0x1000042);
    expect(pt5.ptepGet(high).level).toBe(1);
    expect(m5.page(pt5.pfn).mapping).toBe(5);
    expect(() => pt.remapPfnRange(high, 0x1000, 4096)).toThrow(/canonical/);
    const t4 = cpu.translate(high);
    expect(!t4.ok && t4.fault.vector).toBe("#GP");
    const t5 = c5.translate(0x0100_0000_0000_0000n); // bit 56 set, bits 63:57 clear
    expect(!t5.ok && t5.fault.vector).toBe("#GP");
  });
});

