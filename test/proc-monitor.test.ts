// The proc-monitor end to end, with real parts: a real nats-server (of this file), the real
// spec-builder, task-executor and proc-monitor as separate processes, tasks run by a real
// containerd with runc. What the proc-monitor publishes is checked against /proc and the cgroup
// files read here directly.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Subscription as NatsSubscription } from "@nats-io/nats-core";
import { Publication, connectBus, ensureBuckets, ensureEventsStream, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import { CONTAINERD_NAMESPACE, EVENTS_SUBJECTS, TaskEventSchema, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  TaskEvent,
  TaskMetrics,
  TaskStatus,
  AppInstanceConfigSchema,
  TaskMetricsSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import {
  BUILT,
  harnessEnv,
  makeRootfs,
  spawnReplicas,
  tempDir,
  uuidMaker,
  waitFor,
  withPrivateNats,
} from "./harness/index.js";
import type { PrivateNats, Replicas } from "./harness/index.js";

const SPEC_BUILDER = BUILT.specBuilder;
const EXECUTOR = BUILT.taskExecutor;
const PROC_MONITOR = BUILT.procMonitor;
const MiB = 2 ** 20;
const INTERVAL_MS = 500;
/** What the memory app holds in a shell variable (its anchor's own memory). */
const HELD_MIB = 40;

const newUuid = uuidMaker("e3e00000");

/** A cgroup file of app `uuid`, read directly: `memory.usage_in_bytes` on v1 is `memory.current` on v2, and so on. */
async function cgroupFile(uuid: string, v1: [controller: string, file: string], v2: string): Promise<string> {
  const v1Path = `/sys/fs/cgroup/${v1[0]}/eve-user-apps/${uuid}/${v1[1]}`;
  const path = existsSync(`/sys/fs/cgroup/memory/eve-user-apps/${uuid}`)
    ? v1Path
    : `/sys/fs/cgroup/eve-user-apps/${uuid}/${v2}`;
  return (await readFile(path, "utf8")).trim();
}

/** VmRSS of `pid` in bytes, read directly. */
async function vmRssBytes(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

/** Field 22 of `/proc/<pid>/stat`, read directly. */
async function startTicks(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8");
  return Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[19]);
}

describe("proc-monitor end to end", () => {
  let nats: PrivateNats;
  let bus: Bus;
  let containerd: ContainerdClient;
  let configs: Publication<typeof AppInstanceConfigSchema>;
  let fakeStatuses: Publication<typeof TaskStatusSchema>;
  let statuses: Subscription<typeof TaskStatusSchema>;
  let metrics: Subscription<typeof TaskMetricsSchema>;
  let eventSub: NatsSubscription;
  const events: { event: TaskEvent; receivedAt: number }[] = [];
  let workers: { specBuilder: Replicas; executor: Replicas; monitor: Replicas };
  let rootfs: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    const dir = await tempDir("pm-");
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "busybox", "rootfs");
    await mkdir(volumes, { recursive: true });
    const fs = await makeRootfs(rootfs);
    expect(fs.source, "the memory app needs busybox-static (head, tr)").toBe("busybox");
    nats = await withPrivateNats();
    env = {
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: harnessEnv().containerdAddress,
      EVE_DATA_DIR: join(dir, "data"),
      EVE_RUN_DIR: join(dir, "run"),
      EVE_VOLUME_ROOTS: volumes,
      EVE_NODE_MEMORY_MIB: "2048",
      EVE_METRICS_INTERVAL_MS: String(INTERVAL_MS),
      LOG_LEVEL: "debug",
    };
    const echo = process.env.EVE_TEST_ECHO === "1";
    bus = await connectBus({ servers: nats.url, name: "proc-monitor-test" });
    await ensureBuckets(bus);
    await ensureEventsStream(bus);
    eventSub = bus.nc.subscribe(EVENTS_SUBJECTS, {
      callback: (err, msg) => {
        if (err) return;
        const r = TaskEventSchema.safeParse(msg.json());
        if (r.success) events.push({ event: r.data, receivedAt: Date.now() });
      },
    });
    workers = {
      specBuilder: spawnReplicas({ entry: SPEC_BUILDER, name: "spec-builder", env, echo }),
      executor: spawnReplicas({ entry: EXECUTOR, name: "task-executor", env, echo }),
      monitor: spawnReplicas({ entry: PROC_MONITOR, name: "proc-monitor", env, echo }),
    };
    containerd = new ContainerdClient({ address: env.CONTAINERD_ADDRESS!, namespace: CONTAINERD_NAMESPACE });
    configs = new Publication(bus, messageTable("AppInstanceConfig"));
    fakeStatuses = new Publication(bus, messageTable("TaskStatus"));
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
    metrics = await subscribe(bus, {
      ...messageTable("TaskMetrics"),
      onCreate: () => undefined,
    });
    await workers.monitor.waitForLine((l) => l.json?.event === "synchronized", 30_000);
  }, 60_000);

  afterAll(async () => {
    const all = await configs?.getAll();
    for (const uuid of all?.keys() ?? []) await configs.unpublish(uuid);
    if (all?.size) {
      await waitFor(async () => (await containerd.containers.list()).length === 0, {
        timeoutMs: 30_000,
        message: "containers left after deleting every config",
      }).catch(async (err: unknown) => {
        const left = (await containerd.containers.list()).map((c) => c.id);
        console.error(`${(err as Error).message}: ${left.join(", ")}`);
      });
    }
    eventSub?.unsubscribe();
    await statuses?.close();
    await metrics?.close();
    await bus?.close();
    containerd?.close();
  }, 60_000);

  function memoryApp(uuid: string): AppInstanceConfigInput {
    const held = `x=$(/bin/busybox head -c ${HELD_MIB * MiB} /dev/zero | /bin/busybox tr '\\0' a)`;
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `pm-${uuid.slice(-6)}`,
      activate: true,
      virtualization: "NOHYPER",
      // Building the string peaks at about twice what is held.
      resources: { memoryMiB: 160, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: false } },
      process: {
        args: ["/bin/sh", "-c", `trap 'exit 0' TERM; ${held}; echo held \${#x}; sleep 3600 & wait`],
      },
      stopTimeoutMs: 3000,
    };
  }

  async function running(uuid: string): Promise<TaskStatus> {
    return waitFor(
      () => {
        const s = statuses.get(uuid);
        return s?.state === "RUNNING" ? s : undefined;
      },
      { timeoutMs: 20_000, message: `${uuid} RUNNING; last status ${JSON.stringify(statuses.get(uuid))}` },
    );
  }

  /** The next TaskMetrics of `uuid` matching `pred`. */
  function metricsWhere(uuid: string, pred: (m: TaskMetrics) => boolean, what: string, timeoutMs = 10_000) {
    return waitFor(
      () => {
        const m = metrics.get(uuid);
        return m && pred(m) ? m : undefined;
      },
      { timeoutMs, message: `${uuid}: ${what}; last metrics ${JSON.stringify(metrics.get(uuid))}` },
    );
  }

  const fromProcMonitor = (uuid: string) =>
    events.filter((e) => e.event.uuid === uuid && e.event.fields.source === "proc-monitor");

  it("publishes metrics that agree with the task's cgroup and its anchor's /proc", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, memoryApp(uuid));
    const s = await running(uuid);
    // The shell holds the string once it has been built (about a second of CPU), and says so.
    await waitFor(
      async () => (await readFile(s.logPath, "utf8").catch(() => "")).includes(`held ${HELD_MIB * MiB}`),
      { message: "the app never said it holds its memory" },
    );
    const heldAt = new Date().toISOString();
    const m = await metricsWhere(uuid, (m) => m.sampledAt > heldAt, "no sample after the memory was held");
    expect(m.taskId).toBe(s.taskId);
    expect(m.rssBytes).toBeGreaterThan(HELD_MIB * MiB);
    // Read right after the sample, directly; what is stable must agree closely.
    const [rss, usage, limit, peak, cpu, threads, oom] = await Promise.all([
      vmRssBytes(s.taskId),
      cgroupFile(uuid, ["memory", "memory.usage_in_bytes"], "memory.current").then(Number),
      cgroupFile(uuid, ["memory", "memory.limit_in_bytes"], "memory.max").then(Number),
      cgroupFile(uuid, ["memory", "memory.max_usage_in_bytes"], "memory.peak").then(Number),
      cgroupFile(uuid, ["cpuacct", "cpuacct.usage"], "cpu.stat").then((t) =>
        t.startsWith("usage_usec") ? Number(/usage_usec (\d+)/.exec(t)![1]) * 1000 : Number(t),
      ),
      cgroupFile(uuid, ["pids", "pids.current"], "pids.current").then(Number),
      cgroupFile(uuid, ["memory", "memory.oom_control"], "memory.events").then((t) =>
        Number(/oom_kill (\d+)/.exec(t)![1]),
      ),
    ]);
    expect(m.measured).toEqual([
      "cpuNs",
      "rssBytes",
      "memoryUsageBytes",
      "memoryPeakBytes",
      "memoryLimitBytes",
      "oomKills",
      "threads",
    ]);
    expect(Math.abs(m.rssBytes! - rss)).toBeLessThan(2 * MiB);
    expect(Math.abs(m.memoryUsageBytes! - usage)).toBeLessThan(4 * MiB);
    expect(m.memoryLimitBytes).toBe(limit);
    expect(m.memoryLimitBytes).toBe(s.memoryLimitBytes);
    expect(m.memoryPeakBytes).toBeLessThanOrEqual(peak);
    expect(m.memoryPeakBytes).toBeGreaterThanOrEqual(m.memoryUsageBytes!);
    expect(m.memoryPeakBytes).toBeGreaterThan(HELD_MIB * MiB);
    expect(m.cpuNs).toBeGreaterThan(0);
    expect(m.cpuNs).toBeLessThanOrEqual(cpu);
    expect(m.threads).toBe(threads); // the shell and its sleep
    expect(m.oomKills).toBe(oom);
    expect(m.oomKills).toBe(0);
    // Sampled every interval: sampledAt advances.
    const next = await metricsWhere(
      uuid,
      (n) => n.sampledAt > m.sampledAt,
      "no next sample",
      3 * INTERVAL_MS + 2000,
    );
    const gapMs = Date.parse(next.sampledAt) - Date.parse(m.sampledAt);
    expect(gapMs).toBeGreaterThanOrEqual(INTERVAL_MS - 50);
    expect(gapMs).toBeLessThan(INTERVAL_MS + 1000);
    const line = workers.monitor.lines.find(
      (l) => l.json?.event === "sampling-started" && l.json.uuid === uuid,
    );
    expect(line?.json).toMatchObject({ pid: s.taskId, anchorStartTicks: s.anchorStartTicks, level: "info" });
  });

  it("kill -9 of the anchor: an exited event from the proc-monitor within the interval, once; the last sample stays", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, memoryApp(uuid));
    const s = await running(uuid);
    await metricsWhere(uuid, (m) => m.taskId === s.taskId, "no metrics");
    const killedAt = Date.now();
    process.kill(s.taskId, "SIGKILL");
    const ev = await waitFor(() => fromProcMonitor(uuid)[0], {
      timeoutMs: INTERVAL_MS + 3000,
      message: "no exited event from the proc-monitor",
    });
    expect(ev.event).toMatchObject({
      type: "exited",
      message: `anchor PID ${s.taskId} is gone (seen by proc-monitor)`,
      fields: {
        source: "proc-monitor",
        anchorPid: s.taskId,
        anchorStartTicks: s.anchorStartTicks,
        reason: "gone",
      },
    });
    // Within one interval of the kill, plus the outbox and NATS hops.
    expect(ev.receivedAt - killedAt).toBeLessThan(INTERVAL_MS + 500);
    // The executor sees the exit too; taskId becomes 0, sampling stops, the last sample stays.
    await waitFor(() => statuses.get(uuid)?.taskId === 0, { message: "taskId never 0 after the kill" });
    const last = metrics.get(uuid);
    expect(last?.taskId).toBe(s.taskId);
    await new Promise((r) => setTimeout(r, 2 * INTERVAL_MS));
    expect(metrics.get(uuid)).toEqual(last);
    expect(fromProcMonitor(uuid)).toHaveLength(1);
  });

  describe("with a TaskStatus the test writes (no container): the PID-reuse guard", () => {
    let sleeper: ChildProcess;
    beforeAll(() => {
      sleeper = spawn("sleep", ["120"], { stdio: "ignore" });
    });
    afterAll(async () => {
      const exited = new Promise((r) => sleeper.once("exit", r));
      sleeper.kill("SIGKILL");
      await exited;
    });

    function fakeStatus(uuid: string, pid: number, ticks: number): TaskStatus {
      const now = new Date().toISOString();
      return {
        schemaVersion: 1,
        uuid,
        version: "1",
        configRevision: 1,
        node: "local",
        state: "RUNNING",
        taskId: pid,
        lastTaskId: pid,
        anchorStartTicks: ticks,
        exitCode: null,
        signal: null,
        oomKilled: false,
        restarts: 0,
        memoryLimitBytes: null,
        anchorTaxBytes: null,
        logPath: "/nonexistent/console.log",
        waitingFor: null,
        startedAt: now,
        finishedAt: null,
        updatedAt: now,
        error: null,
        interfaces: [],
      };
    }

    it("samples a PID with the expected start ticks: rssBytes only (no cgroup), then unpublishes on delete", async () => {
      const uuid = newUuid();
      const pid = sleeper.pid!;
      await fakeStatuses.publish(uuid, fakeStatus(uuid, pid, await startTicks(pid)));
      const m = await metricsWhere(uuid, (m) => m.taskId === pid, "no metrics for the test's process");
      expect(m.measured).toEqual(["rssBytes"]);
      expect(m).toMatchObject({ cpuNs: null, memoryUsageBytes: null, memoryLimitBytes: null, threads: null });
      expect(Math.abs(m.rssBytes! - (await vmRssBytes(pid)))).toBeLessThan(MiB);
      await fakeStatuses.unpublish(uuid);
      await waitFor(() => metrics.get(uuid) === undefined, { message: "TaskMetrics not unpublished" });
      expect(fromProcMonitor(uuid)).toHaveLength(0);
    });

    it("a PID whose start ticks differ is another process: exited, reason pid-reused, no metrics", async () => {
      const uuid = newUuid();
      const pid = sleeper.pid!;
      const ticks = await startTicks(pid);
      await fakeStatuses.publish(uuid, fakeStatus(uuid, pid, ticks - 1));
      const ev = await waitFor(() => fromProcMonitor(uuid)[0], { message: "no pid-reused event" });
      expect(ev.event.fields).toEqual({
        source: "proc-monitor",
        anchorPid: pid,
        anchorStartTicks: ticks - 1,
        reason: "pid-reused",
      });
      expect(ev.event.message).toMatch(new RegExp(`^anchor PID ${pid} is gone: .*another process`));
      expect(metrics.get(uuid)).toBeUndefined();
      expect(sleeper.exitCode).toBeNull(); // read-only: the other process is untouched
      await fakeStatuses.unpublish(uuid);
    });
  });

  it("restarted, resumes metrics, removes those of apps deleted meanwhile, and re-emits nothing", async () => {
    const kept = newUuid();
    const deleted = newUuid();
    await configs.publish(kept, memoryApp(kept));
    await configs.publish(deleted, memoryApp(deleted));
    const s = await running(kept);
    await running(deleted);
    await metricsWhere(kept, (m) => m.taskId === s.taskId, "no metrics");
    await metricsWhere(deleted, () => true, "no metrics");
    const eventsBefore = events.filter((e) => e.event.fields.source === "proc-monitor").length;

    await workers.monitor.kill(0, "SIGTERM");
    const lastBefore = metrics.get(kept)!;
    await configs.unpublish(deleted);
    await waitFor(() => statuses.get(deleted) === undefined, {
      timeoutMs: 15_000,
      message: "status not deleted",
    });
    expect(metrics.get(deleted)).toBeDefined(); // nobody removed it yet

    workers.monitor.respawn(0);
    const resumed = await metricsWhere(
      kept,
      (m) => m.sampledAt > lastBefore.sampledAt,
      "metrics did not resume",
    );
    expect(resumed.taskId).toBe(s.taskId);
    await waitFor(() => metrics.get(deleted) === undefined, { message: "orphan TaskMetrics not removed" });
    expect(events.filter((e) => e.event.fields.source === "proc-monitor")).toHaveLength(eventsBefore);
  });
});
