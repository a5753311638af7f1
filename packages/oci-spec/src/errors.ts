/** Errors of the spec options. */

/**
 * An option was given a value it cannot put into a spec (a user name, a relative path, a
 * non-positive limit, …). Thrown when the option is created, so a caller learns of the bad value
 * before any spec is built. `message` starts with the option's name and says what to give instead.
 */
export class SpecOptionError extends Error {
  override readonly name = "SpecOptionError";

  constructor(
    /** The option that refused the value, e.g. `withUser`. */
    readonly option: string,
    /** The value it refused. */
    readonly value: unknown,
    /** Why, for a human. */
    readonly reason: string,
  ) {
    super(`${option}: ${reason}`);
  }
}
