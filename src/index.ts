/**
 * dmalab: a WebAssembly-accelerated emulator of the Linux device-memory plane.
 *
 * Named re-exports only: what is not listed here is internal.
 * @module
 */
export { createMachine, attachMachine, Machine } from "./machine.js";
export type { CreateOptions, SharedMachine } from "./machine.js";
export { parseMachineOptions, parseSize, MachineOptionsSchema } from "./config.js";
export type { MachineOptions, MachineConfig, ZoneConfig, Size } from "./config.js";
export { DmaError, errnoName } from "./errors.js";
export type { ErrnoName } from "./errors.js";
export type { Address } from "./core/addr.js";
export { Phys } from "./mm/phys.js";
export type { AllocOptions, Gfp, ZoneInfo } from "./mm/phys.js";
export { PAGE_FLAG_NAMES, ZONE_NAMES } from "./mm/page.js";
export type { PageInfo, PageFlag, ZoneName } from "./mm/page.js";
export { PageTable } from "./mmu/pgtable.js";
export type { PageSize, UnmapResult, UnmappedLeaf, PtepResult } from "./mmu/pgtable.js";
export { Cpu, LINUX_CONTROL, LINUX_PKRU } from "./mmu/cpu.js";
export type { Control, CpuStats } from "./mmu/cpu.js";
export { Ring } from "./mmu/ring.js";
export type { Access, Fault, Translation, PageBytes } from "./mmu/access.js";
export { decodePte } from "./mmu/prot.js";
export type { Prot, ProtChange, PteInfo, CacheMode } from "./mmu/prot.js";
export type { TlbEntry } from "./mmu/tlb.js";
export { Process, parseProt } from "./mm/process.js";
export type { MmapOptions, MapsEntry, ProtSpec } from "./mm/process.js";
export { Kernel } from "./mm/kernel.js";
export type { ThpMode } from "./mm/kernel.js";
export { MmStruct } from "./mm/mm.js";
export { Vma } from "./mm/vma.js";
export type { VmaKind } from "./mm/vma.js";
export { Fs, MAX_FILE_SIZE } from "./fs/fs.js";
export type { WritebackStats, WritebackResult } from "./mm/writeback.js";
export type { TruncateStats } from "./mm/truncate.js";
export type { CreateFileOptions } from "./fs/fs.js";
export { Inode } from "./fs/inode.js";
export type { FaultResult } from "./mm/fault.js";
export { rmapWalk } from "./mm/rmap.js";
export type { RmapHit } from "./mm/rmap.js";
export { migratePage, migratePages } from "./mm/migrate.js";
export { migrateLongtermUnpinnable } from "./mm/migrate-longterm.js";
export type { MigrateTarget, MigrateZone, MigratePagesResult } from "./mm/migrate.js";
export { shrink, folioReferenced, SWAP_CLUSTER_MAX } from "./mm/vmscan.js";
export type { ShrinkOptions, ReclaimResult, ReclaimSkips } from "./mm/vmscan.js";
export { oomReapTask, oomKill, oomBadness, isOomVictim, mmOomSkip, MAX_OOM_REAP_RETRIES } from "./mm/oom.js";
export type { OomReapOptions, OomReapResult, OomKillResult } from "./mm/oom.js";
export {
  mmuNotifierRegister, mmuNotifierUnregister, mmuNotifierInvalidateRangeStart, mmuNotifierInvalidateRangeStartNonblock,
  mmuNotifierInvalidateRangeEnd, mmuNotifierRelease, mmuNotifierClearFlushYoung, MmuNotifier,
} from "./notifier/mmu-notifier.js";
export type { MmuNotifierOps } from "./notifier/mmu-notifier.js";
export {
  mmuIntervalNotifierInsert, mmuIntervalNotifierRemove, mmuIntervalReadBegin, mmuIntervalReadRetry, mmuIntervalCheckRetry,
  mmuIntervalSetSeq, MmuIntervalNotifier,
} from "./notifier/interval.js";
export type { MmuIntervalNotifierOps } from "./notifier/interval.js";
export { MMU_NOTIFY_EVENTS, MMU_NOTIFIER_RANGE_BLOCKABLE, mmuNotifierRangeInit, mmuNotifierRangeBlockable } from "./notifier/range.js";
export type { MmuNotifierEvent, MmuNotifierRange } from "./notifier/range.js";
export { swapInfo, swpKind, swpOffset, mkSwapEntry } from "./mm/swap.js";
export type { SwapInfo } from "./mm/swap.js";
export { Clock } from "./sim/clock.js";
export { Rng } from "./sim/rng.js";
export { DEFAULT_COSTS, costTable } from "./sim/cost.js";
export type { CostEntry, CostName, CostTable, CostOverrides } from "./sim/cost.js";
export { Trace } from "./trace/trace.js";
export type { TraceOptions } from "./trace/trace.js";
export type { TraceEvent, TraceEventArgs, TraceEventName } from "./trace/events.js";
export { toChromeTrace } from "./trace/chrome.js";
export type { ChromeTrace, ChromeTraceEvent } from "./trace/chrome.js";
export {
  getUserPages, getUserPagesFast, pinUserPages, pinUserPagesFast, checkVmaFlags,
} from "./gup/gup.js";
export {
  unpinUserPage, unpinUserPages, unpinUserPagesDirtyLock, releasePages, putPage, folioMaybeDmaPinned,
  pageMaybeDmaPinned,
} from "./gup/unpin.js";
export type { GupFlags, GupStop } from "./gup/flags.js";
export { GUP_STOP_NAMES } from "./gup/flags.js";
export type { PagesArray } from "./gup/range.js";
export type { CheckReport, CallSite } from "./check/report.js";
export { getUserPagesFastOnly, pinUserPagesFastOnly, remoteMm } from "./gup/fast-only.js";
export type { RemoteMm, SharedMm } from "./gup/fast-only.js";
export {
  gupTestIoctl, newGupTest, GUP_FAST_BENCHMARK, PIN_FAST_BENCHMARK, PIN_LONGTERM_BENCHMARK, GUP_BASIC_TEST,
  PIN_BASIC_TEST, DUMP_USER_PAGES_TEST, GUP_TEST_FLAG_DUMP_PAGES_USE_PIN,
} from "./gup/gup-test.js";
export type { GupTest, GupTestResult } from "./gup/gup-test.js";
export { FOLL } from "./gup/flags.js";
export {
  hmmRangeFault, hmmPfnToPfn, hmmPfnToMapOrder, HMM_PFN_VALID, HMM_PFN_WRITE, HMM_PFN_ERROR, HMM_PFN_ORDER_SHIFT,
  HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_FLAGS, HMM_RANGE_DEFAULT_TIMEOUT,
} from "./hmm/hmm.js";
export type { HmmRange } from "./hmm/hmm.js";
export {
  Dmirror, HMM_DMIRROR_READ, HMM_DMIRROR_WRITE, HMM_DMIRROR_MIGRATE_TO_DEV, HMM_DMIRROR_MIGRATE_TO_SYS, HMM_DMIRROR_SNAPSHOT,
  HMM_DMIRROR_EXCLUSIVE, HMM_DMIRROR_CHECK_EXCLUSIVE, HMM_DMIRROR_RELEASE, HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_READ, HMM_DMIRROR_PROT_WRITE, HMM_DMIRROR_PROT_PMD, HMM_DMIRROR_PROT_PUD, HMM_DMIRROR_PROT_ZERO,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
} from "./drivers/dmirror.js";
export type { HmmDmirrorCmd, DmirrorOptions } from "./drivers/dmirror.js";
export { UserptrDevice } from "./drivers/userptr.js";
export type { CoherencyModel, UserptrDeviceOptions } from "./drivers/userptr.js";
export { Mutex } from "./locking/mutex.js";
export {
  DmaFence, dmaFenceSignal, dmaFenceWait, dmaFenceWaitTimeout, dmaFenceBeginSignalling, dmaFenceEndSignalling, dmaFenceInit,
  dmaFenceContextAlloc, dmaFenceAddCallback, dmaFenceRemoveCallback, dmaFenceGetStatus, dmaFenceSetError, dmaFenceGetStub,
  dmaFenceIsLater, dmaFenceEnableSwSignaling,
} from "./dma-buf/dma-fence.js";
export type { DmaFenceOps, DmaFenceCallback } from "./dma-buf/dma-fence.js";
export { dmaFenceAllocatePrivateStub } from "./dma-buf/dma-fence.js";
export {
  DmaFenceArray, DMA_FENCE_ARRAY_PENDING_ERROR, dmaFenceArrayCreate, dmaFenceArrayFirst, dmaFenceArrayNext, dmaFenceMatchContext,
  dmaFenceIsContainer, isDmaFenceArray, toDmaFenceArray,
} from "./dma-buf/dma-fence-array.js";
export {
  DmaFenceChain, dmaFenceChainInit, dmaFenceChainWalk, dmaFenceChainForEach, dmaFenceChainFindSeqno, dmaFenceChainContained,
  isDmaFenceChain, toDmaFenceChain,
} from "./dma-buf/dma-fence-chain.js";
export type { DmaFenceRef } from "./dma-buf/dma-fence-chain.js";
export {
  DmaFenceUnwrap, dmaFenceUnwrapFirst, dmaFenceUnwrapNext, dmaFenceUnwrapForEach, dmaFenceUnwrapMerge, dmaFenceDedupArray,
} from "./dma-buf/dma-fence-unwrap.js";
export { SwSyncTimeline } from "./dma-buf/sw-sync.js";
export {
  DmaResv, dmaResvInit, dmaResvLock, dmaResvTrylock, dmaResvUnlock, dmaResvReserveFences, dmaResvAddFence, dmaResvForEachFence,
  dmaResvForEachFenceUnlocked, dmaResvGetFences, dmaResvTestSignaled, dmaResvWaitTimeout, dmaResvUsageRw, DMA_RESV_USAGE_KERNEL,
  DMA_RESV_USAGE_WRITE, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_BOOKKEEP,
} from "./dma-buf/dma-resv.js";
export { WwMutex, WwAcquireCtx, wwAcquireInit, wwAcquireDone, wwAcquireFini } from "./locking/ww-mutex.js";
export { Lockdep, FS_RECLAIM, MMU_NOTIFIER_MAP, DMA_FENCE_MAP } from "./check/lockdep.js";
export type { DeviceMapping } from "./check/coherency.js";
export { memremapPages, pagemapOf, isDevicePrivatePage, zoneDevicePageInit, DevPagemap } from "./hmm/memremap.js";
export type { DevPagemapOps, VmFault } from "./hmm/memremap.js";
export {
  migrateVmaSetup, migrateVmaPages, migrateVmaFinalize, migratePfn, migratePfnToPage, MIGRATE_PFN_VALID, MIGRATE_PFN_MIGRATE,
  MIGRATE_PFN_WRITE, MIGRATE_PFN_SHIFT, MIGRATE_VMA_SELECT_SYSTEM, MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
} from "./hmm/migrate-device.js";
export type { MigrateVma } from "./hmm/migrate-device.js";
export { dmirrorDevice, DmirrorDevice } from "./drivers/dmirror-device.js";
export {
  DmaBuf, DmaBufAttachment, dmaBufExport, dmaBufFd, dmaBufGet, dmaBufPut, dmaBufAttach, dmaBufDynamicAttach, dmaBufDetach,
  dmaBufMapAttachment, dmaBufUnmapAttachment, dmaBufMoveNotify, dmaBufPin, dmaBufUnpin, dmaBufPinned, dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess, dmaBufCpuAccess, dmaBufDeviceDma,
} from "./dma-buf/dma-buf.js";
export type { DmaBufOps, DmaBufAttachOps, DmaDataDirection, SgTable, SgEntry, IosysMap } from "./dma-buf/dma-buf.js";
export {
  dmaBufMmap, dmaBufVmap, dmaBufVunmap, dmaBufIoctl, SyncFile, DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME_A, DMA_BUF_SET_NAME_B,
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW,
  DMA_BUF_SYNC_START, DMA_BUF_SYNC_END, DMA_BUF_NAME_LEN,
} from "./dma-buf/dma-buf-file.js";
export type { DmaBufIoctlArg } from "./dma-buf/dma-buf-file.js";
export { HeapExporter, dmaDevice } from "./drivers/heap-exporter.js";
export type { HeapExporterOptions } from "./drivers/heap-exporter.js";
export { VramExporter } from "./drivers/vram-exporter.js";
export { Camera, Display } from "./drivers/camera.js";
export type { CameraOptions, Frame } from "./drivers/camera.js";
export type { VramExporterOptions, Placement } from "./drivers/vram-exporter.js";
export type { OwningDevice } from "./check/ownership.js";
export { PciTopology, PciDev } from "./pci/topology.js";
export type { TopologySpec, HostBridgeSpec, PortSpec, SwitchSpec, EndpointSpec, BarSpec, Bar, PciKind } from "./pci/topology.js";
export { pciP2pdmaDistance, pciP2pdmaDistanceMany, pciP2pdmaMapType, PCI_ACS_RR, PCI_ACS_CR, PCI_ACS_EC } from "./pci/p2pdma.js";
export type { PciP2pdmaMapType, P2pdmaResult } from "./pci/p2pdma.js";
export { pcieRoute, fabricNodes } from "./pci/router.js";
export type { Route, RouteRequest, RouteResult } from "./pci/router.js";
export {
  pciP2pdmaAddResource, pciAllocP2pmem, pciFreeP2pmem, pciP2pmemVirtToBus, pciP2pmemPublish, pciHasP2pmem, pciP2pmemFindMany,
  pciP2pmemAvailable, p2pmemAllocMmap, pciP2pdmaOf, p2pdmaPagemapOf, isPciP2pdmaPage, PciP2pdma, PciP2pdmaPagemap,
} from "./pci/p2pmem.js";
export { Iommu, IommuDevice } from "./iommu/iommu.js";
export type { IommuDeviceOptions, IoRequest, IoTranslation, IoAccess, IoFaultReason } from "./iommu/iommu.js";
export {
  IommuDomain, iommuDomainAlloc, iommuDomainFree, iommuAttachDevice, iommuDetachDevice, iommuMap, iommuUnmap,
  iommuUnmapFast, iommuIotlbSync, iommuFlushIotlbAll, iommuIovaToPhys, iommuPgsizeRuns, IOMMU_READ, IOMMU_WRITE,
  IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_MMIO, IOMMU_PRIV,
} from "./iommu/iommu-domain.js";
export type { IommuDomainType } from "./iommu/iommu-domain.js";
export { IovaDomain } from "./iommu/iova.js";
export { dmaMapPage, dmaUnmapPage, dmaMapSg, dmaUnmapSg, dmaFlushQueue, IOVA_DEFAULT_FQ_SIZE, IOVA_FQ_TIMEOUT_NS } from "./iommu/dma-iommu.js";
export type { ScatterEntry, DmaSegment } from "./iommu/dma-iommu.js";
export { iommuSvaBindDevice, iommuSvaUnbindDevice, iommuSvaGetPasid, SvaHandle } from "./iommu/sva.js";
export { deviceDma, dmaRead, dmaWrite } from "./iommu/dma-engine.js";
export type { DmaOp, DmaResult } from "./iommu/dma-engine.js";
export type { QiDesc } from "./iommu/qi.js";
