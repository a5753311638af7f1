/**
 * The one back-off policy of the bus: delays that double from `firstMs` up to `maxMs`. Every loop
 * in the bus that retries (compare-and-set conflicts, the outbox's sends and compactions, the work
 * queue's pulls, waiting for a bucket) waits through it, so nothing retries in a tight loop.
 */
export interface BackoffPolicy {
  /** The delay before the first retry. */
  firstMs: number;
  /** The longest delay. */
  maxMs: number;
  /**
   * Spread each delay uniformly over [0, delay] ("full jitter"), for retries that race other
   * processes (compare-and-set conflicts), so they do not collide again in step.
   */
  jitter?: boolean;
}

/** The delay before retry number `attempt` (0 for the first retry) under `policy`. */
export function backoffDelayMs(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.firstMs * 2 ** Math.max(0, Math.min(attempt, 30)));
  return policy.jitter ? Math.floor(exp * random()) : exp;
}

/** Compare-and-set retries against other writers of the same key. */
export const CAS_BACKOFF: BackoffPolicy = { firstMs: 5, maxMs: 200, jitter: true };

/** How many compare-and-set conflicts a write retries before it gives up. */
export const MAX_CAS_ATTEMPTS = 20;
