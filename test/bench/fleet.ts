// Benchmark `fleet`: N devices on this machine, each a real `npm start` launcher in device mode
// (its own leaf nats-server, containerd, run and data dirs, and the four workers), joined to a hub
// of three nats-servers (`startHub`, what `npm run hub` runs), for N = 5, 10, 20.
//
// Per N:
// - latency: an app config put on the hub (controller-<node>) → its TaskStatus RUNNING seen on
//   the hub (the device's status, sourced), one app per device at once, BENCH_FLEET_ROUNDS times;
// - baseline in the same run: the bare NATS round trip over the same path without the workers:
//   a key put on the hub's controller-<node> → seen in the device's mirror → the device puts a
//   reply key in its own task-executor bucket → seen on the hub through the hub's source;
// - idle cost per device: RSS and CPU of its nats-server, containerd, launcher and workers over
//   BENCH_FLEET_IDLE_S seconds with its app running; the hub's RSS and CPU, from which its cost
//   per device (against the hub with no device connected).
// The machine is shared: the load average is recorded at each step.
//
// Run alone: BENCH_SCENARIOS=fleet npm run bench   (root; it starts its own everything)
// Knobs: BENCH_FLEET_SIZES=5,10,20  BENCH_FLEET_ROUNDS=3  BENCH_FLEET_IDLE_S=20
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { KvWatchInclude } from "@nats-io/kv";
import { pino } from "pino";
import { connectBus } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { natsCredentialsDir, natsPasswordFile, removeTreeSafely } from "@eve-tasks/embedded";
import { readStateFile, startHub, stateFilePath } from "@eve-tasks/launcher";
import type { RunningHub } from "@eve-tasks/launcher";
import { TaskStatusSchema, hubControllerBucket } from "@eve-tasks/schemas";
import { log } from "./env.js";
import type { ScenarioResult } from "./result.js";
import { median, percentile, r1 } from "./stats.js";

const REPO = path.resolve(new URL("../..", import.meta.url).pathname);
const LAUNCHER = path.join(REPO, "packages/launcher/dist/main.js");
const logger = pino({ level: "warn" });
const CLK_TCK = 100;
const PAGE = 4096;

/** Options of {@link fleetBench}. */
export interface FleetBenchOptions {
  sizes: number[];
  rounds: number;
  idleSeconds: number;
  keep: boolean;
}

export interface Device {
  node: string;
  dataDir: string;
  runDir: string;
  natsPort: number;
  launcher: ChildProcess;
  exited: Promise<void>;
  admin?: Bus;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

export async function freeHubBase(): Promise<number> {
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ok = await Promise.all(
      [0, 1, 2, 100, 101, 102, 200, 201, 202].map(
        (d) =>
          new Promise<boolean>((r) => {
            const s = createServer();
            s.once("error", () => r(false));
            s.listen(base + d, "127.0.0.1", () => s.close(() => r(true)));
          }),
      ),
    );
    if (ok.every(Boolean)) return base;
  }
}

/** CPU ticks (user + system) and RSS bytes of a PID, or undefined when it is gone. */
function sample(pid: number): { ticks: number; rssBytes: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { ticks: Number(f[11]) + Number(f[12]), rssBytes: Number(f[21]) * PAGE };
  } catch {
    return undefined;
  }
}

/** RSS (MiB, the mean of the two samples) and CPU (% of one core) of `pids` together over `seconds`. */
async function measure(pids: number[], seconds: number): Promise<{ rssMiB: number; cpuPct: number }> {
  const a = pids.map(sample);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const b = pids.map(sample);
  const dt = (performance.now() - t0) / 1000;
  let ticks = 0;
  let rss = 0;
  pids.forEach((_, i) => {
    const x = a[i];
    const y = b[i];
    if (x && y) {
      ticks += y.ticks - x.ticks;
      rss += (x.rssBytes + y.rssBytes) / 2;
    }
  });
  return { rssMiB: rss / 2 ** 20, cpuPct: (100 * ticks) / CLK_TCK / dt };
}

/** Every process a device's launcher owns, itself included. */
async function devicePids(d: Device): Promise<number[]> {
  const s = await readStateFile(stateFilePath(d.dataDir));
  return [d.launcher.pid!, ...(s?.pids ?? [])];
}

