/**
 * The executor's decisions, as pure functions: {@link plan} looks at what is wanted (the app's
 * TaskConfig), what containerd has (the observed container and task) and what the executor
 * remembers (its last status, a failed start), and names the one next step; {@link planExit} says
 * what an exit means. Nothing here does I/O or reads the clock: the reconcile loop observes, plans,
 * acts, and plans again until a step leaves nothing to do.
 */
import { specSha256 } from "@eve-tasks/schemas";
import type { ReadyTaskConfig, StageError, TaskConfig, TaskStatus } from "@eve-tasks/schemas";
import { admissionRefusal } from "./admission.js";
import type { AdmissionRefusal, MemoryView } from "./admission.js";
import { NO_RESTARTS, hasLabels, labelsFor } from "./labels.js";
import type { LabelState, LabelView, RestartLabels } from "./labels.js";
import type { PreparedTask } from "./prepare-task.js";
import { decideRestart, inWindow, recordRestart } from "./restart-policy.js";
import type { RestartDecision } from "./restart-policy.js";
import type { RuntimeTaskStatus } from "./runtime.js";

/** A container as observed: its raw labels and what they say. */
export interface ObservedContainer {
  readonly labels: Readonly<Record<string, string>>;
  readonly view: LabelView;
}

/** A task as observed: its anchor PID and state. */
export interface ObservedTask {
  readonly pid: number;
  readonly status: RuntimeTaskStatus;
}

/** What containerd has for one app, or that it cannot say. */
export type Observed =
  | { readonly reachable: true; readonly container?: ObservedContainer; readonly task?: ObservedTask }
  | { readonly reachable: false; readonly error: string };

/** Nothing in containerd: an app first seen after the start-up listing (no container to look for). */
export const NOTHING: Observed = Object.freeze({ reachable: true });

/** A READY config with the node's facts applied, or why this node cannot run it. */
export type Prepared =
  | { readonly ok: true; readonly task: PreparedTask }
  | {
      readonly ok: false;
      readonly message: string;
      /** Set when the config is fine but waits for the node (a network instance to appear). */
      readonly waitingFor?: "network";
    };

/** A start that failed, remembered so it is retried with back-off and reported once. */
export interface StartFailure {
  readonly configRevision: number;
  readonly specSha256: string;
  /** Failed starts in a row of this revision. */
  readonly attempts: number;
  /** Not before this time (epoch ms) is it tried again, unless the config changes. */
  readonly retryAtMs: number;
  readonly message: string;
}

/** Everything {@link plan} looks at. */
export interface PlanInput {
  /** The app's latest TaskConfig for this node; undefined when it has none (deleted, moved). */
  readonly desired: TaskConfig | undefined;
  readonly observed: Observed;
  /** The node facts applied to `desired` (READY only), once `prepare` ran for it. */
  readonly prepared: Prepared | undefined;
  /** The last TaskStatus published for the app. */
  readonly status: TaskStatus | undefined;
  /** The node's memory as this app sees it. */
  readonly memory: MemoryView;
  readonly startFailure: StartFailure | undefined;
  /** The node's tasks are being stopped (Ctrl-C of the launcher): stop, start nothing. */
  readonly nodeStopping: boolean;
  /**
   * The boot watchdog found no sign of life from task `pid`, a VM under KVM (`auto`): stop it
   * (to be started again under TCG). See boot-watchdog.ts.
   */
  readonly bootFallback?: { readonly pid: number; readonly reason: string } | undefined;
  readonly nowMs: number;
}

/**
 * Why a stop is made: the config, the node stopping, or the boot watchdog (a VM under KVM with
 * no sign of life, started again under TCG). Every stop is requested: none counts as the app's
 * failure in the restart policy.
 */
export type StopCause = "config" | "node" | "boot-watchdog";

/**
 * The next step for one app. The first five change what containerd has (the loop observes again
 * after them); `prepare` applies the node's facts (the loop plans again); the others end the
 * reconcile.
 */
