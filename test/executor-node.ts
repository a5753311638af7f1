// A node for the executor's trust-boundary tests: startNode's private nats-server and containerd,
// the real task-executor as its own process (with the env the test gives), and TaskConfigs
// written straight into the spec-builder bucket, as anyone who can write that bucket could.
// Legitimate TaskConfigs come from the real spec-builder's build function.
import { Publication } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import type { ContainerdClient } from "@eve-tasks/containerd";
import { AppInstanceConfigSchema, specSha256, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  OciSpec,
  ReadyTaskConfig,
  TaskStatus,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import { buildTaskConfig } from "../services/spec-builder/src/build-task-config.js";
import { deferCleanup, startNode, waitFor } from "./harness/index.js";
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
 * Starts a node (test/harness/node.ts) whose directory is `dir` (`dir/data`, `dir/run`, volume
 * root `dir/volumes`), running only the task-executor. Everything is stopped, and every
 * TaskConfig deleted (so the executor removes its containers), when the test file finishes.
 */
export async function startExecutorNode(
  dir: string,
  extraEnv: Record<string, string> = {},
): Promise<ExecutorNode> {
  const node = await startNode({
    name: "executor-node",
    dir,
    workers: ["task-executor"],
    env: () => ({ EVE_NODE_MEMORY_MIB: "2048", ...extraEnv }),
    readyTimeoutMs: 60_000,
  });
  const { bus, containerd, statuses, until } = node;
  const configs = new Publication(bus, messageTable("TaskConfig"));
  const hasContainer = (uuid: string) =>
    containerd.containers.get(uuid).then(
      () => true,
      () => false,
    );
  // Registered after the node: runs before it stops (last in, first out).
  deferCleanup(async () => {
    const all = await configs.getAll();
    for (const uuid of all.keys()) await configs.unpublish(uuid);
    await waitFor(async () => (await Promise.all([...all.keys()].map(hasContainer))).every((h) => !h), {
      timeoutMs: 60_000,
      message: "containers left after deleting every TaskConfig",
    });
  });
  return {
    env: node.env,
    dataDir: node.dataDir,
    bus,
    containerd,
    executor: node.workers["task-executor"]!,
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
