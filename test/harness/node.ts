// One node of the system for an end-to-end test: a private nats-server and containerd, the
// built workers as processes, and what a test watches the node through (the AppInstanceConfig
// table it publishes to, the TaskStatus table, the events). Tests that need more (a registry,
// their own images, a worker in-process) add it around the node.
import { join } from "node:path";
import {
  Publication,
  connectBus,
  ensureBuckets,
  ensureEventsStream,
  followEvents,
  subscribe,
} from "@eve-tasks/bus";
import type { Bus, EventFollower, Subscription } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import { cleanupContainerd, startContainerd } from "@eve-tasks/embedded";
import { CONTAINERD_NAMESPACE, messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigSchema, TaskEvent, TaskStatusSchema } from "@eve-tasks/schemas";
import { deferCleanup, tempDir } from "./cleanup.js";
import { BUILT, statusWaiter } from "./e2e.js";
import type { StatusWaiter } from "./e2e.js";
import { withPrivateNats } from "./private-nats.js";
import type { PrivateNats } from "./private-nats.js";
import { spawnReplicas } from "./replicas.js";
import type { Replicas } from "./replicas.js";
import { waitFor } from "./wait.js";

/** The workers a node runs. */
export type WorkerName = "spec-builder" | "hypervisor-seed-fetcher" | "task-executor" | "proc-monitor";

const ENTRIES: Record<WorkerName, string> = {
  "spec-builder": BUILT.specBuilder,
  "hypervisor-seed-fetcher": BUILT.seedFetcher,
  "task-executor": BUILT.taskExecutor,
  "proc-monitor": BUILT.procMonitor,
};

const ALL_WORKERS: readonly WorkerName[] = [
  "spec-builder",
  "hypervisor-seed-fetcher",
  "task-executor",
  "proc-monitor",
];

/** What {@link startNode} is given. */
export interface StartNodeOptions {
  /** Prefix of the node's temp dir (which holds data/, run/, volumes/ and the stores). */
  name: string;
  /**
   * The node's directory, made by the caller (who removes it), for a test that fills it before
   * the node starts; default a new temp dir named after `name`.
   */
  dir?: string;
  /** Which workers run as processes; default all four. */
  workers?: readonly WorkerName[];
  /** Environment of every worker, over the node's own (NATS_URL, CONTAINERD_ADDRESS, dirs). */
  env?: (dirs: NodeDirs) => Record<string, string>;
  /** Runs before the workers start: volumes, layouts, configs the workers must find. */
  prepare?: (node: Omit<TestNode, "workers" | "stop">) => Promise<void>;
  /** Default timeout of {@link TestNode.until}. */
  statusTimeoutMs?: number;
  /** How long a worker may take to come up (its `running` event). */
  readyTimeoutMs?: number;
}

/** The node's directories. */
export interface NodeDirs {
  /** The node's temp dir. */
  readonly dir: string;
  /** EVE_DATA_DIR. */
  readonly dataDir: string;
  /** EVE_RUN_DIR. */
  readonly runDir: string;
  /** EVE_VOLUME_ROOTS (created empty). */
  readonly volumes: string;
}

/** A running node. */
export interface TestNode extends NodeDirs {
  readonly nats: PrivateNats;
  readonly containerdAddress: string;
  /** The workers' environment. */
  readonly env: Record<string, string>;
  /** The test's own connection (the controller's buckets and the events stream exist). */
  readonly bus: Bus;
  /** containerd in the executor's namespace. */
  readonly containerd: ContainerdClient;
  readonly configs: Publication<typeof AppInstanceConfigSchema>;
  readonly statuses: Subscription<typeof TaskStatusSchema>;
  /** Every event published since the node started. */
  readonly events: readonly TaskEvent[];
  eventsOf(uuid: string): TaskEvent[];
  /** Waits for a status of an app (see {@link statusWaiter}). */
  readonly until: StatusWaiter["until"];
  /** The workers, by name. */
  readonly workers: Partial<Record<WorkerName, Replicas>>;
  /**
   * Deletes every config, waits until containerd has no container left (reported, not thrown,
   * so the rest is still stopped), then stops the workers by PID and closes the connections.
   * Also registered as a deferred cleanup; calling it twice is harmless.
   */
  stop(): Promise<void>;
}

