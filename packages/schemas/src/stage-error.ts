import { z } from "zod";
import { expected } from "./error-messages.js";
import { ConfigRevisionSchema, TimestampSchema } from "./primitives.js";

/** The workers that report errors about an app; `source` of a {@link StageError}. */
export const ErrorSourceSchema = z.enum(["spec-builder", "task-executor", "hypervisor-seed-fetcher"], {
  error: expected('must be "spec-builder", "task-executor" or "hypervisor-seed-fetcher"'),
});

/** Which worker reported an error. */
export type ErrorSource = z.infer<typeof ErrorSourceSchema>;

/**
 * An error of one pipeline stage about one config revision. A stage that fails passes it
 * downstream (a FAILED TaskConfig), and TaskStatus.error shows it to the user.
 */
export const StageErrorSchema = z.object({
  source: ErrorSourceSchema,
  message: z.string({ error: expected("must be a string") }).min(1, { error: "must not be empty" }),
  configRevision: ConfigRevisionSchema,
  time: TimestampSchema,
});

/** An error of one stage: who, what (a sentence for a human), which config revision, when. */
export type StageError = z.infer<typeof StageErrorSchema>;
