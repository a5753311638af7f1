import { describe, expect, it } from "vitest";
import { Backoff, DEFAULT_BACKOFF, backoffDelayMs, backoffPolicy } from "@eve-tasks/backoff";

describe("backoffDelayMs", () => {
  it("grows by the factor from initialMs and stops at maxMs", () => {
    const p = { initialMs: 100, maxMs: 1000 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(n, p))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([1, 2, 3].map((n) => backoffDelayMs(n, { ...p, factor: 3 }))).toEqual([100, 300, 900]);
  });

  it("uses the defaults: 1 s doubling to 30 s", () => {
    expect([1, 2, 5, 6, 7].map((n) => backoffDelayMs(n))).toEqual([1000, 2000, 16_000, 30_000, 30_000]);
    expect(DEFAULT_BACKOFF).toEqual({ initialMs: 1000, maxMs: 30_000, factor: 2, jitter: 0 });
  });

  it("stays at the cap for huge attempts, and at 0 for a zero initial delay", () => {
    expect(backoffDelayMs(10_000, { initialMs: 5, maxMs: 60_000 })).toBe(60_000);
    expect(backoffDelayMs(10_000, { initialMs: 0, maxMs: 60_000 })).toBe(0);
    expect(backoffDelayMs(0, { initialMs: 5, maxMs: 100 })).toBe(5);
    expect(backoffDelayMs(-3, { initialMs: 5, maxMs: 100 })).toBe(5);
  });

  it("takes up to `jitter` of the delay away, never adding to it", () => {
    const p = { initialMs: 1000, maxMs: 1000, jitter: 0.5 };
    expect(backoffDelayMs(3, p, () => 0)).toBe(1000);
    expect(backoffDelayMs(3, p, () => 0.5)).toBe(750);
    expect(backoffDelayMs(3, p, () => 0.999999)).toBe(500);
  });

  it("refuses policies that make no sense", () => {
    expect(() => backoffPolicy({ factor: 0.5 })).toThrow(/factor/);
    expect(() => backoffPolicy({ jitter: 2 })).toThrow(/jitter/);
    expect(() => backoffPolicy({ initialMs: -1 })).toThrow(/≥ 0/);
  });
});

describe("Backoff", () => {
  it("counts retries and starts over after a reset", () => {
    const b = new Backoff({ initialMs: 10, maxMs: 35 });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([10, 20, 35, 35]);
    expect(b.attempts).toBe(4);
    b.reset();
    expect(b.next()).toBe(10);
  });
});
