/** A system the kit could not start or stop, with what it was doing. */
export class TestkitError extends Error {
  override readonly name: string = "TestkitError";
  readonly context: Readonly<Record<string, unknown>>;
  constructor(message: string, options: ErrorOptions & { context?: Record<string, unknown> } = {}) {
    super(message, options);
    this.context = options.context ?? {};
  }
}
