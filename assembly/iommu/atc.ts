/**
 * A device's ATC (Address Translation Cache) invalidation: the ATS Invalidate Request the
 * IOMMU sends to an endpoint (VT-d device-TLB invalidate descriptor, SMMUv3 CMD_ATC_INV),
 * for a page range of one PASID (0 = requests without PASID) or of every PASID. The
 * endpoint's lookup and fill are in translate.ts.
 */
import { EINVAL } from "../../src/abi/errno";
import { R_IO_DEV, R_PASID } from "../../src/abi/reason";
import { DTE_ATC_LIVE, PASID_MAX } from "../../src/abi/iommu";
import { fail } from "../errno";
import { ATC, ATC_STRIDE, ATC_SETS, ATC_WAYS, IOMMU_DEVS } from "../layout";
import { ioInvalidate } from "./iocache";
import { dte } from "./devtab";
import { pageRangeCheck } from "./iotlb";

/**
 * atcInvalidate - drop @dev's ATC entries for pages [@vpn, @vpn + @npages) of @pasid, or of
 * every PASID when @allPasids. Returns how many were dropped, or -EINVAL.
 */
export function atcInvalidate(dev: u32, pasid: u32, vpn: f64, npages: f64, allPasids: bool): i32 {
  if (dev >= IOMMU_DEVS) return fail(EINVAL, R_IO_DEV, dev);
  if (pasid > <u32>PASID_MAX) return fail(EINVAL, R_PASID, pasid);
  const rc = pageRangeCheck(vpn, npages);
  if (rc < 0) return rc;
  const base = ATC + <usize>dev * ATC_STRIDE;
  return <i32>ioInvalidate(base, ATC_SETS, ATC_WAYS, dte(dev) + DTE_ATC_LIVE, pasid, allPasids ? 0 : 0xffffffff, <u64>vpn, <u64>(vpn + npages));
}
