/**
 * FOLL_LONGTERM after the pages are pinned (mm/gup.c check_and_migrate_movable_pages): a
 * long-term pin must not sit in ZONE_MOVABLE or CMA (it would block memory hot-remove and
 * CMA allocations), so such folios are collected, every page of the call is unpinned, the
 * folios are migrated to NORMAL, and the caller pins the whole range again.
 * @module
 */
import { DmaError } from "../errors.js";
import type { Kernel } from "../mm/kernel.js";
import { migratePage } from "../mm/migrate.js";
import type { PagesArray } from "./range.js";
import { unpinFrames } from "./unpin.js";

/** Rounds of pin, migrate, pin again before giving up (the kernel loops while -EAGAIN). */
const MAX_ROUNDS = 16;

/** folio_is_longterm_pinnable for the frame @pfn: not MOVABLE, not CMA (the zero page is NORMAL). */
export function longtermPinnable(k: Kernel, pfn: number): boolean {
  const z = k.phys.zoneOf(pfn);
  return z !== "MOVABLE" && z !== "CMA" && z !== "DEVICE" && z !== "DEVICE_PRIVATE" && z !== "P2PDMA";
}

/**
 * checkAndMigrateMovablePages - "ok" when the @n pinned pages of @pages from @off are all
 * long-term pinnable; otherwise unpin them all, migrate the folios that are not, and return
 * "again" (the caller pins the range again). ENOMEM when a folio cannot be moved.
 */
export function checkAndMigrateMovablePages(k: Kernel, pages: PagesArray, off: number, n: number, round: number): "ok" | "again" {
  const heads = new Set<number>();
  for (let i = off; i < off + n; i++) {
    const pfn = pages[i]!;
    if (!longtermPinnable(k, pfn)) heads.add(k.folioOf(pfn));
  }
  if (heads.size === 0) return "ok";
  unpinFrames(k.core, pages, off, n, 0, "pinUserPages");
  if (round + 1 >= MAX_ROUNDS) {
    throw new DmaError("ENOMEM", `FOLL_LONGTERM: pages still in MOVABLE or CMA after ${MAX_ROUNDS} rounds of migration`, { arg: "start" });
  }
  for (const head of heads) {
    try {
      migratePage(k, head, { zone: "NORMAL" });
    } catch (e) {
      if (!(e instanceof DmaError)) throw e;
      throw new DmaError("ENOMEM", `FOLL_LONGTERM: frame ${head} could not leave ${k.phys.zoneOf(head)}: ${e.message}`, { arg: "start", cause: e });
    }
  }
  k.trace.count("gup.longterm_migrated_folios", heads.size);
  return "again";
}
