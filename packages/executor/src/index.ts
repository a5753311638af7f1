export { TaskExecutor } from "./executor.js";
export type { TaskExecutorOptions } from "./executor.js";
export { NodeFactError } from "./errors.js";
export { VOLUME_ROOT_MODE, loadNodeFacts } from "./node-facts.js";
export type { NodeFacts, NodeFactsOptions } from "./node-facts.js";
export { prepareTask, volumeMountOptions } from "./prepare-task.js";
export type { PreparedTask } from "./prepare-task.js";
export { isWithin, resolveUnderRoots } from "./host-paths.js";
export { RLIMIT_TYPES, clampRlimits, parseLimits, readHardLimits } from "./host-limits.js";
export type { HardLimits, Rlimit } from "./host-limits.js";
export { EXECUTOR_LABELS, NO_RESTARTS, labelsFor, readLabels, restartLabels } from "./labels.js";
export type { Ended, LabelView, RestartDue, RestartLabels } from "./labels.js";
export { KeyedRunner, Semaphore } from "./keyed-runner.js";
export { stopAllTasks } from "./stop-all.js";
export type { StoppedTask } from "./stop-all.js";
export { MemoryLedger } from "./admission.js";
export type { AdmissionRefusal } from "./admission.js";
export { backoffFor, decideRestart, inWindow } from "./restart-policy.js";
export type { ExitFacts, RestartDecision } from "./restart-policy.js";
export { AccelChooser, PROBE_LABEL, probeKvm } from "./kvm-probe.js";
export type { AccelChooserOptions, KvmProbeResult, ProbeKvmOptions } from "./kvm-probe.js";
export { applyVmFacts, findInSeed, qmpSocketPath, vmRunDir } from "./vm-task.js";
export type { AccelChoice, AccelDecider, VmAccel } from "./vm-task.js";
export { stopVmByQmp } from "./vm-stop.js";
export type { StopStep, VmStopOptions, VmStopResult } from "./vm-stop.js";
export {
  NODE_DEVICES,
  PolicyError,
  enforcePolicy,
  grantDevices,
  isDeviceName,
  ownNetnsPath,
  policyViolations,
} from "./policy.js";
export type { DeviceGrant, DeviceName, NodeDevice, NodePolicy, PolicyViolation } from "./policy.js";
export {
  mountsBelow,
  stagingDir,
  stagingPath,
  sweepStagedMounts,
  unstageMounts,
  withStagedMounts,
} from "./staged-mounts.js";
export type { StagedMount, StagingOptions } from "./staged-mounts.js";
export { TASKS_DIR_MODE, TASK_DIR_MODE, ensureTasksDir, makeTaskDirs, removeTaskDir } from "./task-dirs.js";
export { TASK_LOGGER_SOURCE, ensureTaskLogger, taskLogFiles, taskLogUri } from "./task-log.js";
export type { TaskLogSettings } from "./task-log.js";