function app(uuid: string, node: string): Record<string, unknown> {
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: `bench-${uuid.slice(0, 8)}`,
    activate: true,
    node,
    virtualization: "NOHYPER",
    resources: { memoryMiB: 16, vcpus: 1 },
    root: { host: { readOnly: true } },
    process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] },
    stopTimeoutMs: 2000,
  };
}

async function until(what: string, probe: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`fleet bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One row of the fleet benchmark: what N devices cost and how fast they answer. */
export interface FleetRow {
  devices: number;
  samples: number;
  medianMs: number;
  p95Ms: number;
  baselineMedianMs: number;
  baselineP95Ms: number;
  ratio: number;
  /** Per device, idle with one app running: its launcher, nats-server, containerd and workers. */
  deviceRssMiB: number;
  deviceCpuPct: number;
  /** Of that, its nats-server alone. */
  deviceNatsRssMiB: number;
  deviceNatsCpuPct: number;
  /** The hub's three servers together, and per device over the hub with none. */
  hubRssMiB: number;
  hubCpuPct: number;
  hubRssPerDeviceMiB: number;
  hubCpuPerDevicePct: number;
  loadAvg1: number;
}

/** The fleet benchmark (see the file's header). */
export async function fleetBench(o: FleetBenchOptions): Promise<ScenarioResult & { rows: FleetRow[] }> {
  const sizes = [...o.sizes].sort((a, b) => a - b);
  const max = sizes.at(-1)!;
  const nodes = Array.from({ length: max }, (_, i) => `d${String(i + 1).padStart(2, "0")}`);
  const tmp = await mkdtemp(path.join(tmpdir(), "eve-bench-fleet-"));
  const devices: Device[] = [];
  let hub: RunningHub | undefined;
  let controller: Bus | undefined;
  let hubAdmin: Bus | undefined;
  const rows: FleetRow[] = [];
  try {
    hub = await startHub({
      dir: path.join(tmp, "hub"),
      devices: nodes,
      basePort: await freeHubBase(),
      logger,
    });
    const h = hub;
    controller = await connectBus({
      servers: h.natsUrl,
      name: "bench-controller",
      logger,
      credentials: { user: "controller", passwordFile: h.passwordFile("controller") },
    });
    hubAdmin = await connectBus({
      servers: h.natsUrl,
      name: "bench-admin",
      logger,
      credentials: { user: "admin", passwordFile: h.passwordFile("admin") },
    });
    const hubPids = (): number[] => h.servers.flatMap((s) => (s.process ? [s.process.pid] : []));
    log(`fleet: hub up; measuring it idle with no device for ${o.idleSeconds} s`);
    const hubEmpty = await measure(hubPids(), o.idleSeconds);

    // Statuses and pongs as they reach the hub.
    const seenAt = new Map<string, number>();
    const statusKv = await hubAdmin.bucket("task-executor");
    // Two watches of changes only, each filtered to its keys.
    const pongs = await statusKv.watch({ key: "BenchPong.>", include: KvWatchInclude.UpdatesOnly });
    void (async () => {
      for await (const e of pongs) if (e.operation === "PUT") seenAt.set(e.key, performance.now());
    })();
    const watch = await statusKv.watch({ key: "TaskStatus.>", include: KvWatchInclude.UpdatesOnly });
    void (async () => {
      for await (const e of watch) {
        if (e.operation !== "PUT") continue;
        const st = TaskStatusSchema.safeParse(e.json());
        if (st.success && st.data.state === "RUNNING")
          seenAt.set(`running:${st.data.uuid}`, performance.now());
      }
    })();

    for (const n of sizes) {
      // Start devices up to n, five at a time (each start is CPU-heavy for a few seconds).
      while (devices.length < n) {
        const batch = nodes.slice(devices.length, Math.min(n, devices.length + 5));
        await Promise.all(batch.map(async (node) => devices.push(await startDevice(h, node, tmp))));
        log(`fleet: ${devices.length} device(s) running (load ${loadavg()[0]!.toFixed(2)})`);
      }
      await Promise.all(devices.map(async (d) => (d.admin ??= await deviceAdmin(d))));
      // Echo on each device: a BenchPing in its mirror → a BenchPong in its own task-executor bucket.
      const hops = new Map<string, number>();
      const hopLog: string[] = [];
      const echoes = await Promise.all(
        devices.map(async (d) => {
          const mirror = await d.admin!.bucket("controller");
          const own = await d.admin!.bucket("task-executor");
          const w = await mirror.watch({ key: "BenchPing.>", include: KvWatchInclude.UpdatesOnly });
          void (async () => {
            for await (const e of w) {
              if (e.operation !== "PUT") continue;
              hops.set(`in:${e.key.slice(10)}`, performance.now());
              await own.put(`BenchPong.${e.key.slice(10)}`, "1");
              hops.set(`out:${e.key.slice(10)}`, performance.now());
            }
          })();
          return w;
        }),
      );

      const latencies: number[] = [];
      const baseline: number[] = [];
      // Round -1 warms the path up (first builds, first consumers) and is not counted.
      for (let round = -1; round < o.rounds; round++) {
        // Baseline: the NATS round trip through mirror and source, no workers.
        const pings = devices.map((d) => ({ d, id: `${d.node}-${round}-${Date.now()}` }));
        const t0 = new Map<string, number>();
        await Promise.all(
          pings.map(async ({ d, id }) => {
            t0.set(id, performance.now());
            await (await controller!.bucket(hubControllerBucket(d.node))).put(`BenchPing.${id}`, "1");
          }),
        );
        await until(
          "pongs",
          () => Promise.resolve(pings.every(({ id }) => seenAt.has(`BenchPong.${id}`))),
          60_000,
        );
        if (round >= 0)
          for (const { id } of pings) baseline.push(seenAt.get(`BenchPong.${id}`)! - t0.get(id)!);
        for (const { id } of pings) {
          const a = t0.get(id)!;
          const b = hops.get(`in:${id}`)!;
          const c = hops.get(`out:${id}`)!;
          hopLog.push(
            `${Math.round(b - a)}/${Math.round(c - b)}/${Math.round(seenAt.get(`BenchPong.${id}`)! - c)}`,
          );
        }
        // The real path: an app per device.
        const apps = devices.map((d) => ({ d, uuid: crypto.randomUUID() }));
        const published = new Map<string, number>();
        await Promise.all(
          apps.map(async ({ d, uuid }) => {
            published.set(uuid, performance.now());
            await (
              await controller!.bucket(hubControllerBucket(d.node))
            ).put(`AppInstanceConfig.${uuid}`, JSON.stringify(app(uuid, d.node)));
          }),
        );
        await until(
          "RUNNING on the hub",
          () => Promise.resolve(apps.every(({ uuid }) => seenAt.has(`running:${uuid}`))),
          120_000,
        );
        if (round >= 0)
          for (const { uuid } of apps) latencies.push(seenAt.get(`running:${uuid}`)! - published.get(uuid)!);
        if (round < o.rounds - 1) {
          for (const { d, uuid } of apps)
            await (await controller.bucket(hubControllerBucket(d.node))).delete(`AppInstanceConfig.${uuid}`);
          await until(
            "apps removed",
            async () => {
              const all = await Promise.all(apps.map(({ uuid }) => statusKv.get(`TaskStatus.${uuid}`)));
              return all.every((e) => e === null || e.operation !== "PUT");
            },
            60_000,
          );
        }
      }
      for (const w of echoes) w.stop();

      // Idle cost: each device with one app running; the hub meanwhile.
      log(`fleet: N=${n}: measuring ${n} device(s) and the hub idle for ${o.idleSeconds} s`);
      const allDevicePids = await Promise.all(devices.map(devicePids));
      const natsPids = await Promise.all(
        devices.map(async (d) => (await readStateFile(stateFilePath(d.dataDir)))?.nats.process?.pid),
      );
      const [dev, natsOnly, hubNow] = await Promise.all([
        measure(allDevicePids.flat(), o.idleSeconds),
        measure(
          natsPids.filter((p): p is number => p !== undefined),
          o.idleSeconds,
        ),
        measure(hubPids(), o.idleSeconds),
      ]);
      const row: FleetRow = {
        devices: n,
        samples: latencies.length,
        medianMs: r1(median(latencies)),
        p95Ms: r1(percentile(latencies, 95)),
        baselineMedianMs: r1(median(baseline)),
        baselineP95Ms: r1(percentile(baseline, 95)),
        ratio: Math.round((median(latencies) / median(baseline)) * 100) / 100,
        deviceRssMiB: r1(dev.rssMiB / n),
        deviceCpuPct: Math.round((dev.cpuPct / n) * 100) / 100,
        deviceNatsRssMiB: r1(natsOnly.rssMiB / n),
        deviceNatsCpuPct: Math.round((natsOnly.cpuPct / n) * 100) / 100,
        hubRssMiB: r1(hubNow.rssMiB),
        hubCpuPct: Math.round(hubNow.cpuPct * 100) / 100,
        hubRssPerDeviceMiB: Math.round(((hubNow.rssMiB - hubEmpty.rssMiB) / n) * 100) / 100,
        hubCpuPerDevicePct: Math.round(((hubNow.cpuPct - hubEmpty.cpuPct) / n) * 1000) / 1000,
        loadAvg1: Math.round(loadavg()[0]! * 100) / 100,
      };
      rows.push(row);
      log(`fleet: ${JSON.stringify(row)}`);
      log(`fleet: N=${n} baseline hops (hub put → mirror / device put / → hub) ms: ${hopLog.join(" ")}`);
      log(
        `fleet: N=${n} samples ms: path ${latencies.map((x) => Math.round(x)).join(" ")}; baseline ${baseline.map((x) => Math.round(x)).join(" ")}`,
      );
    }
    watch.stop();
    pongs.stop();
    const last = rows.at(-1)!;
    return {
      scenario: "fleet",
      n: last.samples,
      medianMs: last.medianMs,
      p95Ms: last.p95Ms,
      baselineMedianMs: last.baselineMedianMs,
      baselineP95Ms: last.baselineP95Ms,
      ratio: last.ratio,
      target: "report (no target)",
      met: true,
      baseline: "hub put → device mirror → device put → hub source (NATS only, no workers), same devices",
      hubEmpty: { rssMiB: r1(hubEmpty.rssMiB), cpuPct: Math.round(hubEmpty.cpuPct * 100) / 100 },
      rows,
    };
  } finally {
    await controller?.close();
    await hubAdmin?.close();
    for (const d of devices) await d.admin?.close().catch(() => undefined);
    for (const d of devices) d.launcher.kill("SIGINT");
    await Promise.all(
      devices.map((d) => Promise.race([d.exited, new Promise((r) => setTimeout(r, 90_000))])),
    );
    for (const d of devices) {
      d.launcher.stdout?.destroy();
      d.launcher.stderr?.destroy();
    }
    await hub?.stop();
    for (const d of devices) await removeTreeSafely(d.runDir).catch(() => undefined);
    if (!o.keep) await removeTreeSafely(tmp).catch(() => undefined);
  }
}

export async function startDevice(hub: RunningHub, node: string, tmp: string): Promise<Device> {
  const dataDir = path.join(tmp, node);
  const runDir = `/run/eve-bf-${process.pid}-${node}`;
  const natsPort = await freePort();
  const out: string[] = [];
  const launcher = spawn(process.execPath, [LAUNCHER, "--no-tools-image"], {
    env: {
      ...process.env,
      EVE_NODE: node,
      EVE_DATA_DIR: dataDir,
      EVE_RUN_DIR: runDir,
      EVE_NATS_PORT: String(natsPort),
      EVE_HUB_LEAF_URL: await hub.deviceLeafUrl(node),
      NATS_URL: "",
      CONTAINERD_ADDRESS: "",
      LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  for (const s of [launcher.stdout, launcher.stderr]) s.on("data", (b: Buffer) => out.push(b.toString()));
  const exited = new Promise<void>((r) => launcher.once("exit", () => r()));
  await until(
    `device ${node}`,
    async () => {
      if (launcher.exitCode !== null) throw new Error(`device ${node}'s launcher exited:\n${out.join("")}`);
      const s = await readStateFile(stateFilePath(dataDir));
      return s?.launcher.phase === "running" && Object.values(s.workers).every((w) => w.state === "running");
    },
    120_000,
  );
  return { node, dataDir, runDir, natsPort, launcher, exited };
}

export function deviceAdmin(d: Device): Promise<Bus> {
  return connectBus({
    servers: `nats://127.0.0.1:${d.natsPort}`,
    name: "bench-device",
    logger,
    credentials: { user: "admin", passwordFile: natsPasswordFile(natsCredentialsDir(d.dataDir), "admin") },
  });
}
