/**
 * The spec-builder's wiring: a share of the durable `spec-builder` work queue over
 * AppInstanceConfig, each change built with {@link buildTaskConfig} (an image root with its
 * ImageSeed, read first) and written to TaskConfig with compare-and-set ordered by
 * configRevision. A subscription to the ImageSeeds re-builds the apps of a seed that changed.
 * Replicas run this in separate processes.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Publication, isStreamNotFound, shareWork, streamOf, subscribe } from "@eve-tasks/bus";
import type { Bus, SourceState, Subscription, WorkContext, WorkQueue } from "@eve-tasks/bus";
import { forApp } from "@eve-tasks/runtime";
import type { Logger, Registry } from "@eve-tasks/runtime";
import {
  EMULATORS_RUNTIME,
  SPEC_BUILDER_DURABLE,
  HypervisorSeedSchema,
  ImageSeedSchema,
  hypervisorSeedKey,
  imageSeedKey,
  isRuntimeApp,
  messageTable,
} from "@eve-tasks/schemas";
import type { AppInstanceConfig, Seed, AppInstanceConfigSchema } from "@eve-tasks/schemas";
import { buildTaskConfig } from "./build-task-config.js";
import {
  RawConfigSchema,
  giveUp,
  identityOf,
  rejectInvalidConfig,
  sameFailure,
} from "./failed-task-config.js";
import type { RawIdentity } from "./failed-task-config.js";
import { countBuild, specBuilderMetrics } from "./metrics.js";
import type { BuildOutcome } from "./outcome.js";

/** The durable consumer every spec-builder replica shares (named in @eve-tasks/schemas). */
export { SPEC_BUILDER_DURABLE };

/** Where the spec-builder reads: the controller's AppInstanceConfig table. */
export const APP_INSTANCE_CONFIG_TABLE = messageTable("AppInstanceConfig");

/** Where the spec-builder writes: its own TaskConfig table. */
export const TASK_CONFIG_TABLE = messageTable("TaskConfig");

/** Where the spec-builder reads image roots' seeds: the hypervisor-seed-fetcher's ImageSeed table. */
export const IMAGE_SEED_TABLE = {
  agent: "hypervisor-seed-fetcher",
  type: "ImageSeed",
  schema: ImageSeedSchema,
} as const;

/** Where the spec-builder reads runtimes' seeds: the hypervisor-seed-fetcher's HypervisorSeed table. */
export const HYPERVISOR_SEED_TABLE = {
  agent: "hypervisor-seed-fetcher",
  type: "HypervisorSeed",
  schema: HypervisorSeedSchema,
} as const;

/** Where runtimes are named: the controller's HypervisorToolsConfig table. */
export const HYPERVISOR_TOOLS_CONFIG_TABLE = messageTable("HypervisorToolsConfig");

/** A seed an app's build depends on: an image root's ImageSeed or a runtime's HypervisorSeed. */
export interface SeedDependency {
  type: "ImageSeed" | "HypervisorSeed";
  /** The seed's key in its table. */
  key: string;
  /** What the build reads it as. */
  role: "image" | "runtime" | "emulators";
}

/**
 * The seeds an app's build depends on: a runtime app's or a VM's runtime seed; a native app's
 * image seed (for its arch) and, when it names its arch, the node's `emulators` seed.
 */
export function seedDependenciesOf(config: AppInstanceConfig): SeedDependency[] {
  if (isRuntimeApp(config)) {
    return [
      { type: "HypervisorSeed", key: hypervisorSeedKey(config.node, config.runtime.tools), role: "runtime" },
    ];
  }
  if (config.virtualization === "HVM") {
    return [
      {
        type: "HypervisorSeed",
        key: hypervisorSeedKey(config.node, config.vm.hypervisorTools),
        role: "runtime",
      },
    ];
  }
  const deps: SeedDependency[] = [];
  if (config.root.image) {
    deps.push({
      type: "ImageSeed",
      key: imageSeedKey(config.node, config.root.image.ref, config.arch),
      role: "image",
    });
  }
  if (config.arch !== undefined) {
    deps.push({
      type: "HypervisorSeed",
      key: hypervisorSeedKey(config.node, EMULATORS_RUNTIME),
      role: "emulators",
    });
  }
  return deps;
}

