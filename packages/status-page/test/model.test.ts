import { describe, expect, it } from "vitest";
import {
  EVENTS_PER_APP,
  appRow,
  diffRows,
  networkRow,
  safeHttpUrl,
  seedRow,
  serviceInstanceOf,
  withEvent,
  workerRows,
} from "../src/index.js";
import type { AppRow, LocalWorker, ServiceInstance } from "../src/index.js";
import { MIB, UUID, config, event, metrics, network, seed, status } from "./fixtures.js";

const local = (name: string, over: Partial<LocalWorker> = {}): LocalWorker => ({
  name,
  pid: 100,
  state: "running",
  restarts: 0,
  heartbeatAgeMs: 500,
  heartbeatStale: false,
  ...over,
});
const instance = (worker: string, id: string, over: Partial<ServiceInstance> = {}): ServiceInstance => ({
  name: `eve-tasks-${worker}`,
  id,
  version: "0.1.0",
  node: "local",
  metricsUrl: `http://127.0.0.1:9464/metrics`,
  ...over,
});
const ALL = ["spec-builder", "task-executor", "proc-monitor", "hypervisor-seed-fetcher"];

describe("an app's row", () => {
  it("joins config, status and the metrics of the current task", () => {
    const r = appRow(UUID, config(), status({ restarts: 2 }), metrics(), []);
    expect(r).toMatchObject({
      uuid: UUID,
      name: "hello",
      kind: "container",
      state: "RUNNING",
      taskId: 4242,
      restarts: 2,
      memoryUsedBytes: 3 * MIB,
      memoryLimitBytes: 64 * MIB,
      addresses: [],
    });
  });

  it("does not count metrics of an earlier task (the PID changed) as this one's", () => {
    const r = appRow(
      UUID,
      config(),
      status({ taskId: 5000, lastTaskId: 5000 }),
      metrics({ taskId: 4242 }),
      [],
    );
    expect(r?.memoryUsedBytes).toBeNull();
    expect(r?.memoryLimitBytes).toBe(64 * MIB);
  });

  it("shows a stopped task with no usage but the limit it had", () => {
    const r = appRow(
      UUID,
      config({ activate: false }),
      status({ state: "HALTED", taskId: 0, anchorStartTicks: null, exitCode: 0 }),
      metrics(),
      [],
    );
    expect(r).toMatchObject({
      state: "HALTED",
      taskId: 0,
      activate: false,
      memoryUsedBytes: null,
      memoryLimitBytes: 64 * MIB,
    });
  });

  it("has the interfaces' addresses and the stage error", () => {
    const r = appRow(
      UUID,
      config(),
      status({
        interfaces: [
          { name: "eth0", network: "lan", mac: "02:00:00:00:00:01", ip: "10.88.0.10", hostIfName: "nbu1x1" },
        ],
        error: {
          source: "spec-builder",
          message: "bad",
          configRevision: 8,
          time: "2024-05-01T12:00:01.000Z",
        },
      }),
      undefined,
      [],
    );
    expect(r?.addresses).toEqual([
      { name: "eth0", network: "lan", ip: "10.88.0.10", mac: "02:00:00:00:00:01" },
    ]);
    expect(r?.error).toBe("spec-builder: bad");
  });

  it("exists with a config alone (no status yet) or a status alone (config deleted), not with neither", () => {
    expect(appRow(UUID, config(), undefined, undefined, [])).toMatchObject({ name: "hello", state: null });
    expect(appRow(UUID, undefined, status(), undefined, [])).toMatchObject({ name: null, state: "RUNNING" });
    expect(appRow(UUID, undefined, undefined, metrics(), [])).toBeNull();
  });

  it("keeps a displayName as it is: markup in it is data, escaped by the page", () => {
    const name = `<script>alert(1)</script><img src=x onerror="x()">`;
    expect(appRow(UUID, config({ displayName: name }), undefined, undefined, [])?.name).toBe(name);
  });

  it("says which kind of task it is", () => {
    const vm = config({
      virtualization: "HVM",
      root: undefined,
      vm: { kernel: "/k" },
      resources: { memoryMiB: 128, vcpus: 1 },
    } as never);
    expect(appRow(UUID, vm, undefined, undefined, [])?.kind).toBe("vm");
  });
});

describe("an app's recent events", () => {
  it("keeps the last few in time order, whatever order they arrive in", () => {
    let lines = withEvent([], event("started", "2024-05-01T12:00:02.000Z"));
    lines = withEvent(lines, event("created", "2024-05-01T12:00:01.000Z"));
    expect(lines.map((l) => l.type)).toEqual(["created", "started"]);
    for (let i = 0; i < 10; i++)
      lines = withEvent(lines, event("killed", `2024-05-01T12:01:${String(i).padStart(2, "0")}.000Z`));
    expect(lines).toHaveLength(EVENTS_PER_APP);
    expect(lines.at(-1)?.time).toBe("2024-05-01T12:01:09.000Z");
  });
});

describe("seeds and network instances", () => {
  it("split the node from the key and carry progress and errors", () => {
    expect(seedRow("ImageSeed", "edge-1.abc", seed())).toMatchObject({
      key: "ImageSeed.edge-1.abc",
      kind: "image",
      node: "edge-1",
      state: "PULLING",
      doneBytes: 10,
      totalBytes: 100,
    });
    expect(
      seedRow(
        "HypervisorSeed",
        "local.default",
        seed({
          state: "FAILED",
          progress: null,
          error: { message: "401", time: "2024-05-01T12:00:00.000Z" },
        }),
      ),
    ).toMatchObject({ kind: "hypervisor tools", state: "FAILED", error: "401", totalBytes: null });
    expect(networkRow("local.lan", network())).toEqual({
      key: "local.lan",
      name: "lan",
      node: "local",
      state: "READY",
      bridge: "bn1",
      subnet: "10.88.0.0/24",
      gateway: "10.88.0.1",
      apps: 1,
      error: null,
    });
  });
});

