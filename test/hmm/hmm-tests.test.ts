/**
 * tools/testing/selftests/mm/hmm-tests.c, ported case by case against the dmirror model
 * (src/drivers/dmirror.ts): each test keeps the kernel test's name, buffer (1024 pages of
 * ints, ptr[i] = i) and assertions on what the device read and counted.
 *
 * The cases with device-private memory or device-exclusive access are in
 * hmm-tests-device.test.ts. Not ported yet, as what they need is not built: mixedmap (mmap of
 * the device file); anon_write_hugetlbfs and compound (hugetlbfs); anon_teardown (a second
 * thread unmapping during the read); the device-coherent variants (MEMORY_DEVICE_COHERENT).
 */
import { describe, expect, it } from "vitest";
import {
  Dmirror, HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_PMD, HMM_DMIRROR_PROT_READ, HMM_DMIRROR_PROT_WRITE, HMM_DMIRROR_PROT_ZERO,
  HMM_DMIRROR_READ, HMM_DMIRROR_SNAPSHOT, HMM_DMIRROR_WRITE,
} from "../../src/drivers/dmirror.js";
import { caught, HPAGE, mmap, PAGE } from "../mm/mm-helpers.js";
import { cmd, dmirrorSetup, filledBuffer, holds, NPAGES, pattern, SIZE } from "./hmm-helpers.js";

const setup = (thp: "never" | "madvise" = "never") => dmirrorSetup({ mm: { thp } });

