/**
 * machine.fs at its edges: create, read, write, writeback/fsync, drop_caches and truncate
 * with good and bad arguments. A bad call is an errno DmaError naming the argument, and it
 * changes no state (file sizes, the page cache, the disk, free memory).
 */
import { describe, expect, it } from "vitest";
import { DmaError, type Machine } from "../../src/index.js";
import { smallMachine, snapshot } from "../helpers.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

function pcMachine(pmem: string | 0 = "1MiB"): Promise<Machine> {
  return smallMachine({ memory: { normal: "64MiB", movable: "16MiB", cma: 0, pmem } });
}

/** Everything a failed fs call must leave alone: memory, and each file's size, cache and disk. */
function fsState(m: Machine): string {
  const files = m.fs.list().map((f) => ({
    path: f.path,
    size: f.size,
    pages: [...f.pages],
    disk: [...f.disk].map(([i, b]) => [i, [...b]]),
    dax: [...f.daxPfns],
    flags: [...f.pages.values(), ...f.daxPfns].map((pfn) => m.page(pfn)),
  }));
  return JSON.stringify({ machine: snapshot(m), files });
}

/** The DmaError @fn throws, after checking that the fs state did not change. */
function refused(m: Machine, fn: () => unknown): DmaError {
  const before = fsState(m);
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DmaError);
  expect(fsState(m)).toBe(before);
  return err as DmaError;
}

describe("create", () => {
  it("makes a file of zeros; refuses an existing path (EEXIST), bad names or sizes (EINVAL) and sizes past the largest file (EFBIG)", async () => {
    const m = await pcMachine();
    const f = m.fs.create("/z", { size: 5000 });
    expect(f).toMatchObject({ path: "/z", kind: "file", size: 5000, pagesInFile: 2 });
    expect(m.fs.read("/z", 0, 6000)).toEqual(new Uint8Array(5000));
    expect(m.fs.lookup("/z")).toBe(f);
    expect(refused(m, () => m.fs.create("/z")).code).toBe("EEXIST");
    expect(refused(m, () => m.fs.create("")).arg).toBe("path");
    for (const size of [-1, 1.5, Number.NaN]) {
      const e = refused(m, () => m.fs.create("/bad", { size }));
      expect([e.code, e.arg]).toEqual(["EINVAL", "size"]);
    }
    const big = refused(m, () => m.fs.create("/bad", { size: 2 ** 44 + 1 }));
    expect([big.code, big.arg]).toEqual(["EFBIG", "size"]);
    expect(m.fs.list().map((x) => x.path)).toEqual(["/z"]);
  });

  it("fsdax: takes one pmem block per page; EINVAL without pmem, ENOSPC past it, each with nothing allocated", async () => {
    const m = await pcMachine("1MiB"); // 256 blocks
    const f = m.fs.create("/d", { size: 4096 * 3 + 1, dax: true });
    expect(f.daxPfns.length).toBe(4);
    expect(f.daxPfns.every((pfn) => m.page(pfn).zone === "DEVICE" && m.page(pfn).mapping === f.id)).toBe(true);
    const e = refused(m, () => m.fs.create("/big", { size: 253 * 4096, dax: true }));
    expect([e.code, e.arg]).toEqual(["ENOSPC", "size"]);
    expect(() => m.fs.lookup("/big")).toThrow(/ENOENT/);
    const noPmem = await pcMachine(0);
    expect(refused(noPmem, () => noPmem.fs.create("/d", { dax: true })).message).toMatch(/memory\.pmem/);
  });
});

