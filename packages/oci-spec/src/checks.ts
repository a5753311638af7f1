/** Argument checks shared by the options; each throws {@link SpecOptionError}. */
import { SpecOptionError } from "./errors.js";

/** Largest uint32: the range of user and group IDs. */
export const MAX_ID = 4_294_967_295;

/** Throws unless `path` is an absolute path without NUL bytes. */
export function checkAbsolutePath(option: string, what: string, path: unknown): asserts path is string {
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new SpecOptionError(
      option,
      path,
      `${what} must be an absolute path (starting with '/'); got ${JSON.stringify(path)}`,
    );
  }
  if (path.includes("\0")) {
    throw new SpecOptionError(option, path, `${what} must not contain a NUL byte`);
  }
}

/** Throws unless `n` is a whole number from `min` to 2^53 − 1. */
export function checkWholeNumber(option: string, what: string, n: unknown, min: number): asserts n is number {
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min) {
    throw new SpecOptionError(
      option,
      n,
      `${what} must be a whole number of at least ${min}; got ${String(n)}`,
    );
  }
}
