// The relist's choice, without containerd: an app running exactly as wanted is left alone; any
// difference between the config, the container's labels, the task and the last status gets the
// app reconciled.
import { describe, expect, it } from "vitest";
import { labelsFor, relistKicks } from "@eve-tasks/executor";
import type { ListedContainer, RelistInput, RuntimeTask } from "@eve-tasks/executor";
import type { TaskStatus } from "@eve-tasks/schemas";
import { MiB, UUID, ready, status } from "./fixtures.js";

const PID = 4242;

type App = RelistInput["apps"] extends Iterable<infer A> ? A : never;

/** An app running steadily: config, labels, task, status and the executor's wait all agree. */
function steadyWorld(): {
  app: App;
  container: ListedContainer;
  task: RuntimeTask;
  status: TaskStatus;
} {
  const d = ready();
  const app: App = {
    uuid: UUID,
    desired: d,
    task: { pid: PID, exit: new Promise(() => undefined), oomSeen: false, stopping: undefined },
    startFailure: undefined,
    bootFallback: undefined,
    wake: undefined,
  };
  return {
    app,
    container: { id: UUID, labels: labelsFor(d), memoryLimitBytes: 64 * MiB },
    task: { id: UUID, pid: PID, status: "RUNNING" },
    status: status("RUNNING", { taskId: PID, lastTaskId: PID }),
  };
}

function kicks(w: ReturnType<typeof steadyWorld>, over: Partial<RelistInput> = {}): string[] {
  return relistKicks({
    apps: [w.app],
    status: () => w.status,
    containers: [w.container],
    tasks: [w.task],
    nodeStopping: false,
    ...over,
  });
}

describe("the relist", () => {
  it("leaves an app alone that runs as its config, labels, task and status say", () => {
    expect(kicks(steadyWorld())).toEqual([]);
  });

  const rows: [string, (w: ReturnType<typeof steadyWorld>) => Partial<RelistInput> | void][] = [
    ["the task is gone (a lost exit)", () => ({ tasks: [] })],
    ["the container is gone", () => ({ containers: [] })],
    ["the task has stopped", (w) => void (w.task = { ...w.task, status: "STOPPED" })],
    ["the task has another PID", (w) => void (w.task = { ...w.task, pid: PID + 1 })],
    ["the executor waits on no task", (w) => void ((w.app as { task: App["task"] }).task = undefined)],
    ["the status is not RUNNING", (w) => void (w.status = { ...w.status, state: "BOOTING" })],
    ["the status names another task", (w) => void (w.status = { ...w.status, taskId: 1 })],
    ["the status is of an older revision", (w) => void (w.status = { ...w.status, configRevision: 6 })],
    ["there is no status", () => ({ status: () => undefined })],
    [
      "the config changed (spec)",
      (w) => void ((w.app as { desired: App["desired"] }).desired = ready({ specSha256: "0".repeat(64) })),
    ],
    [
      "the config changed (revision)",
      (w) => void ((w.app as { desired: App["desired"] }).desired = ready({ configRevision: 8 })),
    ],
    [
      "a restart was asked for",
      (w) => void ((w.app as { desired: App["desired"] }).desired = ready({ restartCounter: 1 })),
    ],
    [
      "the app is deactivated",
      (w) => void ((w.app as { desired: App["desired"] }).desired = ready({ activate: false })),
    ],
    ["the config is deleted", (w) => void ((w.app as { desired: App["desired"] }).desired = undefined)],
    [
      "a wake-up is scheduled",
      (w) =>
        void ((w.app as { wake: App["wake"] }).wake = { atMs: 1, timer: setTimeout(() => undefined, 0) }),
    ],
    [
      "the boot watchdog asked for a fallback",
      (w) =>
        void ((w.app as { bootFallback: App["bootFallback"] }).bootFallback = { pid: PID, reason: "hung" }),
    ],
    ["the node stops its tasks", () => ({ nodeStopping: true })],
  ];
  it.each(rows)("reconciles the app when %s", (_what, change) => {
    const w = steadyWorld();
    const over = change(w) ?? {};
    expect(kicks(w, over)).toEqual([UUID]);
  });

  it("reconciles only the apps that differ, among many", () => {
    const a = steadyWorld();
    const b = steadyWorld();
    const uuidB = "0b000000-0000-4000-8000-000000000001";
    (b.app as { uuid: string }).uuid = uuidB;
    const got = relistKicks({
      apps: [a.app, b.app],
      status: (uuid) => (uuid === UUID ? a.status : { ...b.status, uuid: uuidB }),
      containers: [a.container, { ...b.container, id: uuidB }],
      tasks: [a.task],
      nodeStopping: false,
    });
    expect(got).toEqual([uuidB]);
  });
});
