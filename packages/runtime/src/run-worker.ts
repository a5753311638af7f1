/**
 * `runWorker`: the one way a worker process starts. It wires config → logger → shutdown →
 * metrics endpoint → heartbeat → NATS (the bus) → the worker's NATS service, then calls the
 * worker's `main`, and keeps the process up until a signal (or the worker itself) stops it.
 */
import path from "node:path";
import { connectBus } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import type { z } from "zod";
import { ConfigError, loadConfig, natsConnection } from "./config.js";
import type { BaseWorkerConfig, Env } from "./config.js";
import { createLogger, redactUrl } from "./logging.js";
import type { Logger } from "./logging.js";
import { startHeartbeat } from "./health.js";
import type { HeartbeatHandle } from "./health.js";
import { createMetricsRegistry, startMetricsServer } from "./metrics.js";
import type { MetricsServer, Registry } from "./metrics.js";
import { startWorkerService } from "./service.js";
import type { Service } from "./service.js";
import { installShutdown } from "./shutdown.js";
import type { ProcessLifecycle } from "./shutdown.js";

/** Exit code of a worker whose configuration is invalid (the launcher does not expect it to heal by itself). */
export const CONFIG_ERROR_EXIT_CODE = 2;

/** The liveness dir of workers: `<EVE_RUN_DIR>/health`. */
export const healthDir = (runDir: string): string => path.join(runDir, "health");

/** What a worker's `main` receives. */
export interface WorkerContext<C> {
  /** The frozen, validated config. */
  readonly config: Readonly<C>;
  /** The worker's root logger (`worker`, `node`, `pid` on every line). */
  readonly logger: Logger;
  /**
   * Register cleanup steps here; `lifecycle.signal` aborts when the stop begins. A worker that
   * must stop by itself calls `lifecycle.exitAfterShutdown(reason, code)`: the process then exits
   * (a `shutdown` alone would leave it running with its work stopped).
   */
  readonly lifecycle: ProcessLifecycle;
  /** The liveness file, or undefined when the run dir is not writable (logged). */
  readonly heartbeat: HeartbeatHandle | undefined;
  /** The connection to NATS (drained at the stop, after main's own steps). */
  readonly bus: Bus;
  /** The worker's Prometheus registry: its metrics are created on it (`registers: [metrics]`). */
  readonly metrics: Registry;
  /** The worker's NATS service `eve-tasks-<name>`: request/reply subjects are its endpoints. */
  readonly service: Service;
}

/** Options of {@link runWorker}. */
export interface RunWorkerOptions<S extends z.ZodObject & z.ZodType<BaseWorkerConfig>> {
  /**
   * The worker's name (`task-executor`), used in logs, the liveness file, its NATS connection's
   * name and its NATS service (`eve-tasks-<name>`).
   */
  name: string;
  /** Its env schema: `z.object({ ...baseWorkerEnv, ... })`. */
  envSchema: S;
  /**
   * Sets the worker up (connect, subscribe, register cleanup steps) and returns; the process then
   * runs until stopped. A throw stops the worker with exit code 1.
   */
  main: (ctx: WorkerContext<z.output<S>>) => Promise<void>;
  /** How long cleanup may take after a signal; default 10 000 ms. */
  graceMs?: number;
  /** Default 5 000 ms. */
  heartbeatIntervalMs?: number;
  /** For tests: the environment (default `process.env`). */
  env?: Env;
  /** For tests: how to exit (default `process.exit`). */
  exit?: (code: number) => void;
}

/**
 * Runs a worker process. Resolves when it has stopped (the exit follows at once).
 * An invalid configuration prints one clear line to stderr and exits {@link CONFIG_ERROR_EXIT_CODE}.
 */
