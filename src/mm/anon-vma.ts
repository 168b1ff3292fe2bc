/**
 * anon_vma: the reverse map of anonymous pages (mm/rmap.c). An anonymous page's `mapping`
 * is its anon_vma's id and its `index` its offset in the VMA's range; the anon_vma knows
 * every VMA that may map its pages: the one that made them and, after fork, the children's
 * copies (anon_vma_chain). A child VMA gets its own anon_vma for the pages it makes, chained
 * to its parent's.
 * @module
 */
import type { Vma } from "./vma.js";

export class AnonVma {
  readonly id: number;
  readonly parent: AnonVma | null;
  /** Every VMA that may map pages of this anon_vma (its own and descendants'). */
  readonly vmas = new Set<Vma>();

  constructor(id: number, parent: AnonVma | null) {
    this.id = id;
    this.parent = parent;
  }

  /** Link @vma to this anon_vma and every ancestor (anon_vma_chain_link). */
  link(vma: Vma): void {
    for (let a: AnonVma | null = this; a; a = a.parent) a.vmas.add(vma);
  }

  unlink(vma: Vma): void {
    for (let a: AnonVma | null = this; a; a = a.parent) a.vmas.delete(vma);
  }
}
