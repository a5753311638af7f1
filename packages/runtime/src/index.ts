/**
 * @eve-tasks/runtime: what every worker shares: config from env (zod), pino logging, liveness
 * files, graceful shutdown, and `runWorker` wiring them together.
 */
export {
  ConfigError,
  baseWorkerEnv,
  baseWorkerEnvSchema,
  envBool,
  envInt,
  envList,
  envPath,
  envPositiveInt,
  executorNodeEnv,
  loadConfig,
  logLevels,
  natsConnection,
} from "./config.js";
export type { BaseWorkerConfig, Env, LogLevel, NatsConnectionSettings } from "./config.js";
export { createLogger, forApp, redactUrl, redactedPaths } from "./logging.js";
export type { Logger, LoggerOptions } from "./logging.js";
export { Lifecycle, LifecycleError, ProcessLifecycle, forcedExitCode, installShutdown } from "./shutdown.js";
export type {
  InstallShutdownOptions,
  LifecycleOptions,
  LifecycleState,
  ShutdownResult,
  ShutdownStep,
  SignalSource,
} from "./shutdown.js";
export { readHeartbeats, startHeartbeat } from "./health.js";
export type { Heartbeat, HeartbeatHandle, HeartbeatOptions, HeartbeatReading } from "./health.js";
export { CONFIG_ERROR_EXIT_CODE, healthDir, runWorker } from "./run-worker.js";
export type { RunWorkerOptions, WorkerContext } from "./run-worker.js";
