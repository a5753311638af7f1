/** Errors of the launcher. */

/** The launcher cannot start (another one owns the data dir, a service failed to come up). */
export class LauncherError extends Error {
  override readonly name = "LauncherError";
  /** Facts for the log: paths, PIDs. */
  readonly context: Readonly<Record<string, unknown>>;

  constructor(message: string, options: { context?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.context = options.context ?? {};
  }
}
