export { parseProcStat, readProcStat, readProcStatSync } from "./stat.js";
export type { ProcStat } from "./stat.js";
export { parseProcStatus, readProcStatus } from "./status.js";
export type { ProcStatus } from "./status.js";
export { pageSizeBytes, parseProcStatm } from "./statm.js";
export type { ProcStatm } from "./statm.js";
export { ProcfsParseError, CgroupLayoutError } from "./errors.js";
export { PositionalFile, isGone } from "./positional-file.js";
export type { PositionalFileOptions } from "./positional-file.js";
export { parseMountinfo } from "./mountinfo.js";
export type { MountInfo } from "./mountinfo.js";
export {
  V1_UNLIMITED_FROM_BYTES,
  countLines,
  flatKey,
  flatKeyValue,
  parseCgroupUint,
  parseFlatKeyed,
  parseV1Limit,
  parseV2Max,
} from "./cgroup-files.js";
export {
  V1_CONTROLLERS,
  cgroupDirsFor,
  cgroupLayoutFromMounts,
  detectCgroupLayout,
  dirInMount,
} from "./cgroup-layout.js";
export type {
  CgroupDirs,
  CgroupLayout,
  CgroupMount,
  DetectCgroupLayoutOptions,
  V1Controller,
} from "./cgroup-layout.js";
export { CgroupReader, SAMPLE_FIELDS } from "./cgroup-reader.js";
export type { CgroupField, CgroupReading, SampleField } from "./cgroup-reader.js";
export { AnchorReader } from "./anchor.js";
export type { AnchorGoneReason, AnchorReading } from "./anchor.js";
export { TaskSampler } from "./task-sampler.js";
export type { TaskSample, TaskSamplerOptions } from "./task-sampler.js";
export { guestRamResidentBytes, readGuestRamResidentBytes } from "./smaps.js";
