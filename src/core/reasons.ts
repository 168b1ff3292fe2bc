/**
 * From the core's (errno, reason, detail) to a DmaError that names the argument.
 * @module
 */
import * as R from "../abi/reason.js";
import { DmaError, errnoName } from "../errors.js";

const LEVEL_SIZE = ["", "4 KiB", "2 MiB", "1 GiB"];

interface Why {
  arg: string;
  text: (detail: number) => string;
}

const WHY = new Map<number, Why>([
  [R.R_VA_ALIGN, { arg: "va", text: (l) => `not aligned to the ${LEVEL_SIZE[l] ?? "page"} page size` }],
  [R.R_PFN_ALIGN, { arg: "pfn", text: (l) => `not aligned to the ${LEVEL_SIZE[l] ?? "page"} page size` }],
  [R.R_SIZE_ZERO, { arg: "size", text: () => "empty range" }],
  [R.R_SIZE_ALIGN, { arg: "size", text: (l) => `not a multiple of the ${LEVEL_SIZE[l] || "4 KiB"} page size` }],
  [R.R_NONCANONICAL, { arg: "va", text: () => "not a canonical address for this paging mode" }],
  [R.R_CROSS_HALF, { arg: "size", text: () => "range runs past the end of its canonical half" }],
  [R.R_PFN_RANGE, { arg: "pfn", text: () => "frames beyond MAXPHYADDR" }],
  [R.R_PROT_BITS, { arg: "prot", text: () => "carries bits this call may not set" }],
  [R.R_PAGE_SIZE, { arg: "pageSize", text: () => "must be 4K, 2M or 1G" }],
  [R.R_MAPPED, { arg: "va", text: () => "part of the range is already mapped" }],
  [R.R_NO_FRAMES, { arg: "memory", text: (n) => `not enough free frames (${n} contiguous or in all needed)` }],
  [R.R_NO_POOL, { arg: "backing", text: (n) => `backing pool exhausted (${n} slots needed)` }],
  [R.R_ROOT, { arg: "pgd", text: () => "not a root page table of this machine" }],
  [R.R_ORDER, { arg: "order", text: (o) => `out of range or not the allocation's order (${o})` }],
  [R.R_ZONE, { arg: "zone", text: () => "unknown zone or empty zonelist" }],
  [R.R_NOT_ALLOCATED, { arg: "pfn", text: () => "not the first frame of an allocation (free, tail, reserved or page table)" }],
  [R.R_REFERENCED, { arg: "pfn", text: () => "still referenced" }],
  [R.R_CPU, { arg: "cpu", text: (c) => `no CPU ${c}` }],
  [R.R_PCID, { arg: "pcid", text: (p) => `PCID ${p} out of range, or PCIDE does not allow it` }],
  [R.R_INVPCID_TYPE, { arg: "type", text: (t) => `INVPCID type ${t} is not 0..3` }],
  [R.R_COUNT, { arg: "count", text: (n) => `${n} is more than a ring holds` }],
  [R.R_ACCESS, { arg: "access", text: (i) => `unknown access bits in request ${i}` }],
  [R.R_LEVEL, { arg: "level", text: (l) => `level ${l} does not exist in this paging mode` }],
  [R.R_NOT_MAPPED, { arg: "va", text: (l) => `no table below level ${l}` }],
  [R.R_TABLE_ENTRY, { arg: "value", text: (l) => `would change the table a level-${l} entry points to, or create one` }],
  [R.R_BUSY_TABLES, { arg: "pgd", text: (n) => `still maps something (${n} entries)` }],
  [R.R_NO_THREAD, { arg: "threads", text: (n) => `all ${n} rings are attached` }],
  [R.R_CONFIG, { arg: "config", text: (off) => `field at header offset 0x${off.toString(16)} out of range` }],
  [R.R_NOT_INIT, { arg: "machine", text: () => "core not initialised" }],
  [R.R_PFN_NOT_RAM, { arg: "pfn", text: () => "no frame of this machine's memory" }],
  [R.R_FLAGS, { arg: "flags", text: (f) => `unknown flag bits 0x${f.toString(16)}` }],
  [R.R_CTRL, { arg: "control", text: (f) => `unknown control bits 0x${f.toString(16)}` }],
  [R.R_DETACHED, { arg: "machine", text: () => "this handle is detached (no ring)" }],
  [R.R_NOT_PINNED, { arg: "pages", text: (i) => `pages[${i}] is not pinned (or holds fewer pins or references than released)` }],
  [R.R_IO_DEV, { arg: "dev", text: (d) => `no device-table entry ${d}` }],
  [R.R_IO_DOMAIN, { arg: "domain", text: (d) => `domain type or id ${d} out of range` }],
  [R.R_PASID, { arg: "pasid", text: (p) => `PASID ${p} out of range or not set up` }],
  [R.R_PASID_FULL, { arg: "pasid", text: (n) => `all ${n} PASID entries of the device are in use` }],
  [R.R_ROOT_DEVICE, { arg: "pgd", text: (d) => `IOMMU device ${d} translates through it (detach it first)` }],
  [R.R_OUT, { arg: "pages", text: (a) => `the output at ${a} is not 8-byte aligned inside the kernel heap` }],
  [R.R_IOVAS, { arg: "iovas", text: (a) => `the input at ${a} is not 8-byte aligned inside the kernel heap` }],
  [R.R_PAS, { arg: "pas", text: (a) => `the output at ${a} is not 8-byte aligned inside the kernel heap, or overlaps the input without being it` }],
  [R.R_IOVA, { arg: "iovas", text: (i) => `iovas[${i}] is not an address (an integer in [0, 2^64))` }],
  [R.R_ROOT_IN_USE, { arg: "pgd", text: (c) => `CPU ${c} runs on it (write its CR3 first)` }],
]);

/** coreError - the DmaError for a negative return @rc of core call @fn. */
export function coreError(fn: string, rc: number, reason: number, detail: number): DmaError {
  const code = errnoName(rc);
  const why = WHY.get(reason);
  if (!why) return new DmaError(code, `${fn} failed (reason ${reason})`);
  return new DmaError(code, `${fn}: ${why.arg}: ${why.text(detail)}`, { arg: why.arg });
}
