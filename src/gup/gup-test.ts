/**
 * mm/gup_test.c: the debugfs file /sys/kernel/debug/gup_test and its ioctls, run against a
 * process of the machine, so the kernel's selftests (tools/testing/selftests/mm/gup_test.c,
 * run_vmtests.sh) replay here and give the same counts.
 *
 * - The *_BENCHMARK and *_TEST commands walk [addr, addr + size) in calls of
 *   nrPagesPerCall pages, stop at the first short call, record the time the calls took
 *   (getDeltaUsec) and the time releasing took (putDeltaUsec), and rewrite size to the bytes
 *   the loop covered (a short count shows as a smaller size).
 * - Times are modeled microseconds (the machine's clock); wallNs adds this process's wall
 *   time of the two phases, for benchmarks.
 * - Pinned pages are checked with folio_maybe_dma_pinned (and, for PIN_LONGTERM, long-term
 *   pinnability) before release; a failure is a warning, as the kernel's WARN.
 * - DUMP_USER_PAGES_TEST takes the pages and returns, for each 1-based index of whichPages
 *   (0 = unused, beyond the range = zeroed), the page's struct page and its bytes.
 * @module
 */
import { DmaError } from "../errors.js";
import type { PageInfo } from "../mm/page.js";
import type { Process } from "../mm/process.js";
import { framePageBytes } from "../mm/filemap.js";
import { getUserPages, getUserPagesFast, pinUserPages, pinUserPagesFast } from "./gup.js";
import { longtermPinnable } from "./longterm.js";
import type { PagesArray } from "./range.js";
import { folioMaybeDmaPinned, releasePages, unpinUserPages } from "./unpin.js";
import * as G from "../abi/gup.js";

/* ioctl commands (_IOWR('g', n, struct gup_test)), by their number. */
export const GUP_FAST_BENCHMARK = 1;
export const PIN_FAST_BENCHMARK = 2;
export const PIN_LONGTERM_BENCHMARK = 3;
export const GUP_BASIC_TEST = 4;
export const PIN_BASIC_TEST = 5;
export const DUMP_USER_PAGES_TEST = 6;
export const GUP_TEST_MAX_PAGES_TO_DUMP = 8;
/** test_flags: DUMP_USER_PAGES_TEST pins (pin_user_pages) rather than gets. */
export const GUP_TEST_FLAG_DUMP_PAGES_USE_PIN = 0x1;

/** struct gup_test. */
export interface GupTest {
  getDeltaUsec: number;
  putDeltaUsec: number;
  addr: number;
  size: number;
  nrPagesPerCall: number;
  gupFlags: number;
  testFlags: number;
  whichPages: number[];
}

/** What one ioctl produced beyond the struct: warnings, wall time, dumped pages. */
export interface GupTestResult {
  /** verify_dma_pinned's WARNs ("pages[3] is NOT dma-pinned"). */
  warnings: string[];
  /** Wall time of the take and release phases in this thread (ns). */
  wallNs: { get: number; put: number };
  /** Pages taken in all. */
  nrPages: number;
  dumped: { index: number; page: PageInfo; bytes: Uint8Array }[];
}

/** newGupTest - a struct gup_test with the selftest's defaults for the fields not given. */
export function newGupTest(o: Partial<GupTest> & Pick<GupTest, "addr" | "size">): GupTest {
  return { getDeltaUsec: 0, putDeltaUsec: 0, nrPagesPerCall: 1, gupFlags: 0, testFlags: 0, whichPages: [], ...o };
}

type Taker = (p: Process, addr: number, nr: number, flags: number, pages: PagesArray) => number;

function taker(cmd: number, gup: GupTest): Taker | null {
  switch (cmd) {
    case GUP_FAST_BENCHMARK:
      return getUserPagesFast;
    case PIN_FAST_BENCHMARK:
      return pinUserPagesFast;
    case PIN_LONGTERM_BENCHMARK:
      return (p, a, n, f, pages) => pinUserPages(p, a, n, f | G.FOLL_LONGTERM, pages);
    case GUP_BASIC_TEST:
      return getUserPages;
    case PIN_BASIC_TEST:
      return pinUserPages;
    case DUMP_USER_PAGES_TEST:
      return gup.testFlags & GUP_TEST_FLAG_DUMP_PAGES_USE_PIN ? pinUserPages : getUserPages;
    default:
      return null;
  }
}

