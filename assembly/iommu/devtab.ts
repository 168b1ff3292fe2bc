/**
 * The IOMMU's device table: per requester id a context entry (the domain of requests
 * without PASID) and a few PASID entries (the domains of PASID-tagged requests, an SVA
 * binding's being the mm's own page table). The host programs it; translation reads it.
 *
 * Programming an entry invalidates nothing, as on the hardware: the host flushes the
 * IOTLB and the device's ATC when it changes what an entry translates to.
 */
import { EINVAL, ENOENT, ENOSPC } from "../../src/abi/errno";
import { R_IO_DEV, R_IO_DOMAIN, R_FLAGS, R_PASID, R_PASID_FULL } from "../../src/abi/reason";
import {
  DTE_FLAGS, DTE_TYPE, DTE_DOMAIN, DTE_ROOT, DTE_PASID0, DTE_PASIDS, PSE_PASID, PSE_DOMAIN, PSE_ROOT,
  PSE_SIZE, DTE_SIZE, DTE_FLAGS_ALL, IODOM_PAGING, IOMMU_MAX_DOMAIN, PASID_MAX,
} from "../../src/abi/iommu";
import { fail } from "../errno";
import { DEVTAB, IOMMU_DEVS } from "../layout";
import { rootCheck } from "../mmu/pgtable";

// @ts-ignore: decorator
@inline export function dte(dev: u32): usize {
  return DEVTAB + <usize>dev * DTE_SIZE;
}

// @ts-ignore: decorator
@inline export function pse(d: usize, slot: u32): usize {
  return d + DTE_PASID0 + <usize>slot * PSE_SIZE;
}

/** The PASID entry of @pasid in device entry @d, or 0. */
export function pasidEntry(d: usize, pasid: u32): usize {
  for (let s: u32 = 0; s < <u32>DTE_PASIDS; s++) {
    const p = pse(d, s);
    if (load<u32>(p + PSE_PASID) == pasid) return p;
  }
  return 0;
}

/**
 * iommuSetDevice - program the context entry of requester @dev: DTE_* @flags, IODOM_* @type
 * and, for a paging domain, its id and IO page table @root. Its PASID entries stay.
 * Returns 0 or -EINVAL (device, flags, type, domain id, root).
 */
export function iommuSetDevice(dev: u32, flags: u32, type: u32, domain: u32, root: f64): i32 {
  if (dev >= IOMMU_DEVS) return fail(EINVAL, R_IO_DEV, dev);
  if (flags & ~DTE_FLAGS_ALL) return fail(EINVAL, R_FLAGS, flags);
  if (type > <u32>IODOM_PAGING) return fail(EINVAL, R_IO_DOMAIN, type);
  let r: i64 = 0;
  if (type == IODOM_PAGING) {
    if (domain < 1 || domain > <u32>IOMMU_MAX_DOMAIN) return fail(EINVAL, R_IO_DOMAIN, domain);
    r = rootCheck(root);
    if (r < 0) return <i32>r;
  } else {
    domain = 0;
  }
  const d = dte(dev);
  store<u32>(d + DTE_FLAGS, flags);
  store<u32>(d + DTE_TYPE, type);
  store<u32>(d + DTE_DOMAIN, domain);
  store<u32>(d + DTE_ROOT, <u32>r);
  return 0;
}

/**
 * iommuSetPasid - point @pasid of @dev at domain @domain with page table @root, replacing
 * the entry it had; @root < 0 clears it. Returns 0, -EINVAL, -ENOENT (clearing a PASID
 * that has no entry) or -ENOSPC (every entry in use).
 */
export function iommuSetPasid(dev: u32, pasid: u32, domain: u32, root: f64): i32 {
  if (dev >= IOMMU_DEVS) return fail(EINVAL, R_IO_DEV, dev);
  if (pasid < 1 || pasid > <u32>PASID_MAX) return fail(EINVAL, R_PASID, pasid);
  const d = dte(dev);
  let p = pasidEntry(d, pasid);
  if (root < 0) {
    if (p == 0) return fail(ENOENT, R_PASID, pasid);
    store<u32>(p + PSE_PASID, 0);
    store<u32>(p + PSE_DOMAIN, 0);
    store<u32>(p + PSE_ROOT, 0);
    return 0;
  }
  if (domain < 1 || domain > <u32>IOMMU_MAX_DOMAIN) return fail(EINVAL, R_IO_DOMAIN, domain);
  const r = rootCheck(root);
  if (r < 0) return <i32>r;
  if (p == 0) p = pasidEntry(d, 0);
  if (p == 0) return fail(ENOSPC, R_PASID_FULL, DTE_PASIDS);
  store<u32>(p + PSE_PASID, pasid);
  store<u32>(p + PSE_DOMAIN, domain);
  store<u32>(p + PSE_ROOT, <u32>r);
  return 0;
}

/** devtabUser - the first device whose context or PASID entry walks @root, or -1. */
export function devtabUser(root: u32): i32 {
  for (let dev: u32 = 0; dev < IOMMU_DEVS; dev++) {
    const d = dte(dev);
    if (load<u32>(d + DTE_TYPE) == IODOM_PAGING && load<u32>(d + DTE_ROOT) == root) return <i32>dev;
    for (let s: u32 = 0; s < <u32>DTE_PASIDS; s++) {
      const p = pse(d, s);
      if (load<u32>(p + PSE_PASID) != 0 && load<u32>(p + PSE_ROOT) == root) return <i32>dev;
    }
  }
  return -1;
}
