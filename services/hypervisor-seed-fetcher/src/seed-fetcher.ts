/**
 * The seed fetcher's logic: two shared work queues over the controller's tables, per node:
 * `HypervisorToolsConfig.<name>` → `HypervisorSeed.<node>.<name>` (pulled for the node's
 * architecture: a runtime runs natively), and the image roots of this node's
 * `AppInstanceConfig`s → `ImageSeed.<node>.<sha256 of "<ref> <arch>">`, pulled for the app's
 * `arch` (the platform picked from the image index); an app that names no arch runs on the node's
 * own, and its seed is published under that key and under contract v1's `<sha256 of the ref>`,
 * which is the one a spec-builder (knowing no node) reads. Each change pulls and
 * unpacks through the {@link SeedStore} (PULLING with progress, then READY or FAILED). Failures
 * the registry may heal (down, 5xx, 429) are retried with back-off while the seed says FAILED
 * with "retrying"; others stay FAILED until the config changes. A garbage collection (debounced
 * after changes, and every minute) unpublishes seeds no config references any more and removes
 * their files once no task's overlay mount uses them either (SeedStore.gc).
 */
import { Publication, shareWork, subscribe } from "@eve-tasks/bus";
import type { Bus, SourceState, WorkContext, WorkQueue } from "@eve-tasks/bus";
import { errorText, hostArch, isRetryable } from "@eve-tasks/registry";
import type { PullProgress, SeedRecord, SeedStore } from "@eve-tasks/registry";
import type { Logger, Registry } from "@eve-tasks/runtime";
import {
  SeedSchema,
  hypervisorSeedKey,
  imageSeedKey,
  isRuntimeApp,
  seedFetcherDurables,
  seedLabelsOf,
  messageTable,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  HypervisorToolsConfig,
  Seed,
  AppInstanceConfigSchema,
  HypervisorToolsConfigSchema,
} from "@eve-tasks/schemas";
import { seedFetcherMetrics } from "./metrics.js";
import type { SeedKind } from "./metrics.js";

/** The fetcher's bucket. */
export const SEED_FETCHER_AGENT = "hypervisor-seed-fetcher";

const TOOLS_TABLE = messageTable("HypervisorToolsConfig");
/** How long a garbage collection waits for its views of the configs to be current. */
const VIEWS_CATCH_UP_MS = 30_000;
const APPS_TABLE = messageTable("AppInstanceConfig");

/** Delays before each retry of a pull that may heal (registry down, 5xx). */
export const RETRY_BACKOFF_MS: readonly number[] = [2_000, 5_000, 15_000, 30_000, 60_000];

/** Options of {@link startSeedFetcher}. */
export interface SeedFetcherOptions {
  bus: Bus;
  logger: Logger;
  /** `EVE_NODE`. */
  node: string;
  seeds: SeedStore;
  /** Seeds and blobs unused for less than this are kept (default 10 min). */
  gcGraceMs?: number;
  /** The garbage collection also runs this often, besides after changes (default 1 min). */
  gcIntervalMs?: number;
  /** Progress is published at most this often (default 500 ms). */
  progressIntervalMs?: number;
  /** Pulls at once per replica and queue (default 2). */
  concurrency?: number;
  backoffMs?: readonly number[];
  signal?: AbortSignal;
  now?: () => Date;
  /** The worker's Prometheus registry (runWorker's); none: not exported. */
  metrics?: Registry;
}

/** A running fetcher. */
export interface SeedFetcher {
  /** Runs the garbage collection now (tests; it also runs by itself). */
  collectGarbage(): Promise<void>;
  /** Stops both queues (in-flight pulls finish) and the collector. */
  stop(): Promise<void>;
}

/** The durable consumer names of `node`'s fetchers (replicas on the node share them). */
export function durableNames(node: string): { tools: string; images: string } {
  return seedFetcherDurables(node);
}

