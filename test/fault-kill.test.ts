// The fault test, with real parts: a private nats-server and containerd, the four workers run by
// the launcher's own WorkerSupervisor (restarted when they die), 100 busybox apps published at
// once, then updated, restarted, stopped and started again and some deleted while each worker in
// turn is SIGKILLed (by its exact PID) five times. At the end: every live app RUNNING exactly once
// (one containerd task, one shim, one anchor whose cgroup holds only its own processes), every
// deleted app gone from containerd, from every bucket, from the cgroups and from the data dir, no
// process or mount left over.
// EVE_FAULT_APPS, EVE_FAULT_ROUNDS and FAULT_SEED change the scenario (defaults: 100, 5, random).
import { readFile, readdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import { cleanupContainerd, startContainerd } from "@eve-tasks/embedded";
import type { RunningContainerd } from "@eve-tasks/embedded";
import { KNOWN_WORKERS, WorkerSupervisor } from "@eve-tasks/launcher";
import { CONTAINERD_NAMESPACE, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  TaskStatus,
  AppInstanceConfigSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import { BUILT, deferCleanup, makeRootfs, tempDir, waitFor, withPrivateNats } from "./harness/index.js";
import type { PrivateNats } from "./harness/index.js";

const APPS = Number(process.env.EVE_FAULT_APPS ?? 100);
const ROUNDS = Number(process.env.EVE_FAULT_ROUNDS ?? 5);
const SEED = Number(process.env.FAULT_SEED ?? Date.now() % 2 ** 31);
const PREFIX = "fa017e57";
const BUCKETS = ["controller", "spec-builder", "task-executor", "proc-monitor", "hypervisor-seed-fetcher"];
const MAIN: Record<(typeof KNOWN_WORKERS)[number], string> = {
  "spec-builder": BUILT.specBuilder,
  "task-executor": BUILT.taskExecutor,
  "proc-monitor": BUILT.procMonitor,
  "hypervisor-seed-fetcher": BUILT.seedFetcher,
};
/** A native app's config as the test writes it. */
type NativeInput = Extract<AppInstanceConfigInput, { virtualization: "NOHYPER" }>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small seeded PRNG (mulberry32), so a failing scenario can be replayed with FAULT_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The cgroup path of `pid` in the first hierarchy that names one, or undefined once it is gone. */
async function cgroupOf(pid: number): Promise<string | undefined> {
  const text = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const path = line.split(":").slice(2).join(":");
    if (path.includes("/eve-user-apps/")) return path;
  }
  return undefined;
}

/** Every process whose cgroup is an app of this test: uuid → PIDs. */
async function processesByApp(): Promise<Map<string, number[]>> {
  const byApp = new Map<string, number[]>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const cg = await cgroupOf(Number(name));
    const m = cg === undefined ? null : new RegExp(`/eve-user-apps/(${PREFIX}-[0-9a-f-]+)`).exec(cg);
    if (m?.[1] === undefined) continue;
    byApp.set(m[1], [...(byApp.get(m[1]) ?? []), Number(name)]);
  }
  return byApp;
}

/** The parent PID of `pid` (field 4 of /proc/<pid>/stat), or undefined once it is gone. */
async function parentOf(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

/** The shims of containerd `address`: app id → shim PIDs. */
async function shimsOf(address: string): Promise<Map<string, number[]>> {
  const shims = new Map<string, number[]>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (!argv[0]?.includes("containerd-shim") || !argv.includes(address)) continue;
    const id = argv[argv.indexOf("-id") + 1] ?? "?";
    shims.set(id, [...(shims.get(id) ?? []), Number(name)]);
  }
  return shims;
}

