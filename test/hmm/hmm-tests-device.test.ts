/**
 * tools/testing/selftests/mm/hmm-tests.c, the cases with device-private memory
 * (memory.devicePrivate): migration to and from the device, the device's memory going away,
 * device pages seen by snapshot, double_map, COW and GUP of device pages, and device-exclusive
 * access. The rest are in hmm-tests.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  Dmirror, HMM_DMIRROR_CHECK_EXCLUSIVE, HMM_DMIRROR_EXCLUSIVE, HMM_DMIRROR_MIGRATE_TO_DEV, HMM_DMIRROR_MIGRATE_TO_SYS,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_NONE, HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE, HMM_DMIRROR_PROT_ZERO, HMM_DMIRROR_READ, HMM_DMIRROR_RELEASE, HMM_DMIRROR_SNAPSHOT,
  HMM_DMIRROR_WRITE,
} from "../../src/drivers/dmirror.js";
import {
  FOLL, GUP_BASIC_TEST, GUP_FAST_BENCHMARK, gupTestIoctl, newGupTest, PIN_FAST_BENCHMARK, PIN_LONGTERM_BENCHMARK,
} from "../../src/index.js";
import { caught, leaf, mmap, PAGE } from "../mm/mm-helpers.js";
import { cmd, dmirrorSetup, filledBuffer, holds, ints, NPAGES, pattern, SIZE } from "./hmm-helpers.js";

const setup = () => dmirrorSetup({ mm: { thp: "never" } });
const devSetup = () =>
  dmirrorSetup({ mm: { thp: "never" }, memory: { normal: "64MiB", movable: "64MiB", cma: 0, devicePrivate: "16MiB" } });

describe("hmm-tests.c against dmirror: device-private memory", () => {
  it("migrate: every page moves to the device; the device holds the data", async () => {
    const { p, fd } = await devSetup();
    const a = filledBuffer(p);
    const c = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, c);
    expect(c.cpages).toBe(NPAGES);
    expect(holds(c.ptr, (i) => i)).toBe(true);
    expect(leaf(p, a).present).toBe(false); // a device-private entry now
    const rss = p.mm.rss.anon;
    p.munmap(a, SIZE); // the zap lets go of the device pages: back on the device's free list
    expect(fd.device.stats.freed).toBe(NPAGES);
    expect(rss - p.mm.rss.anon).toBe(NPAGES);
  });

  it("migrate_fault: the CPU reads half back (a fault per page migrates it), then all of it moves again", async () => {
    const { p, fd } = await devSetup();
    const a = filledBuffer(p);
    const c = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, c);
    expect(c.cpages).toBe(NPAGES);
    expect(holds(p.read(a, SIZE / 2), (i) => i)).toBe(true);
    expect(leaf(p, a).present).toBe(true);
    expect(fd.device.stats.faults).toBe(NPAGES / 2);
    const again = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, again);
    expect(again.cpages).toBe(NPAGES);
    expect(holds(again.ptr, (i) => i)).toBe(true);
  });

  it("migrate_release: the device's memory goes away; what was on it is back in system memory", async () => {
    const { p, fd } = await devSetup();
    const a = filledBuffer(p);
    const c = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, c);
    expect(c.cpages).toBe(NPAGES);
    const free0 = p.kernel.phys.nrFreePages("DEVICE_PRIVATE");
    fd.ioctl(HMM_DMIRROR_RELEASE, cmd(a, NPAGES));
    expect(leaf(p, a).present).toBe(true);
    expect(holds(p.read(a, SIZE / 2), (i) => i)).toBe(true);
    expect(fd.device.stats.faults).toBe(0); // nothing faulted: the pages were already back
    expect(p.kernel.phys.nrFreePages("DEVICE_PRIVATE") - free0).toBe(NPAGES); // the chunk's frames returned to the zone
    const again = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, again); // a new chunk
    expect(again.cpages).toBe(NPAGES);
  });

  it("migrate_shared: shared anonymous memory does not move (ENOENT)", async () => {
    const { p, fd } = await devSetup();
    const a = mmap(p, { length: SIZE, shared: true });
    expect(caught(() => fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, cmd(a, NPAGES))).code).toBe("ENOENT");
  });

  it("migrate_multiple: ten rounds to the device and back (MIGRATE_TO_SYS counts what came back)", async () => {
    const { p, fd } = await devSetup();
    for (let round = 0; round < 10; round++) {
      const a = mmap(p, { length: SIZE });
      p.write(a, pattern(SIZE / 4, (i) => i + round));
      const c = cmd(a, NPAGES);
      fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, c);
      expect(c.cpages).toBe(NPAGES);
      const back = cmd(a, NPAGES);
      fd.ioctl(HMM_DMIRROR_MIGRATE_TO_SYS, back);
      expect(back.cpages).toBe(NPAGES);
      expect(holds(p.read(a, SIZE), (i) => i + round)).toBe(true);
      p.munmap(a, SIZE);
    }
    expect(fd.device.stats.freed).toBe(10 * NPAGES); // every device page came back to the device's free list
  });

  it("migrate_mixed (hmm2): PROT_NONE and holes are EINVAL; the zero page, read-only and writable pages move; another device cannot take them", async () => {
    const { p, fd } = await devSetup();
    const fd1 = new Dmirror(p, { device: 1 });
    const a = mmap(p, { length: 6 * PAGE, prot: "---" });
    expect(caught(() => fd1.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, cmd(a, 6))).code).toBe("EINVAL");
    p.munmap(a + PAGE, PAGE);
    expect(caught(() => fd1.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, cmd(a, 3))).code).toBe("EINVAL");
    p.mprotect(a + 2 * PAGE, 4 * PAGE, "r");
    p.read(a + 2 * PAGE, 4); // page 2: the zero page
    p.mprotect(a + 3 * PAGE, 3 * PAGE, "rw");
    p.write(a + 3 * PAGE, pattern(1, () => 3));
    p.mprotect(a + 3 * PAGE, PAGE, "r"); // page 3: read-only data; pages 4-5 writable
    const c = cmd(a + 2 * PAGE, 4);
    fd1.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, c);
    expect(c.cpages).toBe(4);
    expect(caught(() => fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, cmd(a + 5 * PAGE, 1))).code).toBe("ENOENT");
  });

  it("snapshot (hmm2), all seven pages: device pages read LOCAL on their own device, not at all on another", async () => {
    const { p, fd } = await devSetup();
    const fd1 = new Dmirror(p, { device: 1 });
    const a = mmap(p, { length: 7 * PAGE });
    p.munmap(a + PAGE, PAGE);
    p.mprotect(a, PAGE, "---");
    p.mprotect(a + 2 * PAGE, PAGE, "r");
    p.read(a + 2 * PAGE, 4);
    p.write(a + 3 * PAGE, pattern(1, () => 3));
    p.mprotect(a + 3 * PAGE, PAGE, "r");
    p.write(a + 4 * PAGE, pattern(1024, () => 4));
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, cmd(a + 5 * PAGE, 1));
    fd1.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, cmd(a + 6 * PAGE, 1));
    const c = cmd(a, 7, new Uint8Array(7));
    fd.ioctl(HMM_DMIRROR_SNAPSHOT, c);
    expect(c.cpages).toBe(7);
    expect([...c.ptr]).toEqual([
      HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ, HMM_DMIRROR_PROT_READ,
      HMM_DMIRROR_PROT_WRITE, HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE, HMM_DMIRROR_PROT_NONE,
    ]);
  });

  it("double_map (hmm2): both devices read; the pages move to device 1; device 0's read faults them back", async () => {
    const { p, fd } = await devSetup();
    const fd1 = new Dmirror(p, { device: 1 });
    const a = mmap(p, { length: 6 * PAGE });
    p.write(a, pattern(6 * 1024, (i) => i));
    p.mprotect(a, 6 * PAGE, "r");
    for (const f of [fd, fd1]) {
      const c = cmd(a, 6);
      f.ioctl(HMM_DMIRROR_READ, c);
      expect([c.cpages, c.faults]).toEqual([6, 1]);
      expect(holds(c.ptr, (i) => i)).toBe(true);
    }
    const mig = cmd(a, 6);
    fd1.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, mig);
    expect(mig.cpages).toBe(6);
    const c = cmd(a, 6);
    fd.ioctl(HMM_DMIRROR_READ, c);
    expect([c.cpages, c.faults]).toEqual([6, 1]);
    expect(holds(c.ptr, (i) => i)).toBe(true);
  });

  it("hmm_cow_in_device: fork shares the device pages read-only; each side's access brings its own copy back; then the device pages are free", async () => {
    const { p, fd } = await devSetup();
    const a = mmap(p, { length: 4 * PAGE });
    p.write(a, pattern(4 * 1024, (i) => i));
    const c = cmd(a, 4);
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, c);
    expect(c.cpages).toBe(4);
    const child = p.fork();
    p.write(a, pattern(4 * 1024, (i) => -i)); // the parent writes: each page faults back to system memory
    expect(fd.device.stats.faults).toBe(4);
    expect(fd.device.stats.freed).toBe(0); // the child still maps the device pages
    expect(holds(child.read(a, 4 * PAGE), (i) => i)).toBe(true); // its own copies, migrated back too
    expect(fd.device.stats.freed).toBe(4);
    child.exit(); // the child is killed
    const snap = cmd(a, 4, new Uint8Array(4));
    fd.ioctl(HMM_DMIRROR_SNAPSHOT, snap);
    expect(snap.cpages).toBe(4);
    expect([...snap.ptr]).toEqual([1, 2, 3, 4].map(() => HMM_DMIRROR_PROT_WRITE));
    expect(holds(p.read(a, 4 * PAGE), (i) => -i)).toBe(true);
  });

  it("exclusive: the device takes every page for atomic access; the CPU's touches take them back", async () => {
    const { p, fd } = await setup();
    const a = filledBuffer(p);
    const c = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_EXCLUSIVE, c);
    expect(c.cpages).toBe(NPAGES);
    expect(holds(c.ptr, (i) => i)).toBe(true);
    expect(leaf(p, a).present).toBe(false);
    expect(caught(() => fd.ioctl(HMM_DMIRROR_CHECK_EXCLUSIVE, cmd(a, NPAGES))).code).toBe("EPERM");
    const v = ints(p.read(a, SIZE)).map((x) => x + 1); // ptr[i]++ on every int
    p.write(a, new Uint8Array(v.buffer));
    expect(holds(p.read(a, SIZE), (i) => i + 1)).toBe(true);
    fd.ioctl(HMM_DMIRROR_CHECK_EXCLUSIVE, cmd(a, NPAGES));
  });

  it("exclusive_mprotect: once the memory is read-only, the device cannot write it (EPERM)", async () => {
    const { p, fd } = await setup();
    const a = filledBuffer(p);
    const c = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_EXCLUSIVE, c);
    expect(c.cpages).toBe(NPAGES);
    p.mprotect(a, SIZE, "r");
    expect(caught(() => fd.ioctl(HMM_DMIRROR_WRITE, cmd(a, NPAGES, pattern(SIZE / 4, (i) => -i)))).code).toBe("EPERM");
  });

  it("exclusive_cow: fork gives the pages back to the CPU; parent and child each write their own copy", async () => {
    const { p, fd } = await setup();
    const a = filledBuffer(p);
    fd.ioctl(HMM_DMIRROR_EXCLUSIVE, cmd(a, NPAGES));
    const child = p.fork();
    for (const q of [p, child]) {
      const v = ints(q.read(a, SIZE)).map((x) => x + 1);
      q.write(a, new Uint8Array(v.buffer));
      expect(holds(q.read(a, SIZE), (i) => i + 1)).toBe(true);
    }
    child.exit();
  });

  it("hmm_gup_test: GUP of device pages faults them back to system memory; the data survives", async () => {
    const { p, fd } = await devSetup();
    const a = mmap(p, { length: 4 * PAGE });
    p.write(a, pattern(4 * 1024, (i) => i));
    const c = cmd(a, 4);
    fd.ioctl(HMM_DMIRROR_MIGRATE_TO_DEV, c);
    expect(c.cpages).toBe(4);
    const cmds = [GUP_BASIC_TEST, GUP_FAST_BENCHMARK, PIN_FAST_BENCHMARK, PIN_LONGTERM_BENCHMARK];
    cmds.forEach((cmdNo, i) => {
      gupTestIoctl(p, cmdNo, newGupTest({ addr: a + i * PAGE, size: PAGE, nrPagesPerCall: 1, gupFlags: cmdNo === PIN_FAST_BENCHMARK ? FOLL.LONGTERM : 0 }));
    });
    const snap = cmd(a, 4, new Uint8Array(4));
    fd.ioctl(HMM_DMIRROR_SNAPSHOT, snap);
    expect(snap.cpages).toBe(4);
    expect([...snap.ptr]).toEqual([2, 2, 2, 2].map(() => HMM_DMIRROR_PROT_WRITE));
    expect(holds(p.read(a, 4 * PAGE), (i) => i)).toBe(true);
  });
});
