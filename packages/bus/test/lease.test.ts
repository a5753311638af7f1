// What a failed renewal of a lease means (pure): held on, lost, or not known yet.
import { describe, expect, it } from "vitest";
import { checkRenewal } from "../src/index.js";
import type { LeaseValue } from "../src/index.js";

const me = { pid: 10, startTicks: 5, host: "h", bootId: "b" };
const stored = (over: Partial<LeaseValue> = {}): LeaseValue => ({
  schemaVersion: 1,
  ...me,
  acquiredAt: "",
  renewedAt: "",
  ttlMs: 15_000,
  ...over,
});

describe("checkRenewal", () => {
  it("holds on when the stored lease is still this process's (a renewal stored, its ack lost)", () => {
    expect(checkRenewal({ value: stored(), revision: 42 }, me)).toMatchObject({ kind: "ours", revision: 42 });
  });
  it("is lost when another process holds it, even one with the same PID elsewhere or before", () => {
    for (const other of [{ pid: 11 }, { host: "x" }, { bootId: "old" }, { startTicks: 6 }]) {
      expect(checkRenewal({ value: stored(other), revision: 42 }, me).kind, JSON.stringify(other)).toBe(
        "lost",
      );
    }
    expect(checkRenewal({ value: stored({ pid: 11, host: "x" }), revision: 1 }, me).why).toContain(
      "pid 11 on host x",
    );
  });
  it("is lost when the key holds no lease (removed, or unreadable)", () => {
    expect(checkRenewal(null, me)).toMatchObject({ kind: "lost", why: "the lease was removed" });
    expect(checkRenewal({ value: "unreadable", revision: 3 }, me).kind).toBe("lost");
  });
  it("is not known while NATS does not answer (retried, not given up)", () => {
    expect(checkRenewal(undefined, me).kind).toBe("unknown");
  });
});
