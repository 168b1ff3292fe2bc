/**
 * The pinned-writeback checker: the two hazards of "The trouble with get_user_pages()"
 * (LSF/MM 2018) that led to FOLL_PIN and unpin_user_pages_dirty_lock.
 *
 * - [O1] Writeback of a file page that may be DMA-pinned: page_mkclean write-protects the
 *   CPU mappings and the bytes go to disk, but the device keeps writing through its pin with
 *   no fault, so the file system never hears of those writes.
 * - [O2] set_page_dirty at unpin of a file page that writeback cleaned while it was pinned:
 *   the file system considered the page clean (and may have dropped its buffers), and now it
 *   is dirty again. unpin_user_pages_dirty_lock does the dirtying correctly (under the page
 *   lock, through the mapping), so the page is written again; the report says that the
 *   device's writes between the writeback and the unpin were invisible to the file system.
 *
 * Pin calls are logged (the newest LOG_CALLS of them) so a report can name the call that
 * pinned the page and where the caller made it. A call whose pages all came from huge leaves
 * is logged as the first frame of each 2 MiB-aligned block of its range (the rest of a
 * block's frames follow it), so pinning THPs costs the log one entry per 512 pages.
 * @module
 */
import * as F from "../abi/frame.js";
import type { Inode } from "../fs/inode.js";
import { rmapWalk } from "../mm/rmap.js";
import type { PagesArray } from "../gup/range.js";
import { type CallSite, type CheckReport, userFrames } from "./report.js";
import { Checker } from "./checker.js";

const LOG_CALLS = 1024;
/** The frames of the logged calls share one pool of this many entries (no allocation per call). */
const LOG_PAGES = 1 << 18;

/**
 * The log of pin calls, one column per field (nothing is allocated per call): entry i took
 * its frames into pool[off, off + n) in lap `lap` of the pool. vpn -1: those are the call's
 * frames. Otherwise the call took `pages` pages from page vpn, all in huge leaves, and
 * pool[off + j] is the first frame of its j-th 2 MiB-aligned block.
 */
class PinLog {
  readonly fn: string[] = new Array<string>(LOG_CALLS).fill("");
  readonly site: (Error | null)[] = new Array<Error | null>(LOG_CALLS).fill(null);
  readonly pid = new Int32Array(LOG_CALLS);
  readonly time = new Float64Array(LOG_CALLS);
  readonly off = new Int32Array(LOG_CALLS);
  readonly n = new Int32Array(LOG_CALLS);
  readonly lap = new Int32Array(LOG_CALLS);
  readonly vpn = new Float64Array(LOG_CALLS);
  readonly pages = new Float64Array(LOG_CALLS);
  /** Entries written (the newest LOG_CALLS are kept); entry i is at i % LOG_CALLS. */
  count = 0;
}

/** Pages of a 2 MiB block: a huge leaf maps each one to consecutive frames. */
const BLOCK = 512;

interface Cleaned {
  report: CheckReport;
  inode: Inode;
  index: number;
}

export class PinnedWritebackChecker extends Checker {
  readonly name = "pinned-writeback";
  /** The newest LOG_CALLS pin calls. */
  readonly #log = new PinLog();
  readonly #pool = new Float64Array(LOG_PAGES);
  #poolAt = 0;
  #lap = 0;
  /** Pages writeback cleaned while they looked pinned, by frame. */
  readonly #cleaned = new Map<number, Cleaned>();


  /**
   * A pin call took @n pages of @pages, from page @vpn. @huge: all of them came from huge
   * leaves, so each 2 MiB-aligned block of the range maps to consecutive frames.
   */
  pinned(pid: number, fn: string, pages: PagesArray, n: number, vpn: number, huge: boolean): void {
    let off: number;
    let len: number;
    if (huge) {
      const head = vpn % BLOCK;
      len = Math.min(Math.ceil((head + n) / BLOCK), LOG_PAGES);
      off = this.#reserve(len);
      for (let j = 0; j < len; j++) this.#pool[off + j] = pages[j === 0 ? 0 : j * BLOCK - head]!;
    } else {
      // The last LOG_PAGES frames of a call larger than the pool.
      len = Math.min(n, LOG_PAGES);
      off = this.#reserve(len);
      if (pages instanceof Float64Array) this.#pool.set(pages.subarray(n - len, n), off);
      else for (let i = 0; i < len; i++) this.#pool[off + i] = pages[n - len + i]!;
      vpn = -1;
      n = len;
    }
    const log = this.#log;
    const i = log.count++ % LOG_CALLS;
    log.fn[i] = fn;
    log.site[i] = this.sites ? new Error("pin") : null;
    log.pid[i] = pid;
    log.time[i] = this.k.clock.now;
    log.off[i] = off;
    log.n[i] = len;
    log.lap[i] = this.#lap;
    log.vpn[i] = vpn;
    log.pages[i] = n;
  }

