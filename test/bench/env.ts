// The benchmark's own world: a private nats-server and containerd in a temp dir, a busybox rootfs
// under the volume root, the real spec-builder and task-executor as separate processes, and the
// clients the scenarios measure with. Everything started here is stopped here, by PID.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { ContainerdClient, isNotFound } from "@eve-tasks/containerd";
import { withMallocTunables, workerNodeOptions } from "@eve-tasks/launcher";
import {
  cleanupContainerd,
  readLogTail,
  spawnLogged,
  startContainerd,
  startNatsServer,
} from "@eve-tasks/embedded";
import type { ManagedProcess, RunningContainerd, RunningNatsServer } from "@eve-tasks/embedded";
import { BINFMT_DIR, BINFMT_PREFIX, removeBinfmt } from "@eve-tasks/executor";
import { CONTAINERD_NAMESPACE, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  TaskStatus,
  AppInstanceConfigSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
// Directly, not ../harness/index.js: that one imports vitest.
import { removeEmptyCgroup } from "../harness/cgroups.js";
import { RUNTIME_CACHE } from "../harness/runtimes.js";
import { makeRootfs } from "../harness/rootfs.js";
import { mapLimit, nowMs } from "./stats.js";
import type { TraceRecord } from "./trace-hooks.js";

export const REPO = resolve(import.meta.dirname, "..", "..");
const WORKER_ENTRIES = {
  "spec-builder": join(REPO, "services/spec-builder/dist/main.js"),
  "task-executor": join(REPO, "services/task-executor/dist/main.js"),
} as const;

/** The workers VM scenarios need besides those: tools seeds and the measured tax. */
const VM_WORKER_ENTRIES = {
  "hypervisor-seed-fetcher": join(REPO, "services/hypervisor-seed-fetcher/dist/main.js"),
  "proc-monitor": join(REPO, "services/proc-monitor/dist/main.js"),
} as const;

/** containerd namespace of scenario (a)'s baseline (bare ContainerdClient calls). */
export const BASELINE_NAMESPACE = "eve-bench-baseline";
/** containerd namespace of scenario (b)'s baseline (`ctr run`). */
export const CTR_NAMESPACE = "eve-bench-ctr";

/** The anchor every benchmark task runs: a shell that exits 0 on SIGTERM. */
export const TASK_ARGS: readonly string[] = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];
/** Memory of every benchmark task. */
export const TASK_MEMORY_MIB = 64;
const NODE_MEMORY_MIB = 16_384;

export function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

/**
 * First-seen times (epoch ms) of labelled events per key ("RUNNING", "taskconfig", "deleted"...),
 * and promises that resolve when one happens. Keys are fresh uuids, so "first" is unambiguous.
 */
export class Seen {
  readonly #times = new Map<string, Map<string, number>>();
  readonly #statuses = new Map<string, Map<string, TaskStatus>>();
  readonly #waiters = new Map<
    string,
    { label: string; resolve: (t: number) => void; reject: (e: Error) => void }[]
  >();
  /** Labels that mean an app will never reach what a waiter wants. */
  static readonly FATAL = new Set(["FAILED", "BROKEN"]);

  mark(key: string, label: string, t: number, status?: TaskStatus): void {
    let m = this.#times.get(key);
    if (!m) this.#times.set(key, (m = new Map<string, number>()));
    if (m.has(label)) return;
    m.set(label, t);
    if (status) {
      let s = this.#statuses.get(key);
      if (!s) this.#statuses.set(key, (s = new Map<string, TaskStatus>()));
      s.set(label, status);
    }
    const ws = this.#waiters.get(key);
    if (!ws) return;
    for (const w of [...ws]) {
      if (w.label === label) {
        ws.splice(ws.indexOf(w), 1);
        w.resolve(t);
      } else if (Seen.FATAL.has(label) && w.label !== "deleted") {
        ws.splice(ws.indexOf(w), 1);
        w.reject(
          new Error(`${key}: ${label} while waiting for ${w.label}: ${JSON.stringify(status?.error)}`),
        );
      }
    }
  }

  time(key: string, label: string): number | undefined {
    return this.#times.get(key)?.get(label);
  }

  /** The TaskStatus first seen with `state`. */
  status(key: string, state: string): TaskStatus | undefined {
    return this.#statuses.get(key)?.get(state);
  }

