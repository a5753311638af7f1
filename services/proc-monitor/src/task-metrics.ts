/** A sample of a task, as the TaskMetrics the proc-monitor publishes. */
import type { SampleField, TaskSample } from "@eve-tasks/procfs";
import type { MetricField, TaskMetrics } from "@eve-tasks/schemas";

// procfs's sample fields are TaskMetrics' metric fields, name for name (checked both ways here).
const _sameFields: [SampleField, MetricField] = ["" as MetricField, "" as SampleField];

/** A VM's anchor tax beside a sample: reserved (from its TaskStatus) and measured (see anchor-tax.ts). */
export interface SampleTax {
  anchorTaxBytes: number | null;
  anchorTaxPeakBytes: number | null;
}

const NO_TAX: SampleTax = { anchorTaxBytes: null, anchorTaxPeakBytes: null };

/**
 * TaskMetrics of app `uuid` from one sample: every metric field, null when not measured, and the
 * anchor tax (null for a native container).
 */
export function taskMetricsOf(uuid: string, sample: TaskSample, tax: SampleTax = NO_TAX): TaskMetrics {
  return {
    schemaVersion: 1,
    uuid,
    taskId: sample.pid,
    ...sample.values,
    anchorTaxBytes: tax.anchorTaxBytes,
    anchorTaxPeakBytes: tax.anchorTaxPeakBytes,
    sampledAt: sample.sampledAt.toISOString(),
    measured: [...sample.measured],
  };
}
