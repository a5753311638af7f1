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
  });

/** Resource usage of a task. */
export type TaskMetrics = z.infer<typeof TaskMetricsSchema>;
