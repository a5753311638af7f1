/**
 * JSON Schema documents generated from the zod schemas, one per message, committed under
 * `packages/schemas/json-schema/<Type>.schema.json` (regenerate with `npm run generate -w
 * @eve-tasks/schemas`). They describe what a publisher may send (zod's `io: "input"`): defaulted
 * fields are optional. Cross-field rules (e.g. a VM has no root) live only in the zod schemas.
 */
import { z } from "zod";
import { messageTypes } from "./message-types.js";
import { SignalReplySchema } from "./signal-reply.js";
import { SignalRequestSchema } from "./signal-request.js";
import { LogsReplySchema, LogsRequestSchema, WorkerServiceMetadataSchema } from "./operator-surface.js";
import { StopTasksReplySchema, StopTasksRequestSchema } from "./stop-tasks.js";
import { TaskEventSchema } from "./task-event.js";

/**
 * Every message with a JSON Schema file: the KV types plus events, the RPCs (signal, stop-tasks,
 * logs) and the metadata of the workers' NATS services.
 */
export const jsonSchemaMessages: Readonly<Record<string, z.ZodType>> = {
  ...Object.fromEntries(Object.entries(messageTypes).map(([name, info]) => [name, info.schema])),
  TaskEvent: TaskEventSchema,
  SignalRequest: SignalRequestSchema,
  SignalReply: SignalReplySchema,
  StopTasksRequest: StopTasksRequestSchema,
  StopTasksReply: StopTasksReplySchema,
  LogsRequest: LogsRequestSchema,
  LogsReply: LogsReplySchema,
  WorkerServiceMetadata: WorkerServiceMetadataSchema,
};

/**
 * A top-level `anyOf` of alternatives, some of them `oneOf`s, as one flat `oneOf`. The message
 * unions of this package are exclusive (AppInstanceConfig is a union of the v1 union on
 * `virtualization` and the runtime app, which `runtime` tells apart), so `oneOf` says what
 * validates: exactly one kind.
 */
function flattenTopUnion(schema: Record<string, unknown>): Record<string, unknown> {
  const anyOf = schema.anyOf;
  if (!Array.isArray(anyOf)) return schema;
  const flat = (anyOf as Record<string, unknown>[]).flatMap((alt) =>
    Array.isArray(alt.oneOf) && Object.keys(alt).length === 1
      ? (alt.oneOf as Record<string, unknown>[])
      : [alt],
  );
  const { anyOf: _dropped, ...rest } = schema;
  return { ...rest, oneOf: flat };
}

/** The JSON Schema (draft 2020-12) of `schema` as a publisher's input, titled `title`. */
export function jsonSchemaOf(title: string, schema: z.ZodType): Record<string, unknown> {
  const { $schema, ...rest } = z.toJSONSchema(schema, { io: "input", target: "draft-2020-12" });
  return { $schema, title, ...flattenTopUnion(rest) };
}

/** The file name and text (2-space JSON, final newline) of every JSON Schema file. */
export function generateJsonSchemaFiles(): { fileName: string; text: string }[] {
  return Object.entries(jsonSchemaMessages)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, schema]) => ({
      fileName: `${name}.schema.json`,
      text: `${JSON.stringify(jsonSchemaOf(name, schema), null, 2)}\n`,
    }));
}
