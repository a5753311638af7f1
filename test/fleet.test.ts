// A fleet on loopback (docs/fleet.md): a hub of three nats-servers (`startHub`, what `npm run hub`
// runs) and two devices, each a real `npm start` launcher in device mode with its own
// nats-server (a leaf node of the hub, JetStream domain = its node), containerd, run and data
// dirs, and workers. Device b's leaf goes through a TCP proxy this test controls, to cut it.
// Every process is stopped by PID (the launchers stop their own on SIGINT).
import { spawn } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { createServer, connect as netConnect } from "node:net";
import type { Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { connectBus } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { natsCredentialsDir, natsPasswordFile, removeTreeSafely } from "@eve-tasks/embedded";
import { readStateFile, startHub, stateFilePath } from "@eve-tasks/launcher";
import type { RunningHub } from "@eve-tasks/launcher";
import { TaskStatusSchema, hubControllerBucket } from "@eve-tasks/schemas";
import type { TaskStatus } from "@eve-tasks/schemas";
import { REPO_ROOT, uuidMaker, waitFor } from "./harness/index.js";
import { fleetDeviceAdmin, freeHubBase, freePort, startFleetDevice } from "./harness/fleet.js";
import type { FleetDevice } from "./harness/fleet.js";
const logger = pino({ level: "warn" });
const newUuid = uuidMaker("f1ee7000");

/** A TCP proxy on loopback that the test can cut (drop every connection, refuse new) and restore. */
class CuttableProxy {
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  constructor(
    readonly port: number,
    private readonly target: number,
  ) {}
  async open(): Promise<void> {
    if (this.#server !== undefined) return;
    this.#server = createServer((client) => {
      const upstream = netConnect(this.target, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    const server = this.#server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  }
  async cut(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    for (const sock of this.#sockets) sock.destroy();
    if (s) await new Promise((r) => s.close(r));
  }
}

let tmp: string;
let hub: RunningHub;
let proxy: CuttableProxy;
let hubController: Bus;
let hubAdmin: Bus;
const devices: FleetDevice[] = [];
const A = () => devices[0]!;
const B = () => devices[1]!;

async function startDevice(node: string, leafUrl: string, extraArgs: string[] = []): Promise<FleetDevice> {
  return startFleetDevice(tmp, node, leafUrl, { extraArgs, onStarted: (d) => devices.push(d) });
}

const deviceAdmin = (d: FleetDevice): Promise<Bus> => fleetDeviceAdmin(d, logger);

function app(uuid: string, node: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: `ft-${uuid.slice(-6)}`,
    activate: true,
    node,
    virtualization: "NOHYPER",
    resources: { memoryMiB: 16, vcpus: 1 },
    root: { host: { readOnly: true } },
    process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] },
    restartPolicy: { mode: "never" },
    stopTimeoutMs: 2000,
    ...extra,
  };
}

async function applyOnHub(node: string, value: Record<string, unknown>): Promise<number> {
  const kv = await hubController.bucket(hubControllerBucket(node));
  return kv.put(`AppInstanceConfig.${String(value.uuid)}`, JSON.stringify(value));
}

async function hubStatus(uuid: string): Promise<TaskStatus | undefined> {
  const kv = await hubController.bucket("task-executor");
  const e = await kv.get(`TaskStatus.${uuid}`);
  if (!e || e.operation !== "PUT") return undefined;
  return TaskStatusSchema.parse(e.json());
}

/** Every event of `uuid` in stream TASK_EVENTS of `bus`'s server: [Nats-Msg-Id, type], in order. */
async function eventsOf(bus: Bus, uuid: string): Promise<[string, string][]> {
  const subject = `eve.events.${uuid}`;
  const out: [string, string][] = [];
  const info = await bus.jsm.streams.info("TASK_EVENTS", { subjects_filter: subject });
  const n = info.state.subjects?.[subject] ?? 0;
  if (n === 0) return out;
  // One filter subject: nats-server 2.9 has no multi-filter consumers.
  const ci = await bus.jsm.consumers.add("TASK_EVENTS", {
    filter_subject: subject,
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    inactive_threshold: 30e9,
  });
  const c = await bus.js.consumers.get("TASK_EVENTS", ci.name);
  const batch = await c.fetch({ max_messages: n, expires: 5000 });
  for await (const m of batch) {
    out.push([m.headers?.get("Nats-Msg-Id") ?? "", m.json<{ type: string }>().type]);
    if (out.length >= n) break;
  }
  await bus.jsm.consumers.delete("TASK_EVENTS", ci.name).catch(() => undefined);
  return out;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "eve-fleet-"));
  hub = await startHub({
    dir: path.join(tmp, "hub"),
    devices: ["fa", "fb"],
    basePort: await freeHubBase(),
    logger,
  });
  const leafB = hub.servers[0]!.leafUrl;
  proxy = new CuttableProxy(await freePort(), Number(new URL(leafB).port));
  await proxy.open();
  hubController = await connectBus({
    servers: hub.natsUrl,
    name: "fleet-test-controller",
    logger,
    credentials: { user: "controller", passwordFile: hub.passwordFile("controller") },
  });
  hubAdmin = await connectBus({
    servers: hub.natsUrl,
    name: "fleet-test-admin",
    logger,
    credentials: { user: "admin", passwordFile: hub.passwordFile("admin") },
  });
  // Device a: every hub server, three spec-builders. Device b: hub-1 only, through the proxy.
  await Promise.all([
    startDevice("fa", await hub.deviceLeafUrl("fa"), ["--replicas", "spec-builder=3", "--no-tools-image"]),
    (async () => {
      const u = new URL((await hub.deviceLeafUrl("fb")).split(",")[0]!);
      u.port = String(proxy.port);
      return startDevice("fb", u.toString(), ["--no-tools-image"]);
    })(),
  ]);
}, 180_000);

