/**
 * TaskMetrics: resource usage of one app's task, published by the proc-monitor at
 * `$KV.proc-monitor.TaskMetrics.<uuid>`.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import {
  CounterSchema,
  NonNegativeIntSchema,
  PositiveIntSchema,
  SchemaVersionSchema,
  TimestampSchema,
  UuidSchema,
} from "./primitives.js";

/** Names of the metric fields of TaskMetrics, as listed in `measured`. */
export const METRIC_FIELDS = [
  "cpuNs",
  "rssBytes",
  "memoryUsageBytes",
  "memoryPeakBytes",
  "memoryLimitBytes",
  "oomKills",
  "threads",
] as const;
/** A metric field name. */
export type MetricField = (typeof METRIC_FIELDS)[number];

/** A metric field name. */
export const MetricFieldSchema = z.enum(METRIC_FIELDS, {
  error: expected(`must be one of ${METRIC_FIELDS.join(", ")}`),
});

/**
 * Resource usage of a task at `sampledAt`. A metric not read in this sample is `null`, and
 * every non-null metric is listed in `measured` (a listed metric may still be null, e.g. a
 * memory limit of "max").
 *
 * A VM's anchor tax rides along: `anchorTaxBytes` is what the task reserved (its TaskStatus),
 * `anchorTaxPeakBytes` what it took at most, `memoryPeakBytes` minus the guest's RAM. Both are
 * derived, not read, so neither is listed in `measured` (`anchorTaxPeakBytes` is non-null only
 * when `memoryPeakBytes` is, which is listed). Both default to null, so a sample of an older
 * publisher still parses.
 */
export const TaskMetricsSchema = z
  .object({
    schemaVersion: SchemaVersionSchema,
    uuid: UuidSchema,
    taskId: PositiveIntSchema.meta({ description: "the anchor PID the sample is of" }),
    cpuNs: CounterSchema.nullable().meta({ description: "CPU time of the task's cgroup, in nanoseconds" }),
    rssBytes: NonNegativeIntSchema.nullable().meta({ description: "resident set of the anchor, in bytes" }),
    memoryUsageBytes: NonNegativeIntSchema.nullable().meta({
      description: "memory.current of the cgroup, in bytes",
    }),
    memoryPeakBytes: NonNegativeIntSchema.nullable().meta({
      description: "memory.peak of the cgroup, in bytes",
    }),
    memoryLimitBytes: NonNegativeIntSchema.nullable().meta({
      description: "memory.max of the cgroup, in bytes; null for no limit",
    }),
    oomKills: NonNegativeIntSchema.nullable().meta({
      description: "oom_kill count of the cgroup's memory.events",
    }),
    threads: NonNegativeIntSchema.nullable().meta({ description: "threads in the cgroup" }),
    anchorTaxBytes: NonNegativeIntSchema.nullable().default(null).meta({
      description:
        "the anchor tax the VM's task reserved (TaskStatus.anchorTaxBytes), in bytes; null for a native container",
    }),
    anchorTaxPeakBytes: NonNegativeIntSchema.nullable().default(null).meta({
      description:
        "the measured anchor tax in bytes: the most the cgroup held beyond the guest's RAM so far (the larger of memoryPeakBytes minus guest RAM, and memory now minus the guest RAM resident in qemu), never below 0; null when not a VM or memoryPeakBytes was not read",
    }),
    sampledAt: TimestampSchema,
    measured: z
      .array(MetricFieldSchema, { error: "must be a list of metric field names" })
      .meta({ description: "names of the metric fields really read in this sample" }),
  })
  .superRefine((m, ctx) => {
    const listed = new Set<string>();
    m.measured.forEach((name, i) => {
      if (listed.has(name)) {
        ctx.addIssue({ code: "custom", message: `${name} is listed twice`, path: ["measured", i] });
      }
      listed.add(name);
    });
    for (const name of METRIC_FIELDS) {
      if (m[name] !== null && !listed.has(name)) {
        ctx.addIssue({
          code: "custom",
          message: `${name} has a value but is not listed in measured`,
          path: ["measured"],
        });
      }
    }
    if (m.anchorTaxPeakBytes !== null) {
      if (m.anchorTaxBytes === null) {
        ctx.addIssue({
          code: "custom",
          message: "anchorTaxPeakBytes is a VM's: it needs anchorTaxBytes",
          path: ["anchorTaxPeakBytes"],
        });
      }
      if (m.memoryPeakBytes === null) {
        ctx.addIssue({
          code: "custom",
          message: "anchorTaxPeakBytes is derived from memoryPeakBytes: it needs memoryPeakBytes",
          path: ["anchorTaxPeakBytes"],
        });
      } else if (m.anchorTaxPeakBytes > m.memoryPeakBytes) {
        ctx.addIssue({
          code: "custom",
          message: "anchorTaxPeakBytes is part of memoryPeakBytes: it cannot be larger",
          path: ["anchorTaxPeakBytes"],
        });
      }
    }
  });

/** Resource usage of a task. */
export type TaskMetrics = z.infer<typeof TaskMetricsSchema>;
/** TaskMetrics as a publisher may write them (the anchor tax fields optional). */
export type TaskMetricsInput = z.input<typeof TaskMetricsSchema>;
