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

/** unlink: remove @v from its mm and the reverse maps. */
export function vmaUnlink(mm: MmStruct, v: Vma): void {
  mm.vmas.remove(v);
  v.anonVma?.unlink(v);
  v.file?.mmaps.delete(v);
}

/** split_vma: cut @v at page @at; returns [below, above] (both linked). */
export function splitVma(mm: MmStruct, v: Vma, at: number): [Vma, Vma] {
  if (at <= v.start || at >= v.end) throw new RangeError(`split at ${at} outside [${v.start}, ${v.end})`);
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
  if (prev && prev.canMergeWith(cur)) {
    vmaUnlink(mm, cur);
    prev.end = cur.end;
    cur = prev;
  }
  const next = mm.vmas.next(cur.end);
  if (next && next.start === cur.end && cur.canMergeWith(next)) {
    vmaUnlink(mm, next);
    cur.end = next.end;
  }
  return cur;
}