  /** Resolves with the time `label` was first seen for `key`; rejects after `timeoutMs`. */
  when(key: string, label: string, timeoutMs: number): Promise<number> {
    const t = this.time(key, label);
    if (t !== undefined) return Promise.resolve(t);
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => {
        const ws = this.#waiters.get(key) ?? [];
        ws.splice(ws.indexOf(entry), 1);
        const seen = [...(this.#times.get(key)?.keys() ?? [])].join(", ") || "nothing";
        fail(new Error(`${key}: no ${label} within ${timeoutMs} ms (seen: ${seen})`));
      }, timeoutMs);
      const entry = {
        label,
        resolve: (x: number) => {
          clearTimeout(timer);
          ok(x);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          fail(e);
        },
      };
      let ws = this.#waiters.get(key);
      if (!ws) this.#waiters.set(key, (ws = []));
      ws.push(entry);
    });
  }

  /**
   * Waits until every key's status is deleted, up to `timeoutMs` each; resolves with the keys
   * whose status was still there (a teardown says them rather than fail the row it measured).
   */
  async notDeleted(keys: readonly string[], timeoutMs: number): Promise<string[]> {
    const left = await Promise.all(
      keys.map((k) =>
        this.when(k, "deleted", timeoutMs).then(
          () => [],
          () => [k],
        ),
      ),
    );
    return left.flat();
  }

  forget(key: string): void {
    this.#times.delete(key);
    this.#statuses.delete(key);
    this.#waiters.delete(key);
  }
}

/** Options of {@link startBenchEnv}. */
export interface BenchEnvOptions {
  /** LOG_LEVEL of the workers (default warn). */
  logLevel: string;
  /** Keep the temp dir (logs, stores) after the run. */
  keep: boolean;
  /** Load trace-hooks.ts into the workers; their records land in {@link BenchEnv.traces}. */
  trace: boolean;
  /** Also run the hypervisor-seed-fetcher and the proc-monitor (VM scenarios), VMs under TCG. */
  vm?: boolean;
}

/** What the scenarios work with. */
export interface BenchEnv {
  readonly dir: string;
  /** The busybox rootfs (under the volume root). */
  readonly rootfs: string;
  /** The node's volume root (EVE_VOLUME_ROOTS). */
  readonly volumes: string;
  /** Where baseline tasks' logs go (not the executor's data dir). */
  readonly baselineLogDir: string;
  readonly containerd: RunningContainerd;
  readonly nats: RunningNatsServer;
  readonly bus: Bus;
  readonly configs: Publication<typeof AppInstanceConfigSchema>;
  /**
   * TaskStatus states, TaskConfig arrival ("taskconfig", only when {@link BenchEnv.traced}) and
   * status deletion ("deleted") per uuid.
   */
  readonly seen: Seen;
  /** BENCH_TRACE=1: the workers are traced and TaskConfig arrivals are seen. */
  readonly traced: boolean;
  /** Client in the executor's namespace (read-only use: checks). */
  readonly eve: ContainerdClient;
  /** Client of scenario (a)'s baseline. */
  readonly baseline: ContainerdClient;
  /** Client used to clean up scenario (b)'s baseline. */
  readonly ctrClient: ContainerdClient;
  /** The app config the benchmark publishes for `uuid`. */
  app(uuid: string): AppInstanceConfigInput;
  /** PIDs of what the bench started: spec-builder, task-executor, nats-server, containerd. */
  readonly pids: Record<string, number>;
  /** The workers' trace records (BENCH_TRACE=1), read once they have stopped (after teardown). */
  readonly traces: TraceRecord[];
  /** Throws if a worker has exited (with the tail of its log). */
  assertWorkersAlive(): Promise<void>;
  /**
   * Stops worker `name` (SIGTERM, as an operator's restart does) and starts it again with
   * `extraEnv` on top of its environment; resolves with the new process.
   */
  restartWorker(name: string, extraEnv?: Record<string, string>): Promise<ManagedProcess>;
  /** Stops worker `name` (SIGTERM) and leaves it stopped until {@link BenchEnv.startWorker}. */
  stopWorker(name: string): Promise<void>;
  /** Starts stopped worker `name` again, with `extraEnv` on top of its environment. */
  startWorker(name: string, extraEnv?: Record<string, string>): Promise<ManagedProcess>;
  /**
   * Starts one more process of worker `name` (a replica), logging to `logs/<label>.log`; the
   * caller stops it (by its PID, through the returned process).
   */
  spawnExtra(name: string, label: string, extraEnv?: Record<string, string>): Promise<ManagedProcess>;
  /** The environment the workers run with (NATS_URL, CONTAINERD_ADDRESS, EVE_*). */
  readonly childEnv: Readonly<NodeJS.ProcessEnv>;
  /** Where worker `name` logs (appended across restarts). */
  workerLogFile(name: string): string;
  /** Removes every task and container, stops what was started, removes the temp dir. Idempotent. */
  teardown(): Promise<void>;
}