afterAll(async () => {
  await hubController?.close();
  await hubAdmin?.close();
  for (const d of devices) {
    d.launcher.kill("SIGINT");
    await Promise.race([d.exited, new Promise((r) => setTimeout(r, 60_000))]);
  }
  await proxy?.cut();
  await hub?.stop();
  for (const d of devices) await removeTreeSafely(d.runDir).catch(() => undefined);
  if (tmp) await removeTreeSafely(tmp).catch(() => undefined);
}, 120_000);

describe("a fleet: hub of three, two devices", () => {
  it("runs an app applied on the hub on its device, shows its status and events on the hub, and removes it on delete", async () => {
    const ua = newUuid();
    const ub = newUuid();
    const ra = await applyOnHub("fa", app(ua, "fa"));
    const rb = await applyOnHub("fb", app(ub, "fb"));
    for (const [u, node, rev] of [
      [ua, "fa", ra],
      [ub, "fb", rb],
    ] as const) {
      const s = await waitFor(
        async () => ((await hubStatus(u))?.state === "RUNNING" ? hubStatus(u) : undefined),
        {
          timeoutMs: 60_000,
          message: `${u} RUNNING on the hub`,
        },
      );
      expect(s.node).toBe(node);
      // configRevision is the hub's KV revision: the device's mirror keeps the hub's sequence.
      expect(s.configRevision).toBe(rev);
      expect(s.taskId).toBeGreaterThan(0);
      await waitFor(
        async () => ((await eventsOf(hubAdmin, u)).some(([, t]) => t === "started") ? true : undefined),
        {
          timeoutMs: 20_000,
          message: `${u}'s started event on the hub`,
        },
      );
    }
    // The device's own status is the same one (the hub's is sourced from it).
    const bAdmin = await deviceAdmin(B());
    try {
      const local = await (await bAdmin.bucket("task-executor")).get(`TaskStatus.${ub}`);
      expect(TaskStatusSchema.parse(local!.json()).taskId).toBe((await hubStatus(ub))!.taskId);
      // A device reaches nothing of the hub but its own controller-<node>: not another device's.
      await expect(
        bAdmin.nc.request("$JS.hub.API.STREAM.INFO.KV_controller-fa", "", { timeout: 1500 }),
      ).rejects.toThrow();
      await expect(
        bAdmin.nc.request("$JS.hub.API.STREAM.INFO.KV_task-executor", "", { timeout: 1500 }),
      ).rejects.toThrow();
      await expect(bAdmin.nc.request("$JS.fa.API.INFO", "", { timeout: 1500 })).rejects.toThrow();
    } finally {
      await bAdmin.close();
    }
    for (const [u, node] of [
      [ua, "fa"],
      [ub, "fb"],
    ] as const) {
      await (await hubController.bucket(hubControllerBucket(node))).delete(`AppInstanceConfig.${u}`);
      await waitFor(async () => ((await hubStatus(u)) === undefined ? true : undefined), {
        timeoutMs: 60_000,
        message: `${u}'s status gone on the hub`,
      });
      await waitFor(
        async () => ((await eventsOf(hubAdmin, u)).some(([, t]) => t === "deleted") ? true : undefined),
        {
          timeoutMs: 20_000,
          message: `${u}'s deleted event on the hub`,
        },
      );
    }
  }, 150_000);

  it("rolls out 50 apps while one hub server is stopped: every app RUNNING, nothing lost", async () => {
    const uuids = Array.from({ length: 50 }, () => newUuid());
    const revs = new Map<string, number>();
    for (const [i, u] of uuids.entries()) {
      if (i === 10) await hub.stopServer(2);
      // A put may meet the election that follows the stop: retried, as any client would.
      revs.set(
        u,
        await waitFor(() => applyOnHub("fa", app(u, "fa")).catch(() => undefined), {
          timeoutMs: 30_000,
          message: `put ${u}`,
        }),
      );
    }
    await waitFor(
      async () => {
        const all = await Promise.all(uuids.map((u) => hubStatus(u).catch(() => undefined)));
        return all.every((s, i) => s?.state === "RUNNING" && s.configRevision === revs.get(uuids[i]!))
          ? true
          : undefined;
      },
      { timeoutMs: 150_000, intervalMs: 1000, message: "50 apps RUNNING on the hub" },
    );
    // The hub's copy of device a's desired state holds all 50, on the two servers left.
    const info = await hubAdmin.jsm.streams.info("KV_controller-fa");
    expect(info.state.num_subjects).toBeGreaterThanOrEqual(50);
    expect(info.config.num_replicas).toBe(3);
    // Each of the three spec-builders did some of the work.
    const logs = await Promise.all(
      ["spec-builder", "spec-builder-2", "spec-builder-3"].map((n) =>
        readFile(path.join(A().dataDir, "logs", `${n}.log`), "utf8"),
      ),
    );
    for (const l of logs) expect(l).toContain('"event":"spec-built"');
    await hub.startServer(2);
    for (const u of uuids)
      await (await hubController.bucket(hubControllerBucket("fa"))).delete(`AppInstanceConfig.${u}`);
    await waitFor(
      async () =>
        (await Promise.all(uuids.map(hubStatus))).every((s) => s === undefined) ? true : undefined,
      { timeoutMs: 120_000, intervalMs: 1000, message: "50 apps removed" },
    );
  }, 400_000);

  it("keeps a cut device running; on reconnect applies the 20 changes in order and its statuses and events reach the hub once each", async () => {
    const steady = newUuid(); // restarted on the device while cut
    const changing = newUuid(); // changed 20 times on the hub while cut
    await applyOnHub("fb", app(steady, "fb", { restartPolicy: { mode: "always", backoffMs: 200 } }));
    await applyOnHub("fb", app(changing, "fb"));
    for (const u of [steady, changing])
      await waitFor(async () => ((await hubStatus(u))?.state === "RUNNING" ? true : undefined), {
        timeoutMs: 60_000,
        message: `${u} RUNNING`,
      });
    const bAdmin = await deviceAdmin(B());
    const addedMap = new Map<string, number>();
    const addedAll: string[] = [];
    try {
      await proxy.cut();
      const before = (await hubStatus(steady))!;
      let last = 0;
      // 20 changes: 10 new apps (activate false: created, no task) and 10 changes of `changing`.
      const added = addedMap;
      for (let i = 1; i <= 20; i++) {
        if (i % 2 === 1) {
          const u = newUuid();
          added.set(u, await applyOnHub("fb", app(u, "fb", { activate: false })));
          addedAll.push(u);
        } else {
          last = await applyOnHub(
            "fb",
            app(changing, "fb", {
              version: String(i),
              process: { args: ["/bin/sh", "-c", `trap 'exit 0' TERM; echo ${i}; sleep 3600 & wait`] },
            }),
          );
        }
      }
      // While cut: the device keeps its last desired state; a task killed there is restarted there.
      process.kill(before.taskId, "SIGKILL");
      const local = await bAdmin.bucket("task-executor");
      await waitFor(
        async () => {
          const e = await local.get(`TaskStatus.${steady}`);
          const s = e ? TaskStatusSchema.parse(e.json()) : undefined;
          return s?.state === "RUNNING" && s.taskId !== before.taskId ? true : undefined;
        },
        { timeoutMs: 30_000, message: "the killed task restarted on the cut device" },
      );
      const changingLocal = TaskStatusSchema.parse((await local.get(`TaskStatus.${changing}`))!.json());
      expect(changingLocal.version).toBe("1"); // nothing from the hub reached it
      expect((await hubStatus(steady))!.taskId).toBe(before.taskId); // nor anything from it the hub

      // Statuses of `changing` as the hub sees them from here on, to check their order.
      const seen: number[] = [];
      const watch = await (
        await hubController.bucket("task-executor")
      ).watch({ key: `TaskStatus.${changing}` });
      void (async () => {
        for await (const e of watch)
          if (e.operation === "PUT") seen.push(TaskStatusSchema.parse(e.json()).configRevision);
      })();
      await proxy.open();
      await waitFor(
        async () => {
          const s = await hubStatus(changing);
          return s?.state === "RUNNING" && s.configRevision === last && s.version === "20" ? true : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 500, message: "the last change RUNNING, seen on the hub" },
      );
      await waitFor(
        async () => {
          const all = await Promise.all([...added.keys()].map(hubStatus));
          return all.every(
            (st, i) => st?.state === "INSTALLED" && st.configRevision === [...added.values()][i],
          )
            ? true
            : undefined;
        },
        {
          timeoutMs: 60_000,
          intervalMs: 500,
          message: "the 10 apps added while cut INSTALLED, seen on the hub",
        },
      );
      watch.stop();
      // In order: configRevision never goes back.
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
      await waitFor(async () => ((await hubStatus(steady))?.taskId !== before.taskId ? true : undefined), {
        timeoutMs: 30_000,
        message: "the restart reached the hub",
      });
      // Events: the hub has exactly the device's, each once, in the same order.
      for (const u of [steady, changing]) {
        const local = await eventsOf(bAdmin, u);
        await waitFor(async () => ((await eventsOf(hubAdmin, u)).length >= local.length ? true : undefined), {
          timeoutMs: 30_000,
          message: `${u}'s events on the hub`,
        });
        const onHub = await eventsOf(hubAdmin, u);
        expect(onHub).toEqual(local);
        expect(new Set(onHub.map(([id]) => id)).size).toBe(onHub.length);
      }
      expect((await eventsOf(hubAdmin, steady)).map(([, t]) => t)).toContain("restarting");
    } finally {
      await proxy.open().catch(() => undefined);
      await bAdmin.close();
    }
    const all = [steady, changing, ...addedAll];
    for (const u of all)
      await (await hubController.bucket(hubControllerBucket("fb"))).delete(`AppInstanceConfig.${u}`);
    await waitFor(
      async () => ((await Promise.all(all.map(hubStatus))).every((x) => x === undefined) ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 500, message: "removed" },
    );
  }, 300_000);

  it("--replicas spec-builder=3: killing two of the replicas during a rollout loses nothing", async () => {
    const s = await readStateFile(stateFilePath(A().dataDir));
    const victims = ["spec-builder-2", "spec-builder-3"].map((n) => s!.workers[n]!.pid!);
    const uuids = Array.from({ length: 20 }, () => newUuid());
    const revs = new Map<string, number>();
    for (const [i, u] of uuids.entries()) {
      if (i === 5) for (const pid of victims) process.kill(pid, "SIGKILL");
      revs.set(u, await applyOnHub("fa", app(u, "fa", { activate: false })));
    }
    // activate false: built and created, no task (INSTALLED), so the check is about the work queue.
    await waitFor(
      async () => {
        const all = await Promise.all(uuids.map(hubStatus));
        return all.every((st, i) => st?.state === "INSTALLED" && st.configRevision === revs.get(uuids[i]!))
          ? true
          : undefined;
      },
      {
        timeoutMs: 90_000,
        intervalMs: 500,
        message: "20 apps INSTALLED after two spec-builders were killed",
      },
    );
    for (const u of uuids)
      await (await hubController.bucket(hubControllerBucket("fa"))).delete(`AppInstanceConfig.${u}`);
    await waitFor(
      async () =>
        (await Promise.all(uuids.map(hubStatus))).every((x) => x === undefined) ? true : undefined,
      { timeoutMs: 60_000, intervalMs: 500, message: "20 apps removed" },
    );
  }, 180_000);

  it("a second task-executor for the same node refuses to start, naming the one that runs", async () => {
    const d = A();
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "services/task-executor/dist/main.js")], {
      env: {
        ...process.env,
        NATS_URL: `nats://127.0.0.1:${d.natsPort}`,
        NATS_USER: "task-executor",
        NATS_PASSWORD_FILE: natsPasswordFile(natsCredentialsDir(d.dataDir), "task-executor"),
        EVE_NODE: d.node,
        EVE_DATA_DIR: d.dataDir,
        EVE_RUN_DIR: d.runDir,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    const code = await Promise.race([
      exited,
      new Promise<"running">((r) => setTimeout(() => r("running"), 30_000)),
    ]);
    if (code === "running") {
      child.kill("SIGKILL"); // it started next to the node's executor: stop it, by its PID
      await exited;
    }
    expect(code).toBe(2);
    const s = await readStateFile(stateFilePath(d.dataDir));
    expect(err).toContain(`another task-executor is running for node ${d.node}`);
    expect(err).toContain(`pid ${s!.workers["task-executor"]!.pid}`);
  }, 60_000);
});
