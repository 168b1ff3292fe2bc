/**
 * Adding, removing, splitting and merging VMAs, keeping the reverse maps (anon_vma chains,
 * the file's i_mmap) in step (mm/vma.c: split_vma, vma_merge, vma_link, unlink).
 * @module
 */
import type { MmStruct } from "./mm.js";
import type { Vma } from "./vma.js";

/** vma_link: insert @v in its mm and in the reverse maps. */
export function vmaLink(mm: MmStruct, v: Vma): void {
  mm.vmas.insert(v);
  v.anonVma?.link(v);
  v.file?.mmaps.add(v);
}

/**
 * unlink: remove @v from its mm and the reverse maps. The hidden shmem file behind shared
 * anonymous memory goes with its last mapping: nothing else can reach it, so its page-cache
 * pages lose the cache's reference (and are freed when nothing else holds them).
 */
export function vmaUnlink(mm: MmStruct, v: Vma): void {
  mm.vmas.remove(v);
  v.ops?.close?.(v);
  v.anonVma?.unlink(v);
  const f = v.file;
  if (!f) return;
  f.mmaps.delete(v);
  if (f.hidden && f.mmaps.size === 0) {
    const k = mm.kernel;
    for (const pfn of f.pages.values()) k.folioRef(pfn, -1);
    f.pages.clear();
    k.inodes.delete(f.id);
  }
}

/** split_vma: cut @v at page @at; returns [below, above] (both linked). */
export function splitVma(mm: MmStruct, v: Vma, at: number): [Vma, Vma] {
  if (at <= v.start || at >= v.end) throw new RangeError(`split at ${at} outside [${v.start}, ${v.end})`);
  // vma_adjust_trans_huge: a huge leaf the cut goes through becomes PTEs, accounting moved.
  if (at % 512 !== 0) mm.kernel.check(mm.kernel.core.x.splitHugePmd(mm.pgd.pfn, at), "splitHugePmd");
  const above = v.clone(at, v.end);
  v.end = at;
  vmaLink(mm, above);
  return [v, above];
}

/**
 * splitAround - make [start, end) a run of whole VMAs (splitting the ones its ends cut) and
 * return them in order.
 */
export function splitAround(mm: MmStruct, start: number, end: number): Vma[] {
  for (const v of mm.vmas.overlapping(start, end)) {
    if (v.start < start) splitVma(mm, v, start);
  }
  for (const v of mm.vmas.overlapping(start, end)) {
    if (v.end > end) splitVma(mm, v, end);
  }
  return mm.vmas.overlapping(start, end);
}

/** vma_merge: join @v with its neighbours where they continue each other; returns the result. */
export function mergeAround(mm: MmStruct, v: Vma): Vma {
  let cur = v;
  const prev = mm.vmas.prev(cur);
  const next0 = mm.vmas.next(cur.end);
  const prevOk = !!prev && prev.canMergeWith(cur);
  let nextOk = !!next0 && next0.start === cur.end && cur.canMergeWith(next0);
  // All three only if prev's and next's anon_vmas agree too (are_anon_vmas_compatible).
  if (prevOk && nextOk && prev!.anonVma && next0!.anonVma && prev!.anonVma !== next0!.anonVma) nextOk = false;
  if (prevOk) {
    vmaUnlink(mm, cur);
    adoptAnonVma(prev!, cur);
    prev!.end = cur.end;
    cur = prev!;
  }
  if (nextOk) {
    vmaUnlink(mm, next0!);
    adoptAnonVma(cur, next0!);
    cur.end = next0!.end;
  }
  return cur;
}

/** dup_anon_vma: @into, about to take in @from's range, takes @from's anon_vma if it has none. */
function adoptAnonVma(into: Vma, from: Vma): void {
  if (!into.anonVma && from.anonVma) {
    into.anonVma = from.anonVma;
    into.anonVma.link(into);
  }
}