/** Starts a node (see the module's comment); the workers are up when it resolves. */
export async function startNode(options: StartNodeOptions): Promise<TestNode> {
  const echo = process.env.EVE_TEST_ECHO === "1";
  const dir = options.dir ?? (await tempDir(`${options.name}-`));
  const dirs: NodeDirs = {
    dir,
    dataDir: join(dir, "data"),
    runDir: join(dir, "run"),
    volumes: join(dir, "volumes"),
  };
  const [nats, containerdServer] = await Promise.all([
    withPrivateNats(),
    startContainerd({ dir: join(dir, "ctrd") }),
  ]);
  deferCleanup(async () => {
    await cleanupContainerd(containerdServer.address, [CONTAINERD_NAMESPACE]).catch(() => undefined);
    await containerdServer.stop();
  });
  const bus = await connectBus({ servers: nats.url, name: `${options.name}-test` });
  await ensureBuckets(bus);
  await ensureEventsStream(bus);
  const env: Record<string, string> = {
    NATS_URL: nats.url,
    CONTAINERD_ADDRESS: containerdServer.address,
    EVE_DATA_DIR: dirs.dataDir,
    EVE_RUN_DIR: dirs.runDir,
    EVE_VOLUME_ROOTS: dirs.volumes,
    LOG_LEVEL: "debug",
    ...options.env?.(dirs),
  };
  const containerd = new ContainerdClient({
    address: containerdServer.address,
    namespace: CONTAINERD_NAMESPACE,
  });
  const configs = new Publication(bus, messageTable("AppInstanceConfig"));
  const statuses = await subscribe(bus, { ...messageTable("TaskStatus"), onCreate: () => undefined });
  const events: TaskEvent[] = [];
  const follower: EventFollower = followEvents(bus, (e) => events.push(e));
  const workers: Partial<Record<WorkerName, Replicas>> = {};
  const base = {
    ...dirs,
    nats,
    containerdAddress: containerdServer.address,
    env,
    bus,
    containerd,
    configs,
    statuses,
    events,
    eventsOf: (uuid: string) => events.filter((e) => e.uuid === uuid),
    until: statusWaiter(statuses, options.statusTimeoutMs).until,
  };

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      const all = await configs.getAll().catch(() => new Map<string, unknown>());
      for (const uuid of all.keys()) await configs.unpublish(uuid);
      if (all.size > 0 && workers["task-executor"]) {
        await waitFor(async () => (await containerd.containers.list()).length === 0, {
          timeoutMs: 60_000,
          message: "containers left after deleting every config",
        }).catch((err: unknown) => console.error((err as Error).message));
      }
      await follower.close();
      await statuses.close();
      for (const name of [...ALL_WORKERS].reverse()) await workers[name]?.stopAll();
      await bus.close();
      containerd.close();
    })());
  deferCleanup(stop);

  await options.prepare?.(base);
  const wanted = options.workers ?? ALL_WORKERS;
  for (const name of wanted) {
    workers[name] = spawnReplicas({ entry: ENTRIES[name], count: 1, name, env, echo });
  }
  // Again after the workers, whose own clean-up stops them: cleanups run last in, first out, and
  // the configs must go (and the executor remove their tasks) while the workers still run.
  deferCleanup(stop);
  // Every worker logs `event: "running"` once its main has started (the executor's after its
  // first reconcile of every app).
  await Promise.all(
    wanted.map((name) =>
      workers[name]!.waitForLine((l) => l.json?.event === "running", options.readyTimeoutMs ?? 30_000),
    ),
  );
  return { ...base, workers, stop };
}