describe("hmm-tests.c against dmirror", () => {
  it("open_close", async () => {
    const { fd } = await setup();
    fd.close();
    expect(caught(() => fd.ioctl(HMM_DMIRROR_READ, cmd(0, 1))).code).toBe("EBADF");
  });

  it("anon_read: pte_none and zero-page pages read as 0, the rest as written; cpages == npages, faults == 1", async () => {
    const { p, fd } = await setup();
    const a = mmap(p, { length: SIZE });
    p.write(a + 2 * PAGE, pattern(SIZE / 4 - 2 * PAGE / 4, (i) => i, 2 * PAGE / 4));
    p.mprotect(a, SIZE, "r");
    p.read(a + PAGE, 4); // the zero page in page 1; page 0 stays pte_none
    const c = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_READ, c);
    expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
    expect(holds(c.ptr, () => 0, 0, 2 * PAGE / 4)).toBe(true);
    expect(holds(c.ptr, (i) => i, 2 * PAGE / 4)).toBe(true);
  });

  it("anon_read_prot: PROT_NONE memory cannot be read by the device (EFAULT), the mirror is untouched", async () => {
    const { p, fd } = await setup();
    const a = filledBuffer(p);
    p.mprotect(a, SIZE, "---");
    const c = cmd(a, NPAGES, pattern(SIZE / 4, (i) => -i));
    expect(caught(() => fd.ioctl(HMM_DMIRROR_READ, c)).code).toBe("EFAULT");
    expect(holds(c.ptr, (i) => -i)).toBe(true);
  });

  it("anon_write: the device writes what the CPU then reads; cpages == npages, faults == 1", async () => {
    const { p, fd } = await setup();
    const a = mmap(p, { length: SIZE });
    const c = cmd(a, NPAGES, pattern(SIZE / 4, (i) => i));
    fd.ioctl(HMM_DMIRROR_WRITE, c);
    expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
    expect(holds(p.read(a, SIZE), (i) => i)).toBe(true);
  });

  it("anon_write_prot: a write to read-only memory is EPERM and changes nothing; after mprotect(RW) it goes through", async () => {
    const { p, fd } = await setup();
    const a = mmap(p, { length: SIZE, prot: "r" });
    const one = cmd(a, 1);
    fd.ioctl(HMM_DMIRROR_READ, one);
    expect([one.cpages, one.faults]).toEqual([1, 1]);
    const c = cmd(a, NPAGES, pattern(SIZE / 4, (i) => i));
    expect(caught(() => fd.ioctl(HMM_DMIRROR_WRITE, c)).code).toBe("EPERM");
    expect([c.cpages, c.faults]).toEqual([0, 0]);
    expect(holds(p.read(a, SIZE), () => 0)).toBe(true);
    p.mprotect(a, SIZE, "rw");
    fd.ioctl(HMM_DMIRROR_WRITE, c);
    expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
    expect(holds(p.read(a, SIZE), (i) => i)).toBe(true);
  });

  it("anon_write_child: after fork, the child's device writes its own copy; the parent keeps its data", async () => {
    const { p } = await setup();
    const a = filledBuffer(p);
    const child = p.fork();
    const fd = new Dmirror(child);
    const c = cmd(a, NPAGES, pattern(SIZE / 4, (i) => -i));
    fd.ioctl(HMM_DMIRROR_WRITE, c);
    expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
    expect(holds(child.read(a, SIZE), (i) => -i)).toBe(true);
    expect(holds(p.read(a, SIZE), (i) => i)).toBe(true);
  });

  it("anon_write_child_shared: a MAP_SHARED anonymous buffer: the child's device writes reach the parent", async () => {
    const { p } = await setup();
    const a = filledBuffer(p, true);
    const child = p.fork();
    const fd = new Dmirror(child);
    const c = cmd(a, NPAGES, pattern(SIZE / 4, (i) => -i));
    fd.ioctl(HMM_DMIRROR_WRITE, c);
    expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
    expect(holds(child.read(a, SIZE), (i) => -i)).toBe(true);
    expect(holds(p.read(a, SIZE), (i) => -i)).toBe(true);
  });

  it("anon_write_huge: a 2 MiB THP region written by the device: cpages == 512, faults == 1, and it is a PMD mapping", async () => {
    const { p, fd } = await setup("madvise");
    const raw = mmap(p, { length: 2 * HPAGE });
    const a = Math.ceil(raw / HPAGE) * HPAGE;
    p.madvise(a, HPAGE, "hugepage");
    const c = cmd(a, 512, pattern(HPAGE / 4, (i) => i));
    fd.ioctl(HMM_DMIRROR_WRITE, c);
    expect([c.cpages, c.faults]).toEqual([512, 1]);
    expect(holds(p.read(a, HPAGE), (i) => i)).toBe(true);
    const snap = cmd(a, 512, new Uint8Array(512));
    fd.ioctl(HMM_DMIRROR_SNAPSHOT, snap);
    expect(snap.ptr.every((b) => b === (HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD))).toBe(true);
  });

  it("file_read: a shared file mapping read by the device", async () => {
    const { p, fd } = await setup();
    const m = p.kernel.machine!;
    m.fs.create("/tmp/hmm", { size: SIZE });
    m.fs.write("/tmp/hmm", 0, pattern(SIZE / 4, (i) => i));
    const a = mmap(p, { length: SIZE, prot: "r", shared: true, file: "/tmp/hmm" });
    const c = cmd(a, NPAGES);
    fd.ioctl(HMM_DMIRROR_READ, c);
    expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
    expect(holds(c.ptr, (i) => i)).toBe(true);
  });

  it("file_write: the device writes a shared file mapping; the CPU and read() see it", async () => {
    const { p, fd } = await setup();
    const m = p.kernel.machine!;
    m.fs.create("/tmp/hmm", { size: SIZE });
    const a = mmap(p, { length: SIZE, shared: true, file: "/tmp/hmm" });
    const c = cmd(a, NPAGES, pattern(SIZE / 4, (i) => i));
    fd.ioctl(HMM_DMIRROR_WRITE, c);
    expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
    expect(holds(p.read(a, SIZE), (i) => i)).toBe(true);
    expect(holds(m.fs.read("/tmp/hmm", 0, SIZE), (i) => i)).toBe(true);
  });

  it("anon_read_multiple: ten rounds of new data, each read by the device after one fault", async () => {
    const { p, fd } = await setup();
    for (let round = 0; round < 10; round++) {
      const a = mmap(p, { length: SIZE });
      p.write(a, pattern(SIZE / 4, (i) => i + round));
      const c = cmd(a, NPAGES);
      fd.ioctl(HMM_DMIRROR_READ, c);
      expect([c.cpages, c.faults]).toEqual([NPAGES, 1]);
      expect(holds(c.ptr, (i) => i + round)).toBe(true);
      p.munmap(a, SIZE);
    }
  });

  it("snapshot, pages 0-4: PROT_NONE and unmapped are ERROR, the zero page ZERO|READ, then READ and WRITE", async () => {
    const { p, fd } = await setup();
    const a = mmap(p, { length: 5 * PAGE });
    p.munmap(a + PAGE, PAGE); // page 1: unmapped
    p.mprotect(a, PAGE, "---"); // page 0: PROT_NONE
    p.mprotect(a + 2 * PAGE, PAGE, "r");
    p.read(a + 2 * PAGE, 4); // page 2: the zero page
    p.write(a + 3 * PAGE, pattern(1, () => 3));
    p.mprotect(a + 3 * PAGE, PAGE, "r"); // page 3: read-only data
    p.write(a + 4 * PAGE, pattern(1, () => 4)); // page 4: writable
    const c = cmd(a, 5, new Uint8Array(5));
    fd.ioctl(HMM_DMIRROR_SNAPSHOT, c);
    expect(c.cpages).toBe(5);
    expect([...c.ptr]).toEqual([
      HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ, HMM_DMIRROR_PROT_READ,
      HMM_DMIRROR_PROT_WRITE,
    ]);
  });
});
