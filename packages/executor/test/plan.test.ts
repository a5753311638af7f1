// The planner, without root and without containerd: every state of DESIGN's table (PENDING,
// INSTALLED, BOOTING, RUNNING, HALTING, HALTED, BROKEN, FAILED, UNKNOWN) and every transition
// between them, as rows of (what is wanted, what containerd has, what the executor remembers) →
// the next step; then whole transitions, each step applied to a model of containerd.
import { describe, expect, it } from "vitest";
import {
  MAX_RESTART_HISTORY,
  NODE_STOP_REASON,
  NO_RESTARTS,
  labelsFor,
  plan,
  planExit,
  readLabels,
} from "@eve-tasks/executor";
import type {
  Action,
  Ended,
  ObservedContainer,
  Observed,
  PlanInput,
  PreparedTask,
  RestartLabels,
} from "@eve-tasks/executor";
import type { ReadyTaskConfig, RestartPolicyInput, TaskConfig } from "@eve-tasks/schemas";
import { MiB, NOW, UUID, ready, spec, status } from "./fixtures.js";

const failedConfig: TaskConfig = {
  schemaVersion: 1,
  status: "FAILED",
  uuid: UUID,
  configRevision: 8,
  node: "local",
  version: "2",
  error: { source: "spec-builder", message: "bad", configRevision: 8, time: "2027-01-01T00:00:00.000Z" },
};
const pendingConfig: TaskConfig = {
  schemaVersion: 1,
  status: "PENDING",
  uuid: UUID,
  configRevision: 9,
  node: "local",
  version: "3",
  waitingFor: "seed",
  message: "waiting for the seed",
};

function preparedFor(d: ReadyTaskConfig, memoryLimitBytes = 64 * MiB): PreparedTask {
  return {
    spec: d.spec,
    rootfs: [],
    taskDir: `/d/tasks/${UUID}`,
    logPath: `/d/tasks/${UUID}/console.log`,
    io: { stdout: "file:///log", stderr: "file:///log" },
    staged: [],
    dirs: [],
    memoryLimitBytes,
    anchorTaxBytes: 0,
  };
}

/** A container built from `d`, with how its last task ended and the restart policy's memory. */
function containerOf(
  d: ReadyTaskConfig,
  ended: Ended = "",
  restarts: RestartLabels = NO_RESTARTS,
): ObservedContainer {
  const labels = labelsFor(d, ended, restarts);
  return { labels, view: readLabels(labels) };
}

const ROOM = { usableBytes: 1024 * MiB, heldBytes: 0, holders: 0 };

/** A plan input: `d` wanted (prepared unless `prepared: undefined` is given), nothing observed. */
function input(d: TaskConfig | undefined, over: Partial<PlanInput> = {}): PlanInput {
  return {
    desired: d,
    observed: { reachable: true },
    prepared: d?.status === "READY" ? { ok: true, task: preparedFor(d) } : undefined,
    status: undefined,
    memory: ROOM,
    startFailure: undefined,
    nodeStopping: false,
    nowMs: NOW,
    ...over,
  };
}

const seen = (container?: ObservedContainer, task?: { pid: number; status?: string }): Observed => ({
  reachable: true,
  ...(container ? { container } : {}),
  ...(task ? { task: { pid: task.pid, status: (task.status ?? "RUNNING") as "RUNNING" } } : {}),
});

const d = ready();
const policy = (p: RestartPolicyInput) => ready({ restartPolicy: p });
const renamed = ready({ configRevision: 12, version: "2", displayName: "renamed" });
const bigger = ready({ configRevision: 13, spec: spec(["/bin/sh", "-c", "other"]) });
const forged = { ...ready({ configRevision: 14 }), spec: spec(["/bin/false"]) };
const inactive = ready({ configRevision: 15, activate: false });
const counted = ready({ configRevision: 16, restartCounter: 1 });

