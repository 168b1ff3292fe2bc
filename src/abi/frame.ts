/**
 * struct frame: the emulator's struct page, one 24-byte record per physical frame.
 *
 * ```
 *  0        4          8          12         16        20        24
 *  +--------+----------+----------+----------+---------+---------+
 *  | flags  | refcount | mapcount | mapping  |  index  | backing |
 *  +--------+----------+----------+----------+---------+---------+
 *   flags:    PG_* bits (below) and a 5-bit order field at FLAGS_ORDER_SHIFT
 *   refcount: _refcount (0 = free); FOLL_PIN adds GUP_PIN_COUNTING_BIAS on small folios
 *   mapcount: number of page-table mappings (the kernel stores count-1; we store the count)
 *   mapping:  mapping id (anon_vma / address_space); tail frames: head pfn;
 *             free block heads: next pfn in the free list; page tables: level (1..5)
 *   index:    page offset within the mapping; free block heads: previous pfn in the list;
 *             page tables: number of present entries; first tail of a large folio: _pincount
 *   backing:  1 + slot in the backing pool holding the frame's bytes, 0 = none (reads as zero)
 * ```
 *
 * A root page table (the pgd) stands for its mm_struct where GUP-fast needs one without the
 * host: its `mapcount` holds mm->write_protect_seq (odd while fork write-protects the mm)
 * and its flags PG_has_pinned (MMF_HAS_PINNED).
 *
 * Shared by the core and the host; the record lives at FRAMES_BASE + pfn * FRAME_SIZE.
 * Only numeric constants here: a string would make the core allocate at start-up.
 * @module
 */
export const FRAME_SIZE = 24;
export const FRAME_FLAGS = 0;
export const FRAME_REFCOUNT = 4;
export const FRAME_MAPCOUNT = 8;
export const FRAME_MAPPING = 12;
export const FRAME_INDEX = 16;
export const FRAME_BACKING = 20;

/* Page flags (bit numbers follow the spirit, not the values, of include/linux/page-flags.h). */
export const PG_locked = 1 << 0;
export const PG_referenced = 1 << 1;
export const PG_uptodate = 1 << 2;
export const PG_dirty = 1 << 3;
export const PG_lru = 1 << 4;
export const PG_active = 1 << 5;
export const PG_writeback = 1 << 6;
export const PG_reclaim = 1 << 7;
export const PG_swapbacked = 1 << 8;
export const PG_unevictable = 1 << 9;
export const PG_mlocked = 1 << 10;
export const PG_head = 1 << 11; // first frame of a compound allocation (folio)
export const PG_tail = 1 << 12; // other frames of a compound allocation; mapping = head pfn
export const PG_buddy = 1 << 13; // head of a free block; order in the order field
export const PG_pgtable = 1 << 14; // a page-table page
export const PG_reserved = 1 << 15; // never handed to the allocator
export const PG_anon = 1 << 16;
export const PG_anon_exclusive = 1 << 17;
export const PG_isolated = 1 << 18;
export const PG_large_rmappable = 1 << 19;
export const PG_has_pinned = 1 << 20; // root page tables only: MMF_HAS_PINNED of the mm
/** The order of a free block (PG_buddy) or of an allocation (its first frame). */
export const FLAGS_ORDER_SHIFT = 24;
export const FLAGS_ORDER_MASK = 0x1f;


/** MAX_PAGE_ORDER: orders 0..18, so blocks of 4 KiB up to 1 GiB. */
export const MAX_ORDER = 18;
export const NR_ORDERS = 19;
/** GUP_PIN_COUNTING_BIAS (include/linux/mm.h). */
export const GUP_PIN_COUNTING_BIAS = 1024;
/** Frames below this pfn are reserved at boot (x86 keeps the low 1 MiB away from the allocator). */
export const RESERVED_LOW_PFNS = 256;
/** "No pfn" in free lists and links. */
export const PFN_NONE = -1;

/* Zone kinds. */
export const ZONE_NORMAL = 0;
export const ZONE_MOVABLE = 1;
export const ZONE_CMA = 2;
export const ZONE_DEVICE = 3;
/** Device-private memory (MEMORY_DEVICE_PRIVATE): struct pages the CPU cannot reach. */
export const ZONE_DEVICE_PRIVATE = 4;
/** PCI peer-to-peer memory (MEMORY_DEVICE_PCI_P2PDMA): struct pages over a device's BAR. */
export const ZONE_P2PDMA = 5;
export const MAX_ZONES = 8;
/** Zonelists are packed 4-bit zone indices, lowest nibble first, ended by this nibble. */
export const ZONELIST_END = 0xf;