export async function runWorker<S extends z.ZodObject & z.ZodType<BaseWorkerConfig>>(
  opts: RunWorkerOptions<S>,
): Promise<void> {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let config: Readonly<z.output<S>>;
  try {
    config = loadConfig(opts.envSchema, opts.env);
    // NATS_USER and its password come together: a missing half is a configuration error too.
    natsConnection(config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${opts.name}: ${err.message}\n`);
    exit(CONFIG_ERROR_EXIT_CODE);
    return;
  }
  const base: BaseWorkerConfig = config;
  const logger = createLogger({ worker: opts.name, node: base.EVE_NODE, level: base.LOG_LEVEL });
  const lifecycle = installShutdown({ logger, graceMs: opts.graceMs, exit });

  // Something must hold the event loop open between main() returning and the stop.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  void lifecycle.stopped.then(() => clearInterval(keepAlive));

  const onCrash = (err: unknown, kind: string): void => {
    logger.fatal({ err }, `${kind}: stopping`);
    void lifecycle.exitAfterShutdown(kind, 1);
  };
  process.on("uncaughtException", (err) => onCrash(err, "uncaught exception"));
  process.on("unhandledRejection", (err) => onCrash(err, "unhandled rejection"));

  // The metrics endpoint first, so the liveness file and the service can say where it is. A
  // port that cannot be bound costs the endpoint, never the worker.
  const metrics = createMetricsRegistry({
    worker: opts.name,
    node: base.EVE_NODE,
    processMetrics: base.EVE_METRICS_PORT !== "off",
  });
  let metricsServer: MetricsServer | undefined;
  if (base.EVE_METRICS_PORT !== "off") {
    try {
      metricsServer = await startMetricsServer({ registry: metrics, port: base.EVE_METRICS_PORT });
    } catch (err) {
      logger.error({ err, port: base.EVE_METRICS_PORT }, "cannot serve metrics; running without");
    }
  }

  let heartbeat: HeartbeatHandle | undefined;
  try {
    heartbeat = await startHeartbeat({
      dir: healthDir(base.EVE_RUN_DIR),
      worker: opts.name,
      intervalMs: opts.heartbeatIntervalMs,
      metrics: metricsServer?.url,
    });
    const hb = heartbeat;
    lifecycle.onShutdown("remove liveness file", () => hb.stop());
    lifecycle.signal.addEventListener("abort", () => void hb.setState("stopping").catch(() => undefined));
  } catch (err) {
    logger.warn({ err, dir: healthDir(base.EVE_RUN_DIR) }, "cannot write liveness file; running without");
  }
  if (metricsServer) {
    const ms = metricsServer;
    lifecycle.onShutdown("close the metrics endpoint", () => ms.close());
  }

  logger.info(
    {
      natsUrl: redactUrl(base.NATS_URL),
      natsUser: base.NATS_USER ?? null,
      dataDir: base.EVE_DATA_DIR,
      runDir: base.EVE_RUN_DIR,
      heartbeat: heartbeat?.file,
      metrics: metricsServer?.url ?? null,
    },
    "worker starting",
  );
  try {
    // Steps run last-registered first: main's own (stop the work), then the service stops
    // answering, then NATS drains.
    const bus = await connectBus({ ...natsConnection(config), name: opts.name, logger, metrics });
    lifecycle.onShutdown("drain NATS", () => bus.drain());
    const service = await startWorkerService(bus.nc, {
      worker: opts.name,
      node: base.EVE_NODE,
      metricsUrl: metricsServer?.url ?? "",
    });
    lifecycle.onShutdown("stop the NATS service", async () => {
      await service.stop();
    });
    logger.info(
      { event: "service-started", service: service.info().name, id: service.info().id },
      "answering $SRV.PING, $SRV.INFO and $SRV.STATS",
    );
    await opts.main({ config, logger, lifecycle, heartbeat, bus, metrics, service });
    if (lifecycle.state === "running") {
      await heartbeat?.setState("running");
      logger.info({ event: "running" }, "worker running");
    }
  } catch (err) {
    logger.error({ err }, "worker failed to start");
    // An error may say how the process ends (e.g. 2: a configuration that a restart cannot fix).
    const code = (err as { exitCode?: unknown } | null)?.exitCode;
    void lifecycle.exitAfterShutdown("main failed", typeof code === "number" ? code : 1);
  }
  await lifecycle.stopped;
}
