/** Restart back-off of workers: 1 s doubling to 30 s, reset after a run of 60 s. */
import { backoffDelayMs as delayMs } from "@eve-tasks/backoff";
import type { BackoffPolicy } from "@eve-tasks/backoff";

/** Delay before the first restart. */
export const INITIAL_BACKOFF_MS = 1_000;
/** Longest delay. */
export const MAX_BACKOFF_MS = 30_000;
/** A worker that ran this long before dying starts over at {@link INITIAL_BACKOFF_MS}. */
export const BACKOFF_RESET_AFTER_MS = 60_000;

/** The workers' restart policy, in the project's one back-off policy. */
export const WORKER_RESTART_BACKOFF: BackoffPolicy = { initialMs: INITIAL_BACKOFF_MS, maxMs: MAX_BACKOFF_MS };

/** The delay before restart number `failures` in a row (1-based): 1 s, 2 s, 4 s, … 30 s. */
export function backoffDelayMs(failures: number): number {
  return delayMs(failures, WORKER_RESTART_BACKOFF);
}

/** The count of failures in a row after a run of `ranMs` ended: reset to 1 after a long run. */
export function nextFailureCount(previous: number, ranMs: number): number {
  return ranMs >= BACKOFF_RESET_AFTER_MS ? 1 : previous + 1;
}
