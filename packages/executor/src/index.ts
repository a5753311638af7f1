export { TaskExecutor } from "./executor.js";
export type { NodeStopResult, TaskExecutorOptions } from "./executor.js";
export { EXECUTOR_DEFAULTS, executorDefaults } from "./defaults.js";
export type { ExecutorTunables } from "./defaults.js";
export { RuntimeError, containerdRuntime, isRuntimeError } from "./runtime.js";
export type {
  CreateTaskRequest,
  ListedContainer,
  RuntimeContainer,
  RuntimeErrorKind,
  RuntimeEvent,
  RuntimeExit,
  RuntimeTask,
  RuntimeTaskStatus,
  TaskRuntime,
} from "./runtime.js";
export { CHANGES_RUNTIME, NODE_STOP_REASON, NOTHING, plan, planExit } from "./plan.js";
export type {
  Action,
  ExitInput,
  ExitPlan,
  Observed,
  ObservedContainer,
  ObservedTask,
  PlanInput,
  Prepared,
  StartFailure,
  StopCause,
  TaskExit,
} from "./plan.js";
export type { StopReport } from "./lifecycle.js";
export {
  endShim,
  findShimDaemons,
  listeningSocketPaths,
  removeSocketFiles,
  shimDaemonOf,
  unixSockets,
} from "./leaked-shims.js";
export type { EndedShim, ShimDaemon, UnixSocketRow } from "./leaked-shims.js";
export { timedRuntime } from "./observer.js";
export type { ExecutorObserver, ReconcileOutcome, RuntimeCall, StartOutcome } from "./observer.js";
export { binfmtEntries, taskDirs } from "./host-resources.js";
export type { TaskHostResource, TearDownScope } from "./host-resources.js";
export { NodeFactError } from "./errors.js";
export { VOLUME_ROOT_MODE, loadNodeFacts } from "./node-facts.js";
export type { NodeFacts, NodeFactsOptions } from "./node-facts.js";
export { prepareTask, volumeMountOptions } from "./prepare-task.js";
export type { PreparedTask } from "./prepare-task.js";
export { isWithin, resolveUnderRoots } from "./host-paths.js";
export { RLIMIT_TYPES, clampRlimits, parseLimits, readHardLimits } from "./host-limits.js";
export type { HardLimits, Rlimit } from "./host-limits.js";
export {
  EXECUTOR_LABELS,
  FRESH_LABELS,
  MAX_RESTART_HISTORY,
  NO_RESTARTS,
  hasLabels,
  labelsFor,
  readLabels,
  restartLabels,
} from "./labels.js";
export type { Ended, LabelState, LabelView, RestartDue, RestartLabels } from "./labels.js";
export { KeyedRunner, Semaphore } from "./keyed-runner.js";
export { MemoryLedger, admissionRefusal } from "./admission.js";
export type { AdmissionRefusal, MemoryView } from "./admission.js";
export { backoffFor, decideRestart, inWindow, recordRestart } from "./restart-policy.js";
export type { ExitFacts, RestartDecision } from "./restart-policy.js";
export { AccelChooser, PROBE_LABEL, kvmVerdictPath, probeKvm, verdictApplies } from "./kvm-probe.js";
export { BootWatchdog, checkBoot, guestSignOfLife, ownLinePrefixes, watchesBoot } from "./boot-watchdog.js";
export type { BootCheck, BootCheckInput, BootWatch } from "./boot-watchdog.js";
export { KVM_PROBE_MARKER, kvmProbeDisk, probeQemuArgs, qemuOptionValue } from "./kvm-probe-guest.js";
export type { ProbeQemuOptions } from "./kvm-probe-guest.js";
export type { AccelChooserOptions, CachedProbe, KvmProbeResult, ProbeKvmOptions } from "./kvm-probe.js";
export {
  applyRuntimeFacts,
  emulationFacts,
  findInSeed,
  nodeArch,
  qmpSocketPath,
  readSeedRuntime,
  vmRunDir,
} from "./runtime-task.js";
export type { AccelChoice, AccelDecider, EmulationFacts, RuntimeFacts, VmAccel } from "./runtime-task.js";
export {
  BINFMT_DIR,
  BINFMT_PREFIX,
  binfmtEntry,
  binfmtKnows,
  binfmtLauncher,
  binfmtRegistration,
  registerBinfmt,
  removeBinfmt,
} from "./binfmt.js";
export type { BinfmtEntry } from "./binfmt.js";
export { DEFAULT_STOP_SIGNAL, resolveStopKind, stopOf, stopTask, stoppingMessage } from "./stop.js";
export type { StopKind, StopOutcome, StopStep, StopTaskOptions } from "./stop.js";
export { stopVmByQmp } from "./vm-stop.js";
export type { VmStopOptions, VmStopResult } from "./vm-stop.js";
export {
  NODE_DEVICES,
  PolicyError,
  deviceGrant,
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
export { ensureNativeBinary, ensureNetnsHelper } from "./native-build.js";
export { relistKicks } from "./relist.js";
export type { RelistInput } from "./relist.js";
export type { NativeHelper } from "./native-build.js";
export type { TaskLogSettings } from "./task-log.js";
export { TaskNetworks, taskNetworkSpec } from "./task-networks.js";
export type { AppNetworkOutcome, TaskNetworksOptions } from "./task-networks.js";