  /** Room for @n entries in the pool: their offset (a new lap when the pool's end is reached). */
  #reserve(n: number): number {
    if (this.#poolAt + n > LOG_PAGES) {
      this.#poolAt = 0;
      this.#lap++;
    }
    const off = this.#poolAt;
    this.#poolAt += n;
    return off;
  }

  /** Whether logged call @i took frame @pfn (its log entries are still in the pool). */
  #took(i: number, pfn: number): boolean {
    const log = this.#log;
    const off = log.off[i]!;
    const n = log.n[i]!;
    const vpn = log.vpn[i]!;
    if (vpn < 0) return this.#pool.subarray(off, off + n).indexOf(pfn) >= 0;
    const head = vpn % BLOCK;
    for (let j = 0; j < n; j++) {
      const first = j === 0 ? 0 : j * BLOCK - head; // index in the call's pages of block j's first page
      const len = Math.min(log.pages[i]!, (j + 1) * BLOCK - head) - first;
      const d = pfn - this.#pool[off + j]!;
      if (d >= 0 && d < len) return true;
    }
    return false;
  }

  /** The newest logged pin call that took frame @pfn. */
  #pinSite(pfn: number): CallSite | undefined {
    const log = this.#log;
    for (let c = log.count - 1; c >= 0 && c >= log.count - LOG_CALLS; c--) {
      const i = c % LOG_CALLS;
      // Still in the pool: written in this lap, or in the last one and not yet overwritten.
      const lap = log.lap[i]!;
      const kept = lap === this.#lap || (lap === this.#lap - 1 && log.off[i]! >= this.#poolAt);
      if (kept && this.#took(i, pfn)) {
        return { fn: log.fn[i]!, pid: log.pid[i]!, time: log.time[i]!, stack: userFrames(log.site[i]!) };
      }
    }
    return undefined;
  }


  /** [O1] writeback wrote page @index of @inode (frame @pfn) while it looked pinned. */
  writebackPinned(inode: Inode, index: number, pfn: number, fn: string): void {
    const k = this.k;
    const pin = this.#pinSite(pfn);
    const mappers = rmapWalk(k, pfn).map((h) => h.mm.pid);
    const pids = [...new Set([...(pin ? [pin.pid!] : []), ...mappers])];
    const by = pin ? `pinned by pid ${pin.pid} (${pin.fn})` : "pinned (by a call older than the checker's log)";
    const report: CheckReport = {
      checker: this.name,
      rule: "O1",
      message:
        `writeback of ${inode.path} page ${index} (pfn ${pfn}) while it is ${by}: page_mkclean write-protected ` +
        "the CPU mappings and the page went to disk, but the device can keep writing through its pin with no " +
        "fault, so the file system never sees those writes",
      time: k.clock.now,
      pfn,
      file: { path: inode.path, index },
      pids,
      sites: { writeback: this.site(fn), ...(pin ? { pin } : {}) },
    };
    this.#cleaned.set(pfn, { report, inode, index });
    this.report(report);
  }

  /** An unpin with make_dirty is about to release @n entries of @pages. */
  unpinDirty(pages: PagesArray, n: number): void {
    if (this.#cleaned.size === 0) return;
    const k = this.k;
    for (const [pfn, c] of this.#cleaned) {
      const at = pages.indexOf(pfn);
      if (at < 0 || at >= n) continue;
      this.#cleaned.delete(pfn);
      if (k.flagsOf(k.folioOf(pfn)) & F.PG_dirty) continue; // written again since: the fs knows
      this.report({
        checker: this.name,
        rule: "O2",
        message:
          `set_page_dirty at unpin of ${c.inode.path} page ${c.index} (pfn ${pfn}), which writeback cleaned while ` +
          "it was pinned: the file system took the page for clean (and may have dropped its buffers) while the " +
          "device wrote into it; unpinUserPagesDirtyLock marks it dirty under the page lock, so it is written " +
          "again, but the writes since the last writeback were invisible to the file system until now",
        time: k.clock.now,
        pfn,
        file: { path: c.inode.path, index: c.index },
        pids: c.report.pids,
        sites: { ...c.report.sites, unpin: this.site("unpinUserPagesDirtyLock") },
      });
    }
  }
}
