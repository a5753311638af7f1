/** What the executor keeps per app between reconciles. Its last status is the StatusWriter's. */
import { Backoff } from "@eve-tasks/backoff";
import type { TaskConfig } from "@eve-tasks/schemas";
import type { ExecutorTunables } from "./defaults.js";
import type { StartFailure } from "./plan.js";
import type { RuntimeExit } from "./runtime.js";
import type { StopStep } from "./stop.js";

/** A task this executor waits on. */
export interface LiveTask {
  readonly pid: number;
  /** Its pending Tasks.Wait: the exit, or undefined when the wait ended without one. */
  readonly exit: Promise<RuntimeExit | undefined>;
  /** containerd reported an OOM kill in it. */
  oomSeen: boolean;
  /**
   * Set while the executor stops it: the exit is then HALTED whatever its code, and `by` is the
   * step that ended it (for its `exited` event).
   */
  stopping: { by: StopStep | undefined } | undefined;
}

export interface AppState {
  readonly uuid: string;
  /** The latest TaskConfig for this node; undefined when deleted or for another node. */
  desired: TaskConfig | undefined;
  /** First seen after the start-up listing, not reconciled yet: it has no container. */
  fresh: boolean;
  /** Stop timeout of the last READY config, for a stop after the config is gone. */
  stopTimeoutMs: number;
  /** The task the executor waits on. */
  task: LiveTask | undefined;
  /** The last start of the app that failed (cleared by a start that succeeds). */
  startFailure: StartFailure | undefined;
  /** The boot watchdog's finding for task `pid`: stop it, to start again under TCG (plan.ts). */
  bootFallback: { readonly pid: number; readonly reason: string } | undefined;
  /** Reconciles that failed in a row, and the delay before the next try. */
  readonly retries: Backoff;
  /** The one wake-up of the app: a retry, a restart the policy scheduled, a start's back-off. */
  wake: { readonly atMs: number; readonly timer: NodeJS.Timeout } | undefined;
}

export function newAppState(uuid: string, t: ExecutorTunables): AppState {
  return {
    uuid,
    desired: undefined,
    fresh: false,
    stopTimeoutMs: t.stopTimeoutMs,
    task: undefined,
    startFailure: undefined,
    bootFallback: undefined,
    retries: new Backoff(t.reconcileRetry),
    wake: undefined,
  };
}
