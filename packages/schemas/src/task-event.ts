/**
 * TaskEvent: one thing that happened to an app's task, on stream `TASK_EVENTS`, subject
 * `eve.events.<uuid>`.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import { SchemaVersionSchema, TimestampSchema, UuidSchema } from "./primitives.js";

/** Event types. */
export const TASK_EVENT_TYPES = [
  "received",
  "spec-built",
  "created",
  "started",
  "exited",
  "restarting",
  "not-restarting",
  "stopping",
  "killed",
  "deleted",
  "error",
  "accel-fallback",
] as const;

/** An event type. */
export const TaskEventTypeSchema = z.enum(TASK_EVENT_TYPES, {
  error: expected(`must be one of ${TASK_EVENT_TYPES.join(", ")}`),
});
/** An event type. */
export type TaskEventType = z.infer<typeof TaskEventTypeSchema>;

/** A field value of an event: a JSON scalar (string, number, boolean or null). */
export const EventFieldValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null()], {
  error: "must be a string, number, boolean or null",
});

/**
 * One event. `message` is a sentence for a human; `fields` holds the machine-readable facts as
 * scalars (e.g. `{ "configRevision": 7, "exitCode": 137, "signal": "SIGKILL" }`).
 */
export const TaskEventSchema = z.object({
  schemaVersion: SchemaVersionSchema,
  uuid: UuidSchema,
  type: TaskEventTypeSchema,
  time: TimestampSchema,
  message: z.string({ error: expected("must be a string") }),
  fields: z.record(z.string(), EventFieldValueSchema).default({}),
});

/** A task event. */
export type TaskEvent = z.infer<typeof TaskEventSchema>;
/** A task event as a publisher may write it (`fields` optional). */
export type TaskEventInput = z.input<typeof TaskEventSchema>;
