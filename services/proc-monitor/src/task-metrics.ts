/** A sample of a task, as the TaskMetrics the proc-monitor publishes. */
import type { SampleField, TaskSample } from "@eve-tasks/procfs";
import type { MetricField, TaskMetrics } from "@eve-tasks/schemas";

// procfs's sample fields are TaskMetrics' metric fields, name for name (checked both ways here).
const _sameFields: [SampleField, MetricField] = ["" as MetricField, "" as SampleField];

/** TaskMetrics of app `uuid` from one sample: every metric field, null when not measured. */
export function taskMetricsOf(uuid: string, sample: TaskSample): TaskMetrics {
  return {
    schemaVersion: 1,
    uuid,
    taskId: sample.pid,
    ...sample.values,
    sampledAt: sample.sampledAt.toISOString(),
    measured: [...sample.measured],
  };
}
