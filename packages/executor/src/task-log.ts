/**
 * A task's console log, rotated by size: containerd's binary logging driver with the project's
 * own logger (`native/eve-task-logger.c`), built from source with the node's gcc the first time
 * an executor needs it. The runc shim starts one logger per task and owns it: it keeps writing
 * across executor restarts and ends when the task is deleted.
 */
import { fileURLToPath } from "node:url";
import { ensureNativeBinary } from "./native-build.js";

/** The logger's C source, shipped with the package (next to `src/` and `dist/`). */
export const TASK_LOGGER_SOURCE = fileURLToPath(new URL("../native/eve-task-logger.c", import.meta.url));

/** How a node writes its tasks' logs (`EVE_LOG_MAX_BYTES`, `EVE_LOG_FILES`). */
export interface TaskLogSettings {
  /** The built logger (absolute path). */
  readonly loggerPath: string;
  /** No log file grows over this many bytes. */
  readonly maxBytes: number;
  /** How many files are kept: `console.log` and `console.log.1` … `console.log.<files-1>`. */
  readonly files: number;
}

/**
 * Builds the task logger unless this node has it already (see {@link ensureNativeBinary}).
 *
 * @returns the logger's absolute path.
 * @throws NodeFactError when gcc is missing or fails (prerequisites: gcc, libc6-dev).
 */
export function ensureTaskLogger(dataDir: string): Promise<string> {
  return ensureNativeBinary(dataDir, { name: "eve-task-logger", source: TASK_LOGGER_SOURCE });
}

/**
 * The Tasks.Create stdout/stderr URI that logs to `logPath` through the logger:
 * `binary://<logger>?path=<logPath>&max=<bytes>&files=<n>` (the shim turns the query into the
 * logger's arguments).
 */
export function taskLogUri(settings: TaskLogSettings, logPath: string): string {
  const query = new URLSearchParams({
    path: logPath,
    max: String(settings.maxBytes),
    files: String(settings.files),
  });
  const program = settings.loggerPath.split("/").map(encodeURIComponent).join("/");
  return `binary://${program}?${query.toString()}`;
}

/**
 * The files of a task's log, oldest first: `console.log.<files-1>` … `console.log.1`,
 * `console.log`. Read in this order, those that exist are the tail of the task's output.
 */
export function taskLogFiles(logPath: string, files: number): string[] {
  const out: string[] = [];
  for (let i = files - 1; i >= 1; i--) out.push(`${logPath}.${i}`);
  out.push(logPath);
  return out;
}
