import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { KeyedRunner } from "@eve-tasks/executor";

describe("KeyedRunner", () => {
  it("never overlaps runs of one key and coalesces kicks into one more run", async () => {
    const log: string[] = [];
    let active = 0;
    let maxActive = 0;
    const r = new KeyedRunner(async (key) => {
      active++;
      maxActive = Math.max(maxActive, active);
      log.push(`start ${key}`);
      await sleep(20);
      log.push(`end ${key}`);
      active--;
    });
    r.kick("a");
    r.kick("a");
    r.kick("a");
    r.kick("b");
    await r.idle();
    expect(log.filter((l) => l === "start a")).toHaveLength(2);
    expect(log.filter((l) => l === "start b")).toHaveLength(1);
    // a and b ran at the same time, but never two a's.
    expect(maxActive).toBe(2);
    const aRuns = log.filter((l) => l.endsWith(" a"));
    expect(aRuns).toEqual(["start a", "end a", "start a", "end a"]);
  });
});
