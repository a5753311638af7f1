#!/usr/bin/env node
// task-executor: one per node, the only worker that talks to containerd. Wiring only:
// config → bus, containerd, node facts → the reconciler in @eve-tasks/executor; its requests
// (signal, stop-tasks, logs) as endpoints of its NATS service eve-tasks-task-executor.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import {
  LeaseHeldError,
  Outbox,
  acquireLease,
  ensureBucket,
  ensureEventsStream,
  waitForBucket,
} from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import {
  AccelChooser,
  EXECUTOR_DEFAULTS,
  TaskExecutor,
  TaskNetworks,
  containerdRuntime,
  ensureNetnsHelper,
  loadNodeFacts,
  timedRuntime,
} from "@eve-tasks/executor";
import { DEFAULT_NETNS_PREFIX, NETNS_DIR, NodeNetwork, closeCommands } from "@eve-tasks/network";
import { CgroupReader, cgroupDirsFor, detectCgroupLayout, readProcStatSync } from "@eve-tasks/procfs";
import {
  CONFIG_ERROR_EXIT_CODE,
  baseWorkerEnv,
  envInt,
  envList,
  envPositiveInt,
  executorNodeEnv,
  runWorker,
  serveEndpoint,
} from "@eve-tasks/runtime";
import { TaskLogsService } from "@eve-tasks/task-logs";
import {
  CONTAINERD_NAMESPACE,
  LogsReplySchema,
  LogsRequestSchema,
  SignalReplySchema,
  SignalRequestSchema,
  StopTasksReplySchema,
  StopTasksRequestSchema,
  cgroupsPathFor,
  logsSubject,
  signalSubject,
  stopTasksSubject,
  taskLogPath,
} from "@eve-tasks/schemas";
import { executorMetrics } from "./metrics.js";

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
  /**
   * The named network namespace (`/run/netns/<name>`) where the network instances' bridges,
   * uplinks and NAT live; default: the executor's own.
   */
  EVE_NET_NS: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: "must be the name of a network namespace in /run/netns" })
    .optional(),
  /**
   * Prefix of the tasks' netns names (\`/run/netns/<prefix><uuid>\`): the contract's \`eve-\`. Tests
   * that run beside another executor give their own, so neither sweeps the other's.
   */
  EVE_NETNS_PREFIX: z
    .string()
    .regex(/^[a-z0-9-]{1,24}$/, { error: "must be 1-24 of a-z, 0-9 and -" })
    .default(DEFAULT_NETNS_PREFIX),
  /** How long the KVM probe guest may take to come up. */
  EVE_KVM_PROBE_TIMEOUT_MS: envPositiveInt().default(EXECUTOR_DEFAULTS.kvmProbeTimeoutMs),
  /**
   * How long a VM given KVM on the probe's word may take to show a sign of life on its serial
   * console before it is restarted under TCG (0: no boot watchdog).
   */
  EVE_VM_BOOT_DEADLINE_MS: envInt({ min: 0 }).default(EXECUTOR_DEFAULTS.vmBootDeadlineMs),
  /** The KVM device whose presence lets a VM have KVM (default /dev/kvm). */
  EVE_KVM_DEVICE: z.string().startsWith("/", { error: "must be an absolute path" }).optional(),
});

