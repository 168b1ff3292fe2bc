/**
 * get_user_pages: FOLL_* flags, why a walk stopped, and the registers and records of the
 * core's GUP calls. Shared by the core and the host; numeric constants only.
 *
 * The public flags have the values of include/linux/mm_types.h since v6.3; the internal
 * ones have those of mm/internal.h in v6.12.
 * @module
 */
export const FOLL_WRITE = 1 << 0;
export const FOLL_GET = 1 << 1;
export const FOLL_DUMP = 1 << 2;
export const FOLL_FORCE = 1 << 3;
export const FOLL_NOWAIT = 1 << 4;
export const FOLL_NOFAULT = 1 << 5;
export const FOLL_HWPOISON = 1 << 6;
export const FOLL_ANON = 1 << 7;
export const FOLL_LONGTERM = 1 << 8;
export const FOLL_SPLIT_PMD = 1 << 9;
export const FOLL_PCI_P2PDMA = 1 << 10;
export const FOLL_INTERRUPTIBLE = 1 << 11;
export const FOLL_HONOR_NUMA_FAULT = 1 << 12;
/* Internal (mm/internal.h): a caller may not pass these. */
export const FOLL_TOUCH = 1 << 16;
export const FOLL_TRIED = 1 << 17;
export const FOLL_REMOTE = 1 << 18;
export const FOLL_PIN = 1 << 19;
export const FOLL_FAST_ONLY = 1 << 20;
export const FOLL_UNLOCKABLE = 1 << 21;
export const FOLL_MADV_POPULATE = 1 << 22;
export const FOLL_INTERNAL_FLAGS =
  FOLL_TOUCH | FOLL_TRIED | FOLL_REMOTE | FOLL_PIN | FOLL_FAST_ONLY | FOLL_UNLOCKABLE | FOLL_MADV_POPULATE;
/** The flags gup_fast_fallback accepts (anything else is -EINVAL). */
export const FOLL_FAST_ALLOWED =
  FOLL_WRITE | FOLL_LONGTERM | FOLL_FORCE | FOLL_PIN | FOLL_GET | FOLL_FAST_ONLY | FOLL_NOFAULT |
  FOLL_PCI_P2PDMA | FOLL_HONOR_NUMA_FAULT;

/*
 * Mode bits of the core's gupRange (bits 24 and up, above every FOLL_* flag):
 *   GUPM_LOCKED: follow_page_mask under mmap_lock (the slow path) rather than GUP-fast. No
 *     write_protect_seq check; the zero page is returned (FOLL_PIN does not count it);
 *     pages that are not long-term pinnable are taken and counted for the host to migrate.
 *   GUPM_FORCE_WRITE_OK: the VMA lets FOLL_FORCE write through a read-only PTE (private,
 *     may-write, not writable): an exclusive anonymous page is then taken (can_follow_write_pte).
 *   GUPM_COW_VMA: the VMA is a COW mapping (private, may-write): a read-only long-term pin of
 *     a page-cache page must unshare it (gup_must_unshare).
 *   GUPM_RACE: test only; run the race script in the ring (see RACE_*).
 */
export const GUPM_LOCKED = 1 << 24;
export const GUPM_FORCE_WRITE_OK = 1 << 25;
export const GUPM_COW_VMA = 1 << 26;
export const GUPM_RACE = 1 << 27;

/* Why a walk stopped before the last page (REG_GUP_STOP). */
export const GUP_STOP_NONE = 0; // every page was taken
export const GUP_STOP_NOT_PRESENT = 1; // no entry, a swap/migration entry, or a table missing
export const GUP_STOP_PERM = 2; // not user, not writable for a write, or the protection key denies
export const GUP_STOP_SPECIAL = 3; // a special PTE (pfn map, the zero page in GUP-fast): no struct page to take
export const GUP_STOP_DEVMAP = 4; // fsdax (ZONE_DEVICE) page with FOLL_LONGTERM
export const GUP_STOP_GRAB = 5; // the folio's refcount was 0 (being freed): the grab failed
export const GUP_STOP_CHANGED = 6; // the entry changed between the read and the grab: grab undone
export const GUP_STOP_LONGTERM = 7; // FOLL_LONGTERM on a page in MOVABLE or CMA (must migrate first)
export const GUP_STOP_UNSHARE = 8; // a pin of a shared anonymous page (or R/O long-term pin of a COW file page)
export const GUP_STOP_FILE_PIN = 9; // FOLL_LONGTERM | FOLL_WRITE pin of a page-cache folio (not shmem)
export const GUP_STOP_P2PDMA = 10; // a PCI P2PDMA page without FOLL_PCI_P2PDMA
export const GUP_STOP_SEQ = 11; // fork was write-protecting the mm (write_protect_seq odd or changed)
export const GUP_STOP_NO_PAGE = 12; // the frame is outside every zone (no struct page)

/*
 * Registers of the last gupRange / unpinPages call (byte offsets in the ring; they reuse the
 * translate registers' slots).
 */
export const REG_GUP_STOP = 16; // u32: GUP_STOP_* of the page after the last one taken
export const REG_GUP_GRABS = 20; // u32: folio reference operations (one per PTE, one per huge leaf)
export const REG_GUP_HUGE_PAGES = 24; // u32: pages taken from huge leaves
export const REG_GUP_LOADS = 28; // u32: page-table entries read
export const REG_GUP_UNPINNABLE = 32; // u32: pages taken that are not long-term pinnable (GUPM_LOCKED)
export const REG_GUP_DIRTIED = 36; // u32: folios unpinPages marked dirty

/** unpinPages flags. */
export const UNPIN_DIRTY = 1 << 0; // unpin_user_pages_dirty_lock(make_dirty = true)
export const UNPIN_PUT = 1 << 1; // put_page: drop FOLL_GET references, not pins
export const UNPIN_CHECK = 1 << 2; // only check that the release would be accepted; change nothing

/*
 * The output of gupRange: one f64 pfn per page from RING_ENTRY0 (the host copies them into
 * its Float64Array without converting); the input of unpinPages: the same.
 *
 * Race script (GUPM_RACE, tests only): a u32 count at RACE_BASE bytes from the end of the
 * ring's entries, then (from RACE_RECORDS, 8-byte aligned) up to RACE_MAX records of
 * RACE_SIZE bytes. Record r acts when the walk
 * reaches page @at (relative to the call's first page) in @phase: it stores @pte (lo/hi) at
 * @vpn's entry of @level in the same root, drops one reference of the folio the old entry
 * mapped if @put, and adds @seq to the mm's write_protect_seq. As another CPU's stores
 * between GUP-fast's read of the entry and its grab (phase 0), or between the grab and the
 * re-check (phase 1). GUP output never reaches this area.
 */
export const RACE_MAX = 4;
export const RACE_SIZE = 40;
export const RACE_RECORDS = 8; // the records' offset from the count
export const RACE_BASE = RACE_RECORDS + RACE_MAX * RACE_SIZE; // bytes before the end of the entries
export const RACE_AT = 0; // u32
export const RACE_PHASE = 4; // u32: 0 before the grab, 1 after it
export const RACE_VPN = 8; // f64
export const RACE_LEVEL = 16; // u32
export const RACE_PUT = 20; // u32
export const RACE_PTE_LO = 24; // u32
export const RACE_PTE_HI = 28; // u32
export const RACE_SEQ = 32; // u32
