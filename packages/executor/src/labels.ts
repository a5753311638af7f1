/**
 * Container labels: enough to rebuild the executor's view from containerd alone after a restart.
 * This module is the only writer of containers (their spec and labels): {@link LabelWriter}.
 */
import { TASK_LABELS } from "@eve-tasks/schemas";
import type { ReadyTaskConfig } from "@eve-tasks/schemas";
import { isRuntimeError } from "./runtime.js";
import type { TaskRuntime } from "./runtime.js";
import { DEFAULT_STOP_SIGNAL, stopOf } from "./stop.js";
import type { StopKind } from "./stop.js";

/**
 * Besides the design's four (uuid, version, config revision, spec hash) the executor keeps the
 * restart counter the task was started with, whether the last task ended by itself or was stopped
 * on request (so a restarted executor does not start again a task the restart policy left
 * stopped), the restart policy's memory, and how the task is stopped (kind and signal).
 */
export const EXECUTOR_LABELS = {
  ...TASK_LABELS,
  restartCounter: "org.lfedge.eve-tasks.restart-counter",
  ended: "org.lfedge.eve-tasks.ended",
  restartTimes: "org.lfedge.eve-tasks.restart-times",
  restartDue: "org.lfedge.eve-tasks.restart-due",
  stop: "org.lfedge.eve-tasks.stop",
  stopSignal: "org.lfedge.eve-tasks.stop-signal",
} as const;

/**
 * The most restart times the labels keep. containerd refuses a label whose key and value exceed
 * 4096 bytes; an epoch-ms time and its comma take 14, so 200 times (2.8 KB) always fit.
 */
export const MAX_RESTART_HISTORY = 200;

/**
 * What the restart policy decided after the last exit: a restart due at an epoch-ms time,
 * "gave-up", or nothing pending ("").
 */
export type RestartDue = number | "gave-up" | "";

/** The restart policy's memory, kept in labels so it survives an executor restart. */
export interface RestartLabels {
  /** Epoch-ms times of the policy's latest restarts in its window (at most {@link MAX_RESTART_HISTORY}). */
  restartTimes: readonly number[];
  restartDue: RestartDue;
}

/** Restart-policy labels with nothing recorded. */
export const NO_RESTARTS: RestartLabels = Object.freeze({ restartTimes: [], restartDue: "" });

/** The labels for {@link RestartLabels}; only the latest {@link MAX_RESTART_HISTORY} times are kept. */
export function restartLabels(r: RestartLabels): Record<string, string> {
  return {
    [EXECUTOR_LABELS.restartTimes]: r.restartTimes.slice(-MAX_RESTART_HISTORY).join(","),
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
  const stop = stopOf(config);
  return {
    ...restartLabels(restarts),
    [EXECUTOR_LABELS.uuid]: config.uuid,
    [EXECUTOR_LABELS.version]: config.version,
    [EXECUTOR_LABELS.configRevision]: String(config.configRevision),
    [EXECUTOR_LABELS.specSha256]: config.specSha256,
    [EXECUTOR_LABELS.restartCounter]: String(config.restartCounter),
    [EXECUTOR_LABELS.ended]: ended,
    [EXECUTOR_LABELS.stop]: stop.kind,
    [EXECUTOR_LABELS.stopSignal]: stop.signal,
  };
}

/** True when `labels` already hold every one of `wanted`. */
export function hasLabels(labels: Readonly<Record<string, string>>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([k, v]) => labels[k] === v);
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
  /** How its task is stopped; undefined for a container made before the label existed. */
  stop: StopKind | undefined;
  /** The signal that stops it (SIGTERM unless its runtime declares another). */
  stopSignal: string;
}

export function readLabels(labels: Readonly<Record<string, string>>): LabelView {
  const ended = labels[EXECUTOR_LABELS.ended];
  const stop = labels[EXECUTOR_LABELS.stop];
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
    stop: stop === "qmp" || stop === "signal" ? stop : undefined,
    stopSignal: /^SIG[A-Z0-9]+$/.test(labels[EXECUTOR_LABELS.stopSignal] ?? "")
      ? labels[EXECUTOR_LABELS.stopSignal]!
      : DEFAULT_STOP_SIGNAL,
  };
}

function parseDue(v: string | undefined): RestartDue {
  if (v === "gave-up") return v;
  const n = Number(v);
  return v && Number.isFinite(n) && n > 0 ? n : "";
}

/** How the last task ended and what the restart policy keeps: the variable part of the labels. */
export interface LabelState {
  ended: Ended;
  restarts: RestartLabels;
}

/** A new container, or one whose last task ended with nothing recorded. */
export const FRESH_LABELS: LabelState = Object.freeze({ ended: "", restarts: NO_RESTARTS });

/** The only writer of containers: their spec and labels. */
export class LabelWriter {
  readonly #runtime: TaskRuntime;

  constructor(runtime: TaskRuntime) {
    this.#runtime = runtime;
  }

  /** Containers.Create with the spec and the labels of `config`. */
  create(config: ReadyTaskConfig, spec: object, state: LabelState = FRESH_LABELS): Promise<void> {
    return this.#runtime.createContainer({
      id: config.uuid,
      labels: labelsFor(config, state.ended, state.restarts),
      spec,
    });
  }

  /**
   * Containers.Update of the spec and every label: a new task on an existing container (its
   * spec is rebuilt with today's node facts at every start).
   */
  rebuild(config: ReadyTaskConfig, spec: object, state: LabelState): Promise<void> {
    return this.#runtime.updateContainer(config.uuid, {
      labels: labelsFor(config, state.ended, state.restarts),
      spec,
    });
  }

  /** Sets the labels of `config` with `state`; the spec stays. */
  relabel(config: ReadyTaskConfig, state: LabelState): Promise<void> {
    return this.#runtime.updateContainer(config.uuid, {
      labels: labelsFor(config, state.ended, state.restarts),
    });
  }

  /**
   * Records how the task of `uuid` ended and, for an end by itself, what the restart policy
   * decided. A container already gone is no error.
   */
  async recordEnd(uuid: string, ended: Exclude<Ended, "">, restarts?: RestartLabels): Promise<void> {
    try {
      await this.#runtime.updateContainer(uuid, {
        labels: { [EXECUTOR_LABELS.ended]: ended, ...(restarts ? restartLabels(restarts) : {}) },
      });
    } catch (err) {
      if (!isRuntimeError(err, "not-found")) throw err;
    }
  }
}
