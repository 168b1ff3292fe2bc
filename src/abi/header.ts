/**
 * The core's fixed header and the records of every region, in one place.
 *
 * The header sits at HDR_ADDR, below the module's static data (asc --memoryBase 4096).
 * The host writes the configuration fields, calls coreLayout(), grows the memory to
 * HDR_MEM_BYTES, then calls coreInit(); coreLayout() writes the region bases.
 *
 * ```
 *  HDR_ADDR  +---------------------------+
 *            | config (host writes)      |  0x00 .. 0x3f
 *            | zone config, 8 x 16 bytes |  0x40 .. 0xbf
 *            | region bases (coreLayout) |  0xc0 .. 0xef
 *            | shared runtime words      |  0xf0 .. 0x1af  (atomics)
 *            | IOMMU config, bases, IOTLB|  0x1b0 .. 0x1ef
 *            +---------------------------+
 *  memory:   header | static data | frames | zones | cpus | tlbs | rings | backing pool ->
 * ```
 * @module
 */
export const HDR_ADDR = 256;
export const HDR_MAGIC_VALUE = 0x4c414d44; // "DMAL"
export const ABI_VERSION = 2;

/* Configuration, written by the host (u32 each). */
export const HDR_MAGIC = 0x00;
export const HDR_ABI = 0x04;
export const HDR_NR_ZONES = 0x08;
export const HDR_NR_CPUS = 0x0c;
export const HDR_LEVELS = 0x10;
export const HDR_TLB_SETS = 0x14;
export const HDR_TLB_WAYS = 0x18;
export const HDR_THREADS = 0x1c;
export const HDR_RING_ENTRIES = 0x20;
export const HDR_PHYS_BITS = 0x24;
export const HDR_POOL_MAX_SLOTS = 0x28;
export const HDR_NR_FRAMES = 0x2c;
export const HDR_POOL_GROW_SLOTS = 0x30;
export const HDR_SWAP_SLOTS = 0x34; // swap slots (4 KiB each); 0 = no swap
export const HDR_ZERO_PFN = 0x38; // the shared zero page (the kernel sets it at boot); 0 = none yet
/* Zone configuration: MAX_ZONES records of ZCFG_SIZE bytes. */
export const HDR_ZONE_CFG = 0x40;
export const ZCFG_SIZE = 16;
export const ZCFG_START = 0; // first pfn
export const ZCFG_PAGES = 4; // number of frames
export const ZCFG_KIND = 8; // ZONE_*

/* Region bases, written by coreLayout() (u32 byte addresses). */
export const HDR_FRAMES_BASE = 0xc0;
export const HDR_ZONES_BASE = 0xc4;
export const HDR_CPUS_BASE = 0xc8;
export const HDR_TLB_BASE = 0xcc;
export const HDR_RINGS_BASE = 0xd0;
export const HDR_POOL_BASE = 0xd4;
export const HDR_TLB_STRIDE = 0xd8; // bytes of TLB per CPU
export const HDR_RING_STRIDE = 0xdc; // bytes of ring per thread
export const HDR_MEM_PAGES = 0xe0; // wasm pages the fixed regions need (64 KiB each)
export const HDR_MEM_PAGES_MAX = 0xe4; // wasm pages with a full backing pool
export const HDR_SWAP_BASE = 0xe8; // the swap map: HDR_SWAP_SLOTS records of SWPE_SIZE

/* Shared runtime words (atomics). */
export const HDR_INIT_DONE = 0xf0;
export const HDR_THREAD_MASK = 0xf4; // bit t set: ring t is attached
export const HDR_PHYS_LOCK = 0xf8; // zone->lock for every zone
export const HDR_POOL_LOCK = 0xfc;
export const HDR_POOL_SLOTS = 0x100; // slots the pool has grown to
export const HDR_POOL_FREE = 0x104; // head of the free-slot list (slot + 1), 0 = empty
export const HDR_POOL_NR_FREE = 0x108; // slots on the free list
export const HDR_POOL_USED = 0x10c; // slots handed out
export const HDR_SWAP_LOCK = 0x110;
export const HDR_SWAP_FREE = 0x114; // head of the free swap-slot list (slot + 1), 0 = empty
export const HDR_SWAP_USED = 0x118; // swap slots in use
/* /proc/vmstat nr_foll_pin_acquired / nr_foll_pin_released (u64, pages). */
export const HDR_FOLL_PIN_ACQUIRED = 0x120;
export const HDR_FOLL_PIN_RELEASED = 0x128;
/*
 * GUP-fast walkers: one u32 per thread, odd while that thread is inside a lockless walk
 * (the kernel's local_irq_save). Freeing a page-table page waits until every walker that
 * was inside when the table was unlinked has left (the shootdown IPI a CPU with
 * interrupts off does not answer). MAX_THREADS words.
 */
