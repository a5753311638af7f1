import { describe, expect, it } from "vitest";
import { removedCondition, runningCondition, stoppedCondition } from "../src/index.js";
import { NOW, halted, running } from "./fixtures.js";

const error = (configRevision: number) => ({
  source: "spec-builder" as const,
  message: "bad image",
  configRevision,
  time: NOW.toISOString(),
});

describe("wait conditions", () => {
  it("stop waits for a state without a task", () => {
    const c = stoppedCondition(8);
    expect(c.check(undefined)).toEqual({ done: false });
    expect(c.check(running())).toEqual({ done: false });
    expect(c.check(running({ state: "HALTING" }))).toEqual({ done: false });
    expect(c.check(halted())).toEqual({ done: true });
    expect(c.check(halted({ state: "INSTALLED", exitCode: null, signal: null, finishedAt: null }))).toEqual({
      done: true,
    });
  });

  it("start waits for RUNNING and fails on an error about this revision or a BROKEN task", () => {
    const c = runningCondition(8);
    expect(c.check(halted())).toEqual({ done: false });
    expect(c.check(running())).toEqual({ done: true });
    expect(c.check(halted({ error: error(7) }))).toEqual({ done: false });
    expect(c.check(halted({ error: error(8) }))).toEqual({
      done: false,
      failed: "spec-builder: bad image (config revision 8)",
    });
    expect(c.check(halted({ state: "BROKEN", exitCode: 1, signal: null, configRevision: 8 }))).toEqual({
      done: false,
      failed: "it is BROKEN (exit 1)",
    });
  });

  it("restart waits for RUNNING with another task than before", () => {
    const before = running();
    const c = runningCondition(9, before);
    expect(c.goal).toBe("RUNNING with a new task");
    expect(c.check(running())).toEqual({ done: false });
    expect(c.check(running({ state: "HALTING" }))).toEqual({ done: false });
    expect(c.check(running({ taskId: 4343, lastTaskId: 4343 }))).toEqual({ done: true });
    // The same PID again, but a new start: a new task.
    expect(c.check(running({ startedAt: NOW.toISOString() }))).toEqual({ done: true });
  });

  it("delete waits for the status to be gone", () => {
    expect(removedCondition().check(running())).toEqual({ done: false });
    expect(removedCondition().check(undefined)).toEqual({ done: true });
  });
});