/** The name of the runtime a runtime app or a VM names. */
function runtimeNameOf(config: AppInstanceConfig): string | undefined {
  if (isRuntimeApp(config)) return config.runtime.tools;
  if (config.virtualization === "HVM") return config.vm.hypervisorTools;
  return undefined;
}

/** One string per seed, for the set of changed seeds: `<type>.<key>`. */
function seedId(type: SeedDependency["type"], key: string): string {
  return `${type}.${key}`;
}

/**
 * What of a seed a build depends on: a change of anything else (a PULLING seed's progress, an
 * error's time) re-builds nothing.
 */
export function seedSignature(seed: Seed): string {
  return JSON.stringify([seed.state, seed.digest, seed.rootfsPath, seed.error?.message ?? null]);
}

/**
 * Changes one replica builds at once. A build is ~0.2 ms of CPU between two NATS round trips (the
 * latest value read, the compare-and-set write), so with the bus's 8 a replica waited on the
 * network most of the time (219 configs/s at a third of a core, test/bench/README.md); 64 keeps
 * its core busy. One key is still built by one replica at a time, in order.
 */
export const SPEC_BUILDER_CONCURRENCY = 64;

/** A running spec-builder. */
export interface SpecBuilder {
  /** This replica's share of the work queue. */
  readonly queue: WorkQueue<typeof AppInstanceConfigSchema>;
  /** Stops following seeds and the queue; in-flight builds finish. */
  stop(): Promise<void>;
}

/** Options of {@link startSpecBuilder}. */
export interface SpecBuilderOptions {
  bus: Bus;
  /** The worker's logger; each line gets the app's `uuid`. */
  logger: Logger;
  /** Changes handled at once by this replica (default {@link SPEC_BUILDER_CONCURRENCY}). */
  concurrency?: number;
  /** The clock, for the time of FAILED errors (tests). */
  now?: () => Date;
  /** While the seed bucket does not exist, how often to look for it again (default 3000 ms). */
  seedBucketRetryMs?: number;
  /** The worker's Prometheus registry (runWorker's); none: not exported. */
  metrics?: Registry;
}

/**
 * Joins the shared work queue, starts building and follows the seeds (in the background
 * until their bucket exists). Resolves with the running builder: stop it before draining the bus.
 */
