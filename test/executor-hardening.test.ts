// The executor's state across starts, with real parts: a private nats-server and containerd, the
// built spec-builder and hypervisor-seed-fetcher as processes, local OCI layouts as images, and
// the executor in this process (so its relist interval can be short). Issue 13, items 12–14:
// - a new image gets a fresh overlay upper dir; the old one goes once the new task runs;
// - a start that fails is tried again with back-off and reported once, until the config changes;
// - the restart history in the container's labels stays under containerd's label limit.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outbox, connectBus } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import {
  EXECUTOR_LABELS,
  MAX_RESTART_HISTORY,
  TaskExecutor,
  containerdRuntime,
  loadNodeFacts,
} from "@eve-tasks/executor";
import type { AppInstanceConfigInput, TaskEvent } from "@eve-tasks/schemas";
import { makeRootfs, startNode, statusWaiter, uuidMaker, waitFor } from "./harness/index.js";
import type { TestNode } from "./harness/index.js";
import { OciLayout, busyboxEntries } from "./harness/registry-images.js";

const echo = process.env.EVE_TEST_ECHO === "1";
const newUuid = uuidMaker("3a4d0e5f");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the executor's state across starts", () => {
  let node: TestNode;
  let executorBus: Bus;
  let client: TestNode["containerd"];
  let executor: TaskExecutor;
  let outbox: Outbox;
  let configs: TestNode["configs"];
  let statuses: TestNode["statuses"];
  let events: readonly TaskEvent[];
  let dataDir: string;
  let volumes: string;
  let imageA: string;
  let imageB: string;
  /** The app whose next Tasks.Create a predecessor's lands before. */
  let landsFirst: string | undefined;
  let predecessorPid = 0;

  beforeAll(async () => {
    // The spec-builder and the seed fetcher as processes; the executor runs in this process.
    node = await startNode({
      name: "harden",
      workers: ["spec-builder", "hypervisor-seed-fetcher"],
      prepare: async ({ volumes }) => {
        await makeRootfs(join(volumes, "busybox"));
        // Two images of the same files whose digests differ (their configs do).
        const layout = new OciLayout(join(volumes, "layout"));
        const entries = await busyboxEntries();
        await layout.tag(await layout.image({ layers: [{ entries }], config: { Env: ["IMAGE=a"] } }), "a");
        await layout.tag(await layout.image({ layers: [{ entries }], config: { Env: ["IMAGE=b"] } }), "b");
        imageA = `oci:${layout.dir}:a`;
        imageB = `oci:${layout.dir}:b`;
      },
    });
    ({ dataDir, volumes, configs, statuses, events, containerd: client } = node);
    const dir = node.dir;
    executorBus = await connectBus({ servers: node.nats.url, name: "hardening-executor" });
    outbox = await Outbox.open(executorBus, { file: join(dir, "outbox.jsonl") });
    const real = containerdRuntime(client);
    executor = new TaskExecutor({
      bus: executorBus,
      runtime: {
        ...real,
        // A killed predecessor's Tasks.Create, landing between this executor's look and its own
        // Tasks.Create: a real task, made through containerd with the same request.
        createTask: async (request) => {
          if (request.id === landsFirst) {
            landsFirst = undefined;
            predecessorPid = (await real.createTask(request)).pid;
          }
          return real.createTask(request);
        },
      },
      facts: await loadNodeFacts({
        node: "local",
        dataDir,
        runDir: node.runDir,
        volumeRoots: [volumes],
        nodeMemoryMiB: 2048,
        allowHostRoot: false,
        allowDevices: [],
        logMaxBytes: 2 ** 20,
        logFiles: 2,
      }),
      logger: pino({ level: echo ? "debug" : "silent" }),
      outbox,
      // Every app checked against containerd five times a second: what a relist would repeat, it
      // repeats many times within a test.
      relistIntervalMs: 200,
    });
    await executor.start();
  }, 120_000);

  afterAll(async () => {
    // Every app deleted while the executor still runs, then the executor, then the node.
    const all = await configs?.getAll();
    for (const uuid of all?.keys() ?? []) await configs.unpublish(uuid);
    if (all?.size) {
      await waitFor(async () => (await client.containers.list()).length === 0, {
        timeoutMs: 60_000,
        message: "containers left after deleting every config",
      }).catch((err: unknown) => console.error((err as Error).message));
    }
    await executor?.stop();
    await outbox?.close();
    await executorBus?.close();
    await node?.stop();
  }, 90_000);

  function app(uuid: string, over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `h-${uuid.slice(-6)}`,
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: join(volumes, "busybox"), readOnly: true } },
      process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] },
      stopTimeoutMs: 5000,
      ...over,
    } as AppInstanceConfigInput;
  }
  const until = (...a: Parameters<ReturnType<typeof statusWaiter>["until"]>) =>
    statusWaiter(statuses, 60_000).until(...a);

  it("gives a new image a fresh overlay upper dir, and drops the old one once the new task runs", async () => {
    const uuid = newUuid();
    // Says whether it finds what a task before it wrote into its root, then writes there.
    const probe =
      "if [ -e /marker ]; then echo STALE; else echo FRESH; fi; echo x > /marker; " +
      "trap 'exit 0' TERM; /bin/busybox sleep 3600 & wait";
    const onImage = (ref: string) =>
      app(uuid, { root: { image: { ref } }, process: { args: ["/bin/sh", "-c", probe] } });
    await configs.publish(uuid, onImage(imageA));
    const first = await until(uuid, (s) => s.state === "RUNNING", "never RUNNING on image a");
    const log = () => readFile(first.logPath, "utf8").catch(() => "");
    await waitFor(async () => (await log()).includes("FRESH"), { message: "the first task never wrote" });
    const overlay = join(dataDir, "tasks", uuid, "overlay");
    const before = await readdir(overlay);

    await configs.publish(uuid, onImage(imageB));
    await until(uuid, (s) => s.state === "RUNNING" && s.taskId !== first.taskId, "never RUNNING on image b");
    await waitFor(async () => (await log()).trim().split("\n").length >= 2, {
      message: "the second task never wrote",
    });
    // The task on image b does not see what the task on image a wrote.
    expect((await log()).trim().split("\n")).toEqual(["FRESH", "FRESH"]);
    // Once it runs, only its own upper dir is left.
    const after = await waitFor(
      async () => {
        const names = await readdir(overlay);
        return names.length === 1 ? names : undefined;
      },
      { message: "the old upper dir is still there" },
    );
    expect(before).toHaveLength(1);
    expect(after[0]).not.toBe(before[0]);
    // The same image again keeps the upper dir: a restart is not an image change.
    const again = await configs.publish(uuid, { ...onImage(imageB), restartCounter: 1 });
    await until(uuid, (s) => s.state === "RUNNING" && s.configRevision === again, "not restarted");
    await waitFor(async () => (await log()).trim().split("\n").length >= 3, {
      message: "the third task never wrote",
    });
    expect((await log()).trim().split("\n")[2]).toBe("STALE");
    expect(await readdir(overlay)).toEqual(after);
  }, 120_000);

  it("tries a failed start again with back-off, reports it once, and starts at once when the config changes", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, app(uuid, { process: { args: ["/no/such/program"] } }));
    const failed = await until(uuid, (s) => s.state === "FAILED", "never FAILED");
    expect(failed.error?.message).toMatch(/^cannot start the task: /);
    // Fifteen relists later: still one error, the status not published again.
    await sleep(3000);
    const errors = events.filter((e) => e.uuid === uuid && e.type === "error");
    expect(errors.map((e) => e.message)).toEqual([failed.error?.message]);
    expect(statuses.get(uuid)).toEqual(failed);
    // A new revision is not held back by the old one's back-off.
    const fixed = await configs.publish(uuid, app(uuid));
    const s = await until(
      uuid,
      (x) => x.state === "RUNNING" && x.configRevision === fixed,
      "not started",
      4000,
    );
    expect(s.error).toBeNull();
  }, 60_000);

  it("starts an app whose task a killed predecessor's Tasks.Create made after the look", async () => {
    const uuid = newUuid();
    landsFirst = uuid;
    await configs.publish(uuid, app(uuid));
    const s = await until(uuid, (x) => x.state === "RUNNING", "never RUNNING");
    expect(predecessorPid).toBeGreaterThan(0);
    // The predecessor's task was discarded, not adopted or left behind: one task, the status's.
    expect(s.taskId).not.toBe(predecessorPid);
    expect(s.error).toBeNull();
    const mine = (await client.tasks.list()).filter((t) => t.containerId === uuid);
    expect(mine.map((t) => [t.pid, t.status])).toEqual([[s.taskId, "RUNNING"]]);
    await waitFor(async () => !(await readFile(`/proc/${predecessorPid}/stat`, "utf8").catch(() => "")), {
      message: "the predecessor's anchor is still there",
    });
    expect(events.filter((e) => e.uuid === uuid && e.type === "error")).toEqual([]);

    // The same at a restart, when the container is older than the task that lands first.
    landsFirst = uuid;
    const again = await configs.publish(uuid, app(uuid, { restartCounter: 1 }));
    const r = await until(uuid, (x) => x.state === "RUNNING" && x.configRevision === again, "not restarted");
    expect(r.taskId).not.toBe(predecessorPid);
    expect(r.taskId).not.toBe(s.taskId);
    expect(r.error).toBeNull();
    const now = (await client.tasks.list()).filter((t) => t.containerId === uuid);
    expect(now.map((t) => [t.pid, t.status])).toEqual([[r.taskId, "RUNNING"]]);
    expect(events.filter((e) => e.uuid === uuid && e.type === "error")).toEqual([]);
  }, 60_000);

  it("keeps the restart history in the labels under containerd's label limit", async () => {
    const uuid = newUuid();
    await configs.publish(
      uuid,
      app(uuid, {
        restartPolicy: {
          mode: "always",
          maxRestarts: 1000,
          windowMs: 3_600_000,
          backoffMs: 0,
          maxBackoffMs: 0,
        },
      }),
    );
    const first = await until(uuid, (s) => s.state === "RUNNING", "never RUNNING");
    // 290 restarts in the window, as if they had happened: the most containerd's 4096-byte
    // label limit holds, as the executor writes the history.
    const now = Date.now();
    const times = Array.from({ length: 290 }, (_, i) => now - (290 - i) * 1000);
    const key = EXECUTOR_LABELS.restartTimes;
    await client.containers.update(
      { id: uuid, labels: { [key]: times.join(",") } },
      { fieldPaths: [`labels.${key}`] },
    );
    process.kill(first.taskId, "SIGKILL");
    const second = await until(
      uuid,
      (s) => s.state === "RUNNING" && s.taskId !== first.taskId,
      "not restarted after the 291st exit",
    );
    const kept = (await client.containers.get(uuid)).labels[key]!.split(",").map(Number);
    expect(kept).toHaveLength(MAX_RESTART_HISTORY);
    expect(kept.slice(0, -1)).toEqual(times.slice(-(MAX_RESTART_HISTORY - 1)));
    expect(second.restarts).toBe(MAX_RESTART_HISTORY);
    expect(second.error).toBeNull();
  }, 60_000);
});
