/** What the proc-monitor measures besides the bus: its sampling rounds and what they found. */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { METRICS_PREFIX } from "@eve-tasks/schemas";

/** The proc-monitor's instruments. */
export interface ProcMonitorMetrics {
  /** Tasks whose anchor is being sampled (set at each scrape). */
  readonly sampledTasks: Gauge;
  /** Time of one round (every task sampled and its TaskMetrics published), in seconds. */
  readonly roundDuration: Histogram;
  /** Samples that failed for another reason than a missing file (EACCES, unreadable /proc text). */
  readonly sampleErrors: Counter;
  /** TaskMetrics that could not be sent (the connection was closed). */
  readonly publishErrors: Counter;
  /** Anchors found gone (exited, or their PID reused). */
  readonly anchorsGone: Counter;
}

/** The proc-monitor's instruments on `registry` (a private one when none is given); `sampled` is read at each scrape. */
export function procMonitorMetrics(
  sampled: () => number,
  registry: Registry = new Registry(),
): ProcMonitorMetrics {
  const registers = [registry];
  const p = METRICS_PREFIX;
  return {
    sampledTasks: new Gauge({
      name: `${p}sampled_tasks`,
      help: "Tasks whose anchor process and cgroup the proc-monitor samples.",
      registers,
      collect() {
        this.set(sampled());
      },
    }),
    roundDuration: new Histogram({
      name: `${p}sample_round_duration_seconds`,
      help: "Time of one sampling round (every task sampled, its TaskMetrics published), in seconds.",
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5],
      registers,
    }),
    sampleErrors: new Counter({
      name: `${p}sample_errors_total`,
      help: "Task samples that failed (other than a missing file, which is reported as not measured).",
      registers,
    }),
    publishErrors: new Counter({
      name: `${p}task_metrics_publish_errors_total`,
      help: "TaskMetrics samples that could not be sent.",
      registers,
    }),
    anchorsGone: new Counter({
      name: `${p}anchors_gone_total`,
      help: "Anchor processes found gone (exited, or their PID taken by another process).",
      registers,
    }),
  };
}