await runWorker({
  name: "task-executor",
  envSchema,
  // A stop in progress (SIGTERM, stopTimeoutMs, SIGKILL) finishes before the worker exits.
  graceMs: 30_000,
  async main({ config, logger, lifecycle, bus, metrics: registry, service }) {
    // Built (once per data dir) while the node's facts are loaded, which build the task logger.
    const netnsHelperBuild = ensureNetnsHelper(config.EVE_DATA_DIR);
    netnsHelperBuild.catch(() => undefined); // awaited below
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
    // The executor is made below; until then the gauges read nothing.
    const made: { executor?: TaskExecutor; logs?: TaskLogsService } = {};
    const metrics = executorMetrics(
      {
        tasksByState: () => made.executor?.tasksByState() ?? [],
        logFollowers: () => made.logs?.followers ?? 0,
      },
      registry,
    );
    const logs = new TaskLogsService(
      {
        logPathOf: (uuid) => taskLogPath(config.EVE_DATA_DIR, uuid),
        node: facts.node,
        signal: lifecycle.signal,
      },
      metrics.logs,
    );
    made.logs = logs;

    const address = config.CONTAINERD_ADDRESS ?? join(config.EVE_RUN_DIR, "containerd.sock");
    const containerd = new ContainerdClient({ address, namespace: CONTAINERD_NAMESPACE });
    const runtime = timedRuntime(containerdRuntime(containerd), metrics.runtimeCall);
    lifecycle.onShutdown("close containerd client", () => containerd.close());
    const version = await containerd.waitForReady(30_000);
    logger.info(
      { event: "containerd-connected", address, containerd: version.version, volumeRoots: facts.volumeRoots },
      "connected to containerd",
    );

    // Its own bucket it creates; the one it reads it waits for (see the spec-builder). The events
    // stream may only be creatable by an admin: until it exists, events wait in the outbox.
    await ensureBucket(bus, "task-executor");
    // One executor per node: a lease in its own bucket (TaskExecutorLease.<node>), taken before
    // it touches containerd's tasks or its outbox. A second one refuses to start (exit 2: an
    // invalid configuration, which systemd and the launcher do not retry in a loop).
    const startTicks = (pid: number): number | null => readProcStatSync(pid)?.startTimeTicks ?? null;
    let lease;
    try {
      lease = await acquireLease(bus, {
        agent: "task-executor",
        type: "TaskExecutorLease",
        key: config.EVE_NODE,
        claimant: {
          pid: process.pid,
          startTicks: startTicks(process.pid),
          host: hostname(),
          bootId: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
        },
        isAlive: (pid, ticks) => {
          const now = startTicks(pid);
          return now !== null && (ticks === null || now === ticks);
        },
        // Another executor may drive this node's containerd now: stop, and exit non-zero so that
        // the launcher (or systemd) starts this one again; started again, it takes the lease if
        // nobody holds it, and refuses to start while another executor does.
        onLost: (why) => {
          logger.error({ event: "lease-lost", why }, `${why}: stopping`);
          void lifecycle.exitAfterShutdown("lease lost", 1);
        },
      });
    } catch (err) {
      if (!(err instanceof LeaseHeldError)) throw err;
      const text =
        `another task-executor is running for node ${config.EVE_NODE} (${err.why}); only one may run ` +
        `per node, since it alone drives the node's containerd. Stop that one first.`;
      logger.error({ event: "lease-held", node: config.EVE_NODE, why: err.why }, text);
      process.stderr.write(`task-executor: ${text}\n`);
      throw Object.assign(new Error(text, { cause: err }), { exitCode: CONFIG_ERROR_EXIT_CODE });
    }
    lifecycle.onShutdown("release the node's task-executor lease", () => lease.release());
    // Task logs are files: they are served once this executor holds the node, whatever its state.
    serveEndpoint(service, {
      name: "logs",
      subject: logsSubject(facts.node),
      request: LogsRequestSchema,
      reply: LogsReplySchema,
      handle: (r) => logs.handle(r),
      onError: (message) => logs.errorReply(message),
      logger,
      metrics: registry,
    });
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
      ...(config.EVE_KVM_DEVICE ? { kvmDevice: config.EVE_KVM_DEVICE } : {}),
    });
    const netns = config.EVE_NET_NS ?? null;
    if (netns !== null && !existsSync(join(NETNS_DIR, netns))) {
      throw new Error(
        `EVE_NET_NS names ${join(NETNS_DIR, netns)}, which does not exist: create it (ip netns add ${netns}) or unset EVE_NET_NS`,
      );
    }
    // Task networks and rules are applied by the helper; without it (no libmnl-dev or
    // libnftables-dev to build it), by ip, tc and nft.
    const netnsHelper = await netnsHelperBuild.catch((err: unknown) => {
      logger.warn(
        { err, event: "netns-helper-unavailable" },
        "task networks are built with ip and tc instead",
      );
      return undefined;
    });
    const net = new NodeNetwork({
      hostNetns: netns,
      dataDir: join(config.EVE_DATA_DIR, "network"),
      runDir: join(config.EVE_RUN_DIR, "network"),
      netnsPrefix: config.EVE_NETNS_PREFIX,
      ...(netnsHelper !== undefined ? { netnsHelper } : {}),
      logger,
    });
    const networks = new TaskNetworks({
      bus,
      node: facts.node,
      net,
      filesDir: join(config.EVE_RUN_DIR, "network", "tasks"),
      netnsPrefix: config.EVE_NETNS_PREFIX,
      logger,
    });
    // Shutdown steps run last-registered first: the shell ends after the last network command.
    lifecycle.onShutdown("end the network command shell", () => closeCommands());
    lifecycle.onShutdown("stop the network instances' dnsmasq", () => networks.close());
    const ex = new TaskExecutor({
      bus,
      runtime,
      facts,
      logger,
      outbox,
      readOomKills,
      accel,
      networks,
      observer: metrics.executor,
      vmBootDeadlineMs: config.EVE_VM_BOOT_DEADLINE_MS,
    });
    made.executor = ex;
    lifecycle.onShutdown("finish in-flight reconciles", () => ex.stop());
    await ex.start();
    // Signal requests are answered once the executor knows every app (an acknowledgement only).
    serveEndpoint(service, {
      name: "signal",
      subject: signalSubject(facts.node),
      request: SignalRequestSchema,
      reply: SignalReplySchema,
      handle: (r) => ex.signal(r.uuid, r.signal),
      onError: (message) => ({ accepted: false as const, error: message }),
      logger,
      metrics: registry,
    });
    // The launcher's Ctrl-C: every task of the node stopped as any stop goes; answered when done.
    serveEndpoint(service, {
      name: "stop-tasks",
      subject: stopTasksSubject(facts.node),
      request: StopTasksRequestSchema,
      reply: StopTasksReplySchema,
      handle: async () => ({ accepted: true as const, error: null, ...(await ex.stopTasks()) }),
      onError: (message) => ({ accepted: false as const, error: message, stopped: [], failed: [] }),
      logger,
      metrics: registry,
    });
    // Run first at a stop: no new requests while the executor winds down; log followers are
    // answered at once with what there is.
    lifecycle.onShutdown("stop answering requests (signal, stop-tasks, logs)", async () => {
      logs.wakeAll();
      await service.stop();
    });
    logger.info({ event: "resynced" }, "every app reconciled; following changes");
  },
});
