// A node for the executor's trust-boundary tests: a private nats-server, the real task-executor
// as its own process (with the env the test gives), the shared containerd, and TaskConfigs
// written straight into the spec-builder bucket, as anyone who can write that bucket could.
// Legitimate TaskConfigs come from the real spec-builder's build function.
import { join } from "node:path";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import { AppInstanceConfigSchema, CONTAINERD_NAMESPACE, specSha256, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  OciSpec,
  ReadyTaskConfig,
  TaskStatus,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import { buildTaskConfig } from "../services/spec-builder/src/build-task-config.js";
import {
  BUILT,
  deferCleanup,
  harnessEnv,
  spawnReplicas,
  statusWaiter,
  waitFor,
  withPrivateNats,
} from "./harness/index.js";
import type { Replicas, StatusWaiter } from "./harness/index.js";

/** What {@link startExecutorNode} gives a test. */
export interface ExecutorNode {
  env: Record<string, string>;
  dataDir: string;
  bus: Bus;
  containerd: ContainerdClient;
  executor: Replicas;
  statuses: Subscription<typeof TaskStatusSchema>;
  until: StatusWaiter["until"];
  /** Writes a TaskConfig into the spec-builder bucket (a KV put). */
  put(config: ReadyTaskConfig): Promise<void>;
  /** Deletes the TaskConfig of `uuid` (the executor then removes the app). */
  remove(uuid: string): Promise<void>;
  /** The READY TaskConfig the spec-builder builds for `app` (revision `revision`). */
  build(app: AppInstanceConfigInput, revision: number): ReadyTaskConfig;
  /** The status of `uuid` once it is FAILED, or RUNNING, or the first of `states`. */
  settled(uuid: string, states?: readonly TaskStatus["state"][]): Promise<TaskStatus>;
  /** Whether containerd has a container for `uuid`. */
  hasContainer(uuid: string): Promise<boolean>;
}

/** `config` with its spec changed by `change` (a deep copy; specSha256 recomputed). */
export function withSpec(
  config: ReadyTaskConfig,
  change: (spec: OciSpec & Record<string, unknown>) => void,
  revision = config.configRevision + 1,
): ReadyTaskConfig {
  const spec = structuredClone(config.spec) as OciSpec & Record<string, unknown>;
  change(spec);
  return { ...config, spec, specSha256: specSha256(spec), configRevision: revision };
}

/**
 * Starts a node whose data lives in `dir` (`dir/data`, `dir/run`) and whose volume root is
 * `volumes`. Everything is stopped, and every TaskConfig deleted (so the executor removes its
 * containers), when the test file finishes.
 */
export async function startExecutorNode(
  dir: string,
  volumes: string,
  extraEnv: Record<string, string> = {},
): Promise<ExecutorNode> {
  const nats = await withPrivateNats();
  const env = {
    NATS_URL: nats.url,
    CONTAINERD_ADDRESS: harnessEnv().containerdAddress,
    EVE_DATA_DIR: join(dir, "data"),
    EVE_RUN_DIR: join(dir, "run"),
    EVE_VOLUME_ROOTS: volumes,
    EVE_NODE_MEMORY_MIB: "2048",
    LOG_LEVEL: "debug",
    ...extraEnv,
  };
  const bus = await connectBus({ servers: nats.url, name: "executor-node-test" });
  await ensureBuckets(bus);
  const containerd = new ContainerdClient({
    address: env.CONTAINERD_ADDRESS,
    namespace: CONTAINERD_NAMESPACE,
  });
  const configs = new Publication(bus, messageTable("TaskConfig"));
  const statuses = await subscribe(bus, {
    ...messageTable("TaskStatus"),
    onCreate: () => undefined,
  });
  const executor = spawnReplicas({
    entry: BUILT.taskExecutor,
    name: "task-executor",
    env,
    echo: process.env.EVE_TEST_ECHO === "1",
  });
  await executor.waitForLine((l) => l.json?.event === "resynced", 60_000);
  const until = statusWaiter(statuses).until;
  const hasContainer = (uuid: string) =>
    containerd.containers.get(uuid).then(
      () => true,
      () => false,
    );
  deferCleanup(async () => {
    const all = await configs.getAll();
    for (const uuid of all.keys()) await configs.unpublish(uuid);
    await waitFor(async () => (await Promise.all([...all.keys()].map(hasContainer))).every((h) => !h), {
      timeoutMs: 60_000,
      message: "containers left after deleting every TaskConfig",
    });
    await executor.stopAll();
    await statuses.close();
    await bus.close();
    containerd.close();
  });
  return {
    env,
    dataDir: env.EVE_DATA_DIR,
    bus,
    containerd,
    executor,
    statuses,
    until,
    put: async (config) => void (await configs.publish(config.uuid, config)),
    remove: (uuid) => configs.unpublish(uuid),
    build(app, revision) {
      const outcome = buildTaskConfig(AppInstanceConfigSchema.parse(app), {
        key: app.uuid,
        revision,
        time: new Date(),
      });
      if (outcome.status !== "READY")
        throw new Error(`the spec-builder refused the app: ${JSON.stringify(outcome)}`);
      return outcome.taskConfig;
    },
    settled: (uuid, states = ["RUNNING", "FAILED"]) =>
      until(uuid, (s) => states.includes(s.state), `never ${states.join(" or ")}`),
    hasContainer,
  };
}
