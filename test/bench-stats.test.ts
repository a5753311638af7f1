// The benchmark's statistics helpers (test/bench/stats.ts): the bootstrap interval a run of
// (a) reports next to its ratio.
import { describe, expect, it } from "vitest";
import { bootstrapRatioCi95, median } from "./bench/stats.js";

/** `n` values spread evenly over [lo, hi]. */
const spread = (n: number, lo: number, hi: number): number[] =>
  Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));

describe("bootstrapRatioCi95", () => {
  it("brackets the ratio of the medians, and narrows with more samples", () => {
    const base = spread(60, 45, 90);
    const ours = base.map((x) => x + 8);
    const ratio = median(ours) / median(base);
    const [lo, hi] = bootstrapRatioCi95(ours, base);
    expect(lo).toBeLessThan(ratio);
    expect(hi).toBeGreaterThan(ratio);
    // Samples spread over 45–90 ms leave the ratio of 60 a side uncertain by several hundredths.
    expect(hi - lo).toBeGreaterThan(0.04);
    const [lo4, hi4] = bootstrapRatioCi95(spread(960, 53, 98), spread(960, 45, 90));
    expect(hi4 - lo4).toBeLessThan((hi - lo) / 2);
  });

  it("is exact when nothing varies, and the same for the same samples", () => {
    expect(bootstrapRatioCi95([110, 110, 110], [100, 100, 100])).toEqual([1.1, 1.1]);
    const ours = spread(30, 60, 100);
    const base = spread(30, 50, 90);
    expect(bootstrapRatioCi95(ours, base)).toEqual(bootstrapRatioCi95(ours, base));
    expect(bootstrapRatioCi95([], base)).toEqual([NaN, NaN]);
  });
});