const rows: [string, PlanInput, Partial<Action> & { kind: Action["kind"] }][] = [
  // UNKNOWN
  [
    "containerd unreachable → UNKNOWN, nothing touched",
    input(d, { observed: { reachable: false, error: "no socket" } }),
    { kind: "unknown", error: "no socket" },
  ],
  // Tasks that are not running as they should come first.
  [
    "a task that ended → record its exit",
    input(d, { observed: seen(containerOf(d), { pid: 5, status: "STOPPED" }) }),
    { kind: "finish", pid: 5 },
  ],
  [
    "a task left created by a crashed executor → discard it",
    input(d, { observed: seen(containerOf(d), { pid: 5, status: "CREATED" }) }),
    { kind: "discard", pid: 5 },
  ],
  [
    "an ended task of a deleted app → record its exit first",
    input(undefined, { observed: seen(containerOf(d), { pid: 5, status: "STOPPED" }) }),
    { kind: "finish", pid: 5 },
  ],
  // FAILED and PENDING configs of an earlier stage
  [
    "FAILED config, no task → FAILED",
    input(failedConfig),
    {
      kind: "fail",
      running: false,
      error: failedConfig.status === "FAILED" ? failedConfig.error : undefined,
    },
  ],
  [
    "FAILED config beside a running task → error only, the task keeps running",
    input(failedConfig, { observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "fail", running: true },
  ],
  [
    "PENDING config (seed) → PENDING",
    input(pendingConfig),
    { kind: "pending", waitingFor: "seed", running: false },
  ],
  [
    "PENDING config beside a running task → waitingFor only",
    input(pendingConfig, { observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "pending", running: true },
  ],
  // Node facts
  [
    "READY config not prepared yet → apply the node's facts",
    input(d, { prepared: undefined }),
    { kind: "prepare" },
  ],
  [
    "node facts rule it out → FAILED",
    input(d, { prepared: { ok: false, message: "outside EVE_VOLUME_ROOTS" } }),
    { kind: "reject", message: "outside EVE_VOLUME_ROOTS", running: false },
  ],
  [
    "node facts rule out an update → error beside the running task",
    input(renamed, { prepared: { ok: false, message: "nope" }, observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "reject", running: true },
  ],
  [
    "its network is unknown → PENDING waiting for the network",
    input(d, { prepared: { ok: false, message: "waiting for network lan", waitingFor: "network" } }),
    { kind: "pending", waitingFor: "network", running: false },
  ],
  [
    "an update's network is unknown → waitingFor beside the running task, which keeps running",
    input(renamed, {
      prepared: { ok: false, message: "waiting for network lan", waitingFor: "network" },
      observed: seen(containerOf(d), { pid: 5 }),
    }),
    { kind: "pending", waitingFor: "network", running: true },
  ],
  [
    "an equal fingerprint over another spec → rejected, the task keeps running",
    input(forged, { observed: seen(containerOf(forged), { pid: 5 }) }),
    { kind: "reject", running: true },
  ],
  // INSTALLED
  [
    "activate false, no container → INSTALLED (container created)",
    input(inactive),
    { kind: "install", create: true, state: "INSTALLED" },
  ],
  [
    "activate false, container labelled right → INSTALLED as it is",
    input(inactive, { observed: seen(containerOf(inactive)) }),
    { kind: "install", create: false, relabel: undefined, state: "INSTALLED" },
  ],
  [
    "activate false after a stop → HALTED stays, labels forget the restart history",
    input(inactive, {
      status: status("HALTED"),
      observed: seen(containerOf(inactive, "stopped", { restartTimes: [NOW - 5], restartDue: "" })),
    }),
    { kind: "install", create: false, relabel: { ended: "stopped", restarts: NO_RESTARTS }, state: "HALTED" },
  ],
  [
    "activate false after BROKEN → BROKEN stays; the labels say stopped (a deactivation is a stop on request)",
    input(inactive, { status: status("BROKEN"), observed: seen(containerOf(inactive, "exited")) }),
    { kind: "install", state: "BROKEN", relabel: { ended: "stopped", restarts: NO_RESTARTS } },
  ],
  [
    "activate false after an exit 0 by itself → HALTED stays; the labels say stopped",
    input(inactive, { status: status("HALTED"), observed: seen(containerOf(inactive, "exited")) }),
    { kind: "install", state: "HALTED", relabel: { ended: "stopped", restarts: NO_RESTARTS } },
  ],
  // BOOTING → RUNNING
  [
    "a new app → start (container created)",
    input(d),
    { kind: "start", container: false, restarts: NO_RESTARTS },
  ],
  [
    "activate true on an INSTALLED container → start on it",
    input(d, { observed: seen(containerOf(d)) }),
    { kind: "start", container: true },
  ],
  [
    "activate true after a stop on request → start again",
    input(d, { observed: seen(containerOf(d, "stopped")) }),
    { kind: "start", container: true, restarts: NO_RESTARTS },
  ],
  // RUNNING
  [
    "its task runs as wanted → adopt it, same PID",
    input(d, { observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "adopt", pid: 5, relabel: undefined },
  ],
  [
    "a paused task counts as running → adopt",
    input(d, { observed: seen(containerOf(d), { pid: 5, status: "PAUSED" }) }),
    { kind: "adopt", pid: 5 },
  ],
  [
    "a rename only → adopt, labels record the new revision",
    input(renamed, {
      observed: seen(containerOf(d, "", { restartTimes: [NOW - 9], restartDue: "" }), { pid: 5 }),
    }),
    {
      kind: "adopt",
      pid: 5,
      relabel: { ended: "", restarts: { restartTimes: [NOW - 9], restartDue: "" } },
      restarts: 1,
    },
  ],
  // HALTING
  [
    "activate false with a task → stop it",
    input(inactive, { observed: seen(containerOf(inactive), { pid: 5 }) }),
    { kind: "stop", pid: 5, reason: "activate is false", cause: "config" },
  ],
  [
    "a spec change with a task → stop it first",
    input(bigger, { observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "stop", pid: 5, reason: "the spec changed: replacing the task" },
  ],
  [
    "a spec change, task stopped → drop the old container",
    input(bigger, { observed: seen(containerOf(d, "stopped")) }),
    { kind: "replace" },
  ],
  [
    "a higher restartCounter → stop, then start",
    input(counted, { observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "stop", pid: 5, reason: "restart requested (restartCounter 1)" },
  ],
  [
    "the boot watchdog found no sign of life in the task → stop it (a requested stop)",
    input(d, {
      observed: seen(containerOf(d), { pid: 5 }),
      bootFallback: { pid: 5, reason: "no sign of life under KVM" },
    }),
    { kind: "stop", pid: 5, reason: "no sign of life under KVM", cause: "boot-watchdog" },
  ],
  [
    "the boot watchdog's finding for an older task → adopt the one running",
    input(d, {
      observed: seen(containerOf(d), { pid: 6 }),
      bootFallback: { pid: 5, reason: "no sign of life under KVM" },
    }),
    { kind: "adopt", pid: 6 },
  ],
  [
    "the config deleted with a task → stop it",
    input(undefined, { observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "stop", pid: 5, reason: "the config was deleted", cause: "config" },
  ],
  // HALTED, BROKEN and the restart policy
  [
    "exited by itself under never → HALTED, no restart",
    input(d, { status: status("HALTED"), observed: seen(containerOf(d, "exited")) }),
    { kind: "awaitRestart", dueAtMs: undefined, state: "HALTED", relabel: undefined },
  ],
  [
    "exited non-zero → BROKEN stays",
    input(d, { status: status("BROKEN"), observed: seen(containerOf(d, "exited")) }),
    { kind: "awaitRestart", state: "BROKEN" },
  ],
  [
    "the policy gave up → BROKEN, its reason kept",
    input(d, {
      status: status("BROKEN", {
        error: { source: "task-executor", message: "gave up", configRevision: 7, time: "t" },
      }),
      observed: seen(containerOf(d, "exited", { restartTimes: [], restartDue: "gave-up" })),
    }),
    { kind: "awaitRestart", state: "BROKEN", keepError: true },
  ],
  [
    "a restart due later → wait for it",
    input(policy({ mode: "always" }), {
      status: status("HALTED"),
      observed: seen(
        containerOf(policy({ mode: "always" }), "exited", { restartTimes: [], restartDue: NOW + 500 }),
      ),
    }),
    { kind: "awaitRestart", dueAtMs: NOW + 500, state: "HALTED" },
  ],
  [
    "a restart due now → start, counted in the history",
    input(policy({ mode: "always" }), {
      observed: seen(
        containerOf(policy({ mode: "always" }), "exited", { restartTimes: [NOW - 100], restartDue: NOW - 1 }),
      ),
    }),
    { kind: "start", container: true, restarts: { restartTimes: [NOW - 100, NOW], restartDue: "" } },
  ],
  [
    "a higher restartCounter after an exit by itself → start now, history reset",
    input(counted, {
      observed: seen(containerOf(d, "exited", { restartTimes: [NOW - 5], restartDue: NOW + 60_000 })),
    }),
    { kind: "start", container: true, restarts: NO_RESTARTS },
  ],
  [
    "a rename while a restart is due later → the labels follow the revision",
    input(ready({ configRevision: 20, version: "9" }), {
      observed: seen(containerOf(d, "exited", { restartTimes: [], restartDue: NOW + 500 })),
    }),
    {
      kind: "awaitRestart",
      relabel: { ended: "exited", restarts: { restartTimes: [], restartDue: NOW + 500 } },
    },
  ],
  // PENDING for memory
  [
    "it does not fit the node's memory → PENDING (memory)",
    input(d, { memory: { usableBytes: 100 * MiB, heldBytes: 60 * MiB, holders: 1 } }),
    { kind: "awaitMemory" },
  ],
  [
    "a restart that does not fit → PENDING (memory) too",
    input(policy({ mode: "always" }), {
      memory: { usableBytes: 10 * MiB, heldBytes: 0, holders: 0 },
      observed: seen(
        containerOf(policy({ mode: "always" }), "exited", { restartTimes: [], restartDue: NOW - 1 }),
      ),
    }),
    { kind: "awaitMemory" },
  ],
  // A start that failed
  [
    "a failed start of this revision → wait for its back-off",
    input(d, {
      startFailure: {
        configRevision: 7,
        specSha256: d.specSha256,
        attempts: 1,
        retryAtMs: NOW + 5000,
        message: "x",
      },
    }),
    { kind: "awaitRetry", retryAtMs: NOW + 5000 },
  ],
  [
    "a failed start whose back-off is over → start again",
    input(d, {
      startFailure: {
        configRevision: 7,
        specSha256: d.specSha256,
        attempts: 1,
        retryAtMs: NOW,
        message: "x",
      },
    }),
    { kind: "start" },
  ],
  [
    "a failed start of an older revision → start the new one now",
    input(renamed, {
      startFailure: {
        configRevision: 7,
        specSha256: d.specSha256,
        attempts: 3,
        retryAtMs: NOW + 60_000,
        message: "x",
      },
    }),
    { kind: "start" },
  ],
  // Removal
  [
    "the config deleted, task gone → remove the container and status",
    input(undefined, { observed: seen(containerOf(d, "stopped")) }),
    { kind: "remove", container: true },
  ],
  [
    "nothing wanted, nothing in containerd (a leftover on the host) → remove",
    input(undefined),
    { kind: "remove", container: false },
  ],
  // The node stopping its tasks (Ctrl-C)
  [
    "node stopping, a task runs → stop it by its kind",
    input(d, { nodeStopping: true, observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "stop", pid: 5, reason: NODE_STOP_REASON, cause: "node" },
  ],
  [
    "node stopping, a task nobody configured → stop it too",
    input(undefined, { nodeStopping: true, observed: seen(containerOf(d), { pid: 5 }) }),
    { kind: "stop", cause: "node" },
  ],
  [
    "node stopping, no task → start nothing, remove nothing",
    input(undefined, { nodeStopping: true, observed: seen(containerOf(d, "stopped")) }),
    { kind: "hold" },
  ],
  [
    "node stopping, a due restart → not started",
    input(policy({ mode: "always" }), {
      nodeStopping: true,
      observed: seen(
        containerOf(policy({ mode: "always" }), "exited", { restartTimes: [], restartDue: NOW - 1 }),
      ),
    }),
    { kind: "hold" },
  ],
];

describe("plan: one next step per situation", () => {
  it.each(rows)("%s", (_name, given, expected) => {
    expect(plan(given)).toMatchObject(expected);
  });

  it("keeps at most MAX_RESTART_HISTORY restart times, however many the window holds", () => {
    const p = policy({ mode: "always", maxRestarts: 1000, windowMs: 3_600_000 });
    const times = Array.from({ length: 290 }, (_, i) => NOW - 290_000 + i * 1000);
    const a = plan(
      input(p, { observed: seen(containerOf(p, "exited", { restartTimes: times, restartDue: NOW - 1 })) }),
    );
    expect(a.kind).toBe("start");
    const kept = (a as Extract<Action, { kind: "start" }>).restarts.restartTimes;
    expect(kept).toHaveLength(MAX_RESTART_HISTORY);
    expect(kept.at(-1)).toBe(NOW);
    // A small maxRestarts keeps no more than it needs to decide.
    const small = policy({ mode: "always", maxRestarts: 3 });
    const b = plan(
      input(small, {
        observed: seen(
          containerOf(small, "exited", { restartTimes: [NOW - 3, NOW - 2, NOW - 1], restartDue: NOW - 1 }),
        ),
      }),
    );
    expect((b as Extract<Action, { kind: "start" }>).restarts.restartTimes).toEqual([NOW - 2, NOW - 1, NOW]);
  });
});

describe("planExit: what an exit means", () => {
  const base = { labels: undefined, exitedAtMs: NOW - 10, nowMs: NOW };
  it("a stop on request is HALTED whatever the code, and asks no policy", () => {
    expect(
      planExit({ ...base, desired: d, exit: { code: 137, signal: "SIGKILL" }, requested: true }),
    ).toEqual({
      state: "HALTED",
      restarts: undefined,
      decision: undefined,
    });
  });

  it("exit 0 by itself is HALTED; non-zero and signals are BROKEN", () => {
    expect(planExit({ ...base, desired: d, exit: { code: 0, signal: null }, requested: false }).state).toBe(
      "HALTED",
    );
    expect(planExit({ ...base, desired: d, exit: { code: 3, signal: null }, requested: false }).state).toBe(
      "BROKEN",
    );
    expect(
      planExit({ ...base, desired: d, exit: { code: 137, signal: "SIGKILL" }, requested: false }).state,
    ).toBe("BROKEN");
    expect(
      planExit({ ...base, desired: d, exit: { code: null, signal: null }, requested: false }).state,
    ).toBe("BROKEN");
  });

  it("records the policy's restart, due after its back-off from the exit", () => {
    const p = policy({ mode: "on-failure", backoffMs: 1000 });
    const e = planExit({ ...base, desired: p, exit: { code: 1, signal: null }, requested: false });
    expect(e.state).toBe("BROKEN");
    expect(e.decision).toMatchObject({ action: "restart", delayMs: 1000, attempt: 1 });
    expect(e.restarts).toEqual({ restartTimes: [], restartDue: NOW - 10 + 1000 });
  });

  it("gives up at maxRestarts within the window: BROKEN, recorded as gave-up", () => {
    const p = policy({ mode: "always", maxRestarts: 2 });
    const labels = readLabels(labelsFor(p, "", { restartTimes: [NOW - 20, NOW - 10], restartDue: "" }));
    const e = planExit({ ...base, labels, desired: p, exit: { code: 0, signal: null }, requested: false });
    expect(e).toMatchObject({
      state: "BROKEN",
      restarts: { restartDue: "gave-up" },
      decision: { action: "give-up" },
    });
  });

  it("an app whose config is gone asks no policy", () => {
    expect(
      planExit({ ...base, desired: undefined, exit: { code: 2, signal: null }, requested: false }),
    ).toEqual({
      state: "BROKEN",
      restarts: undefined,
      decision: undefined,
    });
  });
});

/** A model of what containerd holds for the app, changed by each action as the act step would. */
interface Model {
  container: { config: ReadyTaskConfig; ended: Ended; restarts: RestartLabels } | undefined;
  task: { pid: number; status: "RUNNING" | "STOPPED" } | undefined;
}

function observe(m: Model): Observed {
  return seen(
    m.container && containerOf(m.container.config, m.container.ended, m.container.restarts),
    m.task,
  );
}

/** Plans and applies steps until a step leaves nothing to do; returns the kinds in order. */
function run(m: Model, wanted: TaskConfig | undefined, over: Partial<PlanInput> = {}): Action["kind"][] {
  const kinds: Action["kind"][] = [];
  for (let i = 0; i < 8; i++) {
    const a = plan(input(wanted, { observed: observe(m), ...over }));
    kinds.push(a.kind);
    switch (a.kind) {
      case "stop":
        m.task = undefined;
        if (m.container) m.container.ended = "stopped";
        continue;
      case "finish":
        m.task = undefined;
        if (m.container) m.container.ended = "exited";
        continue;
      case "replace":
        m.container = undefined;
        continue;
      case "start":
        if (wanted?.status === "READY") m.container = { config: wanted, ended: "", restarts: a.restarts };
        m.task = { pid: 100 + i, status: "RUNNING" };
        return kinds;
      case "install":
        if (a.create && wanted?.status === "READY")
          m.container = { config: wanted, ended: "", restarts: NO_RESTARTS };
        if (a.relabel && m.container) m.container = { ...m.container, ...a.relabel };
        return kinds;
      case "remove":
        m.container = undefined;
        return kinds;
      default:
        return kinds;
    }
  }
  throw new Error(`no steady state: ${kinds.join(" → ")}`);
}

describe("transitions, step by step", () => {
  const running = (): Model => ({
    container: { config: d, ended: "", restarts: NO_RESTARTS },
    task: { pid: 5, status: "RUNNING" },
  });

  it("PENDING → BOOTING/RUNNING → (activate false) HALTING → INSTALLED → RUNNING again", () => {
    const m: Model = { container: undefined, task: undefined };
    expect(run(m, pendingConfig)).toEqual(["pending"]);
    expect(run(m, d)).toEqual(["start"]);
    expect(run(m, d)).toEqual(["adopt"]);
    // activate is not part of the spec: the container stays.
    expect(run(m, inactive)).toEqual(["stop", "install"]);
    expect(run(m, inactive)).toEqual(["install"]);
    expect(run(m, d)).toEqual(["start"]);
  });

  it("an exit by itself, then activate false, then true: the task runs again", () => {
    // Also what a stop looks like when the executor was killed before it recorded the stop.
    const m: Model = { container: { config: d, ended: "exited", restarts: NO_RESTARTS }, task: undefined };
    expect(run(m, d)[0]).toBe("awaitRestart");
    expect(run(m, inactive)).toEqual(["install"]);
    expect(run(m, d)).toEqual(["start"]);
  });

  it("a spec change: stop, drop the container, start anew", () => {
    const m = running();
    expect(run(m, bigger)).toEqual(["stop", "replace", "start"]);
    expect(m.container?.config).toBe(bigger);
  });

  it("a restart request: stop, then start on the same container", () => {
    expect(run(running(), counted)).toEqual(["stop", "start"]);
  });

  it("a deleted config: stop, then remove", () => {
    const m = running();
    expect(run(m, undefined)).toEqual(["stop", "remove"]);
    expect(m.container).toBeUndefined();
  });

  it("an exit by itself: record it, then keep to the policy", () => {
    const m = running();
    m.task = { pid: 5, status: "STOPPED" };
    expect(run(m, d)).toEqual(["finish", "awaitRestart"]);
  });

  it("a bad update keeps the running task: rejected beside it, no step touches containerd", () => {
    const m = running();
    expect(run(m, renamed, { prepared: { ok: false, message: "bad path" } })).toEqual(["reject"]);
    expect(m.task?.pid).toBe(5);
  });

  it("the boot watchdog: stop, then start on the same container, its restarts not counted", () => {
    const m = running();
    m.container = { config: d, ended: "", restarts: { restartTimes: [NOW - 9], restartDue: "" } };
    const fallback = { pid: 5, reason: "no sign of life under KVM" };
    expect(run(m, d, { bootFallback: fallback })).toEqual(["stop", "start"]);
    expect(m.task?.status).toBe("RUNNING");
    // Nothing in the restart policy's memory says the app failed.
    expect(m.container?.restarts.restartDue).toBe("");
    expect(
      planExit({
        desired: d,
        exit: { code: 0, signal: null },
        requested: true,
        labels: undefined,
        exitedAtMs: NOW,
        nowMs: NOW,
      }),
    ).toEqual({ state: "HALTED", restarts: undefined, decision: undefined });
  });

  it("the node stopping: stop, then hold; nothing restarts", () => {
    const m = running();
    expect(run(m, d, { nodeStopping: true })).toEqual(["stop", "hold"]);
    expect(m.task).toBeUndefined();
    // The next executor (no longer stopping) starts it again: it was stopped on request.
    expect(run(m, d)).toEqual(["start"]);
  });
});