/** Starts everything; on failure, stops what it had started and rethrows. */
export async function startBenchEnv(options: BenchEnvOptions): Promise<BenchEnv> {
  for (const [name, entry] of Object.entries(WORKER_ENTRIES)) {
    if (!existsSync(entry)) throw new Error(`${name} is not built (${entry} missing): run \`npx tsc -b\``);
  }
  // Short: containerd's sockets live directly in it (108-byte limit on unix socket paths).
  const dir = await mkdtemp(join(tmpdir(), "eve-bench-"));
  const cleanups: { name: string; fn: () => Promise<unknown> }[] = [];
  let tornDown: Promise<void> | undefined;

  const teardown = (): Promise<void> =>
    (tornDown ??= (async () => {
      const started = nowMs();
      const errors: string[] = [];
      for (const { name, fn } of cleanups.reverse()) {
        try {
          await fn();
        } catch (err) {
          errors.push(`${name}: ${(err as Error).message}`);
        }
      }
      const mounted = await mountsUnder(dir);
      if (mounted.length > 0) {
        errors.push(`mounts still under ${dir}, not removing it: ${mounted.join(", ")}`);
      } else if (!options.keep && errors.length === 0) {
        await rm(dir, { recursive: true, force: true });
      }
      log(
        `teardown in ${Math.round(nowMs() - started)} ms${options.keep || errors.length ? `; kept ${dir}` : ""}`,
      );
      if (errors.length > 0) throw new Error(`teardown: ${errors.join("; ")}`);
    })());

  try {
    const volumes = join(dir, "volumes");
    const rootfs = join(volumes, "busybox", "rootfs");
    const dataDir = join(dir, "data");
    const runDir = join(dir, "run");
    const logsDir = join(dir, "logs");
    const baselineLogDir = join(dir, "baseline-logs");
    await Promise.all([dataDir, runDir, logsDir, baselineLogDir].map((d) => mkdir(d, { recursive: true })));
    const fs = await makeRootfs(rootfs);
    if (fs.source !== "busybox") log(`no static busybox: the rootfs has host binaries (${fs.source})`);

    const t = nowMs();
    const [natsR, containerdR] = await Promise.allSettled([
      startNatsServer({
        storeDir: join(dir, "nats"),
        serverName: "eve-bench",
        logFile: join(logsDir, "nats.log"),
      }),
      startContainerd({
        dir: join(dir, "containerd"),
        socketDir: dir,
        logFile: join(logsDir, "containerd.log"),
      }),
    ]);
    if (natsR.status === "fulfilled")
      cleanups.push({ name: "stop nats-server", fn: () => natsR.value.stop() });
    if (containerdR.status === "fulfilled") {
      cleanups.push({ name: "stop containerd", fn: () => containerdR.value.stop() });
      // Before containerd stops: whatever is left in any namespace of this containerd.
      cleanups.push({
        name: "cleanupContainerd (safety net)",
        fn: async () => {
          const res = await cleanupContainerd(containerdR.value.address);
          for (const ns of res.namespaces) {
            if (ns.tasks.length || ns.containers.length) {
              log(
                `safety net removed in ${ns.namespace}: ${ns.tasks.length} task(s), ${ns.containers.length} container(s)`,
              );
            }
          }
        },
      });
    }
    // Runs last: runc leaves the parent cgroups of the baseline namespaces behind; remove them
    // when empty (rmdir fails harmlessly when they are not).
    cleanups.unshift({ name: "remove baseline parent cgroups", fn: removeBaselineCgroups });
    // Runs last too, once the executor is stopped and its tasks are gone: the binfmt_misc entries
    // it registered for this node (their interpreters are in its data dir's seeds), not others'.
    cleanups.unshift({
      name: "remove this node's binfmt_misc entries",
      fn: () => removeBinfmtUnder(dataDir),
    });
    if (natsR.status === "rejected") throw natsR.reason;
    if (containerdR.status === "rejected") throw containerdR.reason;
    const nats = natsR.value;
    const containerd = containerdR.value;
    log(
      `nats-server ${nats.url} (PID ${nats.pid}), containerd ${containerd.address} (PID ${containerd.pid}) in ${Math.round(nowMs() - t)} ms`,
    );

    const clients = [CONTAINERD_NAMESPACE, BASELINE_NAMESPACE, CTR_NAMESPACE].map(
      (namespace) => new ContainerdClient({ address: containerd.address, namespace }),
    );
    cleanups.push({
      name: "close containerd clients",
      fn: () => Promise.resolve(clients.forEach((c) => c.close())),
    });
    const [eve, baseline, ctrClient] = clients as [ContainerdClient, ContainerdClient, ContainerdClient];
    await eve.waitForReady(20_000);

    const bus = await connectBus({ servers: nats.url, name: "eve-bench" });
    cleanups.push({ name: "close the bus", fn: () => bus.close() });
    await ensureBuckets(bus);

    // The workers: the real ones, built, each its own process (own process group).
    const childEnv: NodeJS.ProcessEnv = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) => !k.startsWith("EVE_") && !["NATS_URL", "CONTAINERD_ADDRESS", "LOG_LEVEL"].includes(k),
      ),
    );
    Object.assign(childEnv, {
      // As `npm start`, the launcher and the systemd units run their Node processes.
      GLIBC_TUNABLES: withMallocTunables(process.env.GLIBC_TUNABLES),
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: containerd.address,
      EVE_DATA_DIR: dataDir,
      EVE_RUN_DIR: runDir,
      EVE_VOLUME_ROOTS: volumes,
      EVE_NODE_MEMORY_MIB: String(NODE_MEMORY_MIB),
      LOG_LEVEL: options.logLevel,
      // VMs: TCG, as the direct qemu baseline runs; the proc-monitor samples twice a second.
      EVE_ACCEL: "tcg",
      EVE_METRICS_INTERVAL_MS: "500",
      // oci: layouts must be under here: the tools image of the vm scenarios (vm.ts's TOOLS_CACHE)
      // and the built-in runtime images of the jar and emulators scenarios (runtimes.ts).
      EVE_OCI_LAYOUT_ROOTS: `${process.env.EVE_TEST_TOOLS_CACHE ?? "/var/cache/eve-tasks/tools-image"}:${RUNTIME_CACHE}`,
    });
    const workers: { name: string; proc: ManagedProcess }[] = [];
    const pids: Record<string, number> = { "nats-server": nats.pid, containerd: containerd.pid };
    const traces: TraceRecord[] = [];
    const traceFile = (name: string): string => join(logsDir, `${name}.trace.jsonl`);
    const hooks = pathToFileURL(join(import.meta.dirname, "trace-hooks.ts")).href;
    // BENCH_CPU_PROF: every worker this bench starts (also one started again, or an extra
    // replica) writes a CPU profile there when it exits.
    const profileArgs = process.env.BENCH_CPU_PROF
      ? [
          "--cpu-prof",
          `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`,
          ...(process.env.BENCH_CPU_PROF_INTERVAL_US
            ? [`--cpu-prof-interval=${process.env.BENCH_CPU_PROF_INTERVAL_US}`]
            : []),
        ]
      : [];
    const entries = { ...WORKER_ENTRIES, ...(options.vm ? VM_WORKER_ENTRIES : {}) };
    // Each worker with the node options the launcher gives it, so the rows measure what runs.
    for (const [name, entry] of Object.entries(entries)) {
      const proc = await spawnLogged({
        command: process.execPath,
        args: [
          ...workerNodeOptions(name),
          ...profileArgs,
          ...(options.trace ? ["--import", "tsx", "--import", hooks, entry] : [entry]),
        ],
        logFile: join(logsDir, `${name}.log`),
        env: options.trace ? { ...childEnv, BENCH_TRACE_FILE: traceFile(name) } : childEnv,
        cwd: REPO,
      });
      workers.push({ name, proc });
      pids[name] = proc.pid;
      log(`${name} PID ${proc.pid}, log ${proc.logFile}${options.trace ? " (traced)" : ""}`);
    }
    if (options.trace) {
      // Runs right after the workers have stopped (they write their traces on exit).
      cleanups.push({
        name: "read traces",
        fn: async () => {
          for (const name of Object.keys(WORKER_ENTRIES)) {
            const text = await readFile(traceFile(name), "utf8").catch(() => "");
            for (const l of text.split("\n")) if (l) traces.push(JSON.parse(l) as TraceRecord);
          }
        },
      });
    }
    // Stopped before the safety net and containerd (pushed after them, so run before them).
    cleanups.push({
      name: "stop workers",
      fn: () => Promise.all(workers.map((w) => w.proc.stop({ graceMs: 15_000 }))),
    });

    const configs = new Publication(bus, messageTable("AppInstanceConfig"));
    const seen = new Seen();
    const onStatus = (key: string, v: TaskStatus): void => {
      const t = nowMs();
      // "exit": the first status recording an exit (before its state, which may be fatal).
      if (v.taskId === 0 && v.lastTaskId > 0 && v.exitCode !== null) seen.mark(key, "exit", t, v);
      seen.mark(key, v.state, t, v);
    };
    const subs: Subscription<typeof TaskStatusSchema>[] = [];
    cleanups.push({
      name: "close subscriptions",
      fn: () => Promise.all(subs.map((s) => s.close())),
    });
    subs.push(
      await subscribe(bus, {
        ...messageTable("TaskStatus"),
        onCreate: onStatus,
        onModify: onStatus,
        onDelete: (key) => seen.mark(key, "deleted", nowMs()),
      }),
    );
    // The same statuses as a plain NATS subscriber sees them (a core subscription to the KV
    // subjects, JSON.parse and nothing else): any client can watch that way, and it is what the
    // burst scenarios time. Marked as "plain:<state>".
    const plainPrefix = "$KV.task-executor.TaskStatus.";
    const plain = bus.nc.subscribe(`${plainPrefix}>`, {
      callback: (err, msg) => {
        if (err || msg.data.length === 0) return;
        const t = nowMs();
        const v = JSON.parse(new TextDecoder().decode(msg.data)) as { state?: unknown };
        if (typeof v.state === "string")
          seen.mark(msg.subject.slice(plainPrefix.length), `plain:${v.state}`, t);
      },
    });
    cleanups.push({
      name: "close the plain status subscription",
      fn: () => Promise.resolve(plain.unsubscribe()),
    });
    // When each TaskConfig arrives, for the breakdown, only when tracing: even a bare KV watch
    // (no decoding) is one more process woken, and one more delivery by nats-server, at the very
    // moment the executor receives the TaskConfig on 2 cores; the untraced runs measure without it.
    if (options.trace) {
      const configWatch = await (await bus.bucket("spec-builder")).watch({ key: "TaskConfig.>" });
      const watching = (async () => {
        for await (const e of configWatch) {
          if (e.operation === "PUT") seen.mark(e.key.slice("TaskConfig.".length), "taskconfig", nowMs());
        }
      })();
      cleanups.push({
        name: "stop the TaskConfig watch",
        fn: async () => {
          configWatch.stop();
          await watching;
        },
      });
    }

    // Runs before the workers stop: every app deleted, so the executor removes its containers.
    cleanups.push({
      name: "delete every app config",
      fn: async () => {
        const all = await configs.getAll();
        if (all.size === 0) return;
        log(`deleting ${all.size} app config(s) left`);
        await Promise.all([...all.keys()].map((u) => configs.unpublish(u)));
        await Promise.all([...all.keys()].map((u) => seen.when(u, "deleted", 60_000)));
      },
    });
    cleanups.push({
      name: "remove baseline tasks",
      fn: () => Promise.all([removeAll(baseline), removeAll(ctrClient)]),
    });

    const app = (uuid: string): AppInstanceConfigInput => ({
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `bench-${uuid.slice(0, 8)}`,
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: TASK_MEMORY_MIB, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: false } },
      process: { args: [...TASK_ARGS], cwd: "/", user: "0:0" },
      stopTimeoutMs: 5000,
    });

    const workerArgs = (name: string): string[] => {
      const entry = (entries as Record<string, string>)[name];
      if (entry === undefined) throw new Error(`no worker ${name}`);
      return [...workerNodeOptions(name), ...profileArgs, entry];
    };
    const stopWorker = async (name: string): Promise<void> => {
      const w = workers.find((x) => x.name === name);
      if (!w) throw new Error(`no worker ${name}`);
      await w.proc.stop({ graceMs: 15_000 });
    };
    const startWorker = async (
      name: string,
      extraEnv: Record<string, string> = {},
    ): Promise<ManagedProcess> => {
      const w = workers.find((x) => x.name === name);
      if (!w) throw new Error(`no worker ${name}`);
      if (!w.proc.hasExited()) throw new Error(`${name} (PID ${w.proc.pid}) is still running`);
      w.proc = await spawnLogged({
        command: process.execPath,
        args: workerArgs(name),
        logFile: join(logsDir, `${name}.log`),
        env: { ...childEnv, ...extraEnv },
        cwd: REPO,
      });
      pids[name] = w.proc.pid;
      log(`${name} started: PID ${w.proc.pid}`);
      return w.proc;
    };
    const restartWorker = async (
      name: string,
      extraEnv: Record<string, string> = {},
    ): Promise<ManagedProcess> => {
      await stopWorker(name);
      return startWorker(name, extraEnv);
    };
    const spawnExtra = async (
      name: string,
      label: string,
      extraEnv: Record<string, string> = {},
    ): Promise<ManagedProcess> => {
      const proc = await spawnLogged({
        command: process.execPath,
        args: workerArgs(name),
        logFile: join(logsDir, `${label}.log`),
        env: { ...childEnv, ...extraEnv },
        cwd: REPO,
      });
      log(`${label} (${name}) PID ${proc.pid}`);
      return proc;
    };

    const assertWorkersAlive = async (): Promise<void> => {
      for (const w of workers) {
        if (w.proc.hasExited()) {
          throw new Error(
            `${w.name} (PID ${w.proc.pid}) exited with ${String(w.proc.child.exitCode ?? w.proc.child.signalCode)}:\n${await readLogTail(w.proc.logFile)}`,
          );
        }
      }
    };

    return {
      dir,
      rootfs,
      volumes,
      baselineLogDir,
      containerd,
      nats,
      bus,
      configs,
      seen,
      eve,
      baseline,
      ctrClient,
      app,
      pids,
      traces,
      traced: options.trace,
      assertWorkersAlive,
      restartWorker,
      stopWorker,
      startWorker,
      spawnExtra,
      childEnv,
      workerLogFile: (name: string) => join(logsDir, `${name}.log`),
      teardown,
    };
  } catch (err) {
    await teardown().catch((e: unknown) => log((e as Error).message));
    throw err;
  }
}

