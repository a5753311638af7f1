// Helpers for the messages of zod issues.
import type { z } from "zod";

/**
 * A zod error function for a schema's own issues: `is required` when the field is missing, else
 * `text` (or zod's default message when `text` is omitted). Used on type constructors so a
 * missing field does not read as "must be a string".
 */
export function expected(text?: string): (issue: { readonly input?: unknown }) => string | undefined {
  return (issue) => (issue.input === undefined ? "is required" : text);
}

/**
 * Parse options that word every missing field as `is required` where the schema sets no message
 * of its own; {@link decodeValue} and {@link encodeValue} parse with them.
 */
export const parseOptions: z.core.ParseContext<z.core.$ZodIssue> = {
  error: (issue) => (issue.code === "invalid_type" && issue.input === undefined ? "is required" : undefined),
};

/**
 * `schema.safeParse(value)` whose failures are worded with {@link parseOptions}. It parses
 * without them first: zod 4 parses several times slower when its parse context carries any
 * option (an error map, `reportInput`; an empty one is as fast as none): a TaskMetrics took
 * 11–18 µs with the error map, 2 µs without. The wording only matters for a value that fails,
 * which is then parsed once more with them.
 */
export function safeParseWorded<S extends z.ZodType>(
  schema: S,
  value: unknown,
): z.ZodSafeParseResult<z.output<S>> {
  const fast = schema.safeParse(value);
  return fast.success ? fast : schema.safeParse(value, parseOptions);
}
