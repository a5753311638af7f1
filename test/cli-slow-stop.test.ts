// `eve-tasks stop --wait` and `delete --wait` on a task that takes 10 s to stop (its shell traps
// TERM and sleeps before it exits), with the real spec-builder and task-executor, its own
// nats-server and containerd. The wait must see the status arrive long after the request, as for
// a VM that ignores the power button for its stop timeout. (It timed out showing HALTED when its
// watch started while the executor wrote HALTING: see test/bus/subscription-sync.test.ts.) 10 s
// is far longer than the watch takes to start, which is what the missed transition needed.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets, ensureEventsStream, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import { cleanupContainerd, startContainerd } from "@eve-tasks/embedded";
import type { RunningContainerd } from "@eve-tasks/embedded";
import { CONTAINERD_NAMESPACE, messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, AppInstanceConfigSchema, TaskStatusSchema } from "@eve-tasks/schemas";
import {
  BUILT,
  deferCleanup,
  makeRootfs,
  runNode,
  spawnReplicas,
  statusWaiter,
  tempDir,
  uuidMaker,
  waitFor,
  withPrivateNats,
} from "./harness/index.js";
import type { PrivateNats, Replicas } from "./harness/index.js";

const newUuid = uuidMaker("510e5700");
const STOP_DELAY_S = 10;
const echo = process.env.EVE_TEST_ECHO === "1";

describe("--wait on a slow stop", () => {
  let nats: PrivateNats;
  let containerdServer: RunningContainerd;
  let containerd: ContainerdClient;
  let bus: Bus;
  let statuses: Subscription<typeof TaskStatusSchema>;
  let configs: Publication<typeof AppInstanceConfigSchema>;
  let workers: Replicas[] = [];
  let rootfs: string;

  beforeAll(async () => {
    const dir = await tempDir("slowstop-");
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "busybox", "rootfs");
    await mkdir(rootfs, { recursive: true });
    await makeRootfs(rootfs);
    nats = await withPrivateNats();
    containerdServer = await startContainerd({ dir: join(dir, "ctrd") });
    deferCleanup(async () => {
      await cleanupContainerd(containerdServer.address, [CONTAINERD_NAMESPACE]).catch(() => undefined);
      await containerdServer.stop();
    });
    const env = {
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: containerdServer.address,
      EVE_DATA_DIR: join(dir, "data"),
      EVE_RUN_DIR: join(dir, "run"),
      EVE_VOLUME_ROOTS: volumes,
      EVE_NODE_MEMORY_MIB: "1024",
    };
    bus = await connectBus({ servers: nats.url, name: "slow-stop-test" });
    await ensureBuckets(bus);
    await ensureEventsStream(bus);
    const executor = spawnReplicas({ entry: BUILT.taskExecutor, count: 1, name: "task-executor", env, echo });
    workers = [
      spawnReplicas({ entry: BUILT.specBuilder, count: 1, name: "spec-builder", env, echo }),
      executor,
    ];
    await executor.waitForLine((l) => l.json?.event === "resynced", 60_000);
    containerd = new ContainerdClient({ address: containerdServer.address, namespace: CONTAINERD_NAMESPACE });
    configs = new Publication(bus, messageTable("AppInstanceConfig"));
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
  }, 90_000);

  afterAll(async () => {
    for (const uuid of (await configs?.getAll())?.keys() ?? []) await configs.unpublish(uuid);
    await waitFor(async () => (await containerd.containers.list()).length === 0, {
      timeoutMs: 60_000,
      message: "containers left after deleting every config",
    }).catch((err: unknown) => console.error((err as Error).message));
    await statuses?.close();
    await bus?.close();
    containerd?.close();
    for (const w of workers) await w.stopAll();
  }, 90_000);

  /** Runs `eve-tasks <args>` to completion, timed. */
  const cli = async (args: string[]) => {
    const began = Date.now();
    const r = await runNode(BUILT.cli, args, { env: { NATS_URL: nats.url } });
    return { ...r, ms: Date.now() - began };
  };

  it(`stop --wait and delete --wait wait for a task that takes ${STOP_DELAY_S} s to stop`, async () => {
    const uuid = newUuid();
    const name = `slow-${uuid.slice(-6)}`;
    const app: AppInstanceConfigInput = {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: name,
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: false } },
      process: {
        args: ["/bin/sh", "-c", `trap 'sleep ${STOP_DELAY_S}; exit 0' TERM; sleep 3600 & wait`],
        cwd: "/",
        user: "0:0",
      },
      stopTimeoutMs: 60_000,
    };
    const applied = await runNode(BUILT.cli, ["apply", "-f", "-"], {
      env: { NATS_URL: nats.url },
      input: JSON.stringify(app),
    });
    expect(applied.code).toBe(0);
    await statusWaiter(statuses).running(uuid);

    const stop = await cli(["stop", name, "--wait", "--timeout", "90s"]);
    expect({ code: stop.code, stderr: stop.stderr }).toEqual({ code: 0, stderr: "" });
    expect(stop.stdout).toMatch(new RegExp(`^${name} \\(${uuid}\\) is HALTED$`, "m"));
    expect(stop.ms).toBeGreaterThanOrEqual((STOP_DELAY_S - 2) * 1000);
    expect(statuses.get(uuid)).toMatchObject({ state: "HALTED", taskId: 0, exitCode: 0 });

    const start = await cli(["start", name, "--wait"]);
    expect({ code: start.code, stderr: start.stderr }).toEqual({ code: 0, stderr: "" });

    const del = await cli(["delete", name, "--wait", "--timeout", "90s"]);
    expect({ code: del.code, stderr: del.stderr }).toEqual({ code: 0, stderr: "" });
    expect(del.stdout).toMatch(new RegExp(`^${name} \\(${uuid}\\) is gone$`, "m"));
    expect(del.ms).toBeGreaterThanOrEqual((STOP_DELAY_S - 2) * 1000);
    expect(statuses.get(uuid)).toBeUndefined();
  }, 180_000);
});
