/**
 * The IOMMU's records, shared by the core (assembly/iommu/) and the host (src/iommu/): the
 * device table, the IOTLB and device-TLB (ATC) entries, and the translate and DMA requests a
 * call carries in the ring.
 *
 * IO page tables are in the x86-64 format (VT-d first-level / AMD v2 tables are exactly the
 * CPU's), so a domain's table is a page-table hierarchy like an mm's and an SVA PASID points
 * at the mm's own pgd.
 * @module
 */

/*
 * Device-table entry (DTE_SIZE bytes at HDR_DEVTAB_BASE + dev * DTE_SIZE): the context
 * entry of one requester id, its PASID entries, and its ATC's bookkeeping.
 */
export const DTE_FLAGS = 0; // u32: DTE_*
export const DTE_TYPE = 4; // u32: IODOM_* of the requests without PASID
export const DTE_DOMAIN = 8; // u32: domain id of the requests without PASID (tags the IOTLB)
export const DTE_ROOT = 12; // u32: pfn of that domain's IO page table (IODOM_PAGING)
export const DTE_ATC_TICK = 16; // u64: LRU clock of the device's ATC
export const DTE_ATC_LIVE = 24; // 3 x u32: live ATC entries by page size
export const DTE_PASID0 = 40; // DTE_PASIDS x PASID entry
export const DTE_PASIDS = 8;
export const PSE_PASID = 0; // u32: the PASID (0 = free slot: PASID 0 is IOMMU_NO_PASID)
export const PSE_DOMAIN = 4; // u32: domain id (an SVA domain: one per mm)
export const PSE_ROOT = 8; // u32: pfn of the page table it walks (the mm's pgd for SVA)
export const PSE_SIZE = 12;
export const DTE_SIZE = 144;

export const DTE_VALID = 1 << 0; // the requester id has a context entry
export const DTE_ATS = 1 << 1; // the endpoint has ATS enabled: it keeps an ATC
export const DTE_PRI = 1 << 2; // page requests enabled
export const DTE_PASID = 1 << 3; // PASID-tagged requests enabled
export const DTE_FLAGS_ALL = 0xf;

/* Domain types (the kernel's iommu_domain types, reduced to what translation sees). */
export const IODOM_BLOCKED = 0;
export const IODOM_IDENTITY = 1;
export const IODOM_PAGING = 2;

/** Domain ids are 1..IOMMU_MAX_DOMAIN (0 = none); the IOTLB tag keeps domain << 20 | PASID. */
export const IOMMU_MAX_DOMAIN = 4095;
export const PASID_BITS = 20;
export const PASID_MAX = (1 << PASID_BITS) - 1;

/*
 * An IOTLB or ATC entry (IOTE_SIZE bytes). Tag: page number at the entry's size << 3 |
 * size << 1 | valid. Id: domain << 20 | PASID (the ATC keeps the PASID only). Data: the
 * effective leaf as the walk returns it (frame, P, RW, US, NX, D).
 */
export const IOTE_TAG = 0; // u64
export const IOTE_ID = 8; // u32
export const IOTE_DATA = 16; // u64
export const IOTE_STAMP = 24; // u64
export const IOTE_SIZE = 32;
export const IOTE_TAG_V = 1;
export const IOTE_TAG_SIZE_SHIFT = 1;
export const IOTE_TAG_VPN_SHIFT = 3;

/*
 * Translate request (IOREQ_SIZE bytes each, from RING_ENTRY0).
 *   status 0..15 translated: bits 0-1 the page size, bits 2-3 where the translation came
 *   from (IOSRC_*); bit 4 (IOST_STALE) a cached translation the tables no longer give
 *   (checked only with IOX_CHECK). status >= 0x10000: a fault, IOF_* << 16 | the walk's
 *   #PF error code.
 */
export const IOQ_IOVA = 0; // u64 in
export const IOQ_DEV = 8; // u32 in: device-table index (the requester id)
export const IOQ_PASID = 12; // u32 in: 0 = a request without PASID
export const IOQ_ACCESS = 16; // u32 in: IOA_*
export const IOQ_STATUS = 20; // i32 out
export const IOQ_PA = 24; // u64 out
export const IOREQ_SIZE = 32;

export const IOA_READ = 1 << 0;
export const IOA_WRITE = 1 << 1;
export const IOA_EXEC = 1 << 2;
export const IOA_PRIV = 1 << 3;
export const IOA_ALL = 0xf;

export const IOSRC_DIRECT = 0; // identity domain: no translation
export const IOSRC_ATC = 1; // the device's own ATC (a translated request)
export const IOSRC_IOTLB = 2;
export const IOSRC_WALK = 3;
export const IOST_STALE = 1 << 4;

