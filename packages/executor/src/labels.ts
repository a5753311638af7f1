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
} as const;

/** Why the last task of a container is not running: it exited by itself, or was stopped on request. */
export type Ended = "exited" | "stopped" | "";

/** The labels a container built from `config` carries. */
export function labelsFor(config: ReadyTaskConfig, ended: Ended = ""): Record<string, string> {
  return {
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
  };
}
