/** Command-line flags of the launcher. */
import { fileURLToPath } from "node:url";
import path from "node:path";
import { parseArgs } from "node:util";

/** Parsed flags. */
export interface LauncherArgs {
  /** Where workers live: `<servicesDir>/<name>/dist/main.js`. */
  readonly servicesDir: string;
  /** Leave tasks running on exit (recorded; see the shutdown notes). */
  readonly keepTasks: boolean;
  /** How long a worker gets after SIGTERM before SIGKILL. */
  readonly workerGraceMs: number;
  readonly help: boolean;
}

/** Bad flags. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The repository's `services/` folder, next to `packages/` (the launcher runs from `packages/launcher/dist`). */
export const defaultServicesDir = (): string => fileURLToPath(new URL("../../../services", import.meta.url));

/** Usage text. */
export const usage = `usage: npm start -- [options]     (or: node packages/launcher/dist/main.js [options])

Brings up nats-server and containerd (unless NATS_URL / CONTAINERD_ADDRESS point elsewhere),
creates the buckets and the events stream, runs every built worker, restarts those that die,
and shows their status. Ctrl-C stops everything it started.

options:
  --services-dir <dir>      folder of workers (<dir>/<name>/dist/main.js); default: the repo's services/
  --keep-tasks              leave tasks running on exit
  --worker-grace-ms <ms>    time a worker gets after SIGTERM before SIGKILL; default 10000
  -h, --help                this text

environment: NATS_URL, CONTAINERD_ADDRESS, EVE_DATA_DIR (default ./.data), EVE_RUN_DIR
(default /run/eve-tasks), EVE_NODE (default local), LOG_LEVEL (default info); workers get them all.
`;

/** Parses `argv` (without node and the script). @throws {UsageError} */
export function parseLauncherArgs(argv: readonly string[]): LauncherArgs {
  let values: { "services-dir"?: string; "keep-tasks"?: boolean; "worker-grace-ms"?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        "services-dir": { type: "string" },
        "keep-tasks": { type: "boolean" },
        "worker-grace-ms": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message, { cause: err });
  }
  const grace = values["worker-grace-ms"] ?? "10000";
  if (!/^\d+$/.test(grace)) throw new UsageError(`--worker-grace-ms: expected milliseconds, got "${grace}"`);
  return {
    servicesDir: path.resolve(values["services-dir"] ?? defaultServicesDir()),
    keepTasks: values["keep-tasks"] ?? false,
    workerGraceMs: Number(grace),
    help: values.help ?? false,
  };
}