export const HDR_GUP_WALKERS = 0x130;
/* The IOMMU (records in src/abi/iommu.ts): configuration the host writes ... */
export const HDR_IOMMU_DEVS = 0x1b0; // device-table entries (requester ids)
export const HDR_IOTLB_SETS = 0x1b4;
export const HDR_IOTLB_WAYS = 0x1b8;
export const HDR_ATC_SETS = 0x1bc; // per ATS-capable device
export const HDR_ATC_WAYS = 0x1c0;
/* ... region bases coreLayout writes ... */
export const HDR_DEVTAB_BASE = 0x1c4;
export const HDR_IOTLB_BASE = 0x1c8;
export const HDR_ATC_BASE = 0x1cc;
export const HDR_ATC_STRIDE = 0x1d0; // bytes of ATC per device
/* ... and the IOTLB's own words. */
export const HDR_IOTLB_TICK = 0x1d8; // u64: LRU clock
export const HDR_IOTLB_LIVE = 0x1e0; // 3 x u32: live entries by page size
/* The kernel heap (kvmalloc'd arrays the core writes into, such as gup_test's pages[]). */
export const HDR_KHEAP_BYTES = 0x1ec; // in: bytes, a multiple of 4 KiB
export const HDR_KHEAP_BASE = 0x1f0;
export const HDR_SIZE = 0x1f8;

/*
 * The swap map (mm/swapfile.c swap_map): one record per swap slot.
 *   count:   references to the slot (swap entries in page tables, the swap cache); 0 = free
 *   backing: 1 + the backing-pool slot holding the page's bytes, 0 = the page was all zeros;
 *            for a free slot, the next free slot + 1
 */
export const SWPE_COUNT = 0;
export const SWPE_BACKING = 4;
export const SWPE_SIZE = 8;
/** Most rings (threads) a machine can have: one bit each in HDR_THREAD_MASK. */
export const MAX_THREADS = 32;
export const MAX_CPUS = 256;

/*
 * struct zone (ZONE_SIZE bytes each, at ZONES_BASE + idx * ZONE_SIZE).
 *   start, end: pfn range [start, end); kind: ZONE_*; nr_free: free frames;
 *   free_head[o]: first free block of order o (PFN_NONE = empty); nr_blocks[o]: its length.
 */
export const ZONE_START = 0;
export const ZONE_END = 4;
export const ZONE_KIND = 8;
export const ZONE_NR_FREE = 12;
export const ZONE_FREE_HEAD = 16; // NR_ORDERS x u32
export const ZONE_NR_BLOCKS = 16 + 19 * 4; // NR_ORDERS x u32
export const ZONE_SIZE = 176;

/*
 * struct cpu (CPU_SIZE bytes each, at CPUS_BASE + cpu * CPU_SIZE): the architectural state
 * a translation needs, and the TLB's bookkeeping.
 */
export const CPU_CR3_PFN = 0; // root table pfn, PFN_NONE = no address space
export const CPU_PCID = 4; // CR3[11:0] when CR4.PCIDE
export const CPU_CTRL = 8; // CTRL_* bits below
export const CPU_PKRU = 12;
export const CPU_TICK = 16; // u64: LRU clock of this CPU's TLB
export const CPU_LIVE = 24; // 3 x u32: live TLB entries by page size (SIZE_*), to skip empty sizes
export const CPU_SIZE = 64;

/* Control bits: CR0.WP, CR4.{PGE,PCIDE,SMEP,SMAP,PKE}, EFER.NXE. LA57 is machine-wide. */
export const CTRL_WP = 1 << 0;
export const CTRL_PGE = 1 << 1;
export const CTRL_PCIDE = 1 << 2;
export const CTRL_SMEP = 1 << 3;
export const CTRL_SMAP = 1 << 4;
export const CTRL_PKE = 1 << 5;
export const CTRL_NXE = 1 << 6;
export const CTRL_ALL = 0x7f;

/*
 * TLB entry (TLBE_SIZE bytes), sets x ways per CPU, at TLB_BASE + cpu * TLB_STRIDE.
 *   tag  u64: vpn-at-size << 16 | size << 14 | pcid << 2 | G << 1 | V
 *   data u64: the effective leaf: frame | P | RW, US (AND over levels) | PWT | PCD | PAT(bit 7)
 *             | D | G | NX (OR over levels) | pkey
 *   stamp u64: the CPU's tick at the last use (LRU)
 */
