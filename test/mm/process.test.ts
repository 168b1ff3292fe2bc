/**
 * Processes (kernel/fork.c, kernel/exit.c, arch/x86/mm/tlb.c): what exit gives back (every
 * frame and page table, exit_mmap), RSS accounting, the CPUs an mm's TLB shootdowns reach
 * (mm_cpumask), and what fork sets up.
 */
import { describe, expect, it } from "vitest";
import type { Machine } from "../../src/index.js";
import { counter, HPAGE, mmap, mmMachine, PAGE, pfnAt, str, text } from "./mm-helpers.js";

/** Frames the page cache of regular files holds (they outlive the processes that mapped them). */
function cachedFilePages(m: Machine): number {
  return m.fs.list().reduce((n, f) => n + f.pages.size, 0);
}

describe("exit (exit_mmap)", () => {
  it("frees every frame the process held and its page tables: free pages return to their value before spawn, minus the page cache", async () => {
    const m = await mmMachine({ mm: { thp: "always" } });
    m.fs.create("/f", { size: 8 * PAGE });
    m.fs.create("/g", { size: 4 * PAGE });
    const free0 = m.phys.nrFreePages();
    const normal0 = m.phys.nrFreePages("NORMAL");
    const p = m.spawn(0);
    const a = mmap(p, { length: 64 * PAGE });
    p.touch(a, 64 * PAGE, "w"); // anonymous pages
    const z = mmap(p, { length: 16 * PAGE });
    p.touch(z, 16 * PAGE, "r"); // the zero page
    const h = mmap(p, { length: 2 * HPAGE });
    p.touch(h, 2 * HPAGE, "w"); // two THPs
    p.munmap(h + 7 * PAGE, PAGE); // one of them split
    const f = mmap(p, { length: 8 * PAGE, file: "/f", shared: true });
    p.touch(f, 8 * PAGE, "w"); // shared file pages
    const g = mmap(p, { length: 4 * PAGE, file: "/g" });
    p.touch(g, 2 * PAGE, "r");
    p.touch(g + 2 * PAGE, 2 * PAGE, "w"); // private copies of file pages
    const c = p.fork();
    c.touch(a, 32 * PAGE, "w"); // COW copies in the child
    expect(m.phys.nrFreePages()).toBeLessThan(free0 - 1000);
    c.exit();
    p.exit();
    expect(cachedFilePages(m)).toBe(12);
    expect(m.phys.nrFreePages()).toBe(free0 - cachedFilePages(m));
    expect(m.phys.nrFreePages("NORMAL")).toBe(normal0); // page tables, roots included
    expect(m.kernel.processes.size).toBe(0);
  });

  it("frees the pages of MAP_SHARED|MAP_ANONYMOUS memory once its last mapping is gone (the shmem object dies with it)", async () => {
    const m = await mmMachine();
    void m.kernel.zeroPfn; // the kernel's own page, allocated with it
    const free0 = m.phys.nrFreePages();
    const p = m.spawn(0);
    const s = mmap(p, { length: 8 * PAGE, shared: true });
    p.touch(s, 8 * PAGE, "w");
    const c = p.fork();
    p.exit();
    expect(str(c.read(s, 1))).toBe("\0"); // still alive in the child
    c.exit();
    expect(m.phys.nrFreePages()).toBe(free0);
    const q = m.spawn(0);
    const t = mmap(q, { length: 4 * PAGE, shared: true });
    q.touch(t, 4 * PAGE, "w");
    q.munmap(t, 4 * PAGE);
    q.exit();
    expect(m.phys.nrFreePages()).toBe(free0);
  });

  it("takes the address space off every CPU, frees its PCID for reuse, and refuses further calls (ESRCH)", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: PAGE });
    p.write(a, text("x"));
    expect(m.cpu(0).cr3.pgd).toBe(p.mm.pgd.pfn);
    const pcid = p.mm.pcid;
    p.exit();
    expect(p.exited).toBe(true);
    expect(m.cpu(0).cr3.pgd).toBe(null);
    expect(m.cpu(0).tlbEntries().filter((e) => e.pcid === pcid)).toEqual([]);
    const q = m.spawn(0);
    expect(q.mm.pcid).toBe(pcid);
    mmap(q, { length: PAGE, addr: a, fixed: true });
    expect(q.read(a, 1)).toEqual(new Uint8Array(1)); // no stale translation of p's page
    expect(() => p.read(a, 1)).toThrow(/ESRCH/);
    p.exit(); // a second exit is a no-op
  });
});

describe("RSS (mm_counter: MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES)", () => {
  it("counts mapped pages by kind; the zero page is not counted; unmapping gives them back", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    m.fs.create("/f", { size: 4 * PAGE });
    const a = mmap(p, { length: 8 * PAGE });
    p.touch(a, 3 * PAGE, "w");
    p.touch(a + 3 * PAGE, 5 * PAGE, "r");
    const f = mmap(p, { length: 4 * PAGE, file: "/f", shared: true });
    p.touch(f, 4 * PAGE, "r");
    const s = mmap(p, { length: 2 * PAGE, shared: true });
    p.touch(s, 2 * PAGE, "w");
    expect(p.mm.rss).toMatchObject({ anon: 3, file: 4, shmem: 2, swap: 0 });
    p.touch(a + 3 * PAGE, PAGE, "w"); // zero page -> anonymous page
    expect(p.mm.rss.anon).toBe(4);
    p.munmap(f, 2 * PAGE);
    p.munmap(s, PAGE);
    p.munmap(a, 2 * PAGE);
    expect(p.mm.rss).toMatchObject({ anon: 2, file: 2, shmem: 1 });
  });
});

