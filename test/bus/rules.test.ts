// The bus's pure decisions: the ordering rule, the outbox's compaction rule, the back-off policy.
import { describe, expect, it } from "vitest";
import { backoffDelayMs } from "@eve-tasks/backoff";
import {
  CAS_BACKOFF,
  keepAliveIntervalMs,
  parseConfigRevision,
  planDelete,
  planPut,
  shouldCompact,
} from "@eve-tasks/bus";
import type { StoredRecord } from "@eve-tasks/bus";

const none: StoredRecord = { kind: "none" };
const value = (configRevision: number | undefined, text = "v"): StoredRecord => ({
  kind: "value",
  revision: 40,
  configRevision,
  text,
});
const tombstone = (configRevision: number | undefined): StoredRecord => ({
  kind: "tombstone",
  revision: 41,
  configRevision,
});

describe("the ordering rule", () => {
  it("puts over older records only; a delete wins a tie", () => {
    expect(planPut(none, 5, "x")).toEqual({ action: "put", previousSeq: 0 });
    expect(planPut(value(4), 5, "x")).toEqual({ action: "put", previousSeq: 40 });
    expect(planPut(value(5), 5, "x")).toEqual({ action: "put", previousSeq: 40 });
    expect(planPut(value(5, "x"), 5, "x")).toEqual({ action: "skip", result: "unchanged" });
    expect(planPut(value(6), 5, "x")).toEqual({ action: "skip", result: "stale" });
    expect(planPut(value(undefined), 5, "x")).toEqual({ action: "put", previousSeq: 40 });
    expect(planPut(tombstone(4), 5, "x")).toEqual({ action: "put", previousSeq: 41 });
    expect(planPut(tombstone(5), 5, "x")).toEqual({ action: "skip", result: "stale" });
    expect(planPut(tombstone(6), 5, "x")).toEqual({ action: "skip", result: "stale" });
    // A plain KV delete (no header) orders before everything.
    expect(planPut(tombstone(undefined), 1, "x")).toEqual({ action: "put", previousSeq: 41 });
  });

  it("leaves a tombstone unless a newer record is there", () => {
    expect(planDelete(none, 5)).toEqual({ action: "tombstone", previousSeq: 0, result: "absent" });
    expect(planDelete(value(5), 5)).toEqual({ action: "tombstone", previousSeq: 40, result: "deleted" });
    expect(planDelete(value(6), 5)).toEqual({ action: "skip", result: "stale" });
    expect(planDelete(tombstone(4), 5)).toEqual({ action: "tombstone", previousSeq: 41, result: "absent" });
    expect(planDelete(tombstone(5), 5)).toEqual({ action: "skip", result: "absent" });
    expect(planDelete(tombstone(undefined), 5)).toEqual({
      action: "tombstone",
      previousSeq: 41,
      result: "absent",
    });
  });

  it("reads a revision header strictly", () => {
    expect(parseConfigRevision("42")).toBe(42);
    expect(parseConfigRevision(undefined)).toBeUndefined();
    for (const bad of ["", "-1", "4.2", "1e3", "x", "9999999999999999"])
      expect(parseConfigRevision(bad)).toBeUndefined();
  });
});

describe("the outbox's compaction rule", () => {
  it("compacts a big file that is mostly done with", () => {
    expect(shouldCompact(1000, 0, 1024)).toBe(false);
    expect(shouldCompact(2048, 0, 1024)).toBe(true);
    expect(shouldCompact(2048, 1024, 1024)).toBe(true);
    expect(shouldCompact(2048, 1025, 1024)).toBe(false);
  });
});

describe("back-off", () => {
  it("spreads compare-and-set retries over [0, delay], doubling from 5 ms up to 200 ms", () => {
    expect(backoffDelayMs(3, CAS_BACKOFF, () => 0)).toBe(20);
    expect(backoffDelayMs(3, CAS_BACKOFF, () => 0.5)).toBe(10);
    expect(backoffDelayMs(3, CAS_BACKOFF, () => 0.999999)).toBe(0);
    expect(backoffDelayMs(50, CAS_BACKOFF, () => 0)).toBe(200);
  });

  it("keeps a delivery alive three times per ack wait", () => {
    expect(keepAliveIntervalMs(30_000)).toBe(10_000);
    expect(keepAliveIntervalMs(1000)).toBe(333);
  });
});
