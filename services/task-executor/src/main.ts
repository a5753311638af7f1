#!/usr/bin/env node
// task-executor: one per node, the only worker that talks to containerd. Wiring only:
// config → bus, containerd, node facts → the reconciler in @eve-tasks/executor.
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { Outbox, connectBus, ensureBucket, ensureEventsStream, serve, waitForBucket } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import {
  AccelChooser,
  EXECUTOR_DEFAULTS,
  TaskExecutor,
  containerdRuntime,
  loadNodeFacts,
} from "@eve-tasks/executor";
import { CgroupReader, cgroupDirsFor, detectCgroupLayout } from "@eve-tasks/procfs";
import {
  baseWorkerEnv,
  envInt,
  envList,
  envPositiveInt,
  executorNodeEnv,
  natsConnection,
  runWorker,
} from "@eve-tasks/runtime";
import {
  CONTAINERD_NAMESPACE,
  SignalReplySchema,
  SignalRequestSchema,
  StopTasksReplySchema,
  StopTasksRequestSchema,
  cgroupsPathFor,
  signalSubject,
  stopTasksSubject,
} from "@eve-tasks/schemas";

const envSchema = z.object({
  ...baseWorkerEnv,
  ...executorNodeEnv,
  /** containerd's socket; default `<EVE_RUN_DIR>/containerd.sock`, where the launcher starts it. */
  CONTAINERD_ADDRESS: z.string().min(1).optional(),
  /** Where host paths of apps may resolve to, colon-separated; default `<EVE_DATA_DIR>/volumes`. */
  EVE_VOLUME_ROOTS: envList(":").optional(),
  /** Memory kept for the system, never given to tasks. */
  EVE_MEMORY_RESERVE_MIB: envInt({ min: 0 }).default(0),
  /** The node's memory, instead of what the kernel reports. */
  EVE_NODE_MEMORY_MIB: envPositiveInt().optional(),
  /** The anchor tax of VMs that do not set their own, instead of EVE's estimate. */
  EVE_VMM_OVERHEAD_MIB: envInt({ min: 0 }).optional(),
  /** What VMs asking for `auto` get: `auto` (KVM only if a probe guest runs), `kvm` or `tcg`. */
  EVE_ACCEL: z
    .enum(["auto", "kvm", "tcg"], {
      error: (iss) => `expected auto|kvm|tcg, got ${JSON.stringify(iss.input)}`,
    })
    .default("auto"),
  /** How long the KVM probe guest may take to come up. */
  EVE_KVM_PROBE_TIMEOUT_MS: envPositiveInt().default(EXECUTOR_DEFAULTS.kvmProbeTimeoutMs),
});

await runWorker({
  name: "task-executor",
  envSchema,
  // A stop in progress (SIGTERM, stopTimeoutMs, SIGKILL) finishes before the worker exits.
  graceMs: 30_000,
  async main({ config, logger, lifecycle }) {
    const facts = await loadNodeFacts({
      node: config.EVE_NODE,
      dataDir: config.EVE_DATA_DIR,
      runDir: config.EVE_RUN_DIR,
      volumeRoots: config.EVE_VOLUME_ROOTS ?? [join(config.EVE_DATA_DIR, "volumes")],
      nodeMemoryMiB: config.EVE_NODE_MEMORY_MIB,
      memoryReserveMiB: config.EVE_MEMORY_RESERVE_MIB,
      vmmOverheadMiB: config.EVE_VMM_OVERHEAD_MIB,
      allowHostRoot: config.EVE_ALLOW_HOST_ROOT,
      allowDevices: config.EVE_ALLOW_DEVICES,
      logMaxBytes: config.EVE_LOG_MAX_BYTES,
      logFiles: config.EVE_LOG_FILES,
      warn: (message, fields) => logger.warn(fields, message),
    });
    const address = config.CONTAINERD_ADDRESS ?? join(config.EVE_RUN_DIR, "containerd.sock");
    const containerd = new ContainerdClient({ address, namespace: CONTAINERD_NAMESPACE });
    const runtime = containerdRuntime(containerd);
    lifecycle.onShutdown("close containerd client", () => containerd.close());
    const version = await containerd.waitForReady(30_000);
    logger.info(
      { event: "containerd-connected", address, containerd: version.version, volumeRoots: facts.volumeRoots },
      "connected to containerd",
    );

    const bus = await connectBus({ ...natsConnection(config), name: "task-executor", logger });
    lifecycle.onShutdown("drain NATS", () => bus.drain());
    // Its own bucket it creates; the one it reads it waits for (see the spec-builder). The events
    // stream may only be creatable by an admin: until it exists, events wait in the outbox.
    await ensureBucket(bus, "task-executor");
    await waitForBucket(bus, "spec-builder", { signal: lifecycle.signal });
    await ensureEventsStream(bus).catch((err: unknown) =>
      logger.warn({ err }, "cannot create the TASK_EVENTS stream; events stay in the outbox until it exists"),
    );
    const outbox = await Outbox.open(bus, {
      file: join(config.EVE_DATA_DIR, "outbox", "task-executor.jsonl"),
    });
    lifecycle.onShutdown("flush and close the event outbox", async () => {
      await Promise.race([outbox.flushed(), sleep(2000)]);
      await outbox.close();
    });

    // OOM evidence: the task cgroup's OOM-kill count (v1 or v2), read before Tasks.Delete.
    const layout = detectCgroupLayout();
    const readOomKills = (uuid: string): Promise<number | null> => {
      const reader = new CgroupReader(cgroupDirsFor(layout, cgroupsPathFor(uuid)), ["oomKills"]);
      try {
        return Promise.resolve(reader.read().values.oomKills ?? null);
      } finally {
        reader.close();
      }
    };
    const accel = new AccelChooser({
      runtime,
      dataDir: config.EVE_DATA_DIR,
      logger,
      nodeAccel: config.EVE_ACCEL,
      probeTimeoutMs: config.EVE_KVM_PROBE_TIMEOUT_MS,
    });
    const executor = new TaskExecutor({ bus, runtime, facts, logger, outbox, readOomKills, accel });
    lifecycle.onShutdown("finish in-flight reconciles", () => executor.stop());
    await executor.start();
    // Signal requests are answered once the executor knows every app (an acknowledgement only).
    const signals = serve(bus, {
      subject: signalSubject(facts.node),
      request: SignalRequestSchema,
      reply: SignalReplySchema,
      handle: (r) => executor.signal(r.uuid, r.signal),
      onError: (message) => ({ accepted: false as const, error: message }),
    });
    lifecycle.onShutdown("stop answering signal requests", () => signals.close());
    // The launcher's Ctrl-C: every task of the node stopped as any stop goes; answered when done.
    const stops = serve(bus, {
      subject: stopTasksSubject(facts.node),
      request: StopTasksRequestSchema,
      reply: StopTasksReplySchema,
      handle: async () => ({ accepted: true as const, error: null, ...(await executor.stopTasks()) }),
      onError: (message) => ({ accepted: false as const, error: message, stopped: [], failed: [] }),
    });
    lifecycle.onShutdown("stop answering stop requests", () => stops.close());
    logger.info({ event: "resynced" }, "every app reconciled; following changes");
  },
});
