// End to end, with real parts: app configs published to a real nats-server, the real
// spec-builder and task-executor as separate processes, tasks run by a real containerd
// with runc. The file has a nats-server of its own, so no other test's apps reach it.
import { readFile, symlink, mkdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { ContainerdClient, isNotFound, specFromAny } from "@eve-tasks/containerd";
import { CONTAINERD_NAMESPACE, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  TaskConfig,
  TaskStatus,
  AppInstanceConfigSchema,
  TaskConfigSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import {
  BUILT,
  REPO_ROOT,
  harnessEnv,
  makeRootfs,
  spawnReplicas,
  statusWaiter,
  tempDir,
  uuidMaker,
  waitFor,
  withPrivateNats,
} from "./harness/index.js";
import type { PrivateNats, Replicas, StatusWaiter } from "./harness/index.js";
import { validateOciSpec } from "./oci-schema.js";

const REPO = REPO_ROOT;
const SPEC_BUILDER = BUILT.specBuilder;
const EXECUTOR = BUILT.taskExecutor;
const MiB = 2 ** 20;
const NODE_MEMORY_MIB = 2048;

/** A fresh uuid per app, so tests never share keys, containers or cgroups. */
const newUuid = uuidMaker("e2e00000");

/** The cgroup memory limit of a task, on a v1 or v2 host. */
async function cgroupMemoryLimit(uuid: string): Promise<number> {
  const v1 = `/sys/fs/cgroup/memory/eve-user-apps/${uuid}/memory.limit_in_bytes`;
  const v2 = `/sys/fs/cgroup/eve-user-apps/${uuid}/memory.max`;
  return Number((await readFile(existsSync(v1) ? v1 : v2, "utf8")).trim());
}

describe("native container tasks end to end", () => {
  let nats: PrivateNats;
  let bus: Bus;
  let containerd: ContainerdClient;
  let configs: Publication<typeof AppInstanceConfigSchema>;
  let statuses: Subscription<typeof TaskStatusSchema>;
  let taskConfigs: Subscription<typeof TaskConfigSchema>;
  const specChecks: string[] = [];
  const pendingChecks: Promise<void>[] = [];
  const checkTaskConfig = (uuid: string, c: TaskConfig) => {
    if (c.status !== "READY") return;
    const r = validateOciSpec(c.spec);
    specChecks.push(r.valid ? "ok" : `TaskConfig ${uuid}: ${r.errors.join("; ")}`);
  };
  const history = new Map<string, TaskStatus[]>();
  let workers: { specBuilder: Replicas; executor: Replicas };
  let volumes: string;
  let rootfs: string;
  let env: Record<string, string>;

  const startExecutor = () =>
    spawnReplicas({
      entry: EXECUTOR,
      count: 1,
      name: "task-executor",
      env,
      echo: process.env.EVE_TEST_ECHO === "1",
    });

  beforeAll(async () => {
    const dir = await tempDir("e2e-");
    volumes = join(dir, "volumes");
    rootfs = join(volumes, "busybox", "rootfs");
    await mkdir(join(volumes, "busybox", "data"), { recursive: true });
    await makeRootfs(rootfs);
    nats = await withPrivateNats();
    env = {
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: harnessEnv().containerdAddress,
      EVE_DATA_DIR: join(dir, "data"),
      EVE_RUN_DIR: join(dir, "run"),
      EVE_VOLUME_ROOTS: volumes,
      EVE_NODE_MEMORY_MIB: String(NODE_MEMORY_MIB),
      LOG_LEVEL: "debug",
    };
    workers = {
      specBuilder: spawnReplicas({
        entry: SPEC_BUILDER,
        count: 1,
        name: "spec-builder",
        env,
        echo: process.env.EVE_TEST_ECHO === "1",
      }),
      executor: startExecutor(),
    };
    bus = await connectBus({ servers: nats.url, name: "e2e-test" });
    containerd = new ContainerdClient({ address: env.CONTAINERD_ADDRESS!, namespace: CONTAINERD_NAMESPACE });
    await ensureBuckets(bus);
    configs = new Publication(bus, messageTable("AppInstanceConfig"));
    // Every spec this file produces is checked against the official OCI schema: the
    // node-independent one of each READY TaskConfig, and the final one in containerd of each
    // task that reached RUNNING.
    const checkFinalSpec = async (uuid: string) => {
      const c = await containerd.containers.get(uuid).catch(() => undefined);
      if (!c?.spec) return;
      const r = validateOciSpec(specFromAny(c.spec));
      specChecks.push(r.valid ? "ok" : `container ${uuid}: ${r.errors.join("; ")}`);
    };
    const record = (k: string, v: TaskStatus) => {
      history.set(k, [...(history.get(k) ?? []), v]);
      if (v.state === "RUNNING") pendingChecks.push(checkFinalSpec(k));
    };
    taskConfigs = await subscribe(bus, {
      ...messageTable("TaskConfig"),
      onCreate: (k, v) => checkTaskConfig(k, v),
      onModify: (k, v) => checkTaskConfig(k, v),
    });
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: record,
      onModify: record,
    });
  }, 60_000);

  afterAll(async () => {
    // Delete every app the tests made, so the executor removes their tasks and containers. An
    // executor started inside a test was stopped when that test ended: start one for this.
    const gone = await Promise.race([
      workers.executor.replicas[0]!.exited.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
    ]);
    if (gone) {
      workers.executor = startExecutor();
      await workers.executor.waitForLine((l) => l.json?.event === "resynced", 60_000);
    }
    const all = await configs?.getAll();
    for (const uuid of all?.keys() ?? []) await configs.unpublish(uuid);
    if (all?.size) {
      await waitFor(async () => (await containerd.containers.list()).length === 0, {
        timeoutMs: 60_000,
        message: "containers left after deleting every config",
      }).catch(async (err: unknown) => {
        const left = (await containerd.containers.list()).map((c) => c.id);
        console.error(`${(err as Error).message}: ${left.join(", ")}`);
      });
    }
    await statuses?.close();
    await taskConfigs?.close();
    await bus?.close();
    containerd?.close();
  }, 90_000);

  function app(uuid: string, over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `app-${uuid.slice(-6)}`,
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 64, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: false } },
      volumes: [{ path: join(volumes, "busybox", "data"), mountPoint: "/data", readOnly: false }],
      process: {
        args: ["/bin/sh", "-c", `trap 'exit 0' TERM; echo hello-${uuid}; sleep 3600 & wait`],
        env: { GREETING: "hi" },
        cwd: "/",
        user: "0:0",
      },
      stopTimeoutMs: 5000,
      ...over,
    } as AppInstanceConfigInput;
  }

  const until = (...a: Parameters<StatusWaiter["until"]>) => statusWaiter(statuses).until(...a);
  const running = (uuid: string) => statusWaiter(statuses).running(uuid);

  it("runs a published app: RUNNING, taskId is containerd's PID, cgroup limit, log, labels", async () => {
    const uuid = newUuid();
    const rev = await configs.publish(uuid, app(uuid));
    const s = await running(uuid);
    const task = await containerd.tasks.get(uuid);
    expect(s.taskId).toBe(task.pid);
    expect(task.status).toBe("RUNNING");
    expect(s.configRevision).toBe(rev);
    expect(s.memoryLimitBytes).toBe(64 * MiB);
    expect(s.anchorTaxBytes).toBe(0);
    expect(s.anchorStartTicks).toBeGreaterThan(0);
    expect(s.logPath).toBe(join(env.EVE_DATA_DIR!, "tasks", uuid, "console.log"));
    expect(await cgroupMemoryLimit(uuid)).toBe(64 * MiB);
    await waitFor(async () => (await readFile(s.logPath, "utf8").catch(() => "")).includes(`hello-${uuid}`), {
      message: "stdout never reached the log",
    });
    const c = await containerd.containers.get(uuid);
    expect(c.labels).toMatchObject({
      "org.lfedge.eve-tasks.uuid": uuid,
      "org.lfedge.eve-tasks.version": "1",
      "org.lfedge.eve-tasks.config-revision": String(rev),
    });
    expect(c.labels["org.lfedge.eve-tasks.spec-sha256"]).toMatch(/^[0-9a-f]{64}$/);
    const spec = specFromAny(c.spec!) as { linux: { cgroupsPath: string }; hostname: string };
    expect(spec.linux.cgroupsPath).toBe(`/eve-user-apps/${uuid}`);
    expect(spec.hostname).toBe(uuid);
    expect(validateOciSpec(spec)).toEqual({ valid: true });
    // The states it went through.
    const states = history.get(uuid)!.map((h) => h.state);
    expect(states.slice(-2)).toEqual(["BOOTING", "RUNNING"]);
  });

  it("runs the README's example (host root, read-only) as published", async () => {
    const example = JSON.parse(
      await readFile(join(REPO, "examples/hello.json"), "utf8"),
    ) as AppInstanceConfigInput;
    const uuid = newUuid();
    await configs.publish(uuid, { ...example, uuid });
    const s = await running(uuid);
    await waitFor(
      async () => (await readFile(s.logPath, "utf8").catch(() => "")).includes(`hello from ${uuid}`),
      {
        message: "the example's greeting never reached its log",
      },
    );
    await configs.unpublish(uuid);
    await waitFor(() => statuses.get(uuid) === undefined, { message: "example not removed" });
  });

  it("stops, starts, restarts by counter, replaces on a spec change but not on a name change, deletes", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, app(uuid));
    const first = await running(uuid);

    await configs.publish(uuid, app(uuid, { activate: false }));
    const halted = await until(uuid, (s) => s.state === "HALTED", "never HALTED");
    expect(halted.taskId).toBe(0);
    expect(halted.lastTaskId).toBe(first.taskId);
    expect(halted.exitCode).toBe(0); // the trap exits 0 on SIGTERM
    expect(await containerd.tasks.get(uuid).catch((e: unknown) => e)).toSatisfy(isNotFound);
    expect((await containerd.containers.get(uuid)).id).toBe(uuid); // the container stays

    await configs.publish(uuid, app(uuid, { activate: true }));
    const second = await until(uuid, (s) => s.state === "RUNNING" && s.taskId !== 0, "not RUNNING again");
    expect(second.taskId).not.toBe(first.taskId);

    await configs.publish(uuid, app(uuid, { restartCounter: 1 }));
    const third = await until(uuid, (s) => s.state === "RUNNING" && s.taskId !== second.taskId, "no restart");
    expect((await containerd.tasks.get(uuid)).pid).toBe(third.taskId);

    const renamed = await configs.publish(uuid, app(uuid, { restartCounter: 1, displayName: "renamed" }));
    const afterRename = await until(uuid, (s) => s.configRevision === renamed, "rename not applied");
    expect(afterRename.taskId).toBe(third.taskId);
    expect(afterRename.state).toBe("RUNNING");

    await configs.publish(
      uuid,
      app(uuid, { restartCounter: 1, displayName: "renamed", resources: { memoryMiB: 96, vcpus: 1 } }),
    );
    const replaced = await until(
      uuid,
      (s) => s.state === "RUNNING" && s.memoryLimitBytes === 96 * MiB,
      "not replaced",
    );
    expect(replaced.taskId).not.toBe(third.taskId);
    expect(await cgroupMemoryLimit(uuid)).toBe(96 * MiB);

    await configs.unpublish(uuid);
    await waitFor(() => statuses.get(uuid) === undefined, { message: "status key not deleted" });
    expect(await containerd.containers.get(uuid).catch((e: unknown) => e)).toSatisfy(isNotFound);
  }, 90_000);

  it("does not keep a task by a TaskConfig whose specSha256 is not its spec's", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, app(uuid));
    const good = await running(uuid);
    const store = await bus.bucket("spec-builder");
    const built = taskConfigs.get(uuid);
    expect(built?.status).toBe("READY");
    if (built?.status !== "READY") return;
    // Another spec under the running task's fingerprint, as a buggy writer might put it: the
    // schema accepts it (it checks the form only); the executor must not take it as unchanged.
    const forged = {
      ...built,
      configRevision: built.configRevision + 1000,
      spec: { ...built.spec, process: { ...built.spec.process, args: ["/bin/sh", "-c", "exit 3"] } },
    };
    await store.put(`TaskConfig.${uuid}`, JSON.stringify(forged));
    const rejected = await until(
      uuid,
      (s) => s.error?.configRevision === forged.configRevision,
      "inconsistent TaskConfig not reported",
    );
    expect(rejected.error?.source).toBe("task-executor");
    expect(rejected.error?.message).toMatch(/specSha256 [0-9a-f]{64} is not that of its spec/);
    expect(rejected.state).toBe("RUNNING");
    expect(rejected.taskId).toBe(good.taskId);
    expect((await containerd.tasks.get(uuid)).pid).toBe(good.taskId);
    // Its revision is above the app's, so the spec-builder cannot remove it: the test does.
    await configs.unpublish(uuid);
    await store.delete(`TaskConfig.${uuid}`);
    await waitFor(() => statuses.get(uuid) === undefined, { message: "status key not deleted" });
    expect(await containerd.containers.get(uuid).catch((e: unknown) => e)).toSatisfy(isNotFound);
  });

  it("replaces a container someone else made with the app's id", async () => {
    const uuid = newUuid();
    await containerd.containers.create({
      id: uuid,
      labels: { made: "by hand" },
      spec: { ociVersion: "1.0.2" },
    });
    await configs.publish(uuid, app(uuid));
    const s = await running(uuid);
    expect((await containerd.tasks.get(uuid)).pid).toBe(s.taskId);
    const c = await containerd.containers.get(uuid);
    expect(c.labels["made"]).toBeUndefined();
    expect(c.labels["org.lfedge.eve-tasks.uuid"]).toBe(uuid);
  });

  it("gives each bad input a clear error in TaskStatus, touching nothing else", async () => {
    const kv = await bus.bucket("controller");
    const cases: [string, (uuid: string) => Promise<unknown>, RegExp][] = [
      [
        "malformed JSON",
        (u) => kv.put(`AppInstanceConfig.${u}`, `{"schemaVersion": 1, "uuid": "${u}",`),
        /malformed JSON/,
      ],
      [
        "a schema violation",
        (u) =>
          kv.put(
            `AppInstanceConfig.${u}`,
            JSON.stringify({ ...app(u), resources: { memoryMiB: "lots", vcpus: 1 } }),
          ),
        /memoryMiB/,
      ],
      [
        "memory 0",
        (u) =>
          kv.put(
            `AppInstanceConfig.${u}`,
            JSON.stringify({ ...app(u), resources: { memoryMiB: 0, vcpus: 1 } }),
          ),
        /memoryMiB/,
      ],
      [
        "uuid different from the key",
        (u) => kv.put(`AppInstanceConfig.${u}`, JSON.stringify(app(newUuid()))),
        /uuid/,
      ],
      [
        "an unknown virtualization mode",
        (u) => kv.put(`AppInstanceConfig.${u}`, JSON.stringify({ ...app(u), virtualization: "XEN" })),
        /virtualization/,
      ],
      [
        "a value over 64 KiB",
        (u) =>
          kv.put(`AppInstanceConfig.${u}`, JSON.stringify({ ...app(u), version: "x".repeat(70 * 1024) })),
        /64 KiB|65536/,
      ],
      [
        "a root that does not exist",
        (u) =>
          configs.publish(u, app(u, { root: { volume: { path: join(volumes, "nope"), readOnly: false } } })),
        /does not exist/,
      ],
      [
        "a relative root path",
        (u) =>
          kv.put(
            `AppInstanceConfig.${u}`,
            JSON.stringify({ ...app(u), root: { volume: { path: "busybox/rootfs", readOnly: false } } }),
          ),
        /absolute/,
      ],
      [
        "a root outside EVE_VOLUME_ROOTS",
        (u) => configs.publish(u, app(u, { root: { volume: { path: "/", readOnly: false } } })),
        /outside EVE_VOLUME_ROOTS/,
      ],
      [
        "a volume whose symlink escapes",
        async (u) => {
          const link = join(volumes, `escape-${u.slice(-6)}`);
          await symlink("/etc", link);
          return configs.publish(
            u,
            app(u, { volumes: [{ path: link, mountPoint: "/data", readOnly: false }] }),
          );
        },
        /resolves to \/etc/,
      ],
      [
        "more memory than the node has",
        (u) => configs.publish(u, app(u, { resources: { memoryMiB: NODE_MEMORY_MIB * 2, vcpus: 1 } })),
        /needs 4096 MiB of memory but node local has 2048 MiB/,
      ],
    ];
    const uuids = cases.map(() => newUuid());
    await Promise.all(cases.map(([, publish], i) => publish(uuids[i]!)));
    for (const [i, [name, , message]] of cases.entries()) {
      const s = await until(uuids[i]!, (x) => x.state === "FAILED", `${name}: never FAILED`);
      expect(s.error?.message, name).toMatch(message);
      expect(s.taskId, name).toBe(0);
    }
    // Nothing of them reached containerd.
    for (const u of uuids)
      expect(await containerd.containers.get(u).catch((e: unknown) => e)).toSatisfy(isNotFound);
  }, 90_000);

  it("keeps a running task untouched by a bad update, and clears the error with a good one", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, app(uuid));
    const good = await running(uuid);
    const kv = await bus.bucket("controller");
    const badRev = await kv.put(
      `AppInstanceConfig.${uuid}`,
      JSON.stringify({ ...app(uuid), virtualization: "XEN" }),
    );
    const withError = await until(uuid, (s) => s.error?.configRevision === badRev, "error not reported");
    expect(withError.state).toBe("RUNNING");
    expect(withError.taskId).toBe(good.taskId);
    expect(withError.configRevision).toBe(good.configRevision);
    const badPath = await configs.publish(
      uuid,
      app(uuid, { root: { volume: { path: "/etc", readOnly: false } } }),
    );
    const pathError = await until(
      uuid,
      (s) => s.error?.configRevision === badPath,
      "path error not reported",
    );
    expect(pathError.error?.source).toBe("task-executor");
    expect(pathError.taskId).toBe(good.taskId);
    expect((await containerd.tasks.get(uuid)).pid).toBe(good.taskId);
    const fixed = await configs.publish(uuid, app(uuid, { version: "2" }));
    const s = await until(
      uuid,
      (x) => x.configRevision === fixed && x.error === null,
      "good revision did not clear the error",
    );
    expect(s.state).toBe("RUNNING");
    expect(s.version).toBe("2");
  }, 60_000);

  it("records an exit by itself: 0 is HALTED, non-zero is BROKEN, with code and signal", async () => {
    const ok = newUuid();
    const bad = newUuid();
    const killed = newUuid();
    await configs.publish(ok, app(ok, { process: { args: ["/bin/sh", "-c", "exit 0"] } }));
    await configs.publish(bad, app(bad, { process: { args: ["/bin/sh", "-c", "exit 3"] } }));
    await configs.publish(killed, app(killed));
    const a = await until(ok, (s) => s.state === "HALTED", "exit 0 not HALTED");
    expect(a.exitCode).toBe(0);
    expect(a.signal).toBeNull();
    expect(a.taskId).toBe(0);
    expect(a.lastTaskId).toBeGreaterThan(0);
    const b = await until(bad, (s) => s.state === "BROKEN", "exit 3 not BROKEN");
    expect(b.exitCode).toBe(3);
    expect(b.signal).toBeNull();
    // The anchor is PID 1 of its namespace, so only a signal from outside can kill it.
    const pid = (await running(killed)).taskId;
    process.kill(pid, "SIGKILL");
    const c = await until(killed, (s) => s.state === "BROKEN", "kill -9 of the anchor not BROKEN");
    expect(c.exitCode).toBe(137);
    expect(c.signal).toBe("SIGKILL");
    expect(c.lastTaskId).toBe(pid);
    // Restart policy "never": they stay down.
    await new Promise((r) => setTimeout(r, 1000));
    expect(statuses.get(bad)?.state).toBe("BROKEN");
    expect(statuses.get(killed)?.taskId).toBe(0);
  }, 60_000);

  it("survives a SIGKILL of the executor: same PIDs, nothing restarted or duplicated, orphans removed after sync", async () => {
    const keep = [newUuid(), newUuid(), newUuid()];
    const orphan = newUuid();
    for (const u of [...keep, orphan]) await configs.publish(u, app(u));
    const before = new Map<string, number>();
    for (const u of [...keep, orphan]) before.set(u, (await running(u)).taskId);

    const old = workers.executor;
    await old.kill(0, "SIGKILL");
    await old.replicas[0]!.exited;
    // While it is down: one app's config goes away. Its container must go only after the
    // restarted executor has seen every TaskConfig, and the others must be left alone.
    await configs.unpublish(orphan);
    await new Promise((r) => setTimeout(r, 500));
    expect((await containerd.tasks.get(orphan)).pid).toBe(before.get(orphan));
    const seen = new Map<string, number>();
    for (const u of keep) seen.set(u, statuses.get(u)!.taskId);

    workers.executor = startExecutor();
    await workers.executor.waitForLine((l) => l.json?.event === "resynced", 60_000);
    await waitFor(() => statuses.get(orphan) === undefined, { message: "orphan status not removed" });
    expect(await containerd.containers.get(orphan).catch((e: unknown) => e)).toSatisfy(isNotFound);
    for (const u of keep) {
      const s = statuses.get(u)!;
      expect(s.state).toBe("RUNNING");
      expect(s.taskId).toBe(before.get(u));
      expect((await containerd.tasks.get(u)).pid).toBe(before.get(u));
      // No stop or start went by for it.
      const states = history.get(u)!.map((h) => h.state);
      expect(states.filter((x) => x === "BOOTING")).toHaveLength(1);
      expect(states).not.toContain("HALTING");
    }
    const ids = (await containerd.containers.list()).map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
  }, 90_000);

  it("produced only specs that validate against the official OCI runtime-spec schema", async () => {
    await Promise.all(pendingChecks);
    expect(specChecks.filter((c) => c !== "ok")).toEqual([]);
    // READY TaskConfigs and running containers of every test above.
    expect(specChecks.length).toBeGreaterThan(20);
  });
});
