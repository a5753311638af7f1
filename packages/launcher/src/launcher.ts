/**
 * The launcher behind `npm start`: host prerequisites → nats-server → containerd → buckets and
 * the events stream → one supervised process per worker → status, until SIGINT/SIGTERM; then the
 * reverse: workers, containerd, nats-server (each by its exact PID), and exit 0.
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import {
  connectBus,
  ensureBuckets,
  ensureControllerMirror,
  ensureEventsStream,
  request,
} from "@eve-tasks/bus";
import { StopTasksReplySchema, StopTasksRequestSchema, stopTasksSubject } from "@eve-tasks/schemas";
import {
  DEFAULT_PREREQUISITE_COMMANDS,
  canConnect,
  ensureDebianPackages,
  ensurePrerequisites,
  HUB_LEAF_URLS_VARIABLE,
  hubLeafUrls,
  leafUrlsConfigValue,
  natsCredentialsDir,
  renderDeviceLeafConfig,
  prepareNatsAuth,
  startContainerd,
  startNatsServer,
} from "@eve-tasks/embedded";
import type { RunningContainerd, RunningNatsServer } from "@eve-tasks/embedded";
import type { Bus } from "@eve-tasks/bus";
import {
  RECIPES,
  buildRuntimeImage,
  defaultRuntimeImageDir,
  installRuntimeImage,
  registerBuiltInRuntime,
} from "@eve-tasks/tools-image";
import type { BuildProgress } from "@eve-tasks/tools-image";
import {
  createLogger,
  healthDir,
  installShutdown,
  natsConnection,
  readHeartbeats,
  redactUrl,
} from "@eve-tasks/runtime";
import type { HeartbeatReading, Logger } from "@eve-tasks/runtime";
import type { LauncherArgs } from "./args.js";
import { AppsView } from "./apps-view.js";
import { buildBanner } from "./banner.js";
import type { LauncherConfig } from "./config.js";
import { ConsoleView } from "./console-view.js";
import type { ViewOutput } from "./console-view.js";
import { LauncherError } from "./errors.js";
import { planNatsUsers, workerNatsEnv } from "./nats-users.js";
import type { NatsUsersPlan } from "./nats-users.js";
import { portIsFree } from "./port-probe.js";
import { readStartTicks } from "./proc.js";
import { StateFileWriter, stateFilePath } from "./state-file.js";
import { localWorkersOf, startStatusPage } from "./status-page.js";
import type { LauncherPhase, LauncherStateRecord, WorkerRecord } from "./state-file.js";
import { STALE_HEARTBEAT_MS, formatHeartbeat, formatWorkerLine, workerHeader } from "./status-format.js";
import { takeOver } from "./take-over.js";
import { WorkerSupervisor } from "./worker-supervisor.js";
import type { WorkerSnapshot } from "./worker-supervisor.js";
import { discoverWorkers, planWorkerProcesses, withMallocTunables } from "./workers.js";
import { readFile } from "node:fs/promises";

/** The port a private nats-server gets when it is free. */
export const DEFAULT_NATS_PORT = 4222;
/** How long nats-server and containerd get after SIGTERM. */
export const SERVICE_STOP_GRACE_MS = 10_000;

/**
 * How long the task-executor may take to stop every task on Ctrl-C. Each stop is bounded by its
 * app's `stopTimeoutMs` (default 10 s), then QMP `quit` (5 s) for a VM, then SIGKILL (10 s); the
 * stops run at once.
 */
export const TASK_STOP_TIMEOUT_MS = 60_000;
/** How often the status is redrawn on a terminal. */
export const STATUS_INTERVAL_MS = 1_000;
/**
 * How often the heartbeats are read when no terminal shows them: often enough to say a stale one
 * (STALE_HEARTBEAT_MS) within a few seconds, seldom enough not to wake the launcher every second.
 */
export const HEARTBEAT_CHECK_INTERVAL_MS = 5_000;

/** Options of {@link runLauncher}. */
export interface LauncherOptions {
  readonly config: LauncherConfig;
  readonly args: LauncherArgs;
  /** The environment the workers inherit (plus NATS_URL, CONTAINERD_ADDRESS, EVE_*). */
  readonly env: NodeJS.ProcessEnv;
  /** Where the banner and status go: stdout. */
  readonly out: ViewOutput;
  /** Default `process.exit`. */
  readonly exit?: (code: number) => void;
}

