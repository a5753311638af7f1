/**
 * What the task-executor measures besides the bus (KV writes, watch lag, events sent, outbox
 * depth: @eve-tasks/bus) and its endpoints (eve_tasks_rpc_duration_seconds): its tasks by state,
 * reconciles, starts, actions, task events, restarts by policy, containerd calls and task log
 * readers. Labels are bounded: states, outcomes, action kinds, event types, RPC method names,
 * policy modes; never an app's uuid.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ExecutorObserver, RuntimeCall } from "@eve-tasks/executor";
import type { TaskLogsObserver } from "@eve-tasks/task-logs";
import { METRICS_PREFIX, TaskStateSchema } from "@eve-tasks/schemas";
import type { TaskState } from "@eve-tasks/schemas";

/** What the gauges read at each scrape. */
export interface ExecutorGaugeSources {
  /** Apps of this node by state (and, PENDING, what they wait for). */
  tasksByState(): { state: TaskState; waitingFor: string | null; count: number }[];
  /** Readers waiting for new output of a task log now. */
  logFollowers(): number;
}

/** The executor's instruments, as the observers the executor, its runtime and its logs service call. */
export interface ExecutorMetrics {
  readonly executor: ExecutorObserver;
  readonly runtimeCall: (call: RuntimeCall) => void;
  readonly logs: TaskLogsObserver;
}

/** The executor's instruments on `registry` (a private one when none is given). */
export function executorMetrics(
  sources: ExecutorGaugeSources,
  registry: Registry = new Registry(),
): ExecutorMetrics {
  const registers = [registry];
  const p = METRICS_PREFIX;
  new Gauge({
    name: `${p}tasks`,
    help:
      "Apps of this node by the state of their task (TaskStatus.state); waiting_for is what a " +
      'PENDING one waits for (seed, pull, memory, network), "" otherwise.',
    labelNames: ["state", "waiting_for"],
    registers,
    collect() {
      this.reset();
      // Every state is exported, 0 included, so an alert on a state sees it appear.
      for (const state of TaskStateSchema.options) this.set({ state, waiting_for: "" }, 0);
      for (const c of sources.tasksByState()) {
        this.set({ state: c.state, waiting_for: c.waitingFor ?? "" }, c.count);
      }
    },
  });
  const reconcile = new Histogram({
    name: `${p}reconcile_duration_seconds`,
    help:
      "Time of one reconcile of one app (observe, plan, act until steady), in seconds, by outcome " +
      "(ok; unavailable: containerd unreachable; error: retried with back-off).",
    labelNames: ["outcome"],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60],
    registers,
  });
  const actions = new Counter({
    name: `${p}reconcile_actions_total`,
    help: "Actions the executor carried out, by kind (start, stop, adopt, finish, remove, fail, …).",
    labelNames: ["action"],
    registers,
  });
  const starts = new Histogram({
    name: `${p}task_start_duration_seconds`,
    help:
      "Time of one task start (admission, container, Tasks.Create, Tasks.Start), in seconds, by " +
      "outcome (ok; failed: backed off and reported; error: retried).",
    labelNames: ["outcome"],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const events = new Counter({
    name: `${p}task_events_emitted_total`,
    help: "Task events the executor emitted, by type (created, started, exited, restarting, …).",
    labelNames: ["type"],
    registers,
  });
  const restarts = new Counter({
    name: `${p}task_restarts_total`,
    help: "Restarts a restart policy decided, by its mode (on-failure, always).",
    labelNames: ["policy"],
    registers,
  });
  const restartGiveUps = new Counter({
    name: `${p}task_restart_give_ups_total`,
    help: "Exits a restart policy did not restart (gave up, or the exit did not qualify), by its mode.",
    labelNames: ["policy"],
    registers,
  });
  const containerd = new Histogram({
    name: `${p}containerd_call_duration_seconds`,
    help:
      "Time of one containerd call of the executor, in seconds, by method and outcome (ok, " +
      "unavailable, exists, not-found, error).",
    labelNames: ["method", "outcome"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers,
  });
  new Gauge({
    name: `${p}log_followers`,
    help: "Readers waiting for new output of a task log (eve-tasks logs --follow) now.",
    registers,
    collect() {
      this.set(sources.logFollowers());
    },
  });
  const logBytes = new Counter({
    name: `${p}log_sent_bytes_total`,
    help: "Bytes of task log sent to readers (eve.rpc.task-executor.<node>.logs).",
    registers,
  });
  const logGaps = new Counter({
    name: `${p}log_gaps_total`,
    help: "Times a reader was told output was rotated away before it read it.",
    registers,
  });
  return {
    executor: {
      reconciled: (seconds, outcome) => reconcile.observe({ outcome }, seconds),
      acted: (kind) => actions.inc({ action: kind }),
      started: (seconds, outcome) => starts.observe({ outcome }, seconds),
      emitted: (type, fields) => {
        events.inc({ type });
        const policy = typeof fields.mode === "string" ? fields.mode : "unknown";
        if (type === "restarting") restarts.inc({ policy });
        else if (type === "not-restarting") restartGiveUps.inc({ policy });
      },
    },
    runtimeCall: (c) => containerd.observe({ method: c.method, outcome: c.outcome }, c.seconds),
    logs: {
      onChunk: (bytes) => logBytes.inc(bytes),
      onGap: () => logGaps.inc(),
    },
  };
}
