/**
 * The dmirror device itself (struct dmirror_device in lib/test_hmm.c): /dev/hmm_dmirrorN, the
 * owner of its device-private memory. Every file opened on it (a Dmirror) shares it. Its
 * memory comes from memremapPages on first use, in chunks (DEVMEM_CHUNK_SIZE, 256 MiB, at most
 * a quarter of the machine's device-private memory); a free page waits on the device's free
 * list, and each page in use remembers which Dmirror put it there (zone_device_data).
 *
 * The pagemap ops: pageFree puts a page back on the free list; migrateToRam is
 * dmirror_devmem_fault: migrate the one faulting page back to system memory.
 * @module
 */
import { DmaError } from "../errors.js";
import type { FaultResult } from "../mm/fault.js";
import type { Kernel } from "../mm/kernel.js";
import { type DevPagemap, type VmFault, memremapPages, memunmapPages, zoneDevicePageInit } from "../hmm/memremap.js";
import type { Dmirror } from "./dmirror.js";

/** DEVMEM_CHUNK_SIZE in pages. */
export const DEVMEM_CHUNK_PAGES = (256 * 1024 * 1024) / 4096;
/** DMIRROR_NDEVICES: the devices /dev/hmm_dmirror0..3. */
export const DMIRROR_NDEVICES = 4;

export class DmirrorDevice {
  readonly kernel: Kernel;
  readonly index: number;
  readonly #free: number[] = [];
  readonly #pgmaps: DevPagemap[] = [];
  /** zone_device_data of each device page in use: the Dmirror that holds it. */
  readonly users = new Map<number, Dmirror>();
  /** Device pages handed out, and calls of migrateToRam. */
  readonly stats = { allocated: 0, freed: 0, faults: 0 };
  /** Set by the migration code: migrate the faulting page back (dmirror_devmem_fault). */
  migrateToRamHook: ((d: Dmirror, vmf: VmFault) => FaultResult) | null = null;

  constructor(k: Kernel, index: number) {
    this.kernel = k;
    this.index = index;
  }

  /** dmirror_devmem_alloc_page: a device page (refcount 2: the pagemap's and ours), or null. */
  allocPage(user: Dmirror): number | null {
    if (!this.#free.length && !this.#grow()) return null;
    const pfn = this.#free.pop()!;
    zoneDevicePageInit(this.kernel, pfn);
    this.users.set(pfn, user);
    this.stats.allocated++;
    return pfn;
  }

  /** dmirror_allocate_chunk: another chunk of device memory, if the machine has any left. */
  #grow(): boolean {
    const k = this.kernel;
    if (!k.phys.zones().some((z) => z.name === "DEVICE_PRIVATE")) return false;
    // The machine's device-private memory is shared by the four devices: a chunk is at most
    // a quarter of it (the kernel's chunks are fresh physical ranges, 256 MiB each).
    const zone = k.phys.zones().find((z) => z.name === "DEVICE_PRIVATE")!;
    const share = Math.max(1, Math.floor((zone.endPfn - zone.startPfn) / DMIRROR_NDEVICES));
    const n = Math.min(DEVMEM_CHUNK_PAGES, share, k.phys.nrFreePages("DEVICE_PRIVATE"));
    if (n === 0) return false;
    const pgmap = memremapPages(k, {
      owner: this,
      nrPages: n,
      ops: {
        pageFree: (pfn) => {
          this.users.delete(pfn);
          this.#free.push(pfn);
          this.stats.freed++;
        },
        migrateToRam: (vmf) => {
          this.stats.faults++;
          const d = this.users.get(vmf.page);
          if (!d || !this.migrateToRamHook) return "SIGBUS";
          return this.migrateToRamHook(d, vmf);
        },
      },
    });
    this.#pgmaps.push(pgmap);
    this.#free.push(...[...pgmap.pfns].reverse());
    return true;
  }

  /**
   * release - dmirror_device_remove_chunks (HMM_DMIRROR_RELEASE): every chunk goes; pages in
   * use are evicted to system memory first. Returns the pages evicted.
   */
  release(): number {
    let evicted = 0;
    for (const pgmap of this.#pgmaps.splice(0)) {
      evicted += memunmapPages(pgmap);
      const gone = new Set(pgmap.pfns);
      const keep = this.#free.filter((p) => !gone.has(p));
      this.#free.splice(0, this.#free.length, ...keep);
    }
    return evicted;
  }

  /** Free device pages (on the free list). */
  get freePages(): number {
    return this.#free.length;
  }
}

const devices = new WeakMap<Kernel, Map<number, DmirrorDevice>>();

/** dmirrorDevice - /dev/hmm_dmirror@index of @k's machine (made on first open). */
export function dmirrorDevice(k: Kernel, index: number): DmirrorDevice {
  if (!Number.isInteger(index) || index < 0 || index > 3) throw new DmaError("ENODEV", `hmm_dmirror${index}: no such device (0..3)`, { arg: "device" });
  let m = devices.get(k);
  if (!m) devices.set(k, (m = new Map()));
  let d = m.get(index);
  if (!d) m.set(index, (d = new DmirrorDevice(k, index)));
  return d;
}
