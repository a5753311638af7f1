import { median, percentile, r1, r3 } from "./stats.js";

/** One scenario's outcome: printed as one JSON line on stdout. */
export interface ScenarioResult {
  scenario: string;
  /** Measurements per side (scenario a), or apps per burst (scenario b). */
  n: number;
  medianMs: number;
  p95Ms: number;
  baselineMedianMs: number;
  baselineP95Ms: number;
  /** Our median / the baseline's median. */
  ratio: number;
  target: string;
  met: boolean;
  /** What the baseline is. */
  baseline: string;
  [more: string]: unknown;
}

/**
 * The fields of a result that compares the medians of `ours` and `base` (ms samples of the same
 * run) against a target "ratio ≤ `maxRatio`".
 */
export function medianRatio(
  ours: readonly number[],
  base: readonly number[],
  maxRatio: number,
): Pick<
  ScenarioResult,
  "medianMs" | "p95Ms" | "baselineMedianMs" | "baselineP95Ms" | "ratio" | "target" | "met"
> {
  const ratio = median(ours) / median(base);
  return {
    medianMs: r1(median(ours)),
    p95Ms: r1(percentile(ours, 95)),
    baselineMedianMs: r1(median(base)),
    baselineP95Ms: r1(percentile(base, 95)),
    ratio: r3(ratio),
    target: `<= ${maxRatio.toFixed(1)}`,
    met: ratio <= maxRatio,
  };
}