export type Action =
  /** The task ended: record how (before Tasks.Delete), decide a restart, delete the task. */
  | { readonly kind: "finish"; readonly pid: number }
  /** A task left between Tasks.Create and Tasks.Start (an executor crash): kill and delete it. */
  | { readonly kind: "discard"; readonly pid: number }
  /** Stop the task by its stop kind (signal or QMP) and delete it; the container stays. */
  | { readonly kind: "stop"; readonly pid: number; readonly reason: string; readonly cause: StopCause }
  /** The container was built from another spec (its task is stopped): delete it. */
  | { readonly kind: "replace" }
  /** The config is gone: delete the container, the status, the task's host resources. */
  | { readonly kind: "remove"; readonly container: boolean }
  /** Apply the node's facts to the READY config (paths, memory, accelerator, …). */
  | { readonly kind: "prepare" }
  /** containerd cannot be reached: status UNKNOWN, nothing killed. */
  | { readonly kind: "unknown"; readonly error: string }
  /** The node is stopping and this app has no task: nothing to do. */
  | { readonly kind: "hold" }
  /** The config carries an earlier stage's error: FAILED, or the error beside a running task. */
  | { readonly kind: "fail"; readonly error: StageError; readonly running: boolean }
  /**
   * This executor cannot run this revision (node facts, an inconsistent fingerprint, a start
   * that failed): FAILED with its error, or the error beside the running task (which keeps its
   * last good config).
   */
  | { readonly kind: "reject"; readonly message: string; readonly running: boolean }
  /** The config waits for an earlier stage (a seed, a pull): PENDING, or beside the running task. */
  | { readonly kind: "pending"; readonly waitingFor: TaskStatus["waitingFor"]; readonly running: boolean }
  /** `activate` is false and no task runs: the container exists (created if missing), no task. */
  | {
      readonly kind: "install";
      readonly create: boolean;
      /** Labels to write, when the container's differ. */
      readonly relabel: LabelState | undefined;
      readonly state: "INSTALLED" | "HALTED" | "BROKEN";
    }
  /** The running task is what is wanted: keep it (same PID), recording the config it now serves. */
  | {
      readonly kind: "adopt";
      readonly pid: number;
      readonly relabel: LabelState | undefined;
      /** Restarts of the policy within its window. */
      readonly restarts: number;
    }
  /** It ended by itself and the restart policy's decision stands: restart at `dueAtMs`, or never. */
  | {
      readonly kind: "awaitRestart";
      readonly dueAtMs: number | undefined;
      readonly state: "HALTED" | "BROKEN";
      /** The policy gave up: its reason stays in `error` until the user acts. */
      readonly keepError: boolean;
      readonly relabel: LabelState | undefined;
    }
  /** It does not fit the node's free memory: PENDING until memory frees up. */
  | { readonly kind: "awaitMemory"; readonly refusal: AdmissionRefusal }
  /** The last start of this revision failed: try again at `retryAtMs` unless the config changes. */
  | { readonly kind: "awaitRetry"; readonly retryAtMs: number }
  /** Create and start a task (creating the container when missing). */
  | { readonly kind: "start"; readonly container: boolean; readonly restarts: RestartLabels };

/** The kinds of {@link Action} after which containerd's state is looked at again. */
export const CHANGES_RUNTIME: ReadonlySet<Action["kind"]> = new Set(["finish", "discard", "stop", "replace"]);

/** The reason of a stop made because the node stops its tasks. */
export const NODE_STOP_REASON = "the node is stopping its tasks";

/** The next step for one app. */
export function plan(input: PlanInput): Action {
  const { desired: d, observed } = input;
  if (!observed.reachable) return { kind: "unknown", error: observed.error };
  const container = observed.container;
  // A task needs its container; one without is containerd's leftover and nothing to act on.
  const task = container ? observed.task : undefined;

  // Tasks that are not running as they should come first, whatever is wanted.
  if (task?.status === "STOPPED") return { kind: "finish", pid: task.pid };
  if (task?.status === "CREATED") return { kind: "discard", pid: task.pid };
  const running = task !== undefined;

  if (input.nodeStopping) {
    return task ? { kind: "stop", pid: task.pid, reason: NODE_STOP_REASON, cause: "node" } : { kind: "hold" };
  }
  if (!d) {
    if (task) return { kind: "stop", pid: task.pid, reason: "the config was deleted", cause: "config" };
    return { kind: "remove", container: container !== undefined };
  }
  if (d.status === "FAILED") return { kind: "fail", error: d.error, running };
  if (d.status === "PENDING") return { kind: "pending", waitingFor: d.waitingFor, running };
  if (task && input.bootFallback?.pid === task.pid) {
    return { kind: "stop", pid: task.pid, reason: input.bootFallback.reason, cause: "boot-watchdog" };
  }

  if (!input.prepared) return { kind: "prepare" };
  if (!input.prepared.ok) {
    const waitingFor = input.prepared.waitingFor;
    if (waitingFor) return { kind: "pending", waitingFor, running };
    return { kind: "reject", message: input.prepared.message, running };
  }
  const p = input.prepared.task;

  const labels = container?.view;
  if (container && labels?.specSha256 === d.specSha256) {
    // An equal fingerprint keeps the container and its task: check it is really the spec's
    // (TaskConfig's schema does not, so that every other reader is spared the cost).
    const actual = specSha256(d.spec);
    if (actual !== d.specSha256) {
      const message =
        `TaskConfig revision ${d.configRevision} is inconsistent: its specSha256 ${d.specSha256} ` +
        `is not that of its spec (${actual}); not applied`;
      return { kind: "reject", message, running };
    }
  } else if (container) {
    // Any change that alters the built spec replaces the task: stop it, then drop the container.
    if (task)
      return { kind: "stop", pid: task.pid, reason: "the spec changed: replacing the task", cause: "config" };
    return { kind: "replace" };
  }

  if (!d.activate) {
    if (task) return { kind: "stop", pid: task.pid, reason: "activate is false", cause: "config" };
    if (!container || !labels)
      return { kind: "install", create: true, relabel: undefined, state: "INSTALLED" };
    // Deactivated, a task that ended counts as stopped on request, however it ended (by itself,
    // or by a stop whose record a killed executor never wrote): activating it again runs it.
    const state: LabelState = { ended: labels.ended === "" ? "" : "stopped", restarts: NO_RESTARTS };
    const kept = input.status?.state;
    return {
      kind: "install",
      create: false,
      relabel: hasLabels(container.labels, labelsFor(d, state.ended, state.restarts)) ? undefined : state,
      state: kept === "HALTED" || kept === "BROKEN" ? kept : "INSTALLED",
    };
  }

  if (task && labels && labels.restartCounter < d.restartCounter) {
    return {
      kind: "stop",
      pid: task.pid,
      reason: `restart requested (restartCounter ${d.restartCounter})`,
      cause: "config",
    };
  }

  const moved =
    labels !== undefined && (labels.configRevision !== d.configRevision || labels.version !== d.version);
  if (task) {
    return {
      kind: "adopt",
      pid: task.pid,
      relabel:
        moved && labels
          ? { ended: "", restarts: { restartTimes: labels.restartTimes, restartDue: "" } }
          : undefined,
      restarts: inWindow(d.restartPolicy, labels?.restartTimes ?? [], input.nowMs).length,
    };
  }

  if (labels?.ended === "exited" && labels.restartCounter >= d.restartCounter) {
    // It exited by itself and no user action since asks for another run: the restart policy's
    // decision, recorded in the labels at the exit, stands.
    const due = labels.restartDue;
    if (typeof due === "number" && due <= input.nowMs) {
      const restarts = {
        restartTimes: recordRestart(d.restartPolicy, labels.restartTimes, input.nowMs),
        restartDue: "" as const,
      };
      return startOrWait(input, d, p, true, restarts);
    }
    return {
      kind: "awaitRestart",
      dueAtMs: typeof due === "number" ? due : undefined,
      state: input.status?.state === "BROKEN" || due === "gave-up" ? "BROKEN" : "HALTED",
      keepError: due === "gave-up" && input.status?.error?.source === "task-executor",
      relabel: moved
        ? { ended: "exited", restarts: { restartTimes: labels.restartTimes, restartDue: due } }
        : undefined,
    };
  }

  return startOrWait(input, d, p, container !== undefined, NO_RESTARTS);
}

