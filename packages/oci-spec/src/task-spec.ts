/** The check that a built spec holds what every task needs, before it travels in a TaskConfig. */
import { OciSpecSchema, safeParseWorded } from "@eve-tasks/schemas";
import type { OciSpec } from "@eve-tasks/schemas";
import type { RuntimeSpec } from "./types.js";

/** A built spec lacks something every task needs (args, memory or CPU limit, …). */
export class IncompleteSpecError extends Error {
  override readonly name = "IncompleteSpecError";

  constructor(
    /** One line per problem, naming the spec field. */
    readonly details: string,
    options?: ErrorOptions,
  ) {
    super(`the built OCI spec is not a complete task spec:\n${details}`, options);
  }
}

/**
 * Checks `spec` against the TaskConfig's spec schema (`root`, `process.args`, `process.cwd`,
 * `process.user`, `linux.resources.memory.limit` and `linux.resources.cpu` present and valid) and
 * returns it typed as the `OciSpec` a TaskConfig carries (unknown keys kept).
 *
 * @throws {IncompleteSpecError} naming each missing or bad field, e.g. when no `withArgs`,
 *   `withMemoryLimitBytes` or `withCpus` option was applied.
 */
export function toTaskSpec(spec: RuntimeSpec): OciSpec {
  const result = safeParseWorded(OciSpecSchema, spec);
  if (!result.success) {
    const details = result.error.issues
      .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "(spec)"}: ${issue.message}`)
      .join("\n");
    throw new IncompleteSpecError(details, { cause: result.error });
  }
  return result.data;
}
