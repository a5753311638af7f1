/**
 * The bus's retry delays, all from the project's one back-off policy (@eve-tasks/backoff). Every
 * loop in the bus that retries (compare-and-set conflicts, the outbox's sends and compactions, the
 * work queue's pulls, waiting for a bucket) waits through it, so nothing retries in a tight loop.
 */
import type { BackoffPolicy } from "@eve-tasks/backoff";

/**
 * Compare-and-set retries against other writers of the same key: each delay spread uniformly
 * over [0, delay] ("full jitter"), so racing processes do not collide again in step.
 */
export const CAS_BACKOFF: BackoffPolicy = { initialMs: 5, maxMs: 200, jitter: 1 };

/** How many compare-and-set conflicts a write retries before it gives up. */
export const MAX_CAS_ATTEMPTS = 20;
