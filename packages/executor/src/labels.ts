import { TASK_LABELS } from "@eve-tasks/schemas";
import type { ReadyTaskConfig } from "@eve-tasks/schemas";

/**
 * Container labels: enough to rebuild the executor's view from containerd alone after a
 * restart. Besides the design's four (uuid, version, config revision, spec hash) the
 * executor keeps the restart counter the task was started with, and whether the last
 * task ended by itself (so a restarted executor does not start again a task the
 * restart policy left stopped).
 */
export const EXECUTOR_LABELS = {
  ...TASK_LABELS,
  restartCounter: "org.lfedge.eve-tasks.restart-counter",
  ended: "org.lfedge.eve-tasks.ended",
  restartTimes: "org.lfedge.eve-tasks.restart-times",
  restartDue: "org.lfedge.eve-tasks.restart-due",
} as const;

/**
 * What the restart policy decided after the last exit: a restart due at an epoch-ms time,
 * "gave-up", or nothing pending ("").
 */
export type RestartDue = number | "gave-up" | "";

/** The restart policy's memory, kept in labels so it survives an executor restart. */
export interface RestartLabels {
  /** Epoch-ms times of the policy's restarts in its window. */
  restartTimes: readonly number[];
  restartDue: RestartDue;
}

/** Restart-policy labels with nothing recorded. */
export const NO_RESTARTS: RestartLabels = { restartTimes: [], restartDue: "" };

/** The labels for {@link RestartLabels}. */
export function restartLabels(r: RestartLabels): Record<string, string> {
  return {
    [EXECUTOR_LABELS.restartTimes]: r.restartTimes.join(","),
    [EXECUTOR_LABELS.restartDue]: String(r.restartDue),
  };
}

/** Why the last task of a container is not running: it exited by itself, or was stopped on request. */
export type Ended = "exited" | "stopped" | "";

/** The labels a container built from `config` carries. */
export function labelsFor(
  config: ReadyTaskConfig,
  ended: Ended = "",
  restarts: RestartLabels = NO_RESTARTS,
): Record<string, string> {
  return {
    ...restartLabels(restarts),
    [EXECUTOR_LABELS.uuid]: config.uuid,
    [EXECUTOR_LABELS.version]: config.version,
    [EXECUTOR_LABELS.configRevision]: String(config.configRevision),
    [EXECUTOR_LABELS.specSha256]: config.specSha256,
    [EXECUTOR_LABELS.restartCounter]: String(config.restartCounter),
    [EXECUTOR_LABELS.ended]: ended,
  };
}

/** What the labels of an existing container say. */
export interface LabelView {
  uuid: string | undefined;
  version: string | undefined;
  configRevision: number;
  specSha256: string | undefined;
  restartCounter: number;
  ended: Ended;
  restartTimes: number[];
  restartDue: RestartDue;
}

export function readLabels(labels: Readonly<Record<string, string>>): LabelView {
  const ended = labels[EXECUTOR_LABELS.ended];
  return {
    uuid: labels[EXECUTOR_LABELS.uuid],
    version: labels[EXECUTOR_LABELS.version],
    configRevision: Number(labels[EXECUTOR_LABELS.configRevision] ?? 0) || 0,
    specSha256: labels[EXECUTOR_LABELS.specSha256],
    restartCounter: Number(labels[EXECUTOR_LABELS.restartCounter] ?? 0) || 0,
    ended: ended === "exited" || ended === "stopped" ? ended : "",
    restartTimes: (labels[EXECUTOR_LABELS.restartTimes] ?? "")
      .split(",")
      .filter((t) => t !== "")
      .map(Number)
      .filter((t) => Number.isFinite(t) && t > 0),
    restartDue: parseDue(labels[EXECUTOR_LABELS.restartDue]),
  };
}

function parseDue(v: string | undefined): RestartDue {
  if (v === "gave-up") return v;
  const n = Number(v);
  return v && Number.isFinite(n) && n > 0 ? n : "";
}