/** Kills (SIGKILL, all processes), waits for and deletes every task, then deletes every container. */
export async function removeAll(client: ContainerdClient): Promise<void> {
  const tasks = await client.tasks.list();
  await mapLimit(tasks, 16, (t) => removeTask(client, t.containerId));
  const containers = await client.containers.list();
  await mapLimit(containers, 16, async (c) => {
    try {
      await client.containers.delete(c.id);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  });
}

/** Stops a task of `client`'s namespace (signal to all its processes), waits, deletes it. */
export async function removeTask(
  client: ContainerdClient,
  id: string,
  signal: NodeJS.Signals = "SIGKILL",
): Promise<void> {
  const exited = client.tasks.wait(id, { timeoutMs: 15_000 }).then(
    () => true,
    () => false,
  );
  const within = (ms: number): Promise<boolean> =>
    Promise.race([exited, new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
  const kill = async (s: NodeJS.Signals): Promise<void> => {
    try {
      await client.tasks.kill(id, s, { all: true });
    } catch (err) {
      if (!isNotFound(err) && !/not running|already finished|process already/i.test((err as Error).message)) {
        throw err;
      }
    }
  };
  await kill(signal);
  // A shell signalled before it set its trap ignores SIGTERM (it is PID 1): SIGKILL then, as the
  // executor's stop does, instead of deleting a running task.
  if (!(await within(5_000)) && signal !== "SIGKILL") {
    await kill("SIGKILL");
    await within(10_000);
  }
  try {
    await client.tasks.delete(id);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** The baseline namespaces' parent cgroups, in every hierarchy (empty ones only). */
async function removeBaselineCgroups(): Promise<void> {
  for (const ns of [BASELINE_NAMESPACE, CTR_NAMESPACE]) await removeEmptyCgroup(ns);
}

/** Removes the binfmt_misc entries of the node whose interpreters are under `dataDir`. */
async function removeBinfmtUnder(dataDir: string): Promise<void> {
  const names = await readdir(BINFMT_DIR).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(BINFMT_PREFIX)) continue;
    const entry = await readFile(join(BINFMT_DIR, name), "utf8").catch(() => "");
    if (entry.includes(`\ninterpreter ${dataDir}/`)) {
      await removeBinfmt(name);
      log(`removed binfmt_misc entry ${name}`);
    }
  }
}

/** Mount points at or under `dir` (this process's mount namespace). */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}
