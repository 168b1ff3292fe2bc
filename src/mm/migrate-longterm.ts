/**
 * FOLL_LONGTERM's migration (mm/gup.c check_and_migrate_movable_folios): before a
 * long-term pin, every page of the range that lives in ZONE_MOVABLE or CMA moves to
 * NORMAL, so the pin cannot block memory hot-remove or CMA allocations.
 * @module
 */
import * as X from "../abi/x86.js";
import { DmaError } from "../errors.js";
import { type Address, addressOf, pageCount, pageNumber } from "../core/addr.js";
import type { Process } from "./process.js";
import { swpKind } from "./swap.js";
import { VM_IO, VM_PFNMAP } from "./vma.js";
import { allocDst, migratableFolio, migrateFolio } from "./migrate.js";

const P = BigInt(X.PTE_P);
const SPECIAL = BigInt(X.PTE_SOFTW1);

/**
 * migrateLongtermUnpinnable - what FOLL_LONGTERM does before it pins (mm/gup.c
 * check_and_migrate_movable_folios): every page mapped in [va, va + length) of @p that is
 * in ZONE_MOVABLE or CMA moves to NORMAL. Pages not present are left to the fault that GUP
 * takes first; the zero page is pinnable as it is. All or nothing: every folio is checked
 * and every destination allocated before the first moves. Returns the 4 KiB pages moved.
 * EFAULT for a hole or a VM_IO/VM_PFNMAP mapping, EOPNOTSUPP for fsdax (as GUP refuses
 * them), EBUSY / ENOMEM as migratePage (GUP reports any of these as ENOMEM).
 */
export function migrateLongtermUnpinnable(p: Process, va: Address, length: Address): number {
  if (p.exited) throw new DmaError("ESRCH", `process ${p.pid} has exited`, { arg: "process" });
  const start = pageNumber(va, "va");
  const end = start + pageCount(length, "length");
  const k = p.kernel;
  const mm = p.mm;
  return mm.mmapLock.with("read", `pid ${p.pid} migrate longterm`, () => {
    const heads = new Map<number, number>(); // folio head -> the first page mapping it
    for (let vpn = start; vpn < end; ) {
      const vma = mm.vmas.find(vpn);
      if (!vma) throw new DmaError("EFAULT", `migrate: page 0x${(vpn * 4096).toString(16)} is not mapped`, { arg: "va" });
      if (vma.flags & (VM_IO | VM_PFNMAP)) throw new DmaError("EFAULT", "migrate: a VM_IO / VM_PFNMAP mapping has no pages to pin", { arg: "va" });
      if (vma.kind === "dax") throw new DmaError("EOPNOTSUPP", "migrate: fsdax pages cannot be pinned long-term", { arg: "va" });
      const g = mm.pgd.ptepGet(addressOf(vpn));
      const pfn = Number((g.pte >> 12n) & 0xffffffffffn);
      if ((g.pte & P) !== 0n && !(g.pte & SPECIAL) && pfn !== k.zeroPfn) {
        const zone = k.phys.zoneOf(pfn);
        if ((zone === "MOVABLE" || zone === "CMA") && !heads.has(k.folioOf(pfn))) heads.set(k.folioOf(pfn), vpn);
      } else if ((g.pte & P) === 0n && swpKind(g.pte) === X.SWP_MIGRATION) {
        throw new DmaError("EFAULT", `migrate: page ${vpn} met a migration entry (a dmalab bug)`);
      }
      vpn = g.level === 2 ? vpn - (vpn % 512) + 512 : vpn + 1;
    }
    const srcs = [...heads].map(([h, vpn]) => {
      try {
        return migratableFolio(k, h);
      } catch (e) {
        if (!(e instanceof DmaError)) throw e;
        throw new DmaError(e.code, `${e.message.replace(/^[A-Z]+: /, "")} (mapped at 0x${(vpn * 4096).toString(16)})`, { arg: "va", cause: e });
      }
    });
    const backed = srcs.reduce((n, s) => n + s.backed, 0);
    if (k.core.x.poolAvailable() < backed) {
      throw new DmaError("ENOMEM", `migrate: no backing for the ${backed} pages to move`, { arg: "backing" });
    }
    const dsts: number[] = [];
    try {
      for (const s of srcs) dsts.push(allocDst(k, s, { zone: "NORMAL" }));
    } catch (e) {
      dsts.forEach((d, j) => k.phys.freePages(d, srcs[j]!.order));
      throw e;
    }
    let moved = 0;
    let i = 0;
    try {
      for (; i < srcs.length; i++) {
        migrateFolio(k, srcs[i]!, dsts[i]!, p.cpu.index);
        moved += srcs[i]!.nr;
      }
    } finally {
      for (let j = i + 1; j < dsts.length; j++) k.phys.freePages(dsts[j]!, srcs[j]!.order);
    }
    return moved;
  });
}