describe("SIGKILLing each worker in turn during a burst of apps", () => {
  let dir: string;
  let dataDir: string;
  let rootfs: string;
  let nats: PrivateNats;
  let ctrd: RunningContainerd;
  let bus: Bus;
  let containerd: ContainerdClient;
  let configs: Publication<typeof AppInstanceConfigSchema>;
  let statuses: Subscription<typeof TaskStatusSchema>;
  const supervisors = new Map<string, WorkerSupervisor>();
  const logs = new Map<string, string>();

  beforeAll(async () => {
    dir = await tempDir("fault-");
    dataDir = join(dir, "data");
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "busybox");
    await makeRootfs(rootfs);
    [nats, ctrd] = await Promise.all([withPrivateNats(), startContainerd({ dir: join(dir, "ctrd") })]);
    deferCleanup(async () => {
      await cleanupContainerd(ctrd.address, [CONTAINERD_NAMESPACE]).catch(() => undefined);
      await ctrd.stop();
    });
    bus = await connectBus({ servers: nats.url, name: "fault-test" });
    await ensureBuckets(bus);
    containerd = new ContainerdClient({ address: ctrd.address, namespace: CONTAINERD_NAMESPACE });
    configs = new Publication(bus, messageTable("AppInstanceConfig"));
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: ctrd.address,
      EVE_DATA_DIR: dataDir,
      EVE_RUN_DIR: join(dir, "run"),
      EVE_VOLUME_ROOTS: volumes,
      EVE_NODE_MEMORY_MIB: String(Math.max(2048, APPS * 32)),
      LOG_LEVEL: "info",
    };
    const logger = pino({ level: "silent" });
    for (const name of KNOWN_WORKERS) {
      const logFile = join(process.env.EVE_FAULT_LOG_DIR ?? dir, `${name}.log`);
      logs.set(name, logFile);
      const sup = new WorkerSupervisor({
        entry: { name, main: MAIN[name] },
        logFile,
        env,
        logger,
        graceMs: 10_000,
        onChange: () => undefined,
        // A short, constant back-off: the test is about what a restart finds, not about waiting.
        backoff: () => 200,
      });
      supervisors.set(name, sup);
      sup.start();
    }
    deferCleanup(() => Promise.all([...supervisors.values()].map((s) => s.stop())));
  }, 90_000);

  afterAll(async () => {
    await statuses?.close();
    await bus?.close();
    containerd?.close();
  });

  /** The last lines of every worker's log, for a failure message. */
  async function logTails(): Promise<string> {
    const parts: string[] = [];
    for (const [name, file] of logs) {
      const lines = (await readFile(file, "utf8").catch(() => "")).trimEnd().split("\n");
      parts.push(`--- ${name}\n${lines.slice(-15).join("\n")}`);
    }
    return parts.join("\n");
  }

  it("ends with every live app RUNNING once and every deleted app gone everywhere", async () => {
    const started = Date.now();
    const rand = prng(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const uuids = Array.from(
      { length: APPS },
      (_, i) =>
        `${PREFIX}-0000-4000-8000-${(started.toString(16) + i.toString(16).padStart(4, "0")).slice(-12).padStart(12, "0")}`,
    );
    /** The config each app should end with; deleted apps are removed from it. */
    const wanted = new Map<string, NativeInput>();
    const lastRevision = new Map<string, number>();
    const deleted = new Set<string>();
    const counts = { updates: 0, restarts: 0, deactivations: 0, deletes: 0 };
    const app = (uuid: string): NativeInput => ({
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `fault-${uuid.slice(-4)}`,
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 16, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: true } },
      process: {
        args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        env: { GEN: "0" },
        cwd: "/",
        user: "0:0",
      },
      stopTimeoutMs: 3000,
    });
    const publish = async (uuid: string, config: NativeInput): Promise<void> => {
      wanted.set(uuid, config);
      const revision = await configs.publish(uuid, config);
      if (revision !== undefined) lastRevision.set(uuid, revision);
    };
    const live = () => [...wanted.keys()];

    // ---- the burst ------------------------------------------------------------------------
    await Promise.all(uuids.map((u) => publish(u, app(u))));

    /** A few random changes: new env (replace), restartCounter, activate false, delete. */
    const churn = async (): Promise<void> => {
      const ops: Promise<void>[] = [];
      // One change per app at a time: two puts of one key in flight may land in either order,
      // and then what the test wants would not be what the bucket has.
      const picked = new Set<string>();
      for (let i = 0; i < 4; i++) {
        const uuid = pick(live().filter((u) => !picked.has(u)));
        picked.add(uuid);
        const current = wanted.get(uuid)!;
        const r = rand();
        if (r < 0.4) {
          counts.updates++;
          const env = { GEN: String(Number(current.process?.env?.GEN ?? 0) + 1) };
          ops.push(publish(uuid, { ...current, process: { ...current.process, env } }));
        } else if (r < 0.65) {
          counts.restarts++;
          ops.push(publish(uuid, { ...current, restartCounter: (current.restartCounter ?? 0) + 1 }));
        } else if (r < 0.8) {
          counts.deactivations++;
          ops.push(publish(uuid, { ...current, activate: !(current.activate ?? true) }));
        } else if (deleted.size < APPS / 5) {
          counts.deletes++;
          wanted.delete(uuid);
          deleted.add(uuid);
          ops.push(configs.unpublish(uuid));
        }
      }
      await Promise.all(ops);
    };

    // ---- the kills --------------------------------------------------------------------------
    const kills: { worker: string; pid: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of KNOWN_WORKERS) {
        const sup = supervisors.get(name)!;
        const pid = await waitFor(
          () => {
            const s = sup.snapshot();
            return s.state === "running" && s.pid !== null ? s.pid : undefined;
          },
          { timeoutMs: 30_000, message: `${name} running again` },
        );
        await churn();
        // Somewhere in its start-up or its work.
        await sleep(200 + rand() * 1500);
        process.kill(pid, "SIGKILL");
        kills.push({ worker: name, pid });
      }
    }
    // Every app that was left stopped is started again; then the configs stay put.
    await Promise.all(
      live()
        .filter((u) => wanted.get(u)!.activate === false)
        .map((u) => publish(u, { ...wanted.get(u)!, activate: true })),
    );
    const killsDoneMs = Date.now() - started;

    // ---- convergence ------------------------------------------------------------------------
    const notYet = (): string | undefined => {
      for (const uuid of live()) {
        const s: TaskStatus | undefined = statuses.get(uuid);
        if (s?.state !== "RUNNING" || s.configRevision !== lastRevision.get(uuid) || s.error !== null) {
          return `${uuid}: ${JSON.stringify(s)} (want RUNNING at ${lastRevision.get(uuid)})`;
        }
      }
      for (const uuid of deleted)
        if (statuses.get(uuid) !== undefined) return `${uuid} deleted, has a status`;
      return undefined;
    };
    const timeline: number[] = [];
    const pending = (): number =>
      live().filter((u) => {
        const s = statuses.get(u);
        return s?.state !== "RUNNING" || s.configRevision !== lastRevision.get(u);
      }).length;
    const sampler = setInterval(() => timeline.push(pending()), 5_000);
    await waitFor(() => notYet() === undefined, { timeoutMs: 120_000, intervalMs: 250 })
      .finally(() => clearInterval(sampler))
      .catch(async () => {
        throw new Error(`never converged (FAULT_SEED=${SEED}): ${notYet()}\n${await logTails()}`);
      });
    const convergedMs = Date.now() - started;

    // Every restart the test caused happened, and nothing else made one.
    for (const name of KNOWN_WORKERS) {
      const s = supervisors.get(name)!.snapshot();
      expect(s.state, name).toBe("running");
      expect(s.restarts, name).toBe(kills.filter((k) => k.worker === name).length);
    }

    // containerd: one container and one RUNNING task per live app, its PID the status's.
    const liveSet = new Set(live());
    const checkContainerd = async (): Promise<string | undefined> => {
      const [cs, ts] = await Promise.all([containerd.containers.list(), containerd.tasks.list()]);
      const ids = cs.map((c) => c.id).sort();
      if (JSON.stringify(ids) !== JSON.stringify([...liveSet].sort())) {
        return `containers ${ids.length} vs live ${liveSet.size}: extra ${ids.filter((i) => !liveSet.has(i)).join(",")}; missing ${[...liveSet].filter((u) => !ids.includes(u)).join(",")}`;
      }
      if (ts.length !== liveSet.size) return `${ts.length} tasks for ${liveSet.size} apps`;
      for (const t of ts) {
        if (t.status !== "RUNNING" || t.pid !== statuses.get(t.containerId)?.taskId) {
          return `task ${t.containerId} ${t.status} PID ${t.pid}, status says ${statuses.get(t.containerId)?.taskId}`;
        }
      }
      return undefined;
    };
    expect(await checkContainerd()).toBeUndefined();

    // One shim per live app and none for any other.
    const shims = await shimsOf(ctrd.address);
    expect([...shims.keys()].sort(), `shims (FAULT_SEED=${SEED})`).toEqual([...liveSet].sort());
    expect([...shims.values()].filter((pids) => pids.length !== 1)).toEqual([]);

    // Processes: each live app's cgroup holds its anchor (the status's taskId) and the
    // anchor's descendants only; no process is in a deleted app's cgroup.
    const byApp = await processesByApp();
    for (const uuid of deleted) expect(byApp.get(uuid), `processes of deleted ${uuid}`).toBeUndefined();
    for (const uuid of liveSet) {
      const pids = byApp.get(uuid) ?? [];
      const anchor = statuses.get(uuid)!.taskId;
      const roots = [];
      for (const pid of pids) {
        const parent = await parentOf(pid);
        if (parent === undefined || !pids.includes(parent)) roots.push(pid);
      }
      expect(roots, `anchors of ${uuid}`).toEqual([anchor]);
    }

    // Buckets: no key of a deleted app in any of them (TaskMetrics may lag one interval).
    const keysOfDeleted = async (): Promise<string[]> => {
      const found: string[] = [];
      for (const name of BUCKETS) {
        const kv = await bus.bucket(name);
        for await (const key of await kv.keys()) {
          if ([...deleted].some((u) => key.includes(u))) found.push(`${name}: ${key}`);
        }
      }
      return found;
    };
    await waitFor(async () => (await keysOfDeleted()).length === 0, { timeoutMs: 20_000 }).catch(async () => {
      throw new Error(`keys of deleted apps left: ${(await keysOfDeleted()).join(", ")}`);
    });

    // Host: no task dir, cgroup or mount of a deleted app; no mount of this test's data dir
    // in the host's mount namespace but for live apps.
    for (const uuid of deleted) {
      expect(existsSync(join(dataDir, "tasks", uuid)), `task dir of deleted ${uuid}`).toBe(false);
      for (const h of await readdir("/sys/fs/cgroup").catch(() => [])) {
        expect(existsSync(join("/sys/fs/cgroup", h, "eve-user-apps", uuid)), `cgroup ${h} of ${uuid}`).toBe(
          false,
        );
      }
    }
    const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
      .split("\n")
      .filter((l) => l.includes(dir) || [...deleted].some((u) => l.includes(u)));
    expect(mounts.filter((l) => ![...liveSet].some((u) => l.includes(u)))).toEqual([]);

    // Every killed worker is gone (its PID is free, or another program's now).
    for (const k of kills) {
      const cmdline = await readFile(`/proc/${k.pid}/cmdline`, "utf8").catch(() => "");
      expect(cmdline.includes(MAIN[k.worker as keyof typeof MAIN]), `killed ${k.worker} ${k.pid}`).toBe(
        false,
      );
    }

    // Deleting every app after all that removes every container.
    const deleting = Date.now();
    await Promise.all(live().map((u) => configs.unpublish(u)));
    await waitFor(async () => (await containerd.containers.list()).length === 0, {
      timeoutMs: 90_000,
      intervalMs: 500,
    }).catch(async () => {
      throw new Error(`containers left after deleting every app\n${await logTails()}`);
    });
    const deleteAllMs = Date.now() - deleting;
    // … and leaves nothing: no shim, no process in an app's cgroup, no mount, no task dir, no key.
    const everything = new Set([...uuids]);
    await waitFor(
      async () => {
        const keys: string[] = [];
        for (const name of BUCKETS) {
          for await (const key of await (await bus.bucket(name)).keys()) {
            if ([...everything].some((u) => key.includes(u))) keys.push(key);
          }
        }
        return keys.length === 0;
      },
      { timeoutMs: 20_000, message: "keys of the apps left after deleting every app" },
    );
    expect([...(await shimsOf(ctrd.address)).keys()]).toEqual([]);
    expect([...(await processesByApp()).keys()]).toEqual([]);
    expect(
      (await readFile("/proc/self/mountinfo", "utf8")).split("\n").filter((l) => l.includes(dir)),
    ).toEqual([]);
    expect(await readdir(join(dataDir, "tasks")).catch(() => [])).toEqual([]);

    const summary = {
      seed: SEED,
      apps: APPS,
      live: liveSet.size,
      deleted: deleted.size,
      ...counts,
      kills: kills.length,
      killsByWorker: Object.fromEntries(
        KNOWN_WORKERS.map((n) => [n, kills.filter((k) => k.worker === n).length]),
      ),
      killsDoneMs,
      convergedMs,
      pendingEvery5s: timeline,
      deleteAllMs,
      totalMs: Date.now() - started,
    };
    console.log(`fault test: ${JSON.stringify(summary)}`);
  }, 300_000);
});
