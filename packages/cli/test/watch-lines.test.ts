import { describe, expect, it } from "vitest";
import { clockTime, configChanges, describeStatus, formatWatchLine, statusChanges } from "../src/index.js";
import type { WatchEvent } from "../src/index.js";
import { NOW, UUID, config, halted, running } from "./fixtures.js";

describe("watch lines", () => {
  it("describes a status: state, task, what it waits for, the last exit, the error", () => {
    expect(describeStatus(running())).toEqual(["RUNNING", "taskId 4242"]);
    expect(describeStatus(halted())).toEqual(["HALTED", "exit 143 (SIGTERM)"]);
    const pending = running({ state: "PENDING", taskId: 0, anchorStartTicks: null, waitingFor: "seed" });
    expect(describeStatus(pending)).toEqual(["PENDING", "waiting for seed"]);
  });

  it("names state and task transitions and the exit of a stop", () => {
    const stopping = running({ state: "HALTING" });
    expect(statusChanges(running(), stopping)).toEqual(["RUNNING → HALTING"]);
    expect(statusChanges(stopping, halted())).toEqual([
      "HALTING → HALTED",
      "taskId 4242 → 0",
      "exit 143 (SIGTERM)",
    ]);
  });

  it("names an OOM kill, restarts and a new config revision", () => {
    const broken = halted({ state: "BROKEN", exitCode: 137, signal: "SIGKILL", oomKilled: true });
    expect(statusChanges(running(), broken)).toContain("exit 137 (SIGKILL, OOM-killed)");
    expect(statusChanges(running(), running({ restarts: 1, configRevision: 9 }))).toEqual([
      "restarts 0 → 1",
      "config revision 9",
    ]);
  });

  it("names a new error and its clearing, and nothing for a bookkeeping-only update", () => {
    const error = {
      source: "task-executor" as const,
      message: "boom",
      configRevision: 7,
      time: NOW.toISOString(),
    };
    expect(statusChanges(running(), running({ error }))).toEqual([
      "error: task-executor: boom (config revision 7)",
    ]);
    expect(statusChanges(running({ error }), running())).toEqual(["error cleared"]);
    expect(statusChanges(running(), running({ updatedAt: "2024-05-01T12:05:00.000Z" }))).toEqual([]);
  });

  it("names config changes of activate, restartCounter and displayName, and other spec changes", () => {
    expect(configChanges(config(), config({ activate: false }))).toEqual(["activate true → false"]);
    expect(configChanges(config(), config({ restartCounter: 1, displayName: "hi" }))).toEqual([
      "restartCounter 0 → 1",
      'displayName "hello" → "hi"',
    ]);
    expect(configChanges(config(), config({ resources: { memoryMiB: 128, vcpus: 1 } }))).toEqual([
      "spec changed",
    ]);
  });

  it("formats one line per event: time, name, uuid, what happened", () => {
    const base: WatchEvent = {
      time: NOW.toISOString(),
      event: "status-changed",
      uuid: UUID,
      name: "hello",
      changes: ["RUNNING → HALTING"],
      revision: 8,
      config: null,
      status: null,
    };
    const t = clockTime(NOW);
    expect(t).toMatch(/^\d\d:\d\d:\d\d$/);
    expect(formatWatchLine(base)).toBe(`${t} hello ${UUID} RUNNING → HALTING\n`);
    expect(formatWatchLine({ ...base, event: "config-changed", changes: ["activate true → false"] })).toBe(
      `${t} hello ${UUID} config changed (revision 8): activate true → false\n`,
    );
    expect(formatWatchLine({ ...base, event: "config-created", changes: [] })).toBe(
      `${t} hello ${UUID} config created (revision 8)\n`,
    );
    expect(formatWatchLine({ ...base, event: "status-deleted", changes: [], name: null })).toBe(
      `${t} - ${UUID} status removed\n`,
    );
    expect(formatWatchLine({ ...base, event: "current", changes: [] })).toBe(
      `${t} hello ${UUID} no status yet\n`,
    );
    expect(formatWatchLine({ ...base, name: "evil\nname" })).toContain("evil\\nname");
  });
});