/** Thrown inside the start sequence when a signal arrived meanwhile: not an error. */
class StartAborted extends Error {
  override readonly name = "StartAborted";
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The built-in runtimes (`default`, `emulators`, `jvm`), one after another: for each, makes sure
 * the Debian packages it is made from are installed, builds its image from them (cached per
 * package version: a later start only checks it; in `EVE_RUNTIME_IMAGE_CACHE` when set, linked
 * into the data dir from there) and registers it as `HypervisorToolsConfig.<name>` unless the
 * operator's own config is there. Never throws: without a runtime its apps cannot run, but
 * everything else can, so a failure is a warning.
 */
async function provideRuntimes(o: {
  bus: Bus;
  dataDir: string;
  cacheDir: string | undefined;
  say: (line: string, fields?: Record<string, unknown>) => void;
  warn: (line: string, err?: unknown) => void;
  signal: AbortSignal;
  /** Device mode: the image is built, but registered on the hub (by its operator), not here. */
  device: boolean;
  node: string;
}): Promise<void> {
  const { say, warn } = o;
  for (const name of ["default", "emulators", "jvm"] as const) {
    if (o.signal.aborted) return;
    const what = name === "default" ? "VMs" : name === "jvm" ? "JAR apps" : "apps of other architectures";
    try {
      await ensureDebianPackages(RECIPES[name].packages, { log: (line) => say(`runtime ${name}: ${line}`) });
    } catch (err) {
      warn(`runtime ${name}: ${what} will not run: ${message(err)}`, err);
      continue;
    }
    if (o.signal.aborted) return;
    try {
      const started = Date.now();
      let lastQuarter = -1;
      const onProgress = (p: BuildProgress): void => {
        if (p.phase === "collecting") {
          say(`runtime ${name}: building its image from the host's packages (first start, or they changed)`);
          return;
        }
        const quarter = p.totalBytes === 0 ? 4 : Math.floor((4 * p.bytes) / p.totalBytes);
        if (quarter === lastQuarter || quarter === 0 || quarter === 4) return;
        lastQuarter = quarter;
        say(`runtime ${name}: ${quarter * 25}% written (${p.files}/${p.totalFiles} files)`);
      };
      const outDir =
        o.cacheDir === undefined ? defaultRuntimeImageDir(o.dataDir, name) : path.join(o.cacheDir, name);
      const built = await buildRuntimeImage(name, { outDir, onProgress, signal: o.signal });
      const image = o.cacheDir === undefined ? built : await installRuntimeImage(built, o.dataDir);
      for (const w of image.warnings) say(`runtime ${name}: warning: ${w}`);
      const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
      const packages = Object.entries(image.packages)
        .map(([p, v]) => `${p} ${v}`)
        .join(", ");
      say(
        `runtime ${name}: ${image.built ? "built" : "cached"} image of ${packages} ` +
          `(${mb(image.layerSize)}, ${mb(image.unpackedSize)} unpacked) in ${Date.now() - started} ms`,
        { ref: image.ref, manifestDigest: image.manifestDigest, built: image.built },
      );
      if (o.signal.aborted) return;
      if (o.device) {
        // A device's controller bucket is the hub's (a read-only mirror here): the hub holds it.
        say(
          `runtime ${name}: device mode: register it on the hub, in controller-${o.node}: ` +
            `HypervisorToolsConfig.${name} = {"schemaVersion":1,"image":"${image.ref}"}`,
        );
        continue;
      }
      const r = await registerBuiltInRuntime(o.bus, name, image.ref);
      say(`runtime ${name}: ${r.message}`, { outcome: r.outcome, previous: r.previous });
    } catch (err) {
      if (o.signal.aborted) return;
      warn(`runtime ${name}: ${what} will not run: its image: ${message(err)}`, err);
    }
  }
}

/**
 * Device mode's additions to the private nats-server: the leaf remote (renderDeviceLeafConfig)
 * and its URLs with credentials in nats-server's environment (never on its command line or in a
 * file other than the 0600 password file). Undefined without EVE_HUB_LEAF_URL.
 */
async function deviceLeafSettings(
  config: LauncherConfig,
  dataDir: string,
): Promise<{ config: string; env: Record<string, string>; hosts: string[] } | undefined> {
  if (config.EVE_HUB_LEAF_URL === undefined) return undefined;
  const file =
    config.EVE_HUB_LEAF_PASSWORD_FILE ?? path.join(natsCredentialsDir(dataDir), "hub-leaf.password");
  let password: string | undefined;
  try {
    password = (await readFile(file, "utf8")).trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT" || config.EVE_HUB_LEAF_PASSWORD_FILE !== undefined)
      throw new LauncherError(`EVE_HUB_LEAF_PASSWORD_FILE: cannot read ${file}: ${message(err)}`);
  }
  let urls: string[];
  try {
    urls = hubLeafUrls(config.EVE_HUB_LEAF_URL, config.EVE_NODE, password);
  } catch (err) {
    throw new LauncherError(message(err));
  }
  return {
    config: renderDeviceLeafConfig({ node: config.EVE_NODE }),
    env: { [HUB_LEAF_URLS_VARIABLE]: leafUrlsConfigValue(urls) },
    hosts: urls.map((u) => new URL(u).host),
  };
}

/** Runs the launcher until it is stopped; the process exits when the stop is done. */
export async function runLauncher(opts: LauncherOptions): Promise<void> {
  const { config, args } = opts;
  const dataDir = config.EVE_DATA_DIR;
  const runDir = config.EVE_RUN_DIR;
  const logDir = path.join(dataDir, "logs");
  const stateFile = stateFilePath(dataDir);
  await mkdir(logDir, { recursive: true });
  await mkdir(runDir, { recursive: true });

  const logger: Logger = createLogger({
    worker: "launcher",
    node: config.EVE_NODE,
    level: config.LOG_LEVEL,
    destination: pino.destination({ dest: path.join(logDir, "launcher.log"), sync: true }),
  });
  const view = new ConsoleView(opts.out);
  const say = (line: string, fields: Record<string, unknown> = {}): void => {
    logger.info(fields, line);
    view.note(line);
  };

  await takeOver(stateFile, logger, say);

  const lifecycle = installShutdown({
    logger,
    // SIGHUP too: closing the terminal stops everything as Ctrl-C does.
    signals: ["SIGINT", "SIGTERM", "SIGHUP"],
    graceMs: TASK_STOP_TIMEOUT_MS + args.workerGraceMs + 2 * SERVICE_STOP_GRACE_MS + 15_000,
    exit: opts.exit,
  });
  const startedAt = new Date().toISOString();
  const launcherTicks = readStartTicks(process.pid);
  let phase: LauncherPhase = "starting";
  let nats: RunningNatsServer | undefined;
  let natsUrl: string | undefined = config.NATS_URL;
  let natsAlive = false;
  let containerd: RunningContainerd | undefined;
  let containerdAddress: string | undefined = config.CONTAINERD_ADDRESS;
  let containerdAlive = false;
  const supervisors: WorkerSupervisor[] = [];
  let heartbeats: HeartbeatReading[] = [];

  const snapshot = (): LauncherStateRecord => {
    const workers: Record<string, WorkerRecord> = {};
    for (const s of supervisors.map((w) => w.snapshot())) {
      workers[s.name] = {
        name: s.name,
        main: s.main,
        logFile: s.logFile,
        state: s.state,
        pid: s.pid,
        startTicks: s.startTicks,
        restarts: s.restarts,
        startedAt: s.startedAt === null ? null : new Date(s.startedAt).toISOString(),
        lastExit: s.lastExit && {
          code: s.lastExit.code,
          signal: s.lastExit.signal,
          at: new Date(s.lastExit.at).toISOString(),
        },
      };
    }
    const ref = (pid: number): { pid: number; startTicks?: number } => ({
      pid,
      startTicks: readStartTicks(pid),
    });
    const pids = [
      ...(nats && natsAlive ? [nats.pid] : []),
      ...(containerd && containerdAlive ? [containerd.pid] : []),
      ...Object.values(workers).flatMap((w) => (w.pid === null ? [] : [w.pid])),
    ];
    return {
      schemaVersion: 1,
      launcher: { pid: process.pid, startTicks: launcherTicks, startedAt, phase },
      keepTasks: args.keepTasks,
      servicesDir: args.servicesDir,
      dataDir,
      runDir,
      logDir,
      nats: {
        url: natsUrl ?? null,
        startedByLauncher: config.NATS_URL === undefined,
        process: nats && natsAlive ? ref(nats.pid) : null,
        storeDir: nats?.storeDir ?? null,
        logFile: nats?.logFile ?? null,
      },
      containerd: {
        address: containerdAddress ?? null,
        startedByLauncher: config.CONTAINERD_ADDRESS === undefined,
        process: containerd && containerdAlive ? ref(containerd.pid) : null,
        dir: containerd ? path.dirname(containerd.root) : null,
        logFile: containerd?.logFile ?? null,
      },
      workers,
      pids,
      updatedAt: new Date().toISOString(),
    };
  };
  const writer = new StateFileWriter(stateFile);
  const save = (): void => {
    writer
      .write(snapshot)
      .catch((err: unknown) => logger.error({ err, stateFile }, "cannot write state file"));
  };
  const fail = (reason: string, err?: unknown): void => {
    logger.error({ err }, reason);
    view.note(`error: ${reason}`);
    void lifecycle.exitAfterShutdown(reason, 1);
  };
  const ensureRunning = (): void => {
    if (lifecycle.state !== "running") throw new StartAborted("stopped while starting");
  };

  // Registered first, so it runs last: the file then says the launcher owns nothing alive.
  lifecycle.onShutdown("record the stop in launcher.json", async () => {
    phase = "stopped";
    await writer.write(snapshot);
  });
  lifecycle.signal.addEventListener("abort", () => {
    phase = "stopping";
    save();
    view.close();
    say(`stopping (${message(lifecycle.signal.reason)})`);
  });
  const keepAlive = setInterval(() => undefined, 1 << 30);
  void lifecycle.stopped.then(() => clearInterval(keepAlive));
  save();

  try {
    // Host prerequisites of what is started here only (apt-get installs them on Debian as root).
    const commands = DEFAULT_PREREQUISITE_COMMANDS.filter((c) =>
      c === "nats-server" ? config.NATS_URL === undefined : config.CONTAINERD_ADDRESS === undefined,
    );
    if (commands.length > 0) {
      await ensurePrerequisites({ commands, log: (line: string) => say(`prerequisites: ${line}`) });
      ensureRunning();
    }

    // nats-server
    let natsUsers: NatsUsersPlan;
    if (natsUrl !== undefined) {
      say(`using NATS at ${redactUrl(natsUrl)} (NATS_URL is set; not starting nats-server)`);
      natsUsers = planNatsUsers({
        credentialsDir: config.EVE_NATS_CREDENTIALS_DIR,
        given: natsConnection({ ...config, NATS_URL: natsUrl }).credentials,
      });
      say(
        natsUsers.credentialsDir !== undefined
          ? `NATS users: admin for the launcher, each worker its own (passwords in ${natsUsers.credentialsDir})`
          : `NATS users: the launcher ${natsUsers.launcher ? `as ${natsUsers.launcher.user}` : "without credentials"}, ` +
              `the workers without credentials (set EVE_NATS_CREDENTIALS_DIR to give each its own)`,
      );
    } else {
      // The project's users and permissions (deploy/'s, rendered for this node), with passwords
      // generated once under the data dir (mode 0600, readable by root only).
      const device = await deviceLeafSettings(config, dataDir);
      const auth = await prepareNatsAuth({
        credentialsDir: natsCredentialsDir(dataDir),
        configDir: path.join(dataDir, "nats"),
        nodes: [config.EVE_NODE],
        extraConfig: device?.config,
      });
      if (device !== undefined) {
        say(
          `device mode: node ${config.EVE_NODE} is a leaf node of the hub at ${device.hosts.join(", ")} ` +
            `(JetStream domain ${config.EVE_NODE}; controller mirrors the hub's controller-${config.EVE_NODE})`,
        );
      }
      natsUsers = planNatsUsers({ credentialsDir: auth.credentialsDir, given: undefined });
      say(
        `NATS users and permissions: ${auth.permissionsFile}; passwords in ${auth.credentialsDir} (root only)`,
      );
      const wantedPort = config.EVE_NATS_PORT ?? DEFAULT_NATS_PORT;
      const free = await portIsFree(wantedPort, "127.0.0.1");
      if (!free && config.EVE_NATS_PORT !== undefined) {
        throw new LauncherError(
          `EVE_NATS_PORT=${wantedPort}: 127.0.0.1:${wantedPort} is taken (another nats-server?); choose a free port`,
        );
      }
      if (!free) {
        say(
          `note: 127.0.0.1:${DEFAULT_NATS_PORT} is taken (another nats-server?); ` +
            `the private nats-server gets a random port, and workers are told via NATS_URL`,
        );
      }
      const starting = startNatsServer({
        storeDir: path.join(dataDir, "nats"),
        host: "127.0.0.1",
        port: free ? wantedPort : -1,
        logFile: path.join(logDir, "nats-server.log"),
        stopGraceMs: SERVICE_STOP_GRACE_MS,
        configFile: auth.configFile,
        env: device === undefined ? auth.env : { ...auth.env, ...device.env },
      });
      lifecycle.onShutdown("stop nats-server", async () => {
        const n = await starting.catch(() => undefined);
        if (n === undefined) return;
        await n.stop();
        say(`nats-server (pid ${n.pid}) stopped`);
      });
      nats = await starting;
      natsAlive = true;
      natsUrl = nats.url;
      const n = nats;
      void n.exited.then((code) => {
        natsAlive = false;
        save();
        if (lifecycle.state === "running") {
          fail(`nats-server (pid ${n.pid}) exited unexpectedly with code ${String(code)}; see ${n.logFile}`);
        }
      });
      say(`nats-server started: ${n.url} (pid ${n.pid}, store ${n.storeDir})`);
      save();
      ensureRunning();
    }

    // containerd
    if (containerdAddress !== undefined) {
      const reachable = await canConnect({ path: containerdAddress }, 2_000);
      say(
        `using containerd at ${containerdAddress} (CONTAINERD_ADDRESS is set; not starting containerd)` +
          (reachable ? "" : ` — warning: nothing answers there yet`),
      );
    } else {
      const starting = startContainerd({
        dir: path.join(dataDir, "containerd"),
        socketDir: runDir,
        logFile: path.join(logDir, "containerd.log"),
        stopGraceMs: SERVICE_STOP_GRACE_MS,
      });
      lifecycle.onShutdown("stop containerd", async () => {
        const c = await starting.catch(() => undefined);
        if (c === undefined) return;
        await c.stop();
        say(`containerd (pid ${c.pid}) stopped`);
      });
      containerd = await starting;
      containerdAlive = true;
      containerdAddress = containerd.address;
      const c = containerd;
      void c.exited.then((code) => {
        containerdAlive = false;
        save();
        if (lifecycle.state === "running") {
          fail(`containerd (pid ${c.pid}) exited unexpectedly with code ${String(code)}; see ${c.logFile}`);
        }
      });
      say(`containerd started: ${c.address} (pid ${c.pid}, root ${c.root})`);
      save();
      ensureRunning();
    }

    // Buckets and the events stream.
    // The connection stays open for the apps table; closed before nats-server stops.
    const bus = await connectBus({
      servers: natsUrl,
      name: "eve-tasks-launcher",
      logger,
      credentials: natsUsers.launcher,
    });
    lifecycle.onShutdown("close the bus connection", () => bus.close());
    if (config.EVE_HUB_LEAF_URL !== undefined) {
      // Device mode: desired state comes from the hub. The mirror is made here, while the hub
      // may be unreachable; it catches up once the leaf connects (the hub provisions
      // controller-<node> and its sources of this device: docs/fleet.md).
      const outcome = await ensureControllerMirror(bus, config.EVE_NODE);
      say(
        `controller: ${outcome === "exists" ? "the" : outcome === "created" ? "created the" : "replaced the empty bucket with the"} mirror of the hub's controller-${config.EVE_NODE}`,
      );
    }
    await ensureBuckets(bus);
    await ensureEventsStream(bus);
    say("buckets and the TASK_EVENTS stream are ready");
    ensureRunning();

    // The built-in runtimes, in the background: the workers (and containers) need not wait.
    const tools = args.noToolsImage
      ? Promise.resolve(
          say(
            "runtimes: not built (--no-tools-image): VMs, JAR apps and other architectures will not run here",
          ),
        )
      : provideRuntimes({
          bus,
          dataDir,
          cacheDir: config.EVE_RUNTIME_IMAGE_CACHE,
          say,
          warn: (line, err) => {
            logger.warn({ err }, line);
            view.note(`warning: ${line}`);
          },
          signal: lifecycle.signal,
          device: config.EVE_HUB_LEAF_URL !== undefined,
          node: config.EVE_NODE,
        });
    lifecycle.onShutdown("finish the built-in runtime images", () => tools);

    // Workers.
    const discovery = await discoverWorkers(args.servicesDir);
    const workerEnv: NodeJS.ProcessEnv = {
      ...opts.env,
      GLIBC_TUNABLES: withMallocTunables(opts.env.GLIBC_TUNABLES),
      NATS_URL: natsUrl,
      CONTAINERD_ADDRESS: containerdAddress,
      EVE_DATA_DIR: dataDir,
      EVE_RUN_DIR: runDir,
      EVE_NODE: config.EVE_NODE,
      // Each worker process (and replica) takes any free port for its metrics and announces it
      // in its $SRV.INFO and liveness file; a fixed port would clash between workers. `off` stays.
      EVE_METRICS_PORT: opts.env.EVE_METRICS_PORT === "off" ? "off" : "0",
    };
    const heartbeatOf = (s: WorkerSnapshot): HeartbeatReading | undefined =>
      s.pid === null ? undefined : heartbeats.find((h) => h.pid === s.pid);
    // Its age now, not when the file was last read.
    const heartbeatAgeMs = (s: WorkerSnapshot): number | undefined => {
      const hb = heartbeatOf(s);
      return hb === undefined ? undefined : Math.max(0, Date.now() - Date.parse(hb.at));
    };
    const plan = planWorkerProcesses(discovery.workers, args.replicas);
    if (plan.unknown.length > 0) {
      throw new LauncherError(
        `--replicas names ${plan.unknown.join(", ")}, not among the workers found (${discovery.workers.map((w) => w.name).join(", ")})`,
      );
    }
    for (const entry of plan.processes) {
      const env = workerNatsEnv(natsUsers, entry.worker, workerEnv);
      if (natsUsers.credentialsDir !== undefined && env.NATS_USER === undefined) {
        say(`worker ${entry.name} has no NATS user of its own: it connects without credentials`);
      }
      supervisors.push(
        new WorkerSupervisor({
          entry,
          logFile: path.join(logDir, `${entry.name}.log`),
          env,
          logger: logger.child({ child: entry.name }),
          graceMs: args.workerGraceMs,
          onChange: (s, event) => {
            save();
            if (event !== undefined) logger.info({ worker: s.name, pid: s.pid, state: s.state }, event);
            if (view.live) {
              if (event !== undefined) view.note(event);
            } else {
              const line = formatWorkerLine(s, heartbeatAgeMs(s), Date.now());
              view.note(event === undefined ? line : `${line}  (${event})`);
            }
          },
        }),
      );
    }
    lifecycle.onShutdown("stop workers", async () => {
      await Promise.all(supervisors.map((s) => s.stop()));
    });
    // Tasks: before the workers stop (steps run in reverse), the task-executor stops them, each
    // the way any stop of it goes (a VM through QMP), and keeps their containers: the next start
    // runs them again. Only the executor talks to containerd.
    lifecycle.onShutdown("tasks", async () => {
      if (args.keepTasks) {
        say("--keep-tasks: tasks are left running, kept alive by containerd's shims");
        return;
      }
      try {
        const r = await request(
          bus,
          stopTasksSubject(config.EVE_NODE),
          { request: StopTasksRequestSchema, reply: StopTasksReplySchema },
          {},
          TASK_STOP_TIMEOUT_MS,
        );
        if (!r.accepted) throw new Error(r.error ?? "refused");
        for (const t of r.stopped) {
          say(
            `task ${t.uuid} (pid ${t.taskId}) stopped by ${t.stoppedBy ?? "nothing: deleted after SIGKILL"}`,
          );
        }
        for (const t of r.failed) say(`warning: task ${t.uuid} (pid ${t.taskId}) ${t.error}`);
        if (r.stopped.length)
          say(`${r.stopped.length} task(s) stopped; they start again with the next npm start`);
      } catch (err) {
        say(`warning: tasks left running (the task-executor did not stop them: ${message(err)})`);
      }
    });
    if (discovery.missing.length > 0) {
      say(`not built yet (no dist/main.js in ${args.servicesDir}): ${discovery.missing.join(", ")}`);
    }
    for (const s of supervisors) s.start();
    phase = "running";
    save();

    // The live status page (127.0.0.1:EVE_UI_PORT), read as the read-only viewer.
    const ui = await startStatusPage({
      configuredPort: config.EVE_UI_PORT,
      natsUrl,
      natsUsers,
      node: config.EVE_NODE,
      logger,
      localWorkers: () =>
        localWorkersOf(
          supervisors.map((w) => w.snapshot()),
          heartbeatAgeMs,
        ),
    });
    if ("page" in ui) {
      lifecycle.onShutdown("stop the status page", () => ui.page.close());
      for (const n of ui.notes) say(`note: ${n}`);
    } else say(ui.reason);

    view.print(
      buildBanner({
        launcherPid: process.pid,
        natsUrl,
        natsPid: nats?.pid ?? null,
        natsLog: nats?.logFile ?? null,
        natsCredentialsDir: natsUsers.credentialsDir ?? null,
        containerdAddress,
        containerdPid: containerd?.pid ?? null,
        containerdLog: containerd?.logFile ?? null,
        dataDir,
        runDir,
        logDir,
        stateFile,
        servicesDir: args.servicesDir,
        workers: plan.processes.map((w) => w.name),
        missingWorkers: discovery.missing,
        keepTasks: args.keepTasks,
        statusPageUrl: "page" in ui ? ui.page.url : null,
      }),
    );

    // Apps: the `eve-tasks get` table under the workers on a TTY; a line per change otherwise.
    const apps = await AppsView.open(bus, (line) => {
      if (!view.live) view.note(line);
    });
    lifecycle.onShutdown("stop following apps", () => apps.close());

    // Status: redrawn every second on a TTY; otherwise a line when a heartbeat goes stale or comes
    // back, looked at every few seconds.
    const stale = new Map<string, boolean>();
    const natsLine = nats
      ? `nats-server   pid ${nats.pid}  ${nats.url}`
      : `nats          ${redactUrl(natsUrl)}`;
    const ctrdLine = containerd
      ? `containerd    pid ${containerd.pid}  ${containerd.address}`
      : `containerd    ${containerdAddress}`;
    const refresh = async (): Promise<void> => {
      heartbeats = await readHeartbeats(healthDir(runDir)).catch(() => heartbeats);
      const now = Date.now();
      const snaps = supervisors.map((s) => s.snapshot());
      if (view.live) {
        view.setBlock([
          "",
          natsLine,
          ctrdLine,
          "",
          workerHeader(),
          ...snaps.map((s) => formatWorkerLine(s, heartbeatOf(s)?.ageMs, now)),
          "",
          ...apps.lines(new Date(now)),
        ]);
        return;
      }
      for (const s of snaps) {
        const hb = heartbeatOf(s);
        const isStale = s.state === "running" && hb !== undefined && hb.ageMs > STALE_HEARTBEAT_MS;
        if (isStale !== (stale.get(s.name) ?? false)) {
          stale.set(s.name, isStale);
          view.note(
            `${s.name} (pid ${String(s.pid)}): heartbeat ${isStale ? formatHeartbeat(hb?.ageMs) : "back"}`,
          );
        }
      }
    };
    const ticker = setInterval(
      () => void refresh(),
      view.live ? STATUS_INTERVAL_MS : HEARTBEAT_CHECK_INTERVAL_MS,
    );
    lifecycle.signal.addEventListener("abort", () => clearInterval(ticker));
    await refresh();
  } catch (err) {
    if (err instanceof StartAborted || lifecycle.state !== "running") {
      logger.info({ err: message(err) }, "start interrupted by the stop");
    } else {
      fail(`cannot start: ${message(err)}`, err);
    }
  }
  await lifecycle.stopped;
}

export { LauncherError };
