/**
 * The project's one retry delay policy: exponential back-off with a cap and optional jitter.
 * Callers keep their own attempt count (or a {@link Backoff}) and their own timer; this module
 * only says how long to wait.
 */

/** How delays grow. */
export interface BackoffPolicy {
  /** Delay before the first retry, in ms. */
  readonly initialMs: number;
  /** Longest delay, in ms. */
  readonly maxMs: number;
  /** Growth per retry (≥ 1); default {@link DEFAULT_BACKOFF}.factor. */
  readonly factor?: number;
  /**
   * Fraction of each delay drawn at random (0–1): the delay is taken uniformly from
   * `[d · (1 − jitter), d]`, so retries of many callers spread out and never exceed the cap.
   * Default 0 (none).
   */
  readonly jitter?: number;
}

/** The defaults: 1 s doubling to 30 s, no jitter. */
export const DEFAULT_BACKOFF = Object.freeze({
  initialMs: 1_000,
  maxMs: 30_000,
  factor: 2,
  jitter: 0,
}) satisfies Required<BackoffPolicy>;

/** A policy with every field set: `policy` over {@link DEFAULT_BACKOFF}. */
export function backoffPolicy(policy: Partial<BackoffPolicy> = {}): Required<BackoffPolicy> {
  const p = { ...DEFAULT_BACKOFF, ...policy };
  if (!(p.initialMs >= 0) || !(p.maxMs >= 0)) {
    throw new RangeError(`back-off delays must be ≥ 0 ms (initialMs ${p.initialMs}, maxMs ${p.maxMs})`);
  }
  if (!(p.factor >= 1)) throw new RangeError(`back-off factor must be ≥ 1 (got ${p.factor})`);
  if (!(p.jitter >= 0 && p.jitter <= 1))
    throw new RangeError(`back-off jitter must be 0–1 (got ${p.jitter})`);
  return p;
}

/**
 * The delay before retry number `attempt` (1 = the first retry):
 * `min(initialMs · factor^(attempt − 1), maxMs)`, less a random share of up to `jitter` of it.
 * An attempt below 1 counts as 1. `random` returns a number in [0, 1) (default `Math.random`).
 */
export function backoffDelayMs(
  attempt: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const p = backoffPolicy(policy);
  const n = Math.max(1, Math.floor(attempt));
  // initialMs · factor^(n−1) overflows to Infinity for large n, and 0 · Infinity is NaN.
  const grown = p.initialMs === 0 ? 0 : p.initialMs * p.factor ** (n - 1);
  const capped = Math.min(grown, p.maxMs);
  return p.jitter === 0 ? capped : Math.round(capped * (1 - p.jitter * random()));
}

/**
 * Counts retries in a row: {@link next} gives the delay before the next one, {@link reset} starts
 * over after a success.
 */
export class Backoff {
  readonly policy: Required<BackoffPolicy>;
  readonly #random: () => number;
  #attempts = 0;

  constructor(policy: Partial<BackoffPolicy> = {}, random: () => number = Math.random) {
    this.policy = backoffPolicy(policy);
    this.#random = random;
  }

  /** Retries counted since the last reset. */
  get attempts(): number {
    return this.#attempts;
  }

  /** Counts one more retry and returns its delay. */
  next(): number {
    this.#attempts += 1;
    return backoffDelayMs(this.#attempts, this.policy, this.#random);
  }

  /** Starts over: the next delay is `initialMs` again. */
  reset(): void {
    this.#attempts = 0;
  }
}
