/**
 * A task's console log, rotated by size: containerd's binary logging driver with the project's
 * own logger (`native/eve-task-logger.c`), built from source with the node's gcc the first time
 * an executor needs it. The runc shim starts one logger per task and owns it: it keeps writing
 * across executor restarts and ends when the task is deleted.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { NodeFactError } from "./errors.js";

const execFileAsync = promisify(execFile);

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

/** gcc's flags for the logger. */
const CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra"];

/**
 * Builds the task logger unless this node has it already: `<dataDir>/bin/eve-task-logger-<hash>`,
 * the hash naming the source and flags, so an updated source gets a new binary and tasks
 * running with the old one keep it. Built into a temporary name and renamed into place.
 *
 * @returns the logger's absolute path.
 * @throws NodeFactError when gcc is missing or fails (prerequisites: gcc, libc6-dev).
 */
export async function ensureTaskLogger(dataDir: string): Promise<string> {
  const source = await readFile(TASK_LOGGER_SOURCE);
  const hash = createHash("sha256").update(CFLAGS.join(" ")).update("\0").update(source).digest("hex");
  const bin = join(dataDir, "bin");
  const path = join(bin, `eve-task-logger-${hash.slice(0, 16)}`);
  const built = await stat(path).then(
    (s) => s.isFile() && (s.mode & 0o111) !== 0,
    () => false,
  );
  if (built) return path;
  await mkdir(bin, { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await execFileAsync("gcc", [...CFLAGS, "-o", tmp, TASK_LOGGER_SOURCE]);
    await chmod(tmp, 0o755);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const why =
      e.code === "ENOENT" ? "gcc is not installed (apt-get install gcc libc6-dev)" : (e.stderr ?? e.message);
    throw new NodeFactError(
      `cannot build the task logger from ${TASK_LOGGER_SOURCE}: ${why.trim()}`,
      undefined,
      {
        cause: err,
      },
    );
  }
  return path;
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
