/**
 * The kernel's gup_test selftests (tools/testing/selftests/mm/gup_test.c with mm/gup_test.c),
 * replayed: GUP_FAST, PIN_FAST, PIN_LONGTERM and plain GUP / PIN over 4 KiB pages and THPs,
 * with the selftest's calls of 1, 512, 123 and all pages, and the page-dump test. Each
 * checks what the kernel's would: the whole range covered (size not truncated), no
 * verify_dma_pinned warning, and every struct page back to its count afterwards.
 */
import { describe, expect, it } from "vitest";
import {
  DUMP_USER_PAGES_TEST, FOLL, GUP_BASIC_TEST, GUP_FAST_BENCHMARK, GUP_TEST_FLAG_DUMP_PAGES_USE_PIN, gupTestIoctl,
  newGupTest, PIN_BASIC_TEST, PIN_FAST_BENCHMARK, PIN_LONGTERM_BENCHMARK,
} from "../../src/index.js";
import { buffer, counts, framesOf, gupMachine, leaf, PAGE } from "./gup-helpers.js";

const COMMANDS = [
  ["GUP_FAST_BENCHMARK", GUP_FAST_BENCHMARK],
  ["PIN_FAST_BENCHMARK", PIN_FAST_BENCHMARK],
  ["PIN_LONGTERM_BENCHMARK", PIN_LONGTERM_BENCHMARK],
  ["GUP_BASIC_TEST", GUP_BASIC_TEST],
  ["PIN_BASIC_TEST", PIN_BASIC_TEST],
] as const;

describe("gup_test benchmarks and basic tests (the selftest's nr_pages_list: 1, 512, 123, all)", () => {
  for (const huge of [false, true]) {
    for (const [name, cmd] of COMMANDS) {
      it(`${name} over ${huge ? "THPs" : "4 KiB pages"}: covers the range, warns of nothing, leaves every count as it was`, async () => {
        const m = await gupMachine({ mm: { thp: "madvise" } });
        const p = m.spawn();
        const pages = 2048; // 8 MiB: four THPs
        const a = buffer(p, pages, { huge });
        expect(leaf(p, a).level).toBe(huge ? 2 : 1);
        for (const perCall of [1, 512, 123, pages]) {
          const before = framesOf(p, a, pages);
          const want = before.map((pfn) => counts(m, pfn));
          const g = newGupTest({ addr: a, size: pages * PAGE, nrPagesPerCall: perCall, gupFlags: FOLL.WRITE });
          const r = gupTestIoctl(p, cmd, g);
          expect(g.size).toBe(pages * PAGE);
          expect(r.nrPages).toBe(pages);
          expect(r.warnings).toEqual([]);
          // Modeled time: the call cost per call plus a page's (or subpage's) cost each.
          const calls = Math.ceil(pages / perCall);
          expect(g.getDeltaUsec * 1000).toBeGreaterThanOrEqual(calls * m.costs.gupCall.ns);
          expect(g.putDeltaUsec).toBeGreaterThan(0);
          // PIN_LONGTERM moved the MOVABLE pages to NORMAL; the rest stayed where they were.
          const after = framesOf(p, a, pages);
          if (cmd === PIN_LONGTERM_BENCHMARK) {
            expect(after.every((pfn) => m.page(pfn).zone === "NORMAL")).toBe(true);
          } else {
            expect(after).toEqual(before);
          }
          if (cmd !== PIN_LONGTERM_BENCHMARK) expect(after.map((pfn) => counts(m, pfn))).toEqual(want);
          for (const pfn of after) expect(counts(m, pfn)).toMatchObject({ ref: 1, pin: 0 });
        }
        expect(m.vmstat().nr_foll_pin_acquired).toBe(m.vmstat().nr_foll_pin_released);
      });
    }
  }

  it("a range that runs into a hole is truncated: size says how far the calls got", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 64);
    p.munmap(a + 40 * PAGE, 24 * PAGE);
    for (const cmd of [GUP_FAST_BENCHMARK, PIN_FAST_BENCHMARK, PIN_BASIC_TEST]) {
      const g = newGupTest({ addr: a, size: 64 * PAGE, nrPagesPerCall: 16, gupFlags: FOLL.WRITE });
      const r = gupTestIoctl(p, cmd, g);
      // Calls of 16: pages 0-15, 16-31, then 32-47 comes back short (8): the loop stops,
      // and size counts the whole chunk it asked for, as mm/gup_test.c does.
      expect(r.nrPages).toBe(40);
      expect(g.size).toBe(48 * PAGE);
    }
  });

  it("an unknown command is EINVAL, as is a range that overflows", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 4);
    expect(() => gupTestIoctl(p, 99, newGupTest({ addr: a, size: 4 * PAGE }))).toThrow(/^EINVAL: gup_test: unknown command 99/);
    expect(() => gupTestIoctl(p, GUP_FAST_BENCHMARK, newGupTest({ addr: 2 ** 53 - 4096, size: 8192 }))).toThrow(/^EINVAL/);
  });
});

describe("DUMP_USER_PAGES_TEST (run_vmtests.sh: gup_test -ct -F 0x1 0 19 0x1000)", () => {
  it("pins pages 0, 19 and 4096 of a buffer and dumps their struct pages and contents while pinned", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const pages = 4097 + 7;
    const a = buffer(p, pages);
    for (const i of [0, 19, 4096]) p.write(a + i * PAGE, new TextEncoder().encode(`page ${i}`));
    // The tool turns the command line's 0-based indices into the ioctl's 1-based ones.
    const g = newGupTest({
      addr: a, size: pages * PAGE, nrPagesPerCall: pages, gupFlags: FOLL.WRITE,
      testFlags: GUP_TEST_FLAG_DUMP_PAGES_USE_PIN, whichPages: [1, 20, 4097, 0, 99999],
    });
    const r = gupTestIoctl(p, DUMP_USER_PAGES_TEST, g);
    expect(r.dumped.map((d) => d.index)).toEqual([0, 19, 4096]);
    for (const d of r.dumped) {
      expect(new TextDecoder().decode(d.bytes.subarray(0, 16)).replace(/\0+$/, "")).toBe(`page ${d.index}`);
      expect(d.page.refcount).toBe(1 + 1024); // the mapping's reference and the pin, while dumped
      expect(d.page.pfn).toBe(framesOf(p, a + d.index * PAGE, 1)[0]);
    }
    // An index beyond the range is zeroed in the struct, as the kernel writes it back.
    expect(g.whichPages).toEqual([1, 20, 4097, 0, 0]);
    expect(counts(m, r.dumped[0]!.page.pfn).ref).toBe(1);
  });

  it("without the pin flag it gets (FOLL_GET): one reference each while dumped", async () => {
    const m = await gupMachine();
    const p = m.spawn();
    const a = buffer(p, 32);
    const g = newGupTest({ addr: a, size: 32 * PAGE, nrPagesPerCall: 8, whichPages: [3] });
    const r = gupTestIoctl(p, DUMP_USER_PAGES_TEST, g);
    expect(r.dumped[0]!.page.refcount).toBe(2);
    expect(counts(m, r.dumped[0]!.page.pfn).ref).toBe(1);
  });
});
