/**
 * Why the core refused a call. The core returns -errno and leaves one of these in the
 * thread's REG_REASON register; the host turns the pair into a message naming the argument
 * (see src/errors.ts). Shared by the core and the host.
 * @module
 */
export const R_NONE = 0;
export const R_VA_ALIGN = 1; // va not aligned to the page size
export const R_PFN_ALIGN = 2; // pfn not aligned to the page size
export const R_SIZE_ZERO = 3; // empty range
export const R_SIZE_ALIGN = 4; // size not a multiple of the page size
export const R_NONCANONICAL = 5; // va not canonical for the paging mode
export const R_CROSS_HALF = 6; // range runs past the canonical half it starts in
export const R_PFN_RANGE = 7; // frame beyond MAXPHYADDR / the machine's memory
export const R_PROT_BITS = 8; // protection carries bits the call may not set
export const R_PAGE_SIZE = 9; // page size not 4 KiB, 2 MiB or 1 GiB
export const R_MAPPED = 10; // part of the range is already mapped (EEXIST)
export const R_NO_FRAMES = 11; // not enough free frames (ENOMEM)
export const R_NO_POOL = 12; // backing pool exhausted (ENOMEM)
export const R_ROOT = 13; // not a root page table
export const R_ORDER = 14; // order out of range or not the allocation's order
export const R_ZONE = 15; // unknown zone or empty zonelist
export const R_NOT_ALLOCATED = 16; // frame is free or not the head of an allocation
export const R_REFERENCED = 17; // frame still referenced by others
export const R_CPU = 18; // no such CPU
export const R_PCID = 19; // PCID out of range
export const R_INVPCID_TYPE = 20; // invpcid type out of range
export const R_COUNT = 21; // batch larger than the ring
export const R_ACCESS = 22; // unknown access bits
export const R_LEVEL = 23; // level out of range for the paging mode
export const R_NOT_MAPPED = 24; // no entry at that address and level
export const R_TABLE_ENTRY = 25; // would change where a table entry points
export const R_BUSY_TABLES = 26; // root still maps something
export const R_NO_THREAD = 27; // every ring is attached
export const R_CONFIG = 28; // configuration field out of range (REG_ARG: header offset)
export const R_NOT_INIT = 29; // core not initialised
export const R_PFN_NOT_RAM = 30; // frame has no struct page (outside every zone)
export const R_FLAGS = 31; // unknown flag bits
export const R_CTRL = 32; // unknown control bits
export const R_ROOT_IN_USE = 33; // a CPU's CR3 points at the root (REG arg: the CPU)
export const R_DETACHED = 34; // this instance has no ring (never attached, or detached)
export const R_NOT_PINNED = 35; // unpin of a page that holds fewer pins (references) than released (arg: index)
export const R_IO_DEV = 36; // no such device-table entry (arg: the index, or the request's)
export const R_IO_DOMAIN = 37; // domain type or id out of range (arg: the value)
export const R_PASID = 38; // PASID out of range, or no entry for it (arg: the PASID)
export const R_PASID_FULL = 39; // the device's PASID entries are all in use
export const R_ROOT_DEVICE = 40; // an IOMMU device-table or PASID entry walks the root (arg: the device)
export const R_OUT = 41; // an output array that is not 8-byte aligned inside the kernel heap (arg: its address)
export const R_IOVAS = 42; // an input array of IOVAs that is not 8-byte aligned inside the kernel heap (arg: its address)
export const R_PAS = 43; // an output array of addresses not 8-byte aligned inside the kernel heap, or overlapping the input (arg: its address)
export const R_IOVA = 44; // an IOVA that is not an integer in [0, 2^64) (arg: its index)