export const TLBE_TAG = 0;
export const TLBE_DATA = 8;
export const TLBE_STAMP = 16; // u64
export const TLBE_SIZE = 24;
export const TLB_TAG_V = 1;
export const TLB_TAG_G = 2;
export const TLB_TAG_PCID_SHIFT = 2;
export const TLB_TAG_SIZE_SHIFT = 14;
export const TLB_TAG_VPN_SHIFT = 16;
/* Page-size codes, as in the tag. */
export const SIZE_4K = 0;
export const SIZE_2M = 1;
export const SIZE_1G = 2;

/*
 * A thread's ring (RING stride each, at RINGS_BASE + thread * RING_STRIDE):
 *   RING_REGS: result registers (16 x 8 bytes), then RING_ENTRIES entries of RENT_SIZE.
 *   (Why a call failed is kept in the instance's globals: see coreReason().)
 */
export const RING_REGS = 0;
export const RING_ENTRY0 = 128;
export const RENT_SIZE = 24;
/* Result registers (byte offsets in the ring). */
export const REG_RESUME = 0; // f64: vpn where a chunked operation stopped, -1 = done
export const REG_PAGES = 8; // f64: 4 KiB pages covered by the last call
export const REG_HITS = 16; // u32: TLB hits in the last batch
export const REG_MISSES = 20; // u32: TLB misses
export const REG_WALKS = 24; // u32: page walks
export const REG_LOADS = 28; // u32: paging-structure entries read
export const REG_FAULTS = 32; // u32: faults returned
export const REG_SPURIOUS = 36; // u32: stale-TLB permission faults that re-walked
export const REG_PTE_LO = 40; // u32: an entry returned by ptepGet
export const REG_PTE_HI = 44;
export const REG_LEVEL = 48; // u32: its level
export const REG_TABLES = 52; // u32: tables allocated or freed by the last call
export const REG_ANON = 56; // u32: anonymous 4 KiB pages the last zap or copy unmapped / mapped
export const REG_FILE = 60; // u32: file-backed (and shmem) 4 KiB pages likewise
export const REG_FREED = 64; // u32: folios the last zap freed (their last reference went)
export const REG_COPIED = 68; // u32: folios the last fork copy copied (maybe-pinned anon pages)
export const REG_SWAP = 72; // u32: swap entries the last zap dropped, or the last copy duplicated
export const REG_SCRATCH = 80; // 48 bytes of the core's own per-thread scratch (no host meaning)

/*
 * Translate request (in ring entries): va in, access in, status out, pa out.
 *   status 0..7: translated; bits 0-1 the page size (SIZE_*), bit 2 (XLATE_HIT) a TLB hit
 *   status >= 0x10000: a fault, vector << 16 | error code (#PF 14, #GP 13)
 *   status < 0: -errno for a bad request
 */
export const TREQ_VA = 0; // u64
export const TREQ_ACCESS = 8; // u32: ACC_* bits
export const TREQ_STATUS = 12; // i32
export const TREQ_PA = 16; // u64
export const XLATE_HIT = 4;

/* Leaf record (in ring entries), written by ptUnmap when collecting, and by zapRange and
 * copyPageRange for the non-present entries (swap, migration) the host must account for. */
export const LEAF_PTE = 0; // u64: the entry as it was cleared
export const LEAF_VPN = 8; // f64: first 4 KiB page it mapped
export const LEAF_LEVEL = 16; // u32: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB

/* Access bits: the #PF error-code bits W, U and I, plus EFLAGS.AC for SMAP. */
export const ACC_WRITE = 1 << 1;
export const ACC_USER = 1 << 2;
export const ACC_FETCH = 1 << 4;
export const ACC_AC = 1 << 8;
export const ACC_MASK = ACC_WRITE | ACC_USER | ACC_FETCH | ACC_AC;

/* translateBatch flags. */
export const XLATE_NOTLB = 1 << 0; // bypass the TLB: no lookup, no fill (still sets A/D)
export const XLATE_NOSIDE = 1 << 1; // functional walk: no TLB, no A/D writes
export const XLATE_STOP = 1 << 2; // stop at the first fault, as a CPU executing the accesses

/* invpcid types (SDM INVPCID). */
export const INVPCID_ADDR = 0;
export const INVPCID_SINGLE = 1;
export const INVPCID_ALL_GLOBAL = 2;
export const INVPCID_ALL_NONGLOBAL = 3;

/* allocPages flags. */
export const ALLOC_COMPOUND = 1 << 0; // make a folio: PG_head + PG_tail frames

/* copyPageRange flags (copy_page_range for fork). */
export const COPY_COW = 1 << 0; // a private writable mapping: write-protect both sides
export const COPY_HAS_PINNED = 1 << 1; // the parent mm has MMF_HAS_PINNED
