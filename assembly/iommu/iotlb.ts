/**
 * The IOTLB's invalidation (the VT-d IOTLB / PASID-based-IOTLB invalidate descriptors):
 * page-selective within a domain and PASID, every address of a domain and PASID, every
 * PASID of a domain, or global. Lookup and fill are in translate.ts (iocache.ts).
 */
import { EINVAL } from "../../src/abi/errno";
import { R_IO_DOMAIN, R_PASID, R_FLAGS, R_SIZE_ZERO, R_NONCANONICAL } from "../../src/abi/reason";
import { HDR_ADDR, HDR_IOTLB_LIVE } from "../../src/abi/header";
import {
  IOMMU_MAX_DOMAIN, PASID_MAX, PASID_BITS, IOTLB_INV_PAGE, IOTLB_INV_PASID, IOTLB_INV_DOMAIN, IOTLB_INV_GLOBAL,
} from "../../src/abi/iommu";
import { fail } from "../errno";
import { IOTLB, IOTLB_SETS, IOTLB_WAYS } from "../layout";
import { ioInvalidate } from "./iocache";

/** Pages a range may name: below 2^52 bytes, whole pages. */
export function pageRangeCheck(vpn: f64, npages: f64): i32 {
  if (!(vpn >= 0 && vpn < 4503599627370496.0) || vpn != Math.floor(vpn)) return fail(EINVAL, R_NONCANONICAL, 0);
  if (!(npages >= 1) || npages != Math.floor(npages) || vpn + npages > 4503599627370496.0) return fail(EINVAL, R_SIZE_ZERO, 0);
  return 0;
}

/**
 * iotlbInvalidate - drop IOTLB entries of @domain (and @pasid, 0 = requests without PASID)
 * at granularity @gran (IOTLB_INV_*); page-selective covers pages [@vpn, @vpn + @npages).
 * Returns how many entries were dropped, or -EINVAL.
 */
export function iotlbInvalidate(domain: u32, pasid: u32, vpn: f64, npages: f64, gran: u32): i32 {
  if (gran > <u32>IOTLB_INV_GLOBAL) return fail(EINVAL, R_FLAGS, gran);
  if (gran != IOTLB_INV_GLOBAL && (domain < 1 || domain > <u32>IOMMU_MAX_DOMAIN)) return fail(EINVAL, R_IO_DOMAIN, domain);
  if (pasid > <u32>PASID_MAX) return fail(EINVAL, R_PASID, pasid);
  let lo: u64 = 0;
  let hi: u64 = U64.MAX_VALUE;
  let mask: u32 = 0xffffffff;
  if (gran == IOTLB_INV_PAGE) {
    const rc = pageRangeCheck(vpn, npages);
    if (rc < 0) return rc;
    lo = <u64>vpn;
    hi = <u64>(vpn + npages);
  } else if (gran == IOTLB_INV_DOMAIN) {
    mask = ~((<u32>1 << PASID_BITS) - 1);
  } else if (gran == IOTLB_INV_GLOBAL) {
    mask = 0;
  }
  const id = (domain << PASID_BITS) | pasid;
  return <i32>ioInvalidate(IOTLB, IOTLB_SETS, IOTLB_WAYS, HDR_ADDR + HDR_IOTLB_LIVE, id, mask, lo, hi);
}
