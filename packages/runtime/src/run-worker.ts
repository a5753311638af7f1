/**
 * `runWorker`: the one way a worker process starts. It wires config → logger → shutdown →
 * heartbeat, then calls the worker's `main`, and keeps the process up until a signal (or the
 * worker itself) stops it.
 */
import path from "node:path";
import type { z } from "zod";
import { ConfigError, loadConfig, natsConnection } from "./config.js";
import type { BaseWorkerConfig, Env } from "./config.js";
import { createLogger, redactUrl } from "./logging.js";
import type { Logger } from "./logging.js";
import { startHeartbeat } from "./health.js";
import type { HeartbeatHandle } from "./health.js";
import { installShutdown } from "./shutdown.js";
import type { Lifecycle } from "./shutdown.js";

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
  /** Register cleanup steps here; `lifecycle.signal` aborts when the stop begins. */
  readonly lifecycle: Lifecycle;
  /** The liveness file, or undefined when the run dir is not writable (logged). */
  readonly heartbeat: HeartbeatHandle | undefined;
}

/** Options of {@link runWorker}. */
export interface RunWorkerOptions<S extends z.ZodObject & z.ZodType<BaseWorkerConfig>> {
  /** The worker's name (`task-executor`), used in logs and the liveness file. */
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

  let heartbeat: HeartbeatHandle | undefined;
  try {
    heartbeat = await startHeartbeat({
      dir: healthDir(base.EVE_RUN_DIR),
      worker: opts.name,
      intervalMs: opts.heartbeatIntervalMs,
    });
    const hb = heartbeat;
    lifecycle.onShutdown("remove liveness file", () => hb.stop());
    lifecycle.signal.addEventListener("abort", () => void hb.setState("stopping").catch(() => undefined));
  } catch (err) {
    logger.warn({ err, dir: healthDir(base.EVE_RUN_DIR) }, "cannot write liveness file; running without");
  }

  logger.info(
    {
      natsUrl: redactUrl(base.NATS_URL),
      natsUser: base.NATS_USER ?? null,
      dataDir: base.EVE_DATA_DIR,
      runDir: base.EVE_RUN_DIR,
      heartbeat: heartbeat?.file,
    },
    "worker starting",
  );
  try {
    await opts.main({ config, logger, lifecycle, heartbeat });
    if (lifecycle.state === "running") {
      await heartbeat?.setState("running");
      logger.info("worker running");
    }
  } catch (err) {
    logger.error({ err }, "worker failed to start");
    // An error may say how the process ends (e.g. 2: a configuration that a restart cannot fix).
    const code = (err as { exitCode?: unknown } | null)?.exitCode;
    void lifecycle.exitAfterShutdown("main failed", typeof code === "number" ? code : 1);
  }
  await lifecycle.stopped;
}