describe("read and write", () => {
  it("ENOENT for an unknown path, EINVAL for negative or fractional offsets and lengths, EFBIG past the largest file", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4096 });
    expect(refused(m, () => m.fs.read("/nope", 0, 1)).code).toBe("ENOENT");
    expect(refused(m, () => m.fs.write("/nope", 0, enc("x"))).code).toBe("ENOENT");
    expect(refused(m, () => m.fs.read("/f", -1, 1)).arg).toBe("offset");
    expect(refused(m, () => m.fs.read("/f", 0, -1)).arg).toBe("length");
    expect(refused(m, () => m.fs.write("/f", 0.5, enc("x"))).arg).toBe("offset");
    expect(refused(m, () => m.fs.write("/f", 2 ** 44, enc("x"))).code).toBe("EFBIG");
  });

  it("reads are short at end of file and empty past it (filemap_read stops at i_size)", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 10 });
    m.fs.write("/f", 0, enc("0123456789"));
    expect(dec(m.fs.read("/f", 6, 100))).toBe("6789");
    expect(m.fs.read("/f", 10, 5).length).toBe(0);
    expect(m.fs.read("/f", 50, 5).length).toBe(0);
  });

  it("a write past the end grows the file; the gap reads as zeros, even where a mapping wrote past the old end", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4 });
    const p = m.spawn(0);
    const va = Number(p.mmap({ length: 4096, file: "/f", shared: true }));
    p.write(va, enc("headJUNK")); // "JUNK" lies past end of file, inside the last page
    m.fs.write("/f", 6000, enc("tail"));
    expect(m.fs.lookup("/f").size).toBe(6004);
    expect(dec(m.fs.read("/f", 0, 4))).toBe("head");
    expect(m.fs.read("/f", 4, 5996).every((b) => b === 0)).toBe(true);
    expect(dec(m.fs.read("/f", 6000, 4))).toBe("tail");
  });

  it("fsdax: a write past the end takes new blocks; ENOSPC when pmem is full, with nothing written", async () => {
    const m = await pcMachine("1MiB");
    const f = m.fs.create("/d", { size: 4096, dax: true });
    m.fs.write("/d", 3 * 4096, enc("far"));
    expect(f.daxPfns.length).toBe(4);
    expect(dec(m.fs.read("/d", 3 * 4096, 3))).toBe("far");
    expect(m.fs.read("/d", 4096, 4096).every((b) => b === 0)).toBe(true);
    const free = m.phys.nrFreePages("DEVICE");
    expect(refused(m, () => m.fs.write("/d", (4 + free) * 4096, enc("x"))).code).toBe("ENOSPC");
  });
});

describe("writeback, fsync and drop_caches", () => {
  it("ENOENT for an unknown path; fsync is writeback of one file", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 4096 });
    expect(refused(m, () => m.fs.writeback("/nope")).code).toBe("ENOENT");
    expect(refused(m, () => m.fs.fsync("/nope")).code).toBe("ENOENT");
    m.fs.write("/f", 0, enc("x"));
    expect(m.fs.fsync("/f")).toEqual({ pages: 1, pinned: 0 });
    expect(m.fs.fsync("/f")).toEqual({ pages: 0, pinned: 0 });
  });

  it("drop_caches drops clean unmapped pages only: dirty and mapped pages stay, dropped ones re-read from disk", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 3 * 4096 });
    m.fs.write("/f", 0, enc("clean"));
    m.fs.writeback("/f");
    m.fs.write("/f", 4096, enc("dirty"));
    const p = m.spawn(0);
    const va = Number(p.mmap({ length: 4096, file: "/f", offset: 2 * 4096, shared: true }));
    p.read(va, 1);
    const clean = m.fs.lookup("/f").pages.get(0)!;
    expect(m.fs.dropCaches()).toBe(1);
    expect(m.page(clean).refcount).toBe(0);
    expect([...m.fs.lookup("/f").pages.keys()].sort()).toEqual([1, 2]);
    expect(dec(m.fs.read("/f", 0, 5))).toBe("clean");
    expect(dec(m.fs.read("/f", 4096, 5))).toBe("dirty");
  });
});

describe("truncate", () => {
  it("ENOENT for an unknown path; EINVAL for a negative or fractional size, EFBIG past the largest file; nothing changes", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 8192 });
    m.fs.write("/f", 0, enc("data"));
    expect(refused(m, () => m.fs.truncate("/nope", 0)).code).toBe("ENOENT");
    for (const size of [-1, 0.5, Number.NaN]) {
      const e = refused(m, () => m.fs.truncate("/f", size));
      expect([e.code, e.arg]).toEqual(["EINVAL", "size"]);
    }
    const big = refused(m, () => m.fs.truncate("/f", 2 ** 44 + 4096));
    expect([big.code, big.arg]).toEqual(["EFBIG", "size"]);
  });

  it("to the same size changes nothing; to 0 empties the file, its cache and its disk", async () => {
    const m = await pcMachine();
    m.fs.create("/f", { size: 8192 });
    m.fs.write("/f", 0, new Uint8Array(8192).fill(9));
    m.fs.writeback("/f");
    expect(m.fs.truncate("/f", 8192)).toEqual({ unmapped: 0, dropped: 0, kept: 0 });
    expect(m.fs.read("/f", 0, 8192).every((b) => b === 9)).toBe(true);
    expect(m.fs.truncate("/f", 0)).toEqual({ unmapped: 0, dropped: 2, kept: 0 });
    const f = m.fs.lookup("/f");
    expect([f.size, f.pages.size, f.disk.size]).toEqual([0, 0, 0]);
    expect(m.fs.read("/f", 0, 10).length).toBe(0);
  });

  it("fsdax: growth past pmem is ENOSPC and changes nothing", async () => {
    const m = await pcMachine("1MiB");
    m.fs.create("/d", { size: 4096, dax: true });
    const e = refused(m, () => m.fs.truncate("/d", 2 ** 30));
    expect([e.code, e.arg]).toEqual(["ENOSPC", "size"]);
  });
});
