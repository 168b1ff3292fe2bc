/**
 * The set of an address space's VMAs: non-overlapping ranges in address order, found by
 * binary search (the maple tree's job in the kernel): find is O(log n), a range query is
 * O(log n + hits).
 * @module
 */
import type { Vma } from "./vma.js";

export class VmaTree {
  #v: Vma[] = [];

  get size(): number {
    return this.#v.length;
  }

  /** Index of the first VMA whose end is above @vpn. */
  #lowerBound(vpn: number): number {
    let lo = 0;
    let hi = this.#v.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#v[mid]!.end <= vpn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** find_vma_intersection for one page: the VMA holding @vpn, or null. */
  find(vpn: number): Vma | null {
    const v = this.#v[this.#lowerBound(vpn)];
    return v && v.start <= vpn ? v : null;
  }

  /** The VMAs overlapping [start, end), in order. */
  overlapping(start: number, end: number): Vma[] {
    const out: Vma[] = [];
    for (let i = this.#lowerBound(start); i < this.#v.length && this.#v[i]!.start < end; i++) out.push(this.#v[i]!);
    return out;
  }

  /** The first VMA ending above @vpn (find_vma), or null. */
  next(vpn: number): Vma | null {
    return this.#v[this.#lowerBound(vpn)] ?? null;
  }

  /** The VMA just before @v, or null. */
  prev(v: Vma): Vma | null {
    const i = this.#v.indexOf(v);
    return i > 0 ? this.#v[i - 1]! : null;
  }

  insert(v: Vma): void {
    const i = this.#lowerBound(v.start);
    const at = this.#v[i];
    if (at && at.start < v.end) throw new Error(`VMA [${v.start}, ${v.end}) overlaps [${at.start}, ${at.end})`);
    this.#v.splice(i, 0, v);
  }

  remove(v: Vma): void {
    const i = this.#v.indexOf(v);
    if (i < 0) throw new Error("VMA not in this tree");
    this.#v.splice(i, 1);
  }

  all(): readonly Vma[] {
    return this.#v;
  }
}
