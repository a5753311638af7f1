/** SignalRequest: a request to `eve.rpc.task-executor.<node>.signal` to signal an app's anchor. */
import { z } from "zod";
import { SchemaVersionSchema, SignalNameSchema, UuidSchema } from "./primitives.js";

/** Signal the anchor process of the app `uuid`; `schemaVersion` may be omitted. */
export const SignalRequestSchema = z.strictObject({
  schemaVersion: SchemaVersionSchema.optional(),
  uuid: UuidSchema,
  signal: SignalNameSchema.meta({ description: "signal name, e.g. SIGTERM, SIGHUP, SIGKILL" }),
});

/** A signal request. */
export type SignalRequest = z.infer<typeof SignalRequestSchema>;