const now = (): number => performance.now() * 1e6;

/**
 * gupTestIoctl - ioctl(gup_fd, @cmd, @gup) for process @p: runs the command and updates
 * @gup (getDeltaUsec, putDeltaUsec, size; whichPages for a dump) as the kernel does.
 * EINVAL for an unknown command or a range that overflows.
 */
export function gupTestIoctl(p: Process, cmd: number, gup: GupTest): GupTestResult {
  const take = taker(cmd, gup);
  if (!take) throw new DmaError("EINVAL", `gup_test: unknown command ${cmd}`, { arg: "cmd" });
  if (!Number.isSafeInteger(gup.addr + gup.size) || gup.addr < 0 || gup.size < 0) {
    throw new DmaError("EINVAL", "gup_test: addr + size overflows", { arg: "gup" });
  }
  const k = p.kernel;
  const m = k.machine!;
  const nrPages = Math.floor(gup.size / 4096);
  // kvcalloc: in the kernel heap, so GUP writes it in place; zeroed before the clock starts.
  const pages = k.kheap.kvcalloc(nrPages);
  try {
    const out: GupTestResult = { warnings: [], wallNs: { get: 0, put: 0 }, nrPages: 0, dumped: [] };
    const end = gup.addr + gup.size;
    const fast = cmd === GUP_FAST_BENCHMARK || cmd === PIN_FAST_BENCHMARK;
    const t0 = k.clock.now;
    const w0 = now();
    let i = 0;
    let nr = gup.nrPagesPerCall;
    let addr = gup.addr;
    const loop = (): void => {
      for (let next = addr; addr < end; addr = next) {
        if (nr !== gup.nrPagesPerCall) break;
        next = addr + nr * 4096;
        if (next > end) {
          next = end;
          nr = Math.floor((next - addr) / 4096);
        }
        nr = nr > 0 ? take(p, addr, nr, gup.gupFlags, pages.subarray(i)) : nr;
        if (nr <= 0) break;
        i += nr;
      }
    };
    // The commands that are not *_FAST run under mmap_read_lock (killable).
    if (fast) loop();
    else p.mm.mmapLock.with("read", `pid ${p.pid} gup_test`, loop);
    out.wallNs.get = now() - w0;
    gup.getDeltaUsec = (k.clock.now - t0) / 1000;
    gup.size = addr - gup.addr;
    out.nrPages = i;
    const pin = cmd === PIN_FAST_BENCHMARK || cmd === PIN_BASIC_TEST || cmd === PIN_LONGTERM_BENCHMARK ||
      (cmd === DUMP_USER_PAGES_TEST && (gup.testFlags & GUP_TEST_FLAG_DUMP_PAGES_USE_PIN) !== 0);
    // verify_dma_pinned (not timed).
    if (pin && cmd !== DUMP_USER_PAGES_TEST) {
      for (let j = 0; j < i; j++) {
        if (!folioMaybeDmaPinned(m, pages[j]!)) {
          out.warnings.push(`pages[${j}] is NOT dma-pinned`);
          break;
        }
        if (cmd === PIN_LONGTERM_BENCHMARK && !longtermPinnable(k, pages[j]!)) {
          out.warnings.push(`pages[${j}] is NOT pinnable but pinned`);
          break;
        }
      }
    }
    if (cmd === DUMP_USER_PAGES_TEST) {
      gup.whichPages = gup.whichPages.slice(0, GUP_TEST_MAX_PAGES_TO_DUMP).map((w) => (w > i ? 0 : w));
      for (const w of gup.whichPages) {
        if (!w) continue;
        const pfn = pages[w - 1]!;
        out.dumped.push({ index: w - 1, page: m.page(pfn), bytes: framePageBytes(k, pfn) });
      }
    }
    // put_back_pages.
    const t1 = k.clock.now;
    const w1 = now();
    if (pin) unpinUserPages(m, pages, i);
    else releasePages(m, pages, i);
    out.wallNs.put = now() - w1;
    gup.putDeltaUsec = (k.clock.now - t1) / 1000;
    return out;
  } finally {
    k.kheap.kvfree(pages);
  }
}
