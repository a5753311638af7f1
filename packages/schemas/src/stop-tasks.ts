/**
 * StopTasksRequest and StopTasksReply: a request to `eve.rpc.task-executor.<node>.stop-tasks`
 * asks the node's executor to stop every task of the node (what the launcher's Ctrl-C does), each
 * the way any stop of it goes (its stop signal, or QMP `system_powerdown` for a runtime stopped by
 * QMP such as a VM), and to start nothing
 * until it restarts. The reply comes when every stop is done.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import { NonNegativeIntSchema, SchemaVersionSchema } from "./primitives.js";

/** Stop every task of the node; `schemaVersion` may be omitted. */
export const StopTasksRequestSchema = z.strictObject({
  schemaVersion: SchemaVersionSchema.optional(),
});

/** A stop request. */
export type StopTasksRequest = z.infer<typeof StopTasksRequestSchema>;

/**
 * The step of a stop that ended a task: a QMP command, the task's stop signal (SIGTERM, or the
 * StopSignal its runtime image declares) or SIGKILL.
 */
export const StopStepSchema = z.union(
  [z.enum(["system_powerdown", "quit"]), z.string().regex(/^SIG[A-Z0-9]+$/)],
  { error: expected('must be "system_powerdown", "quit" or a signal name such as "SIGTERM"') },
);

const ContainerIdSchema = z.string({ error: expected("must be a string") }).min(1);

/**
 * What the stop did: each task stopped, and each that is still there. Written by the executor,
 * so read leniently: an older reader accepts a newer executor's reply.
 */
export const StopTasksReplySchema = z.object({
  accepted: z.boolean({ error: expected("accepted must be true or false") }),
  /** Why the request was refused; null when accepted. */
  error: z.string().min(1).nullable(),
  stopped: z.array(
    z.object({
      /** The container ID: an app's uuid (or whatever else ran in the namespace). */
      uuid: ContainerIdSchema,
      taskId: NonNegativeIntSchema,
      /** The step that ended it; null when none did (the task was deleted anyway). */
      stoppedBy: StopStepSchema.nullable(),
      exitCode: z.number().int().nullable(),
    }),
  ),
  failed: z.array(z.object({ uuid: ContainerIdSchema, taskId: NonNegativeIntSchema, error: z.string() })),
});

/** A stop reply. */
export type StopTasksReply = z.infer<typeof StopTasksReplySchema>;
