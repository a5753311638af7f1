/**
 * @eve-tasks/launcher: what `npm start` runs (see main.ts), and its parts for tools and tests.
 */
export { DEFAULT_NATS_PORT, LauncherError, SERVICE_STOP_GRACE_MS, runLauncher } from "./launcher.js";
export type { LauncherOptions } from "./launcher.js";
export { UsageError, defaultServicesDir, parseLauncherArgs, usage } from "./args.js";
export type { LauncherArgs } from "./args.js";
export { launcherEnvSchema } from "./config.js";
export type { LauncherConfig } from "./config.js";
export {
  BACKOFF_RESET_AFTER_MS,
  INITIAL_BACKOFF_MS,
  MAX_BACKOFF_MS,
  backoffDelayMs,
  nextFailureCount,
} from "./backoff.js";
export {
  KNOWN_WORKERS,
  MALLOC_TUNABLES,
  WORKER_NODE_OPTIONS,
  discoverWorkers,
  withMallocTunables,
  workerNodeOptions,
} from "./workers.js";
export type { Discovery, WorkerEntry } from "./workers.js";
export { readStateFile, stateFilePath } from "./state-file.js";
export type { LauncherPhase, LauncherStateRecord, ServiceRecord, WorkerRecord } from "./state-file.js";
export { WorkerSupervisor } from "./worker-supervisor.js";
export type {
  WorkerExit,
  WorkerSnapshot,
  WorkerState,
  WorkerSupervisorOptions,
} from "./worker-supervisor.js";
export {
  STALE_HEARTBEAT_MS,
  formatDuration,
  formatHeartbeat,
  formatWorkerLine,
  workerHeader,
} from "./status-format.js";
export { ConsoleView } from "./console-view.js";
export type { ViewOutput } from "./console-view.js";
export { buildBanner } from "./banner.js";
export type { BannerInfo } from "./banner.js";
export { isSameProcessAlive, readStartTicks } from "./proc.js";
export { DEFAULT_UI_PORT, UI_HOST, localWorkersOf, planUiPort } from "./status-page.js";
export type { UiPortPlan } from "./status-page.js";
export { planNatsUsers, workerNatsEnv } from "./nats-users.js";
export type { NatsUsersPlan } from "./nats-users.js";
export type { ProcessRef } from "./proc.js";
export { HUB_DEFAULTS, startHub } from "./hub.js";
export type { HubServer, RunningHub, StartHubOptions } from "./hub.js";
export { ONE_PER_NODE, parseReplicas } from "./args.js";
export { planWorkerProcesses } from "./workers.js";
export type { WorkerProcessEntry } from "./workers.js";
