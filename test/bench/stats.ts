// Small statistics and timing helpers for the benchmark runner.

/** Epoch milliseconds with sub-millisecond precision (comparable with other processes' Date.now()). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The median (mean of the two middle values for an even count); NaN for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A percentile by nearest rank (p in 0..100); NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

/**
 * A seeded pseudo-random generator in [0, 1): a 32-bit linear congruential generator
 * (multiplier 1664525, increment 1013904223), whose high bits are what a resample index uses.
 */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

/**
 * The 95% bootstrap interval of `median(ours) / median(baseline)`: each side resampled with
 * replacement `rounds` times, the 2.5th and 97.5th percentiles of the resampled ratios. Seeded,
 * so the same samples always give the same interval. It says how far the ratio of one run could
 * move from sampling alone: a target inside it is not decided by that run.
 */
export function bootstrapRatioCi95(
  ours: readonly number[],
  baseline: readonly number[],
  rounds = 2000,
  seed = 1,
): [number, number] {
  if (ours.length === 0 || baseline.length === 0) return [NaN, NaN];
  const random = seededRandom(seed);
  const resample = (xs: readonly number[]): number[] =>
    Array.from(xs, () => xs[Math.floor(random() * xs.length)]!);
  const ratios = Array.from({ length: rounds }, () => median(resample(ours)) / median(resample(baseline)));
  return [percentile(ratios, 2.5), percentile(ratios, 97.5)];
}

/** Rounds to 0.1 ms (JSON output). */
export function r1(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** Rounds a ratio to 3 decimals. */
export function r3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Medians of each named series, rounded. */
export function medians(series: Readonly<Record<string, readonly number[]>>): Record<string, number> {
  return Object.fromEntries(Object.entries(series).map(([k, v]) => [k, r1(median(v))]));
}

/** Runs `fn` over `items` with at most `limit` at once; resolves with the results in order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
