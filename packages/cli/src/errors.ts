/** Errors the CLI reports as one line (or a few) without a stack trace. */

/**
 * A problem the user can fix (bad input, unknown app, NATS unreachable): main prints its
 * message, prefixed `eve-tasks: `, and exits with `exitCode` (default 1). Never a stack trace.
 */
export class UserError extends Error {
  override name = "UserError";
  constructor(
    message: string,
    readonly exitCode = 1,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The message to print for any error: the message alone, or with its stack when `debug` is on. */
export function describeError(err: unknown, debug = false): string {
  if (err instanceof UserError && !debug) return err.message;
  if (err instanceof Error) {
    if (debug && err.stack) return err.stack;
    return err.message || err.name;
  }
  return String(err);
}
