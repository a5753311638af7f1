/**
 * `startSystem()`: what `npm start` brings up, for another project's tests: a nats-server with the
 * project's users and permissions (a process, a container, or one given by URL), a private
 * containerd, the buckets, and the workers as supervised processes (N replicas of those that
 * scale). `stop()` has the task-executor stop every task, then stops the workers, containerd and
 * nats-server it started, each by its exact PID (the container by its ID), and removes its
 * directory.
 */
import { mkdir, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { connectBus, ensureBuckets, ensureEventsStream, request } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import {
  DEFAULT_PREREQUISITE_COMMANDS,
  checkPrerequisites,
  cleanupContainerd,
  natsCredentialsDir,
  natsPasswordFile,
  prepareNatsAuth,
  removeTreeSafely,
  startContainerd,
  startNatsServer,
} from "@eve-tasks/embedded";
import type { RunningContainerd } from "@eve-tasks/embedded";
import {
  WorkerSupervisor,
  defaultServicesDir,
  discoverWorkers,
  planNatsUsers,
  workerNatsEnv,
} from "@eve-tasks/launcher";
import type { NatsUsersPlan, WorkerEntry } from "@eve-tasks/launcher";
import { healthDir, readHeartbeats } from "@eve-tasks/runtime";
import type { LogLevel } from "@eve-tasks/runtime";
import {
  StopTasksReplySchema,
  StopTasksRequestSchema,
  natsInboxPrefix,
  stopTasksSubject,
} from "@eve-tasks/schemas";
import { TestkitError } from "./errors.js";
import { startNatsContainer } from "./nats-container.js";
import type { RunningNatsContainer } from "./nats-container.js";
import { planReplicas } from "./replicas.js";
import type { Replicas } from "./replicas.js";

/** Where the nats-server comes from. */
export type NatsSource = "embedded" | "testcontainers" | (string & {});

/** What {@link startSystem} starts. */
export interface StartSystemOptions {
  /**
   * Processes per worker: a number for every worker that scales (spec-builder and
   * hypervisor-seed-fetcher), or one per worker name. The task-executor and proc-monitor run once
   * per node (a second executor on a node would fight over its containerd). Default 1.
   */
  readonly replicas?: Replicas;
  /**
   * `embedded` (default): a private nats-server process. `testcontainers`: nats-server in a
   * container (Docker through testcontainers, the image built locally from the host's
   * nats-server, host networking). A URL (`nats://host:port`): a server you run, with
   * `credentialsDir` if it asks for the project's users.
   */
  readonly nats?: NatsSource;
  /** With a URL: the `<user>.password` files of its users (the layout `npm start` makes). */
  readonly credentialsDir?: string;
  /** EVE_NODE of the workers. Default `local`. */
  readonly node?: string;
  /** Where everything goes (data, run dir, logs). Default a fresh `/tmp/evkit-XXXXXX`, removed by stop(). */
  readonly dir?: string;
  /** Keep `dir` after stop() (logs, stores). Default false. */
  readonly keep?: boolean;
  /** More environment for the workers (EVE_VOLUME_ROOTS, EVE_NODE_MEMORY_MIB, LOG_LEVEL...). */
  readonly env?: Readonly<Record<string, string>>;
  /** The kit's own log level, and the workers' LOG_LEVEL unless `env` sets one. Default `info`. */
  readonly logLevel?: LogLevel;
  /** How long the start may take. Default 60 s. */
  readonly timeoutMs?: number;
}

/** A NATS user's credentials, ready for nats.js: `connect({ servers, ...credentials.controller })`. */
export interface NatsUserCredentials {
  readonly user: string;
  readonly pass: string;
  /** The only inbox the user may subscribe to: set it as the client's inbox prefix. */
  readonly inboxPrefix: string;
  /** The file holding `pass` (for NATS_PASSWORD_FILE). */
  readonly passwordFile: string;
}

/** The users a test connects as. */
export interface SystemCredentials {
  /** Everything (creating and deleting streams). */
  readonly admin: NatsUserCredentials;
  /** Writes the controller bucket (apps, tools), reads everything, signals anchors. */
  readonly controller: NatsUserCredentials;
  /** Reads everything, writes nothing. */
  readonly viewer: NatsUserCredentials;
}

/** One worker process of a running system. */
export interface SystemWorker {
  readonly name: string;
  readonly replica: number;
  readonly pid: number | null;
  readonly state: string;
  readonly restarts: number;
  readonly logFile: string;
}

/** A running system. */
export interface RunningSystem extends AsyncDisposable {
  readonly natsUrl: string;
  /** Null when the server was given by URL without `credentialsDir` (a server that asks for none). */
  readonly credentials: SystemCredentials | null;
  readonly node: string;
  readonly containerdAddress: string;
  readonly dataDir: string;
  readonly runDir: string;
  /** The workers' logs (`<worker>-<replica>.log`), containerd's, nats-server's. */
  readonly logDir: string;
  /** Where the nats-server runs: `process` (its PID), `container` (its ID), or `external`. */
  readonly nats:
    | { readonly kind: "process"; readonly pid: number }
    | { readonly kind: "container"; readonly id: string }
    | { readonly kind: "external" };
  /** The worker processes now. */
  workers(): SystemWorker[];
  /** Stops what was started (tasks, workers, containerd, nats-server) and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** How long the executor may take to stop every task at stop(). */
const TASK_STOP_TIMEOUT_MS = 60_000;

async function credentialsOf(dir: string): Promise<SystemCredentials> {
  const one = async (user: "admin" | "controller" | "viewer"): Promise<NatsUserCredentials> => {
    const passwordFile = natsPasswordFile(dir, user);
    const pass = (await readFile(passwordFile, "utf8")).trim();
    return { user, pass, inboxPrefix: natsInboxPrefix(user), passwordFile };
  };
  return { admin: await one("admin"), controller: await one("controller"), viewer: await one("viewer") };
}

/** Starts the system; see {@link StartSystemOptions}. */
export async function startSystem(options: StartSystemOptions = {}): Promise<RunningSystem> {
  const source: NatsSource = options.nats ?? "embedded";
  const node = options.node ?? "local";
  const replicas = planReplicas(options.replicas ?? 1);
  // A server given by URL needs no nats-server here; a container's image is built from the host's.
  const local = source === "embedded" || source === "testcontainers";
  const check = checkPrerequisites(DEFAULT_PREREQUISITE_COMMANDS.filter((c) => local || c !== "nats-server"));
  if (!check.ok) {
    throw new TestkitError(
      `missing on this host: ${check.missing.join(", ")} (Debian, as root: npm run prerequisites in eve-tasks)`,
      { context: { missing: check.missing } },
    );
  }
  if (source !== "embedded" && source !== "testcontainers" && !/^(nats|tls|ws|wss):\/\/\S+$/.test(source)) {
    throw new TestkitError(
      `nats: expected "embedded", "testcontainers" or a nats:// URL, got ${JSON.stringify(source)}`,
    );
  }
  const discovery = await discoverWorkers(defaultServicesDir());
  if (discovery.missing.length > 0) {
    throw new TestkitError(
      `workers not built: ${discovery.missing.join(", ")} (run npm run build in eve-tasks)`,
    );
  }

  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "evkit-")));
  const dataDir = join(dir, "data");
  const runDir = join(dir, "run");
  const logDir = join(dir, "logs");
  await mkdir(logDir, { recursive: true });
  await mkdir(runDir, { recursive: true });
  const logger = pino(
    { level: options.logLevel ?? "info", base: { worker: "testkit" } },
    pino.destination({ dest: join(logDir, "testkit.log"), sync: true }),
  );

  // Everything started so far, stopped in reverse by stop().
  const undo: { what: string; run: () => Promise<unknown> }[] = [];
  const supervisors: {
    entry: WorkerEntry;
    replica: number;
    supervisor: WorkerSupervisor;
    logFile: string;
  }[] = [];
  let natsUrl = source;
  let nats: RunningSystem["nats"] = { kind: "external" };
  let credentials: SystemCredentials | null = null;
  let usersPlan: NatsUsersPlan = planNatsUsers({ credentialsDir: options.credentialsDir, given: undefined });
  let containerd: RunningContainerd | undefined;
  let bus: Bus | undefined;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      const errors: unknown[] = [];
      for (const step of undo.splice(0).reverse()) {
        try {
          await step.run();
        } catch (err) {
          errors.push(new TestkitError(`${step.what}: ${message(err)}`, { cause: err }));
        }
      }
      if (!options.keep && options.dir === undefined)
        await removeTreeSafely(dir).catch((err: unknown) => errors.push(err));
      if (errors.length > 0)
        throw new AggregateError(errors, `stopping the system: ${errors.map(message).join("; ")}`);
    })());

  try {
    // nats-server
    if (source === "embedded" || source === "testcontainers") {
      const auth = await prepareNatsAuth({
        credentialsDir: natsCredentialsDir(dataDir),
        configDir: join(dataDir, "nats-config"),
        nodes: [node],
      });
      usersPlan = planNatsUsers({ credentialsDir: auth.credentialsDir, given: undefined });
      if (source === "embedded") {
        const server = await startNatsServer({
          storeDir: join(dataDir, "nats"),
          configFile: auth.configFile,
          env: auth.env,
          logFile: join(logDir, "nats-server.log"),
        });
        undo.push({ what: "stop nats-server", run: () => server.stop() });
        natsUrl = server.url;
        nats = { kind: "process", pid: server.pid };
      } else {
        const container: RunningNatsContainer = await startNatsContainer({
          configDir: join(dataDir, "nats-config"),
          storeDir: join(dataDir, "nats"),
          env: auth.env,
        });
        undo.push({ what: "stop the nats-server container", run: () => container.stop() });
        natsUrl = container.url;
        nats = { kind: "container", id: container.containerId };
      }
    }
    if (usersPlan.credentialsDir !== undefined) credentials = await credentialsOf(usersPlan.credentialsDir);

    // containerd
    containerd = await startContainerd({
      dir: join(dataDir, "containerd"),
      socketDir: runDir,
      logFile: join(logDir, "containerd.log"),
    });
    const ctd = containerd;
    undo.push({ what: "stop containerd", run: () => ctd.stop() });
    // Tasks a worker left (it was killed): the shims outlive it.
    undo.push({
      what: "remove containerd's tasks and containers",
      run: () => cleanupContainerd(ctd.address),
    });

    // Buckets and the events stream.
    bus = await connectBus({
      servers: natsUrl,
      name: "eve-tasks-testkit",
      logger,
      credentials: usersPlan.launcher,
    });
    const b = bus;
    undo.push({ what: "close the bus connection", run: () => b.close() });
    await ensureBuckets(bus);
    await ensureEventsStream(bus);

    // Workers.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...options.env,
      NATS_URL: natsUrl,
      CONTAINERD_ADDRESS: containerd.address,
      EVE_DATA_DIR: dataDir,
      EVE_RUN_DIR: runDir,
      EVE_NODE: node,
      LOG_LEVEL: options.env?.LOG_LEVEL ?? options.logLevel ?? "info",
    };
    for (const entry of discovery.workers) {
      const count = replicas.get(entry.name) ?? 1;
      for (let replica = 0; replica < count; replica++) {
        const logFile = join(logDir, `${entry.name}-${replica}.log`);
        const supervisor = new WorkerSupervisor({
          entry,
          logFile,
          env: workerNatsEnv(usersPlan, entry.name, env),
          logger: logger.child({ child: `${entry.name}-${replica}` }),
          graceMs: 10_000,
          onChange: (s, event) => {
            if (event !== undefined)
              logger.info({ worker: s.name, replica, pid: s.pid, state: s.state }, event);
          },
        });
        supervisors.push({ entry, replica, supervisor, logFile });
      }
    }
    undo.push({
      what: "stop the workers",
      run: () => Promise.all(supervisors.map((s) => s.supervisor.stop())),
    });
    // Before the workers stop: the executor stops the tasks the way any stop goes, and removes
    // what it set up for them (network namespaces, rules).
    undo.push({
      what: "stop the tasks",
      run: async () => {
        const r = await request(
          b,
          stopTasksSubject(node),
          { request: StopTasksRequestSchema, reply: StopTasksReplySchema },
          {},
          TASK_STOP_TIMEOUT_MS,
        ).catch((err: unknown) => logger.warn({ err }, "the task-executor did not stop the tasks"));
        if (r && r.failed.length > 0) logger.warn({ failed: r.failed }, "tasks the executor could not stop");
      },
    });
    for (const s of supervisors) s.supervisor.start();

    // Ready: every worker process says it runs (its liveness file).
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    for (;;) {
      const beats = await readHeartbeats(healthDir(runDir)).catch(() => []);
      const snaps = supervisors.map((s) => s.supervisor.snapshot());
      const waiting = snaps.filter(
        (s) => s.pid === null || !beats.some((h) => h.pid === s.pid && h.state === "running"),
      );
      if (waiting.length === 0) break;
      if (Date.now() > deadline) {
        throw new TestkitError(
          `workers not running after ${options.timeoutMs ?? 60_000} ms: ${waiting.map((w) => `${w.name} (${w.state})`).join(", ")}; logs in ${logDir}`,
        );
      }
      await sleep(100);
    }
  } catch (err) {
    await stop().catch((stopErr: unknown) => logger.error({ err: stopErr }, "cleanup after a failed start"));
    if (err instanceof TestkitError) throw err;
    throw new TestkitError(`cannot start the system: ${message(err)}`, { cause: err, context: { dir } });
  }

  const ctd = containerd;
  return {
    natsUrl,
    credentials,
    node,
    containerdAddress: ctd.address,
    dataDir,
    runDir,
    logDir,
    nats,
    workers: () =>
      supervisors.map(({ replica, supervisor, logFile }) => {
        const s = supervisor.snapshot();
        return { name: s.name, replica, pid: s.pid, state: s.state, restarts: s.restarts, logFile };
      }),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