/** The image ref of an app on `node`, if its root is an image. */
function imageRefOf(app: AppInstanceConfig, node: string): string | undefined {
  if (app.node !== node || isRuntimeApp(app) || app.virtualization !== "NOHYPER") return undefined;
  return app.root.image?.ref;
}

/**
 * The ImageSeed keys of `ref` for an app of architecture `arch` (undefined: the node's own,
 * `nodeArch`): the (ref, arch) key, and for an app naming none also contract v1's key.
 */
export function imageSeedKeys(
  node: string,
  ref: string,
  arch: string | undefined,
  nodeArch: string,
): string[] {
  return arch === undefined
    ? [imageSeedKey(node, ref), imageSeedKey(node, ref, nodeArch)]
    : [imageSeedKey(node, ref, arch)];
}

/** READY for `ref` (a seed on disk may have been made for another ref of the same manifest). */
function readySeed(ref: string, record: SeedRecord): Seed {
  return {
    schemaVersion: 1,
    state: "READY",
    ref,
    digest: record.digest,
    indexDigest: record.indexDigest,
    platform: record.platform,
    rootfsPath: record.rootfsPath,
    process: record.process,
    progress: { doneBytes: record.sizeBytes, totalBytes: record.sizeBytes },
    error: null,
    labels: seedLabelsOf(record.labels),
    stopSignal: record.stopSignal === null ? null : record.stopSignal.slice(0, 32),
  };
}

function emptySeed(ref: string): Omit<Seed, "state" | "error"> {
  return {
    schemaVersion: 1,
    ref,
    digest: null,
    indexDigest: null,
    platform: null,
    rootfsPath: null,
    process: null,
    progress: null,
    labels: null,
    stopSignal: null,
  };
}

