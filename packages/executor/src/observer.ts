/**
 * What the executor tells an observer (its worker's metrics) as it works: each reconcile and its
 * outcome, each action, each start, each task event, each containerd call. The executor knows no
 * metrics library; the worker turns these into Prometheus instruments.
 */
import type { TaskEventType } from "@eve-tasks/schemas";
import type { Action } from "./plan.js";
import { RuntimeError } from "./runtime.js";
import type { TaskRuntime } from "./runtime.js";

/** How one reconcile of an app ended: converged, containerd unreachable, or another error (retried). */
export type ReconcileOutcome = "ok" | "unavailable" | "error";

/**
 * How one start ended: the anchor runs (`ok`), the start failed and is backed off (`failed`), or it
 * threw (containerd unreachable, a conflict: the reconcile retries, `error`).
 */
export type StartOutcome = "ok" | "failed" | "error";

/** Every hook is optional; none may throw (a throw is the observer's bug, and is not caught). */
export interface ExecutorObserver {
  /** A reconcile of one app ended after `seconds`. */
  reconciled?(seconds: number, outcome: ReconcileOutcome): void;
  /** An action was carried out. */
  acted?(kind: Action["kind"]): void;
  /** A start ended after `seconds` (from admission to Tasks.Start's return, or to the failure). */
  started?(seconds: number, outcome: StartOutcome): void;
  /** A task event was emitted (before the outbox has sent it). */
  emitted?(type: TaskEventType, fields: Readonly<Record<string, string | number | boolean | null>>): void;
}

/** One call to the runtime (containerd) and how it ended. */
export interface RuntimeCall {
  /** The TaskRuntime method, e.g. `createTask`. */
  readonly method: string;
  readonly seconds: number;
  /** `ok`, or the RuntimeError's kind (`unavailable`, `exists`, …), or `error` for any other throw. */
  readonly outcome: string;
}

/** The methods of TaskRuntime that are one request each (events is a stream, timed by nobody). */
const TIMED: readonly (keyof TaskRuntime)[] = [
  "getContainer",
  "listContainers",
  "listContainerLabels",
  "createContainer",
  "updateContainer",
  "deleteContainer",
  "getTask",
  "listTasks",
  "createTask",
  "startTask",
  "killTask",
  "deleteTask",
];

/**
 * `runtime` with every request-reply method timed into `observe`. `waitTask` is left out: it
 * lasts as long as the task runs, which says nothing about containerd.
 */
export function timedRuntime(runtime: TaskRuntime, observe: (call: RuntimeCall) => void): TaskRuntime {
  const methods = runtime as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const timed: Record<string, unknown> = {};
  for (const method of TIMED) {
    timed[method] = async (...args: unknown[]): Promise<unknown> => {
      const started = performance.now();
      let outcome = "ok";
      try {
        return await methods[method]!(...args);
      } catch (err) {
        outcome = err instanceof RuntimeError ? err.kind : "error";
        throw err;
      } finally {
        observe({ method, seconds: (performance.now() - started) / 1000, outcome });
      }
    };
  }
  return {
    ...(timed as unknown as TaskRuntime),
    waitTask: (id) => runtime.waitTask(id),
    events: (signal) => runtime.events(signal),
    settled: () => runtime.settled(),
    endLeakedShims: () => runtime.endLeakedShims(),
  };
}
