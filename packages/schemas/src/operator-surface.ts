/**
 * The operator surface of contract v2: every worker is a NATS service `eve-tasks-<worker>`
 * (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) whose `$SRV.INFO` metadata says where its Prometheus
 * endpoint is; task logs are read through the node's executor with LogsRequest / LogsReply on
 * `eve.rpc.task-executor.<node>.logs`.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import {
  NameSchema,
  NonNegativeIntSchema,
  SchemaVersionSchema,
  TimestampSchema,
  UuidSchema,
} from "./primitives.js";

/** What every worker's NATS service name starts with. */
export const WORKER_SERVICE_PREFIX = "eve-tasks-";

/** The NATS service (`$SRV`) name of worker `worker`: `eve-tasks-<worker>`, e.g. `eve-tasks-spec-builder`. */
export function workerServiceName(worker: string): string {
  return `${WORKER_SERVICE_PREFIX}${worker}`;
}

/** Prefix of every Prometheus metric the workers export. */
export const METRICS_PREFIX = "eve_tasks_";

/**
 * The `metadata` of a worker's service in `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (NATS service
 * metadata values are strings).
 */
export const WorkerServiceMetadataSchema = z.object({
  /** The node the worker runs on (`EVE_NODE`). */
  node: NameSchema,
  /** The eve-tasks version the worker runs. */
  version: z.string({ error: expected("must be a string") }).min(1),
  /**
   * The URL of its Prometheus endpoint, `http://127.0.0.1:<port>/metrics` (reachable on the
   * worker's machine only); empty when the worker runs without one (`EVE_METRICS_PORT=off`, or
   * the port could not be bound: the worker's log says why).
   */
  metrics: z.union([
    z.literal(""),
    z.url({ protocol: /^https?$/, error: expected("must be an http URL or empty") }),
  ]),
  /** The worker process's PID (its liveness file is `<EVE_RUN_DIR>/health/<worker>.<pid>.alive`). */
  pid: z.string().regex(/^\d+$/, { error: "must be a decimal PID" }),
});

/** A worker service's metadata. */
export type WorkerServiceMetadata = z.infer<typeof WorkerServiceMetadataSchema>;

/** Request subject to read task logs on `node`: `eve.rpc.task-executor.<node>.logs`. */
export function logsSubject(node: string): string {
  return `eve.rpc.task-executor.${node}.logs`;
}

/**
 * The most bytes of log one LogsReply carries: its base64 (4/3 of it) plus the rest of the reply
 * stays within the 64 KiB every bus value keeps to, far below any server's max_payload.
 */
export const LOG_CHUNK_MAX_BYTES = 45 * 1024;

/** The longest a LogsRequest may ask the executor to wait for new output, in ms. */
export const LOG_WAIT_MAX_MS = 30_000;

/**
 * A position in a task's log that survives rotation: which file (its identity, opaque to readers:
 * `<inode>.<birth time in ns>`, which renaming `console.log` to `console.log.1` keeps and a new
 * file reusing the inode does not) and a byte offset in it. A file rotated out of existence is
 * noticed (no file has its identity) and reported as a gap.
 */
export const LogCursorSchema = z.strictObject({
  file: z.string().regex(/^\d{1,20}\.\d{1,20}$/, { error: "must be a file identity from a LogsReply" }),
  offset: NonNegativeIntSchema,
});

/** A log cursor. */
export type LogCursor = z.infer<typeof LogCursorSchema>;

/**
 * Read an app's console log (stdout and stderr of its anchor; a VM's serial console), across its
 * rotated files (`console.log.<n>` … `console.log.1`, `console.log`). Where to start: `cursor`
 * (where the previous reply ended), else the later of `tailLines` and `since`, else the start of
 * the oldest file kept. `waitMs`: when nothing is there to read yet, wait up to this long for new
 * output before replying (following).
 */
export const LogsRequestSchema = z
  .strictObject({
    schemaVersion: SchemaVersionSchema.optional(),
    uuid: UuidSchema,
    cursor: LogCursorSchema.optional(),
    tailLines: NonNegativeIntSchema.max(1_000_000, { error: "must be at most 1000000 lines" }).optional(),
    since: TimestampSchema.optional(),
    maxBytes: z
      .int({ error: expected("must be a whole number of bytes") })
      .min(1, { error: "must be 1 or more bytes" })
      .max(LOG_CHUNK_MAX_BYTES, { error: `must be at most ${LOG_CHUNK_MAX_BYTES} bytes` })
      .optional(),
    waitMs: z
      .int({ error: expected("must be a whole number of milliseconds") })
      .min(0, { error: "must be 0 or more milliseconds" })
      .max(LOG_WAIT_MAX_MS, { error: `must be at most ${LOG_WAIT_MAX_MS} ms` })
      .optional(),
  })
  .refine((r) => r.cursor === undefined || (r.tailLines === undefined && r.since === undefined), {
    error: "give cursor, or tailLines and/or since, not both",
  });

/** A logs request. */
export type LogsRequest = z.infer<typeof LogsRequestSchema>;

/** The part of a log a reader did not get because the files holding it were rotated away. */
export const LogGapSchema = z.object({
  /** For a human: what was lost and why. */
  message: z.string().min(1),
});

/**
 * One piece of an app's log. `dataBase64` is the raw output (any bytes), base64; `cursor` is
 * where to continue (null while the app has no log yet); `more` is true when more output is
 * there already (ask again at once), false when the reader has caught up. `gap` is set when
 * output between the request's cursor and this data was rotated away before it was read.
 * `error` is set (and nothing else is meaningful) for an unknown app or a bad request.
 * Written by the executor, so read leniently: an older reader accepts a newer executor's reply.
 */
export const LogsReplySchema = z.object({
  uuid: z.string(),
  dataBase64: z.base64({ error: expected("must be base64") }),
  cursor: LogCursorSchema.nullable(),
  more: z.boolean(),
  gap: LogGapSchema.nullable(),
  error: z.string().min(1).nullable(),
});

/** A logs reply. */
export type LogsReply = z.infer<typeof LogsReplySchema>;
