import { setTimeout as sleep } from "node:timers/promises";
import { WaitTimeoutError } from "@eve-tasks/embedded";

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long; default 10 000 ms. */
  timeoutMs?: number;
  /** Pause between attempts; default 50 ms. */
  intervalMs?: number;
  /** What was awaited, for the error message. */
  message?: string;
}

/**
 * Polls `fn` until it returns a value other than undefined, null or false (a throw counts as
 * "not yet") and resolves with that value. Rejects with {@link WaitTimeoutError} naming
 * `message` and the last error `fn` threw.
 */
export async function waitFor<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitForOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const last =
        lastError === undefined
          ? ""
          : `; last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)}`;
      throw new WaitTimeoutError(
        `timed out after ${timeoutMs} ms waiting for ${options.message ?? "a condition"}${last}`,
        {
          context: { timeoutMs, message: options.message },
          cause: lastError,
        },
      );
    }
    await sleep(intervalMs);
  }
}
