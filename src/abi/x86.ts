/**
 * x86-64 architectural constants: page-table entry bits, #PF error-code bits, exception
 * vectors (Intel SDM vol. 3, ch. 4 "Paging" and ch. 6). Values are the architecture's own.
 *
 * Shared by the core and the host (both compilers read this file). Bits at or above 31 are
 * given as bit numbers (`*_BIT`), since a mask would not fit a 32-bit constant.
 * @module
 */

/* Page-table entry bits (all levels unless noted). */
export const PTE_P = 1 << 0; // present
export const PTE_RW = 1 << 1; // writable (effective = AND over levels)
export const PTE_US = 1 << 2; // user (effective = AND over levels)
export const PTE_PWT = 1 << 3; // write-through (cache index bit 0)
export const PTE_PCD = 1 << 4; // cache disable (cache index bit 1)
export const PTE_A = 1 << 5; // accessed, set by the walker
export const PTE_D = 1 << 6; // dirty, leaf only, set on first write
export const PTE_PS = 1 << 7; // page size (PDPTE/PDE); PAT on a 4 KiB PTE
export const PTE_PAT_4K = 1 << 7; // PAT bit of a 4 KiB PTE
export const PTE_G = 1 << 8; // global (leaf only, needs CR4.PGE)
export const PTE_SOFTW1 = 1 << 9; // Linux: _PAGE_SPECIAL
export const PTE_SOFTW2 = 1 << 10; // Linux: _PAGE_UFFD_WP
export const PTE_SOFTW3 = 1 << 11; // Linux: _PAGE_SOFT_DIRTY
export const PTE_PAT_LARGE = 1 << 12; // PAT bit of a 2 MiB / 1 GiB leaf
export const PTE_BIT_NX = 63; // no-execute (needs EFER.NXE, else reserved)
export const PTE_BIT_PKEY = 59; // protection key, bits 62:59 (user leaves, CR4.PKE)
export const PTE_BIT_SOFTW4 = 57;
export const PTE_BIT_SOFTW5 = 58;

/*
 * Non-present entries Linux keeps in PTEs (swap, migration, device-private), in dmalab's
 * encoding: P = 0, the kind in bits 4:1, flags in bits 6:5, the offset (a swap slot, or a
 * pfn) in bits 51:12. An entry of kind 0 is foreign (written raw); the kernel would not
 * recognise it.
 */
export const SWP_KIND_SHIFT = 1;
export const SWP_KIND_MASK = 0xf;
export const SWP_SWAP = 1; // a swapped-out page: offset = swap slot
export const SWP_MIGRATION = 2; // a page under migration: offset = the old pfn
export const SWP_DEVICE_PRIVATE = 3; // device-private memory: offset = the device pfn
export const SWP_DEVICE_EXCLUSIVE = 4; // a page a device holds for atomic access: offset = the pfn
export const SWP_WRITE = 1 << 5; // migration / device entries: the mapping was writable
export const SWP_EXCLUSIVE = 1 << 6; // pte_swp_exclusive: the anon page was exclusive

/** Linux non-leaf entries: _PAGE_TABLE (user half) and _KERNPG_TABLE (kernel half). */
export const PTE_TABLE_USER = 0x67;
export const PTE_TABLE_KERNEL = 0x63;

/* #PF error code bits (pushed by the CPU; also our access-type encoding, see ACC_*). */
export const PF_P = 1 << 0; // 0: not present, 1: protection violation
export const PF_W = 1 << 1; // write access
export const PF_U = 1 << 2; // user-mode access
export const PF_RSVD = 1 << 3; // reserved bit set in a paging entry
export const PF_I = 1 << 4; // instruction fetch
export const PF_PK = 1 << 5; // protection-key violation

/* Exception vectors. */
export const X86_TRAP_GP = 13; // #GP: non-canonical linear address
export const X86_TRAP_PF = 14; // #PF

/* Paging geometry. */
export const PAGE_SHIFT = 12;
export const PTRS_PER_TABLE = 512;
export const LEVEL_BITS = 9;
