import { z } from "zod";
import { expected } from "./error-messages.js";
import { DurationMsSchema, NonNegativeIntSchema } from "./primitives.js";

/** What to do when a task's anchor exits by itself. */
export const RestartModeSchema = z.enum(["never", "on-failure", "always"], {
  error: expected('must be "never", "on-failure" or "always"'),
});

/** Restart mode: `never`, `on-failure` (exit ≠ 0 or a signal) or `always`. */
export type RestartMode = z.infer<typeof RestartModeSchema>;

/** Default restart policy: never restart; the numbers apply once a mode restarts. */
export const DEFAULT_RESTART_POLICY = {
  mode: "never",
  maxRestarts: 5,
  windowMs: 600_000,
  backoffMs: 1_000,
  maxBackoffMs: 60_000,
} as const;

/**
 * Restart policy of a task. At most `maxRestarts` restarts within a sliding `windowMs`; then the
 * task is BROKEN and stays so until the user acts. The n-th restart waits
 * `min(backoffMs · 2^(n−1), maxBackoffMs)`. Every field has a default, and `{}` is valid.
 */
export const RestartPolicySchema = z
  .strictObject({
    mode: RestartModeSchema.default(DEFAULT_RESTART_POLICY.mode),
    maxRestarts: NonNegativeIntSchema.default(DEFAULT_RESTART_POLICY.maxRestarts).meta({
      description: "restarts allowed within windowMs before the task is BROKEN",
    }),
    windowMs: DurationMsSchema.default(DEFAULT_RESTART_POLICY.windowMs).meta({
      description: "sliding window, in milliseconds, over which maxRestarts is counted",
    }),
    backoffMs: DurationMsSchema.default(DEFAULT_RESTART_POLICY.backoffMs).meta({
      description: "delay before the first restart, in milliseconds; doubled for each further restart",
    }),
    maxBackoffMs: DurationMsSchema.default(DEFAULT_RESTART_POLICY.maxBackoffMs).meta({
      description: "upper bound of the restart delay, in milliseconds",
    }),
  })
  .refine((p) => p.maxBackoffMs >= p.backoffMs, {
    error: "maxBackoffMs must be at least backoffMs",
    path: ["maxBackoffMs"],
  });

/** A restart policy with every default applied. */
export type RestartPolicy = z.infer<typeof RestartPolicySchema>;
/** A restart policy as a user may write it (every field optional). */
export type RestartPolicyInput = z.input<typeof RestartPolicySchema>;