export const IOF_BLOCKED = 1; // no context entry, or a blocked domain
export const IOF_PASID = 2; // PASID requests not enabled, or no PASID entry for it
export const IOF_NOT_PRESENT = 3; // the walk met a non-present entry
export const IOF_PERM = 4; // the leaf does not allow the access (write, exec, privilege)
export const IOF_RSVD = 5; // a reserved bit in an entry
export const IOF_RANGE = 6; // beyond the address width the tables translate (the lower canonical half)

/* iommuTranslate / iommuDma flags. */
export const IOX_CHECK = 1 << 0; // re-walk every cached hit (no side effects) and mark stale ones
export const IOX_NOCACHE = 1 << 1; // no ATC or IOTLB lookup or fill (still sets A/D)
export const IOX_ALL = 0x3;

/* Ring registers after a translate or DMA batch (byte offsets in the ring). */
export const REG_ATC_HITS = 16;
export const REG_IOTLB_HITS = 20;
export const REG_IO_WALKS = 24;
export const REG_IO_LOADS = 28;
export const REG_IO_FAULTS = 32;
export const REG_IO_STALE = 36;
export const REG_ATS_REQS = 40; // translation requests ATS devices sent (their ATC missed)
export const REG_IO_UNHELD = 44; // DMA pages that hit a frame nobody holds
export const REG_IO_STOP = 48; // i32: the fault that stopped iommuTranslateIovas (0: none did)

/* iotlbInvalidate granularity (VT-d IOTLB invalidate descriptor, PASID-based for PASIDs). */
export const IOTLB_INV_PAGE = 0; // domain + PASID + page range
export const IOTLB_INV_PASID = 1; // domain + PASID, every address
export const IOTLB_INV_DOMAIN = 2; // domain, every PASID
export const IOTLB_INV_GLOBAL = 3;

/*
 * DMA request (IODMA_SIZE bytes each, from RING_ENTRY0; the data area follows the last
 * request). The engine translates each page of [iova, iova + len), checks the frame is
 * held, and copies between the frame and the data area.
 *   status: 0 done, or the first fault's status (>= 0x10000), or IODS_MMIO when a page's
 *   address is no RAM of this machine (a BAR: the host routes it), or IODS_P2P when a
 *   translated address reaches a P2PDMA frame outside [p2pLo, p2pHi) (a peer's BAR through
 *   the root complex: the host decides whether it forwards), or -ENOMEM when a write found
 *   no backing slot for a frame; done: bytes before it.
 *   IODF_BYPASS in dir: the address is a CPU physical address the fabric delivered without
 *   the IOMMU (a switch routed it to a peer's BAR); no translation.
 */
export const IOD_IOVA = 0; // u64 in
export const IOD_DEV = 8; // u32 in
export const IOD_PASID = 12; // u32 in
export const IOD_LEN = 16; // u32 in: bytes
export const IOD_DIR = 20; // u32 in: IODIR_* | IODF_*
export const IOD_DATA = 24; // u32 in: byte offset in the data area
export const IOD_STATUS = 28; // i32 out
export const IOD_DONE = 32; // u32 out: bytes transferred
export const IOD_EVENTS = 36; // u32 out: IODE_* seen on the way, and the unheld pages << IODE_UNHELD_SHIFT
export const IOD_PA = 40; // u64 out: the physical address of the first page with an event
export const IOD_STOP_PA = 48; // u64 out: with IODS_MMIO or IODS_P2P, the address it stopped at
export const IOD_P2P_LO = 56; // u32 in: the P2PDMA frames [lo, hi) the root complex forwards to
export const IOD_P2P_HI = 60; // u32 in
export const IODMA_SIZE = 64;

export const IODIR_TO_DEVICE = 0; // the device reads memory (DMA_TO_DEVICE)
export const IODIR_FROM_DEVICE = 1; // the device writes memory (DMA_FROM_DEVICE)
export const IODF_BYPASS = 1 << 8; // dir flag: a physical address, not translated

export const IODE_UNHELD = 1 << 0; // a page's frame had no reference (free memory)
export const IODE_STALE = 1 << 1; // a cached translation the tables no longer give (IOX_CHECK)
export const IODE_UNHELD_SHIFT = 8; // IOD_EVENTS >>> 8: how many of the request's pages were unheld
export const IODS_MMIO = 0x7fff0000; // status: stopped at an address outside RAM
export const IODS_P2P = 0x7ffe0000; // status: stopped at a P2PDMA frame outside [p2pLo, p2pHi)
