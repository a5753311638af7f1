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
  /** Skip building and registering the built-in hypervisor-tools image (no VMs; faster start). */
  readonly noToolsImage: boolean;
  /** Processes per worker (`--replicas spec-builder=3,hypervisor-seed-fetcher=2`); unlisted: 1. */
  readonly replicas: ReadonlyMap<string, number>;
  readonly help: boolean;
}

/** Workers that run once per node: the executor alone drives containerd; the proc-monitor samples every task. */
export const ONE_PER_NODE = ["task-executor", "proc-monitor"] as const;

/** Most processes of one worker `--replicas` accepts. */
export const MAX_REPLICAS = 16;

/**
 * Parses `--replicas` (`<worker>=<n>[,<worker>=<n>...]`).
 *
 * @throws {UsageError} for a malformed entry, a count outside 1..MAX_REPLICAS, a worker named
 *   twice, or more than one of a once-per-node worker.
 */
export function parseReplicas(value: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of value
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0)) {
    const m = /^([a-z][a-z0-9-]*)=(\d+)$/.exec(part);
    if (m === null) throw new UsageError(`--replicas: expected <worker>=<count>, got "${part}"`);
    const [, name, countText] = m as unknown as [string, string, string];
    const count = Number(countText);
    if (out.has(name)) throw new UsageError(`--replicas: ${name} is given twice`);
    if (count < 1 || count > MAX_REPLICAS)
      throw new UsageError(`--replicas: ${name}=${count}: a count from 1 to ${MAX_REPLICAS}`);
    if ((ONE_PER_NODE as readonly string[]).includes(name) && count > 1)
      throw new UsageError(
        `--replicas: ${name} runs once per node (${
          name === "task-executor"
            ? "it alone drives this node's containerd; a second one would refuse to start"
            : "it samples every task of the node; a second one would publish every sample twice"
        }); for more capacity run more nodes`,
      );
    out.set(name, count);
  }
  return out;
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
  --no-tools-image          do not build the built-in hypervisor-tools image (containers only)
  --replicas <w>=<n>,...    processes per worker, e.g. spec-builder=3,hypervisor-seed-fetcher=2
                            (task-executor and proc-monitor run once per node)
  -h, --help                this text

environment: NATS_URL, CONTAINERD_ADDRESS, EVE_DATA_DIR (default ./.data), EVE_RUN_DIR
(default /run/eve-tasks), EVE_NODE (default local), LOG_LEVEL (default info); workers get them all.
EVE_NATS_PORT: the private nats-server's client port (default 4222, a random one if taken).
Device mode (docs/fleet.md): EVE_HUB_LEAF_URL (the hub's nats-leaf:// URL(s), comma-separated;
credentials in it, or the password in EVE_HUB_LEAF_PASSWORD_FILE, default
<EVE_DATA_DIR>/nats-credentials/hub-leaf.password).
`;

/** Parses `argv` (without node and the script). @throws {UsageError} */
export function parseLauncherArgs(argv: readonly string[]): LauncherArgs {
  let values: {
    "services-dir"?: string;
    "keep-tasks"?: boolean;
    "worker-grace-ms"?: string;
    replicas?: string;
    "no-tools-image"?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        "services-dir": { type: "string" },
        "keep-tasks": { type: "boolean" },
        "worker-grace-ms": { type: "string" },
        replicas: { type: "string" },
        "no-tools-image": { type: "boolean" },
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
    replicas: parseReplicas(values.replicas ?? ""),
    noToolsImage: values["no-tools-image"] ?? false,
    help: values.help ?? false,
  };
}