export async function startSpecBuilder(options: SpecBuilderOptions): Promise<SpecBuilder> {
  const { bus, logger } = options;
  const now = options.now ?? (() => new Date());
  const metrics = specBuilderMetrics(options.metrics);
  const out = new Publication(bus, TASK_CONFIG_TABLE);
  const imageSeeds = new Publication(bus, IMAGE_SEED_TABLE);
  const toolsSeeds = new Publication(bus, HYPERVISOR_SEED_TABLE);
  const toolsConfigs = new Publication(bus, HYPERVISOR_TOOLS_CONFIG_TABLE);
  const apps = new Publication(bus, APP_INSTANCE_CONFIG_TABLE);

  /** `read()`, or undefined while its bucket does not exist. */
  const orNone = async <T>(read: () => Promise<T | undefined>): Promise<T | undefined> => {
    try {
      return await read();
    } catch (err) {
      if (isStreamNotFound(err)) return undefined;
      throw err;
    }
  };
  /** What an app's build reads besides its config: its seeds (see {@link seedDependenciesOf}). */
  const dependenciesOf = async (
    config: AppInstanceConfig,
  ): Promise<{ imageSeed?: Seed; toolsSeed?: Seed; toolsConfigured?: boolean; emulatorsSeed?: Seed }> => {
    const out: { imageSeed?: Seed; toolsSeed?: Seed; toolsConfigured?: boolean; emulatorsSeed?: Seed } = {};
    for (const dep of seedDependenciesOf(config)) {
      if (dep.role === "image") out.imageSeed = await orNone(() => imageSeeds.get(dep.key));
      else if (dep.role === "emulators") out.emulatorsSeed = await orNone(() => toolsSeeds.get(dep.key));
      else {
        out.toolsSeed = await orNone(() => toolsSeeds.get(dep.key));
        const name = runtimeNameOf(config);
        if (out.toolsSeed === undefined && name !== undefined) {
          out.toolsConfigured = (await orNone(() => toolsConfigs.get(name))) !== undefined;
        }
      }
    }
    return out;
  };
  // Reads an invalid config's raw JSON, for its node and version (any JSON object passes).
  const raw = new Publication(bus, { ...APP_INSTANCE_CONFIG_TABLE, schema: RawConfigSchema });

  const rawIdentity = async (key: string): Promise<RawIdentity> => identityOf(await raw.get(key));

  /**
   * Writes an outcome for app `key` with compare-and-set and logs one line for it. The app's
   * logger is made after the write, off the path to the TaskConfig: a pino child (bindings
   * serialised, redaction applied) took 0.05–0.1 ms of an idle worker in the profiles.
   */
  const write = async (
    outcome: BuildOutcome,
    key: string,
    fields: Record<string, unknown>,
  ): Promise<void> => {
    const log = (): Logger => forApp(logger, key);
    countBuild(metrics, outcome);
    if (outcome.status === "UNREPORTABLE") {
      log().error({ event: "config-unreportable", ...fields, error: outcome.message }, outcome.message);
      return;
    }
    const tc = outcome.taskConfig;
    let result: "written" | "unchanged" | "stale";
    if (outcome.status === "FAILED") {
      // The same error for the same revision is already there: keep its time.
      const current = await out.get(tc.uuid);
      result =
        current?.status === "FAILED" && sameFailure(current, outcome.taskConfig)
          ? "unchanged"
          : await out.putIfNewer(tc.uuid, tc);
      log().warn(
        {
          event: "config-rejected",
          ...fields,
          configRevision: tc.configRevision,
          status: "FAILED",
          reason: outcome.reason,
          result,
          error: outcome.taskConfig.error.message,
        },
        `TaskConfig FAILED (${outcome.reason}): ${outcome.taskConfig.error.message.split("\n").join(" ")}`,
      );
      return;
    }
    result = await out.putIfNewer(tc.uuid, tc, outcome.status === "READY" ? outcome.encoded : undefined);
    if (outcome.status === "PENDING") {
      const pending = outcome.taskConfig;
      log().info(
        {
          event: "spec-pending",
          ...fields,
          configRevision: pending.configRevision,
          status: "PENDING",
          waitingFor: pending.waitingFor,
          result,
        },
        `TaskConfig PENDING (${result}): ${pending.message}`,
      );
      return;
    }
    log().info(
      {
        event: "spec-built",
        ...fields,
        configRevision: tc.configRevision,
        status: "READY",
        result,
        specSha256: outcome.taskConfig.specSha256,
      },
      `TaskConfig READY (${result})`,
    );
  };

  const handle = async (state: SourceState<AppInstanceConfig>, ctx: WorkContext): Promise<void> => {
    const fields = { deliveryCount: ctx.deliveryCount };
    const build = { key: state.key, revision: state.revision, time: now() };
    switch (state.kind) {
      case "deleted": {
        const result = await out.deleteIfNotNewer(state.key, state.revision);
        forApp(logger, state.key).info(
          { event: "task-config-deleted", ...fields, configRevision: state.revision, result },
          `AppInstanceConfig deleted: TaskConfig ${result}`,
        );
        return;
      }
      case "invalid":
        await write(rejectInvalidConfig(state, await rawIdentity(state.key), build), state.key, fields);
        return;
      case "value": {
        const deps = await dependenciesOf(state.value);
        await write(buildTaskConfig(state.value, { ...build, ...deps }), state.key, fields);
        return;
      }
    }
  };

  const queue = await shareWork(bus, {
    source: APP_INSTANCE_CONFIG_TABLE,
    durable: SPEC_BUILDER_DURABLE,
    concurrency: options.concurrency ?? SPEC_BUILDER_CONCURRENCY,
    handle,
    async onGiveUp(state, err) {
      if (state.deleted) {
        // Deleting its TaskConfig kept failing: one last try, and never a FAILED TaskConfig,
        // which would bring the deleted app back as an error.
        const result = await out.deleteIfNotNewer(state.key, state.revision);
        forApp(logger, state.key).error(
          { event: "task-config-deleted", gaveUp: true, configRevision: state.revision, result, err },
          `AppInstanceConfig deleted: TaskConfig ${result} after repeated failures`,
        );
        return;
      }
      const build = { key: state.key, revision: state.revision, time: now() };
      await write(giveUp(err, await rawIdentity(state.key), build), state.key, { gaveUp: true });
    },
  });

  // ---- re-building when a seed changes ----------------------------------------------------
  // Every replica follows every seed and re-builds the apps of a changed one in its own share
  // of the queue: duplicates across replicas are harmless (level-triggered, compare-and-set).
  const stopping = new AbortController();
  const changedSeeds = new Set<string>();
  let flushTimer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();
  const seedSubs: Subscription<typeof ImageSeedSchema>[] = [];

  /** Re-builds, in this replica, every app whose image seed is one of the changed ones. */
  const flush = async (): Promise<void> => {
    const keys = new Set(changedSeeds);
    changedSeeds.clear();
    if (keys.size === 0 || stopping.signal.aborted) return;
    let configs: Map<string, AppInstanceConfig>;
    try {
      configs = await apps.getAll();
    } catch (err) {
      logger.warn({ event: "seed-rebuild-failed", err }, "reading AppInstanceConfigs failed; will retry");
      for (const k of keys) changedSeeds.add(k);
      schedule(3000);
      return;
    }
    const uuids = [...configs].flatMap(([uuid, c]) =>
      seedDependenciesOf(c).some((dep) => keys.has(seedId(dep.type, dep.key))) ? [uuid] : [],
    );
    if (uuids.length === 0) return;
    logger.debug(
      { event: "seed-changed", seeds: [...keys], apps: uuids },
      `seed changed: re-building ${uuids.length} app(s)`,
    );
    // Not awaited: the queue runs them in its own per-key order and waits for them at stop.
    for (const uuid of uuids) void queue.redo(uuid);
  };

  const schedule = (delayMs = 50): void => {
    if (flushTimer !== undefined || stopping.signal.aborted) return;
    flushTimer = setTimeout(() => {
      flushTimer = undefined;
      flushing = flushing.then(flush);
    }, delayMs);
  };
  const seedChanged = (key: string): void => {
    changedSeeds.add(key);
    schedule();
  };

  const followSeeds = async (): Promise<void> => {
    let said = false;
    while (!stopping.signal.aborted) {
      try {
        // Throws (stream not found) until the hypervisor-seed-fetcher has made its bucket.
        await bus.jsm.streams.info(streamOf(IMAGE_SEED_TABLE.agent));
        for (const table of [IMAGE_SEED_TABLE, HYPERVISOR_SEED_TABLE]) {
          const id = (key: string): string => seedId(table.type, key);
          const sub = await subscribe(bus, {
            ...table,
            onCreate: (key) => seedChanged(id(key)),
            onModify: (key, value, old) => {
              if (seedSignature(value) !== seedSignature(old)) seedChanged(id(key));
            },
            onDelete: (key) => seedChanged(id(key)),
          });
          seedSubs.push(sub);
          if (stopping.signal.aborted) break;
        }
        if (stopping.signal.aborted) {
          await Promise.all(seedSubs.map((sub) => sub.close()));
          return;
        }
        if (said) logger.info({ event: "following-seeds" }, "following image seeds");
        return;
      } catch (err) {
        if (!said) {
          logger.info(
            { event: "waiting-for-seeds", err: isStreamNotFound(err) ? undefined : err },
            `cannot follow image seeds yet (bucket ${IMAGE_SEED_TABLE.agent}): retrying in the background`,
          );
          said = true;
        }
        await sleep(options.seedBucketRetryMs ?? 3000, undefined, { signal: stopping.signal }).catch(
          () => undefined,
        );
      }
    }
  };
  const following = followSeeds();

  return {
    queue,
    async stop() {
      stopping.abort();
      if (flushTimer !== undefined) clearTimeout(flushTimer);
      flushTimer = undefined;
      await following;
      await Promise.all(seedSubs.map((sub) => sub.close()));
      await flushing;
      await queue.stop();
    },
  };
}
