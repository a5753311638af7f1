/**
 * The periodic relist: one listing of containerd's containers and tasks, compared with what the
 * executor holds, decides which apps to reconcile (pure). It is the safety net under Tasks.Wait,
 * containerd's events and the proc-monitor's: an app that runs exactly as its config, its
 * container's labels and its last status say needs no look of its own; any other is reconciled
 * (observe → plan → act), as a lost notice would have had it.
 */
import type { TaskStatus } from "@eve-tasks/schemas";
import type { AppState } from "./app-state.js";
import { readLabels } from "./labels.js";
import type { RuntimeContainer, RuntimeTask } from "./runtime.js";

/** What the relist compares for one app. */
export interface RelistInput {
  readonly apps: Iterable<
    Pick<AppState, "uuid" | "desired" | "task" | "startFailure" | "bootFallback" | "wake">
  >;
  /** The executor's own last status of an app. */
  readonly status: (uuid: string) => TaskStatus | undefined;
  readonly containers: readonly RuntimeContainer[];
  readonly tasks: readonly RuntimeTask[];
  /** The node is stopping its tasks: every app is reconciled. */
  readonly nodeStopping: boolean;
}

/** The apps to reconcile: every app except those running steadily as wanted. */
export function relistKicks(input: RelistInput): string[] {
  const containers = new Map(input.containers.map((c) => [c.id, c]));
  const tasks = new Map(input.tasks.map((t) => [t.id, t]));
  const kicks: string[] = [];
  for (const app of input.apps) {
    if (
      input.nodeStopping ||
      !steady(app, input.status(app.uuid), containers.get(app.uuid), tasks.get(app.uuid))
    )
      kicks.push(app.uuid);
  }
  return kicks;
}

/**
 * Running as wanted: a READY, active config; its container labelled with that config's spec,
 * revision, version and restart counter; its task running with the PID the executor waits on and
 * last published as RUNNING for that revision; nothing scheduled for it.
 */
function steady(
  app: Pick<AppState, "desired" | "task" | "startFailure" | "bootFallback" | "wake">,
  status: TaskStatus | undefined,
  container: RuntimeContainer | undefined,
  task: RuntimeTask | undefined,
): boolean {
  const d = app.desired;
  if (d?.status !== "READY" || !d.activate) return false;
  if (app.wake !== undefined || app.startFailure !== undefined || app.bootFallback !== undefined)
    return false;
  if (container === undefined || task === undefined || task.status !== "RUNNING") return false;
  const labels = readLabels(container.labels);
  if (
    labels.specSha256 !== d.specSha256 ||
    labels.configRevision !== d.configRevision ||
    labels.version !== d.version ||
    labels.restartCounter < d.restartCounter
  )
    return false;
  return (
    app.task?.pid === task.pid &&
    status?.state === "RUNNING" &&
    status.taskId === task.pid &&
    status.configRevision === d.configRevision
  );
}
