/**
 * The spec-builder's wiring: a share of the durable `spec-builder` work queue over
 * AppInstanceConfig, each change built with {@link buildTaskConfig} and written to TaskConfig with
 * compare-and-set ordered by configRevision. Replicas run this in separate processes.
 */
import { Publication, shareWork } from "@eve-tasks/bus";
import type { Bus, SourceState, WorkContext, WorkQueue } from "@eve-tasks/bus";
import { forApp } from "@eve-tasks/runtime";
import type { Logger } from "@eve-tasks/runtime";
import { AppInstanceConfigSchema, TaskConfigSchema } from "@eve-tasks/schemas";
import type { AppInstanceConfig } from "@eve-tasks/schemas";
import { buildTaskConfig } from "./build-task-config.js";
import {
  RawConfigSchema,
  giveUp,
  identityOf,
  rejectInvalidConfig,
  sameFailure,
} from "./failed-task-config.js";
import type { RawIdentity } from "./failed-task-config.js";
import type { BuildOutcome } from "./outcome.js";

/** The durable consumer every spec-builder replica shares. */
export const SPEC_BUILDER_DURABLE = "spec-builder";

/** Where the spec-builder reads: the controller's AppInstanceConfig table. */
export const APP_INSTANCE_CONFIG_TABLE = {
  agent: "controller",
  type: "AppInstanceConfig",
  schema: AppInstanceConfigSchema,
} as const;

/** Where the spec-builder writes: its own TaskConfig table. */
export const TASK_CONFIG_TABLE = {
  agent: "spec-builder",
  type: "TaskConfig",
  schema: TaskConfigSchema,
} as const;

/** Options of {@link startSpecBuilder}. */
export interface SpecBuilderOptions {
  bus: Bus;
  /** The worker's logger; each line gets the app's `uuid`. */
  logger: Logger;
  /** Changes handled at once by this replica (default: the bus's, 8). */
  concurrency?: number;
  /** The clock, for the time of FAILED errors (tests). */
  now?: () => Date;
}

/**
 * Joins the shared work queue and starts building. Resolves with the running queue: stop it with
 * `queue.stop()` before draining the bus.
 */
export async function startSpecBuilder(
  options: SpecBuilderOptions,
): Promise<WorkQueue<typeof AppInstanceConfigSchema>> {
  const { bus, logger } = options;
  const now = options.now ?? (() => new Date());
  const out = new Publication(bus, TASK_CONFIG_TABLE);
  // Reads an invalid config's raw JSON, for its node and version (any JSON object passes).
  const raw = new Publication(bus, { ...APP_INSTANCE_CONFIG_TABLE, schema: RawConfigSchema });

  const rawIdentity = async (key: string): Promise<RawIdentity> => identityOf(await raw.get(key));

  /** Writes an outcome with compare-and-set and logs one line for it. */
  const write = async (
    outcome: BuildOutcome,
    log: Logger,
    fields: Record<string, unknown>,
  ): Promise<void> => {
    if (outcome.status === "UNREPORTABLE") {
      log.error({ event: "config-unreportable", ...fields, error: outcome.message }, outcome.message);
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
      log.warn(
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
    result = await out.putIfNewer(tc.uuid, tc);
    log.info(
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
    const log = forApp(logger, state.key);
    const fields = { deliveryCount: ctx.deliveryCount };
    const build = { key: state.key, revision: state.revision, time: now() };
    switch (state.kind) {
      case "deleted": {
        const result = await out.deleteIfNotNewer(state.key, state.revision);
        log.info(
          { event: "task-config-deleted", ...fields, configRevision: state.revision, result },
          `AppInstanceConfig deleted: TaskConfig ${result}`,
        );
        return;
      }
      case "invalid":
        await write(rejectInvalidConfig(state, await rawIdentity(state.key), build), log, fields);
        return;
      case "value":
        await write(buildTaskConfig(state.value, build), log, fields);
        return;
    }
  };

  return shareWork(bus, {
    source: APP_INSTANCE_CONFIG_TABLE,
    durable: SPEC_BUILDER_DURABLE,
    concurrency: options.concurrency,
    handle,
    async onGiveUp(state, err) {
      const log = forApp(logger, state.key);
      const build = { key: state.key, revision: state.revision, time: now() };
      await write(giveUp(err, await rawIdentity(state.key), build), log, { gaveUp: true });
    },
  });
}
