import { describe, expect, it } from "vitest";
import { UserError, formatAge, formatBytes, parseDuration } from "../src/index.js";

describe("formatBytes", () => {
  it.each([
    [0, "0B"],
    [512, "512B"],
    [1024, "1Ki"],
    [64 * 2 ** 20, "64Mi"],
    [2 ** 30, "1Gi"],
    [1434 * 2 ** 20, "1434Mi"],
    [1536 * 2 ** 20, "1536Mi"],
    [3 * 2 ** 40, "3Ti"],
    [100_000, "97.7Ki"],
    [-1, "-"],
  ])("%d bytes is %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe("formatAge", () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const d = 24 * h;
  it.each([
    [-5 * s, "0s"],
    [999, "0s"],
    [45 * s, "45s"],
    [119 * s, "119s"],
    [5 * m + 3 * s, "5m3s"],
    [5 * m, "5m"],
    [65 * m, "65m"],
    [3 * h + 5 * m, "3h5m"],
    [23 * h, "23h"],
    [2 * d + 3 * h, "2d3h"],
    [400 * d, "400d"],
    [2 * 365 * d + 10 * d, "2y10d"],
  ])("%d ms is %s", (ms, text) => {
    expect(formatAge(ms)).toBe(text);
  });
});

describe("parseDuration", () => {
  it.each([
    ["30", 30_000],
    ["30s", 30_000],
    ["1.5s", 1500],
    ["500ms", 500],
    ["2m", 120_000],
    ["1h", 3_600_000],
  ])("%s is %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it("refuses what is not a positive duration, naming the flag", () => {
    expect(() => parseDuration("soon", "--timeout")).toThrow(UserError);
    expect(() => parseDuration("soon", "--timeout")).toThrow(/--timeout must be a duration/);
    expect(() => parseDuration("0s", "--timeout")).toThrow(/more than 0/);
    expect(() => parseDuration("1000h", "--timeout")).toThrow(/at most 24 days/);
  });
});
