/**
 * TaskStatus: the state of one app's task, published by the task-executor at
 * `$KV.task-executor.TaskStatus.<uuid>`. This is the topic users watch.
 */
import { z } from "zod";
import { TaskInterfaceStatusSchema } from "./app-interfaces.js";
import { expected } from "./error-messages.js";
import {
  ConfigRevisionSchema,
  NameSchema,
  NonNegativeIntSchema,
  SchemaVersionSchema,
  SignalNameSchema,
  TimestampSchema,
  UuidSchema,
  VersionLabelSchema,
} from "./primitives.js";
import { StageErrorSchema } from "./stage-error.js";

/** Task states, as strings. See DESIGN.md for the meaning of each. */
export const TASK_STATES = [
  "PENDING",
  "INSTALLED",
  "BOOTING",
  "RUNNING",
  "HALTING",
  "HALTED",
  "BROKEN",
  "FAILED",
  "UNKNOWN",
] as const;

/** The state of a task. */
export const TaskStateSchema = z.enum(TASK_STATES, {
  error: expected(`must be one of ${TASK_STATES.join(", ")}`),
});
/** The state of a task. */
export type TaskState = z.infer<typeof TaskStateSchema>;

/** What a PENDING task waits for: a seed to appear, an image pull to finish, free memory, or a network instance. */
export const WaitingForSchema = z.enum(["seed", "pull", "memory", "network"], {
  error: expected('must be "seed", "pull", "memory" or "network"'),
});
/** What a PENDING task waits for. */
export type WaitingFor = z.infer<typeof WaitingForSchema>;

/**
 * The state of one app's task. Every field is always present: a fact not (yet) known is `null`,
 * never missing. Unknown keys are dropped on receipt (a newer publisher may add fields).
 */
export const TaskStatusSchema = z
  .object({
    schemaVersion: SchemaVersionSchema,
    uuid: UuidSchema,
    version: VersionLabelSchema.nullable().meta({
      description:
        "version of the config the current task was built from (else the latest seen); null if unreadable",
    }),
    configRevision: ConfigRevisionSchema,
    node: NameSchema,
    state: TaskStateSchema,
    taskId: NonNegativeIntSchema.meta({
      description: "the anchor PID; 0 exactly when no containerd task exists for the app",
    }),
    lastTaskId: NonNegativeIntSchema.meta({
      description: "the last non-zero taskId; 0 if there never was one",
    }),
    anchorStartTicks: NonNegativeIntSchema.nullable().meta({
      description: "field 22 of /proc/<taskId>/stat (clock ticks after boot); null when taskId is 0",
    }),
    exitCode: z
      .int({ error: expected("must be a whole number") })
      .min(0, { error: "must be 0 to 255" })
      .max(255, { error: "must be 0 to 255" })
      .nullable()
      .meta({
        description:
          "exit status of the last exit as containerd reports it (128+n for signal n); null until an exit",
      }),
    signal: SignalNameSchema.nullable().meta({
      description: "signal that ended the last exit (exit status above 128), e.g. SIGKILL; else null",
    }),
    oomKilled: z.boolean({ error: expected("must be true or false") }).meta({
      description: "the last exit was caused by the OOM killer; false when there was no exit",
    }),
    restarts: NonNegativeIntSchema.meta({
      description: "automatic restarts by the restart policy in its window",
    }),
    memoryLimitBytes: NonNegativeIntSchema.nullable().meta({
      description:
        "the task's cgroup memory limit, (memoryMiB + anchor tax) · 2^20; null if no spec was built",
    }),
    anchorTaxBytes: NonNegativeIntSchema.nullable().meta({
      description:
        "the anchor tax in bytes (for a native container 0, or the emulators image's tax when it runs emulated); null if no spec was built",
    }),
    logPath: z
      .string({ error: expected("must be a string") })
      .min(1, { error: "must not be empty" })
      .meta({
        description:
          "<EVE_DATA_DIR>/tasks/<uuid>/console.log: stdout and stderr of the anchor, a VM's serial console",
      }),
    waitingFor: WaitingForSchema.nullable().meta({ description: "what a PENDING task waits for; else null" }),
    startedAt: TimestampSchema.nullable().meta({
      description: "when the current or last task started; null if never",
    }),
    finishedAt: TimestampSchema.nullable().meta({
      description: "when the last task exited; null if it has not",
    }),
    updatedAt: TimestampSchema.meta({ description: "when this status was published" }),
    error: StageErrorSchema.nullable().meta({
      description: "the latest stage error about this app; cleared (null) by a later good revision",
    }),
    interfaces: z
      .array(TaskInterfaceStatusSchema, { error: expected("must be a list of interfaces") })
      .default([])
      .meta({ description: "the task's network interfaces; empty when it has loopback only" }),
  })
  .superRefine((s, ctx) => {
    if (s.state === "RUNNING" && s.taskId === 0) {
      ctx.addIssue({
        code: "custom",
        message: "a RUNNING task has a taskId (anchor PID) above 0",
        path: ["taskId"],
      });
    }
    if (s.taskId === 0 && s.anchorStartTicks !== null) {
      ctx.addIssue({
        code: "custom",
        message: "anchorStartTicks must be null when taskId is 0 (no task)",
        path: ["anchorStartTicks"],
      });
    }
    if (s.signal !== null && s.exitCode === null) {
      ctx.addIssue({
        code: "custom",
        message: "a signal needs an exitCode (the exit it ended)",
        path: ["signal"],
      });
    }
    if (s.state === "FAILED" && s.error === null) {
      ctx.addIssue({
        code: "custom",
        message: "a FAILED status carries the error that caused it",
        path: ["error"],
      });
    }
  });

/** The state of one app's task. */
export type TaskStatus = z.infer<typeof TaskStatusSchema>;
