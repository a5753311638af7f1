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