describe("$SRV.INFO replies", () => {
  it("take node and metrics from the metadata, and only http(s) URLs as metrics links", () => {
    expect(
      serviceInstanceOf({
        name: "eve-tasks-spec-builder",
        id: "ABC",
        version: "0.1.0",
        metadata: { node: "local", metrics: "http://127.0.0.1:9464/metrics" },
      }),
    ).toEqual({
      name: "eve-tasks-spec-builder",
      id: "ABC",
      version: "0.1.0",
      node: "local",
      metricsUrl: "http://127.0.0.1:9464/metrics",
    });
    expect(
      serviceInstanceOf({ name: "x", id: "1", metadata: { metrics: "javascript:alert(1)" } })?.metricsUrl,
    ).toBeNull();
    expect(serviceInstanceOf({ name: "x", id: "1" })).toMatchObject({
      node: null,
      metricsUrl: null,
      version: "",
    });
    expect(serviceInstanceOf({ id: "1" })).toBeUndefined();
    expect(serviceInstanceOf("nope")).toBeUndefined();
    expect(safeHttpUrl("not a url")).toBeNull();
    expect(safeHttpUrl("https://h:1/m")).toBe("https://h:1/m");
  });
});

describe("the workers table", () => {
  it("says 'no service info' when no $SRV answer came, and takes health from the launcher", () => {
    const rows = workerRows(
      ALL.map((n) => local(n)),
      undefined,
    );
    expect(rows.map((r) => r.name)).toEqual(ALL);
    expect(rows[0]).toMatchObject({ replicas: null, localProcesses: 1, health: "ok", instances: [] });
    expect(rows[0]?.healthText).toContain("no service info");
  });

  it("counts the instances answering as each worker's replicas, with their metrics links", () => {
    const rows = workerRows(
      [local("spec-builder"), local("spec-builder", { pid: 101 }), local("task-executor")],
      [
        instance("spec-builder", "a"),
        instance("spec-builder", "b"),
        instance("task-executor", "c"),
        instance("other-thing", "d"),
        { ...instance("x", "e"), name: "billing" },
      ],
    );
    const sb = rows.find((r) => r.name === "spec-builder");
    expect(sb).toMatchObject({ replicas: 2, localProcesses: 2, health: "ok", pids: [100, 101] });
    expect(sb?.instances.map((i) => i.metricsUrl)).toEqual([
      "http://127.0.0.1:9464/metrics",
      "http://127.0.0.1:9464/metrics",
    ]);
    // Any eve-tasks-<name> service is a worker of ours (a new one shows up); others are not.
    expect(rows.find((r) => r.name === "other-thing")).toMatchObject({ replicas: 1, localProcesses: 0 });
    expect(rows.map((r) => r.name)).not.toContain("billing");
    // A known worker the launcher does not run and nobody answers for is down.
    expect(rows.find((r) => r.name === "proc-monitor")).toMatchObject({ health: "down", replicas: 0 });
  });

  it("is degraded when a process backs off, a heartbeat is stale, or a running one does not answer $SRV", () => {
    const services = [instance("spec-builder", "a"), instance("task-executor", "c")];
    const rows = workerRows(
      [
        local("spec-builder", { state: "backing-off", pid: null, restarts: 3 }),
        local("spec-builder"),
        local("task-executor", { heartbeatStale: true, heartbeatAgeMs: 30_000 }),
        local("proc-monitor"),
      ],
      services,
    );
    const by = (n: string) => rows.find((r) => r.name === n);
    expect(by("spec-builder")).toMatchObject({ health: "degraded", restarts: 3 });
    expect(by("spec-builder")?.healthText).toContain("backing-off");
    expect(by("task-executor")?.health).toBe("degraded");
    expect(by("proc-monitor")).toMatchObject({ health: "degraded", replicas: 0 });
  });

  it("without a launcher, is the services' view alone", () => {
    const rows = workerRows(undefined, [instance("spec-builder", "a", { node: "edge-1" })]);
    expect(rows.find((r) => r.name === "spec-builder")).toMatchObject({
      health: "ok",
      replicas: 1,
      localProcesses: null,
      restarts: null,
    });
    expect(rows.find((r) => r.name === "task-executor")).toMatchObject({ health: "down", replicas: 0 });
    expect(workerRows(undefined, undefined).every((r) => r.health === "unknown")).toBe(true);
  });
});

describe("patches", () => {
  it("send a row once per change and a removal once", () => {
    const sent = new Map<string, string>();
    const a = appRow(UUID, config(), status(), undefined, []) as AppRow;
    expect(diffRows("apps", sent, new Map([[UUID, a]]))).toEqual([{ section: "apps", key: UUID, row: a }]);
    expect(diffRows("apps", sent, new Map([[UUID, a]]))).toEqual([]);
    const b = { ...a, state: "HALTED" };
    expect(diffRows("apps", sent, new Map([[UUID, b]]), [UUID])).toEqual([
      { section: "apps", key: UUID, row: b },
    ]);
    expect(diffRows("apps", sent, new Map([[UUID, null]]), [UUID])).toEqual([
      { section: "apps", key: UUID, row: null },
    ]);
    expect(diffRows("apps", sent, new Map(), [UUID])).toEqual([]);
  });

  it("without keys, also remove rows that are no longer there", () => {
    const sent = new Map([["gone", "{}"]]);
    expect(diffRows("networks", sent, new Map())).toEqual([{ section: "networks", key: "gone", row: null }]);
  });
});