describe("TLB shootdown reaches every CPU in mm_cpumask (flush_tlb_mm_range)", () => {
  /** A process that ran on CPU 0, then on CPU 1 (CPU 0 keeps its translations, lazily). */
  async function twoCpus() {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: 8 * PAGE });
    p.touch(a, 8 * PAGE, "w");
    p.cpu = m.cpu(1); // scheduled on CPU 1 now
    p.touch(a, 8 * PAGE, "r");
    return { m, p, a };
  }

  it("munmap sends an IPI to the other CPU in the cpumask; its stale translation is gone", async () => {
    const { m, p, a } = await twoCpus();
    expect([...p.mm.cpumask].sort()).toEqual([0, 1]);
    const cpu0 = m.cpu(0);
    expect(cpu0.cr3.pgd).toBe(p.mm.pgd.pfn);
    const stale = cpu0.translate(a + 2 * PAGE, { user: true, write: true });
    expect(stale.ok && stale.tlbHit).toBe(true);
    const [s0, i0] = [counter(m, "mm.shootdowns"), counter(m, "mm.shootdown_ipis")];
    p.munmap(a + 2 * PAGE, PAGE);
    expect(counter(m, "mm.shootdowns")).toBe(s0 + 1);
    expect(counter(m, "mm.shootdown_ipis")).toBe(i0 + 1); // CPU 0 only: CPU 1 is the local one
    const t = cpu0.translate(a + 2 * PAGE, { user: true });
    expect(t.ok).toBe(false);
    expect(!t.ok && t.fault.vector).toBe("#PF");
    expect(m.cpu(1).translate(a + 2 * PAGE, { user: true }).ok).toBe(false);
  });

  it("mprotect(PROT_READ) removes the stale writable translation on the other CPU", async () => {
    const { m, p, a } = await twoCpus();
    const cpu0 = m.cpu(0);
    expect(cpu0.translate(a + 3 * PAGE, { user: true, write: true }).ok).toBe(true);
    const i0 = counter(m, "mm.shootdown_ipis");
    p.mprotect(a + 3 * PAGE, 2 * PAGE, "r");
    expect(counter(m, "mm.shootdown_ipis")).toBe(i0 + 1);
    expect(cpu0.translate(a + 3 * PAGE, { user: true, write: true }).ok).toBe(false);
    expect(cpu0.translate(a + 3 * PAGE, { user: true }).ok).toBe(true); // reads still allowed
  });

  it("MAP_FIXED over a mapping flushes like munmap: the CPU making the call needs no IPI", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: 4 * PAGE });
    p.touch(a, 4 * PAGE, "w");
    expect([...p.mm.cpumask]).toEqual([0]);
    const [s0, i0] = [counter(m, "mm.shootdowns"), counter(m, "mm.shootdown_ipis")];
    mmap(p, { addr: a, length: PAGE, fixed: true });
    expect(counter(m, "mm.shootdowns")).toBe(s0 + 1);
    expect(counter(m, "mm.shootdown_ipis")).toBe(i0);
    expect(p.cpu.translate(a, { user: true }).ok).toBe(false); // the old page's translation is gone
  });

  it("a forked child on another CPU is not in the parent's cpumask: the parent's munmap sends no IPI; the child's pages stay", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: 4 * PAGE });
    p.write(a, text("both"));
    const c = p.fork();
    expect(c.cpu.index).toBe(1);
    expect(str(c.read(a, 4))).toBe("both");
    expect([...p.mm.cpumask]).toEqual([0]);
    expect([...c.mm.cpumask]).toEqual([1]);
    const [s0, i0] = [counter(m, "mm.shootdowns"), counter(m, "mm.shootdown_ipis")];
    p.munmap(a, 4 * PAGE);
    expect(counter(m, "mm.shootdowns")).toBe(s0 + 1);
    expect(counter(m, "mm.shootdown_ipis")).toBe(i0);
    const t = m.cpu(1).translate(a, { user: true });
    expect(t.ok && t.tlbHit).toBe(true); // the child's own translation, not a stale one
    expect(str(c.read(a, 4))).toBe("both");
    c.munmap(a, PAGE); // local to CPU 1: no IPI either
    expect(counter(m, "mm.shootdown_ipis")).toBe(i0);
    expect(m.cpu(1).translate(a, { user: true }).ok).toBe(false);
  });
});

describe("fork (copy_process, dup_mmap)", () => {
  it("puts the child on the next CPU with its own page tables and PCID, the same VMAs and the same bytes", async () => {
    const m = await mmMachine();
    const p = m.spawn(0);
    const a = mmap(p, { length: 4 * PAGE });
    const r = mmap(p, { length: 2 * PAGE, prot: "r" });
    p.write(a + 2 * PAGE + 4080, text("across a page boundary"));
    const c = p.fork();
    expect(c.pid).not.toBe(p.pid);
    expect(c.mm.pgd.pfn).not.toBe(p.mm.pgd.pfn);
    expect(c.mm.pcid).not.toBe(p.mm.pcid);
    expect(c.maps()).toEqual(p.maps());
    expect(str(c.read(a + 2 * PAGE + 4080, 22))).toBe("across a page boundary");
    expect(pfnAt(c, a + 3 * PAGE)).toBe(pfnAt(p, a + 3 * PAGE));
    expect(c.read(r, 4)).toEqual(new Uint8Array(4));
    expect(counter(m, "mm.forks")).toBe(1);
  });
});