/** Joins both work queues and starts fetching. */
export async function startSeedFetcher(options: SeedFetcherOptions): Promise<SeedFetcher> {
  const { bus, logger, node, seeds } = options;
  const now = options.now ?? (() => new Date());
  const intervalMs = options.progressIntervalMs ?? 500;
  const backoffMs = options.backoffMs ?? RETRY_BACKOFF_MS;
  const hvSeeds = new Publication(bus, {
    agent: SEED_FETCHER_AGENT,
    type: "HypervisorSeed",
    schema: SeedSchema,
  });
  const imgSeeds = new Publication(bus, { agent: SEED_FETCHER_AGENT, type: "ImageSeed", schema: SeedSchema });
  // What the garbage collector keeps: the configs, followed (each decoded once, when it changes)
  // rather than read whole at every run.
  const [tools, apps] = await Promise.all([
    subscribe(bus, { ...TOOLS_TABLE, onCreate: () => undefined, onInvalid: () => undefined }),
    subscribe(bus, { ...APPS_TABLE, onCreate: () => undefined, onInvalid: () => undefined }),
  ]);
  const metrics = seedFetcherMetrics(options.metrics);

  /**
   * Pulls `ref` for `arch` as seed `keys` of `pub` (the same seed under each key), publishing
   * PULLING (progress at most every `intervalMs`), then READY or FAILED. Throws (for a retry)
   * only when the failure may heal.
   */
  const fetchSeed = async (
    pub: Publication<typeof SeedSchema>,
    keys: readonly string[],
    ref: string,
    arch: string,
    ctx: WorkContext,
  ): Promise<void> => {
    const key = keys[0] ?? "";
    const log = logger.child({ seed: `${pub.type}.${key}`, ref, arch });
    const started = Date.now();
    const kind: SeedKind = pub === hvSeeds ? "tools" : "image";
    metrics.pullsInProgress.inc({ kind });
    const finished = (outcome: "ready" | "failed" | "retrying"): void => {
      metrics.pullsInProgress.dec({ kind });
      metrics.pulls.inc({ kind, outcome });
      metrics.pullDuration.observe({ kind, outcome }, (Date.now() - started) / 1000);
    };
    const previous = await pub.get(key);
    let last = 0;
    let writes: Promise<unknown> = Promise.resolve();
    const write = (seed: Seed): Promise<unknown> => {
      writes = writes
        .then(() => Promise.all(keys.map((k) => pub.publish(k, seed))))
        .catch((err: unknown) =>
          log.warn({ event: "seed-publish-failed", err }, "publishing the seed failed"),
        );
      return writes;
    };
    const pulling = (p: PullProgress | null): Seed => ({
      ...emptySeed(ref),
      state: "PULLING",
      progress: p,
      error: null,
    });
    if (previous?.state !== "READY" || previous.ref !== ref) void write(pulling(null));
    let done = false;
    const onProgress = (p: PullProgress): void => {
      const t = Date.now();
      if (done || t - last < intervalMs) return;
      last = t;
      if (previous?.state !== "READY" || previous.ref !== ref) void write(pulling(p));
    };
    try {
      const record = await seeds.ensure(ref, {
        arch,
        onProgress,
        signal: options.signal,
        onWait: (pid) =>
          log.info({ event: "pull-waiting", holderPid: pid }, "another process is pulling this ref; waiting"),
        onPulled: (image) => metrics.fetchedBytes.inc({ kind }, image.fetchedBytes),
      });
      done = true;
      finished("ready");
      await write(readySeed(ref, record));
      log.info(
        {
          event: "seed-ready",
          digest: record.digest,
          platform: record.platform,
          sizeBytes: record.sizeBytes,
          rootfsPath: record.rootfsPath,
          durationMs: Date.now() - started,
        },
        `seed READY: ${ref}`,
      );
    } catch (err) {
      done = true;
      const retry = isRetryable(err) && !ctx.lastAttempt;
      finished(retry ? "retrying" : "failed");
      const delayMs = backoffMs[Math.min(ctx.deliveryCount - 1, backoffMs.length - 1)] ?? 60_000;
      const message = retry
        ? `${errorText(err)} (retrying in ${Math.round(delayMs / 1000)} s, attempt ${ctx.deliveryCount})`
        : errorText(err);
      if (previous?.state === "READY" && previous.ref === ref) {
        // The seed on the node is still good: keep it; the error goes to the log only.
        log.warn(
          { event: "seed-refresh-failed", err: errorText(err), retryable: retry },
          `keeping READY seed: ${message}`,
        );
        return;
      }
      await write({ ...emptySeed(ref), state: "FAILED", error: { message, time: now().toISOString() } });
      log.warn(
        { event: "seed-failed", error: message, retryable: retry, deliveryCount: ctx.deliveryCount },
        `seed FAILED: ${message}`,
      );
      if (retry) throw err;
    }
  };

  let gcTimer: NodeJS.Timeout | undefined;
  let gcRunning: Promise<void> | undefined;
  let stopped = false;
  const collectGarbage = async (): Promise<void> => {
    // As of now: a config stored before this run is in the views (the seed it made is wanted).
    // Bounded: a view that stopped following fails this run, and the next one tries again.
    let late: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all([tools.caughtUp(), apps.caughtUp()]),
        new Promise<never>((_, reject) => {
          late = setTimeout(
            () => reject(new Error(`the config views did not catch up within ${VIEWS_CATCH_UP_MS} ms`)),
            VIEWS_CATCH_UP_MS,
          );
        }),
      ]);
    } finally {
      clearTimeout(late);
    }
    const wantedHv = new Set([...tools.getAll().keys()].map((name) => hypervisorSeedKey(node, name)));
    const wantedImg = new Set<string>();
    for (const { value: app } of apps.getAll().values()) {
      const ref = imageRefOf(app, node);
      if (ref !== undefined) for (const k of imageSeedKeys(node, ref, app.arch, hostArch())) wantedImg.add(k);
    }
    const keep = new Set<string>();
    for (const [pub, wanted] of [
      [hvSeeds, wantedHv],
      [imgSeeds, wantedImg],
    ] as const) {
      for (const [key, seed] of await pub.getAll()) {
        if (!key.startsWith(`${node}.`)) continue;
        if (wanted.has(key)) {
          if (seed.digest) keep.add(seed.digest);
          continue;
        }
        await pub.unpublish(key);
        logger.info(
          { event: "seed-unpublished", seed: `${pub.type}.${key}`, ref: seed.ref },
          "seed no longer referenced",
        );
      }
    }
    const r = await seeds.gc(keep, { graceMs: options.gcGraceMs });
    logger.debug(
      { event: "gc-run", kept: [...keep], mounted: r.seedsMounted, seedsRemoved: r.seedsRemoved },
      "garbage collection ran",
    );
    if (r.seedsRemoved.length > 0 || r.blobs.removed.length > 0) {
      logger.info(
        {
          event: "gc",
          seedsRemoved: r.seedsRemoved,
          blobsRemoved: r.blobs.removed.length,
          freedBytes: r.blobs.freedBytes,
        },
        "removed unused seeds and blobs",
      );
    }
  };
  let gcPending = false;
  const scheduleGc = (delayMs = 1_000): void => {
    if (stopped) return;
    clearTimeout(gcTimer);
    gcPending = true;
    gcTimer = setTimeout(() => {
      gcPending = false;
      gcRunning = (gcRunning ?? Promise.resolve())
        .then(collectGarbage)
        .catch((err: unknown) => logger.warn({ event: "gc-failed", err }, "garbage collection failed"))
        // Periodically too: a seed a task uses is marked in use each run, so its grace counts
        // from the last time it was seen in use.
        .finally(() => {
          if (!gcPending) scheduleGc(options.gcIntervalMs ?? 60_000);
        });
    }, delayMs);
    gcTimer.unref();
  };

  const names = durableNames(node);
  const common = { maxDeliver: 1000, backoffMs, concurrency: options.concurrency ?? 2 };
  const toolsQueue: WorkQueue<typeof HypervisorToolsConfigSchema> = await shareWork(bus, {
    ...common,
    source: TOOLS_TABLE,
    durable: names.tools,
    async handle(state: SourceState<HypervisorToolsConfig>, ctx) {
      const key = hypervisorSeedKey(node, state.key);
      if (state.kind === "value") {
        await fetchSeed(hvSeeds, [key], state.value.image, hostArch(), ctx);
        return;
      }
      if (state.kind === "invalid") {
        logger.warn(
          { event: "config-invalid", key: state.key, reason: state.message },
          "invalid HypervisorToolsConfig ignored",
        );
      }
      await hvSeeds.unpublish(key);
      scheduleGc();
    },
  });
  const imagesQueue: WorkQueue<typeof AppInstanceConfigSchema> = await shareWork(bus, {
    ...common,
    source: APPS_TABLE,
    durable: names.images,
    async handle(state: SourceState<AppInstanceConfig>, ctx) {
      const ref = state.kind === "value" ? imageRefOf(state.value, node) : undefined;
      if (state.kind === "value" && ref !== undefined) {
        const arch = state.value.arch;
        const keys = imageSeedKeys(node, ref, arch, hostArch());
        await fetchSeed(imgSeeds, keys, ref, arch ?? hostArch(), ctx);
      }
      // A change may have dropped the last user of some image.
      scheduleGc(2_000);
    },
  });
  scheduleGc(3_000);

  return {
    collectGarbage: async () => {
      await gcRunning;
      await collectGarbage();
    },
    async stop() {
      stopped = true;
      clearTimeout(gcTimer);
      await Promise.all([toolsQueue.stop(), imagesQueue.stop()]);
      // Closed first: a run waiting for the views gives up at once.
      await Promise.all([tools.close(), apps.close()]);
      await gcRunning;
    },
  };
}