/** A start, unless a failed start of this revision backs off or the memory is not there. */
function startOrWait(
  input: PlanInput,
  d: ReadyTaskConfig,
  p: PreparedTask,
  container: boolean,
  restarts: RestartLabels,
): Action {
  const f = input.startFailure;
  if (
    f &&
    f.configRevision === d.configRevision &&
    f.specSha256 === d.specSha256 &&
    input.nowMs < f.retryAtMs
  ) {
    return { kind: "awaitRetry", retryAtMs: f.retryAtMs };
  }
  const refusal = admissionRefusal(p.memoryLimitBytes, input.memory);
  if (refusal) return { kind: "awaitMemory", refusal };
  return { kind: "start", container, restarts };
}

/** How a task ended, as Tasks.Delete tells it. */
export interface TaskExit {
  /** Exit status (128+n for signal n); null when unknown. */
  readonly code: number | null;
  readonly signal: string | null;
}

/** What {@link planExit} looks at. */
export interface ExitInput {
  readonly desired: TaskConfig | undefined;
  readonly exit: TaskExit;
  /** Stopped on request (a stop of the executor's), not ended by itself. */
  readonly requested: boolean;
  /** The container's labels before the exit (the restart policy's history). */
  readonly labels: LabelView | undefined;
  readonly exitedAtMs: number | undefined;
  readonly nowMs: number;
}

/** What an exit means. */
export interface ExitPlan {
  readonly state: "HALTED" | "BROKEN";
  /** For an end by itself under a READY config: the policy's memory to record with `ended=exited`. */
  readonly restarts: RestartLabels | undefined;
  /** The restart policy's decision (an end by itself under a READY config). */
  readonly decision: RestartDecision | undefined;
}

/**
 * HALTED when stopped on request or exited 0; BROKEN when it exited non-zero by itself or the
 * restart policy gave up. An end by itself is put to the restart policy now, once per exit; its
 * decision goes into the labels, so a restarted executor keeps to it.
 */
export function planExit(input: ExitInput): ExitPlan {
  const d = input.desired?.status === "READY" ? input.desired : undefined;
  let restarts: RestartLabels | undefined;
  let decision: RestartDecision | undefined;
  if (!input.requested && d) {
    const times = inWindow(d.restartPolicy, input.labels?.restartTimes ?? [], input.nowMs);
    decision = decideRestart(
      d.restartPolicy,
      { exitCode: input.exit.code, signal: input.exit.signal },
      times,
      input.nowMs,
    );
    const due =
      decision.action === "restart"
        ? (input.exitedAtMs ?? input.nowMs) + decision.delayMs
        : decision.action === "give-up"
          ? ("gave-up" as const)
          : ("" as const);
    restarts = { restartTimes: times, restartDue: due };
  }
  const gaveUp = decision?.action === "give-up";
  const state = !gaveUp && (input.requested || input.exit.code === 0) ? "HALTED" : "BROKEN";
  return { state, restarts, decision };
}
