/*
 * The core's translation path in C, for the benchmarks' "native" column: the same
 * algorithm (assembly/mmu/walk.ts, tlb.ts, cpu.ts translateBatch) over the same data, a
 * dump of the core's shared memory, read with the core's offsets (abi.h, generated from
 * src/abi/). Built with gcc -O2 by bench/native.ts.
 *
 * usage: walk <dump> <cpu> <n> <flags> <iterations>
 * prints: {"nsPerOp": ..., "checksum": ...}   checksum = sum of the PAs of the last pass
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "abi.h"

static uint8_t *mem;
static uint32_t FRAMES, POOL, CPUS, TLBS, TLB_STRIDE, TLB_SETS, TLB_WAYS, LEVELS, VA_BITS, PHYS_BITS;

#define U32(a) (*(uint32_t *)(mem + (a)))
#define U64(a) (*(uint64_t *)(mem + (a)))
#define FRAME_MASK 0x000ffffffffff000ull
#define NX (1ull << PTE_BIT_NX)
#define PKEY_MASK (0xfull << PTE_BIT_PKEY)
#define RSVD_2M 0x1fe000ull
#define RSVD_1G 0x3fffe000ull

static uint64_t walk_pa, walk_data;
static uint32_t walk_size, walk_loads;

static inline uint32_t perm_check(uint64_t data, uint32_t acc, uint32_t ctrl, uint32_t pkru) {
  uint32_t code = PF_P | (acc & (PF_W | PF_U | PF_I));
  int write = (acc & ACC_WRITE) != 0, fetch = (acc & ACC_FETCH) != 0, user_page = (data & PTE_US) != 0;
  if (acc & ACC_USER) {
    if (!user_page) return code;
    if (write && !(data & PTE_RW)) return code;
  } else {
    if (user_page) {
      if (fetch && (ctrl & CTRL_SMEP)) return code;
      if (!fetch && (ctrl & CTRL_SMAP) && !(acc & ACC_AC)) return code;
    }
    if (write && !(data & PTE_RW) && (ctrl & CTRL_WP)) return code;
  }
  if (fetch && (data & NX)) return code;
  if ((ctrl & CTRL_PKE) && user_page && !fetch) {
    uint32_t k = (uint32_t)((data & PKEY_MASK) >> PTE_BIT_PKEY), bits = (pkru >> (2 * k)) & 3;
    if (bits & 1) return code | PF_PK;
    if (write && (bits & 2) && ((acc & ACC_USER) || (ctrl & CTRL_WP))) return code | PF_PK;
  }
  return 0;
}

static inline int accessed(uintptr_t ea, uint64_t e, int side) {
  uint64_t expect = e;
  return !side || (e & PTE_A) ||
         __atomic_compare_exchange_n((uint64_t *)(mem + ea), &expect, e | PTE_A, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline uintptr_t entry_at(uint32_t t, uint64_t lvpn, unsigned shift) {
  uint32_t slot = U32(FRAMES + (uintptr_t)t * FRAME_SIZE + FRAME_BACKING);
  return POOL - 4096 + ((uintptr_t)slot << 12) + ((uintptr_t)((lvpn >> shift) & 511) << 3);
}

#define LOAD(ea) __atomic_load_n((uint64_t *)(mem + (ea)), __ATOMIC_SEQ_CST)

/* One straight-line step per level, as assembly/mmu/walk.ts. */
static int32_t walk(uint32_t root, uint64_t va, uint32_t acc, uint32_t ctrl, uint32_t pkru, int side) {
  uint64_t lvpn = (va & ((1ull << VA_BITS) - 1)) >> 12;
  uint64_t common = (PHYS_BITS < 52 ? (((1ull << 52) - 1) & ~((1ull << PHYS_BITS) - 1)) : 0) | ((ctrl & CTRL_NXE) ? 0 : NX);
  uint64_t upper = common | PTE_PS, rsvd1g = common | RSVD_1G, rsvd2m = common | RSVD_2M;
  int32_t not_present = (X86_TRAP_PF << 16) | (acc & (PF_W | PF_U | PF_I)), reserved = not_present | PF_P | PF_RSVD;
  uint32_t loads = 0;
  for (;;) {
    uint32_t t = root, level;
    uint64_t rights = PTE_RW | PTE_US, nx = 0, e;
    uintptr_t ea;
    if (LEVELS == 5) {
      ea = entry_at(t, lvpn, 36); e = LOAD(ea); loads++;
      if (!(e & PTE_P)) { walk_loads = loads; return not_present; }
      if (e & upper) { walk_loads = loads; return reserved; }
      if (!accessed(ea, e, side)) continue;
      rights &= e; nx |= e & NX; t = (uint32_t)((e & FRAME_MASK) >> 12);
    }
    ea = entry_at(t, lvpn, 27); e = LOAD(ea); loads++;
    if (!(e & PTE_P)) { walk_loads = loads; return not_present; }
    if (e & upper) { walk_loads = loads; return reserved; }
    if (!accessed(ea, e, side)) continue;
    rights &= e; nx |= e & NX; t = (uint32_t)((e & FRAME_MASK) >> 12);
    ea = entry_at(t, lvpn, 18); e = LOAD(ea); loads++;
    if (!(e & PTE_P)) { walk_loads = loads; return not_present; }
    if (e & PTE_PS) {
      if (e & rsvd1g) { walk_loads = loads; return reserved; }
      level = 3;
    } else {
      if (e & common) { walk_loads = loads; return reserved; }
      if (!accessed(ea, e, side)) continue;
      rights &= e; nx |= e & NX; t = (uint32_t)((e & FRAME_MASK) >> 12);
      ea = entry_at(t, lvpn, 9); e = LOAD(ea); loads++;
      if (!(e & PTE_P)) { walk_loads = loads; return not_present; }
      if (e & PTE_PS) {
        if (e & rsvd2m) { walk_loads = loads; return reserved; }
        level = 2;
      } else {
        if (e & common) { walk_loads = loads; return reserved; }
        if (!accessed(ea, e, side)) continue;
        rights &= e; nx |= e & NX; t = (uint32_t)((e & FRAME_MASK) >> 12);
        ea = entry_at(t, lvpn, 0); e = LOAD(ea); loads++;
        if (!(e & PTE_P)) { walk_loads = loads; return not_present; }
        if (e & common) { walk_loads = loads; return reserved; }
        level = 1;
      }
    }
    rights &= e;
    nx |= e & NX;
    uint32_t size = level - 1;
    uint64_t size_mask = (1ull << (12 + 9 * size)) - 1, frame = e & FRAME_MASK & ~size_mask;
    uint64_t pat = level == 1 ? (e & PTE_PAT_4K) : (e & PTE_PAT_LARGE) ? PTE_PAT_4K : 0;
    uint64_t data = frame | PTE_P | rights | (e & (PTE_PWT | PTE_PCD | PTE_D | PTE_G)) | pat | nx | (e & PKEY_MASK);
    uint32_t denied = perm_check(data, acc, ctrl, pkru);
    if (denied) { walk_loads = loads; return (X86_TRAP_PF << 16) | denied; }
    if (side) {
      uint64_t want = PTE_A | ((acc & ACC_WRITE) ? PTE_D : 0);
      if ((e & want) != want) {
        uint64_t expect = e;
        if (!__atomic_compare_exchange_n((uint64_t *)(mem + ea), &expect, e | want, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) continue;
        data |= want & PTE_D;
      }
    }
    walk_pa = frame | (va & size_mask);
    walk_data = data;
    walk_size = size;
    walk_loads = loads;
    return 0;
  }
}

#define TAG_PCID ((uint64_t)0xfff << TLB_TAG_PCID_SHIFT)
#define GLOBAL_IGNORE (TAG_PCID | TLB_TAG_G)

static inline uintptr_t tlb_set(uint32_t cpu, uint64_t vpn_s) {
  return TLBS + (uintptr_t)cpu * TLB_STRIDE + (uintptr_t)(vpn_s & (TLB_SETS - 1)) * TLB_WAYS * TLBE_SIZE;
}

static inline uintptr_t tlb_lookup(uint32_t cpu, uintptr_t c, uint64_t lvpn, uint32_t pcid) {
  for (uint32_t size = 0; size < 3; size++) {
    if (U32(c + CPU_LIVE + size * 4) == 0) continue;
    uint64_t vpn_s = lvpn >> (9 * size);
    uint64_t want = (vpn_s << TLB_TAG_VPN_SHIFT) | ((uint64_t)size << TLB_TAG_SIZE_SHIFT) | ((uint64_t)pcid << TLB_TAG_PCID_SHIFT) | TLB_TAG_V;
    uintptr_t e = tlb_set(cpu, vpn_s), end = e + (uintptr_t)TLB_WAYS * TLBE_SIZE;
    for (; e < end; e += TLBE_SIZE) {
      uint64_t tag = U64(e + TLBE_TAG), x = tag ^ want;
      if (x == 0 || ((tag & TLB_TAG_G) && (x & ~GLOBAL_IGNORE) == 0)) return e;
    }
  }
  return 0;
}

static void tlb_fill(uint32_t cpu, uintptr_t c, uint64_t lvpn, uint32_t pcid, uint32_t size, uint64_t data, int global, uint64_t stamp) {
  uint64_t vpn_s = lvpn >> (9 * size);
  uintptr_t e = tlb_set(cpu, vpn_s), end = e + (uintptr_t)TLB_WAYS * TLBE_SIZE, victim = 0;
  uint64_t oldest = UINT64_MAX;
  for (; e < end; e += TLBE_SIZE) {
    if (!(U64(e + TLBE_TAG) & TLB_TAG_V)) { victim = e; break; }
    if (U64(e + TLBE_STAMP) < oldest) { oldest = U64(e + TLBE_STAMP); victim = e; }
  }
  uint64_t old = U64(victim + TLBE_TAG);
  if (old & TLB_TAG_V) U32(c + CPU_LIVE + ((old >> TLB_TAG_SIZE_SHIFT) & 3) * 4) -= 1;
  U64(victim + TLBE_TAG) = (vpn_s << TLB_TAG_VPN_SHIFT) | ((uint64_t)size << TLB_TAG_SIZE_SHIFT) | ((uint64_t)pcid << TLB_TAG_PCID_SHIFT) | TLB_TAG_V | (global ? TLB_TAG_G : 0);
  U64(victim + TLBE_DATA) = data;
  U64(victim + TLBE_STAMP) = stamp;
  U32(c + CPU_LIVE + size * 4) += 1;
}

/* translateBatch over the ring at @ring. */
static void translate_batch(uint32_t cpu, uintptr_t ring, uint32_t n, uint32_t flags) {
  uintptr_t c = CPUS + (uintptr_t)cpu * CPU_SIZE;
  uint32_t root = U32(c + CPU_CR3_PFN), ctrl = U32(c + CPU_CTRL), pkru = U32(c + CPU_PKRU);
  uint32_t pcid = (ctrl & CTRL_PCIDE) ? U32(c + CPU_PCID) : 0;
  int use_tlb = !(flags & (XLATE_NOTLB | XLATE_NOSIDE)), side = !(flags & XLATE_NOSIDE);
  uint32_t sh = 64 - VA_BITS;
  uint64_t va_mask = (1ull << VA_BITS) - 1, tick = U64(c + CPU_TICK);
  uintptr_t req = ring + RING_ENTRY0;
  for (uint32_t i = 0; i < n; i++, req += RENT_SIZE) {
    uint64_t va = U64(req + TREQ_VA);
    uint32_t acc = U32(req + TREQ_ACCESS);
    if (acc & ~ACC_MASK) { *(int32_t *)(mem + req + TREQ_STATUS) = -EINVAL; continue; }
    if ((int64_t)(va << sh) >> sh != (int64_t)va) { *(int32_t *)(mem + req + TREQ_STATUS) = X86_TRAP_GP << 16; continue; }
    uint64_t lvpn = (va & va_mask) >> 12;
    if (use_tlb) {
      uintptr_t e = tlb_lookup(cpu, c, lvpn, pcid);
      if (e) {
        uint64_t data = U64(e + TLBE_DATA);
        uint32_t denied = perm_check(data, acc, ctrl, pkru);
        if (!denied && (!(acc & ACC_WRITE) || (data & PTE_D))) {
          uint32_t size = (uint32_t)(U64(e + TLBE_TAG) >> TLB_TAG_SIZE_SHIFT) & 3;
          U64(e + TLBE_STAMP) = ++tick;
          *(int32_t *)(mem + req + TREQ_STATUS) = (int32_t)(size | XLATE_HIT);
          U64(req + TREQ_PA) = (data & FRAME_MASK) | (va & ((1ull << (12 + 9 * size)) - 1));
          continue;
        }
        uint64_t tag = U64(e + TLBE_TAG);
        U64(e + TLBE_TAG) = 0;
        U32(c + CPU_LIVE + ((tag >> TLB_TAG_SIZE_SHIFT) & 3) * 4) -= 1;
      }
    }
    int32_t st = walk(root, va, acc, ctrl, pkru, side);
    if (st) { *(int32_t *)(mem + req + TREQ_STATUS) = st; continue; }
    *(int32_t *)(mem + req + TREQ_STATUS) = (int32_t)walk_size;
    U64(req + TREQ_PA) = walk_pa;
    if (use_tlb) tlb_fill(cpu, c, lvpn, pcid, walk_size, walk_data, (walk_data & PTE_G) && (ctrl & CTRL_PGE), ++tick);
  }
  U64(c + CPU_TICK) = tick;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: %s dump cpu n flags iterations\n", argv[0]); return 2; }
  FILE *f = fopen(argv[1], "rb");
  if (!f) { perror(argv[1]); return 1; }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  mem = aligned_alloc(4096, (len + 4095) & ~4095L);
  if (!mem || fread(mem, 1, len, f) != (size_t)len) { fprintf(stderr, "cannot read dump\n"); return 1; }
  fclose(f);
  FRAMES = U32(HDR_ADDR + HDR_FRAMES_BASE); POOL = U32(HDR_ADDR + HDR_POOL_BASE);
  CPUS = U32(HDR_ADDR + HDR_CPUS_BASE); TLBS = U32(HDR_ADDR + HDR_TLB_BASE);
  TLB_STRIDE = U32(HDR_ADDR + HDR_TLB_STRIDE); TLB_SETS = U32(HDR_ADDR + HDR_TLB_SETS);
  TLB_WAYS = U32(HDR_ADDR + HDR_TLB_WAYS); LEVELS = U32(HDR_ADDR + HDR_LEVELS);
  PHYS_BITS = U32(HDR_ADDR + HDR_PHYS_BITS); VA_BITS = LEVELS == 5 ? 57 : 48;
  uint32_t cpu = atoi(argv[2]), n = atoi(argv[3]), flags = atoi(argv[4]);
  long iters = atol(argv[5]);
  uintptr_t ring = U32(HDR_ADDR + HDR_RINGS_BASE); /* thread 0's ring */
  translate_batch(cpu, ring, n, flags); /* warm-up, as the core's first pass */
  /* Time each batch; report the mean and the median (robust on a shared, noisy machine). */
  double *t = malloc(sizeof(double) * iters), total = 0;
  for (long it = 0; it < iters; it++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    translate_batch(cpu, ring, n, flags);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    t[it] = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    total += t[it];
  }
  qsort(t, iters, sizeof(double), cmp_double);
  double sum = 0;
  for (uint32_t i = 0; i < n; i++) sum += (double)U64(ring + RING_ENTRY0 + i * RENT_SIZE + TREQ_PA);
  printf("{\"nsPerOp\": %.4f, \"medianNsPerOp\": %.4f, \"minNsPerOp\": %.4f, \"checksum\": %.0f}\n",
         total / ((double)iters * n), t[iters / 2] / n, t[0] / n, sum);
  return 0;
}
