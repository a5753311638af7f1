// End to end: the built launcher (`npx tsc -b` first) brings up its own nats-server (with the
// project's NATS users, passwords generated under the data dir) and containerd in a temporary data
// dir, creates the buckets, runs a fixture worker as its own NATS user and the real task-executor,
// restarts a worker when killed, and on SIGINT has the task-executor stop the tasks, then stops
// everything it started and exits 0.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, stat, writeFile } from "node:fs/promises";
import { connect as http2Connect } from "node:http2";
import type { IncomingHttpHeaders } from "node:http2";
import { connect as netConnect } from "node:net";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { isSameProcessAlive, readStateFile, stateFilePath } from "@eve-tasks/launcher";
import type { LauncherStateRecord } from "@eve-tasks/launcher";
import { healthDir, readHeartbeats } from "@eve-tasks/runtime";
import { ContainerdClient } from "@eve-tasks/containerd";
import { buildSpec, withArgs, withHostname } from "@eve-tasks/oci-spec";
import { CONTAINERD_NAMESPACE, messageTable } from "@eve-tasks/schemas";
import { Publication, connectBus } from "@eve-tasks/bus";
import { NATS_USERS, natsCredentialsDir, natsPasswordFile, removeTreeSafely } from "@eve-tasks/embedded";
import { BUILT, makeRootfs, runNode } from "./harness/index.js";

const repo = fileURLToPath(new URL("..", import.meta.url));
const launcherMain = path.join(repo, "packages/launcher/dist/main.js");
const fixtureWorker = path.join(repo, "test/fixtures/launcher/worker.js");
/** The fixture runs as a real worker's name, so the launcher gives it that worker's NATS user. */
const WORKER = "proc-monitor";
/** Only the task-executor talks to containerd: the launcher's Ctrl-C asks it to stop the tasks. */
const EXECUTOR = "task-executor";

let tmp: string;
let dataDir: string;
let launcher: ChildProcess;
let output = "";
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
/** Every process the launcher said it owns, with its start time, so cleanup never hits a reused PID. */
const seen = new Map<number, number | undefined>();

async function state(): Promise<LauncherStateRecord | undefined> {
  const s = await readStateFile(stateFilePath(dataDir));
  if (s) {
    const refs = [
      s.nats.process,
      s.containerd.process,
      ...Object.values(s.workers).map((w) => w.pid && { pid: w.pid, startTicks: w.startTicks ?? undefined }),
    ];
    for (const r of refs) if (r) seen.set(r.pid, r.startTicks);
  }
  return s;
}

/** Waits until the task-executor has synchronized (its runtime says "running" only after that). */
async function executorRunning(): Promise<void> {
  await until("the task-executor running", async () => {
    const s = await state();
    const pid = s?.workers[EXECUTOR]?.pid;
    if (!s || pid === null || pid === undefined) return undefined;
    return (await readHeartbeats(healthDir(s.runDir))).find((h) => h.pid === pid && h.state === "running");
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}\n--- launcher output ---\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const alive = (pid: number, startTicks?: number): boolean => isSameProcessAlive({ pid, startTicks });

/** Calls containerd's Version service over its socket: a real gRPC answer, not just an open socket. */
function containerdVersion(socket: string): Promise<{ grpcStatus: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect("http://localhost", { createConnection: () => netConnect(socket) });
    session.on("error", reject);
    const req = session.request({
      ":method": "POST",
      ":path": "/containerd.services.version.v1.Version/Version",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    req.on("response", (h) => (grpcStatus ??= h["grpc-status"] as string | undefined));
    req.on("trailers", (t: IncomingHttpHeaders) => (grpcStatus = t["grpc-status"] as string | undefined));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      resolve({ grpcStatus, body: Buffer.concat(chunks) });
    });
    req.on("error", reject);
    req.end(Buffer.alloc(5)); // one empty, uncompressed gRPC message
  });
}

beforeAll(async () => {
  // Short: containerd's sockets go in the run dir (108-byte limit).
  tmp = await mkdtemp("/tmp/evl-");
  dataDir = path.join(tmp, "data");
  const runDir = path.join(tmp, "run");
  const servicesDir = path.join(tmp, "services");
  await mkdir(path.join(servicesDir, WORKER, "dist"), { recursive: true });
  // The worker itself stays in the repo (its imports resolve from the repo's node_modules).
  await writeFile(
    path.join(servicesDir, WORKER, "dist", "main.js"),
    `import ${JSON.stringify(pathToFileURL(fixtureWorker).href)};\n`,
  );
  await mkdir(path.join(servicesDir, EXECUTOR, "dist"), { recursive: true });
  await writeFile(
    path.join(servicesDir, EXECUTOR, "dist", "main.js"),
    `import ${JSON.stringify(pathToFileURL(BUILT.taskExecutor).href)};\n`,
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    EVE_DATA_DIR: dataDir,
    EVE_RUN_DIR: runDir,
    LOG_LEVEL: "info",
  };
  // The launcher must start its own services, whatever the test harness exported.
  delete env.NATS_URL;
  delete env.CONTAINERD_ADDRESS;
  delete env.EVE_NODE;
  launcher = spawn(
    process.execPath,
    [launcherMain, "--services-dir", servicesDir, "--worker-grace-ms", "5000"],
    {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  launcher.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  launcher.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  exited = new Promise((resolve) => launcher.on("exit", (code, signal) => resolve({ code, signal })));
}, 10_000);

afterAll(async () => {
  // Normally the SIGINT test has stopped everything; if not, kill exactly what was recorded.
  if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill("SIGKILL");
  await state().catch(() => undefined);
  for (const [pid, ticks] of seen) if (alive(pid, ticks)) process.kill(pid, "SIGKILL");
  if (tmp) await removeTreeSafely(tmp);
});

describe("launcher", () => {
  it("brings up nats-server with every bucket and the events stream, and containerd", async () => {
    const s = await until("the worker to run", async () => {
      const s = await state();
      return s?.launcher.phase === "running" && s.workers[WORKER]?.state === "running" ? s : undefined;
    });
    expect(s.nats.startedByLauncher).toBe(true);
    expect(s.nats.process?.pid).toBeGreaterThan(0);
    expect(s.containerd.process?.pid).toBeGreaterThan(0);
    expect(s.containerd.address).toBe(path.join(tmp, "run", "containerd.sock"));
    expect(s.pids).toEqual(
      expect.arrayContaining([s.nats.process!.pid, s.containerd.process!.pid, s.workers[WORKER]!.pid]),
    );
    expect(s.nats.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    // The worker got NATS_URL and connected: the runtime says "running" only after its main() resolved.
    const workerPid = s.workers[WORKER]!.pid;
    await until("the worker's heartbeat", async () =>
      (await readHeartbeats(healthDir(s.runDir))).find((h) => h.pid === workerPid && h.state === "running"),
    );
    await executorRunning();

    // No user, no connection; the launcher's generated passwords are root's alone.
    await expect(connect({ servers: s.nats.url! })).rejects.toThrow(/Authorization Violation/);
    const credentials = natsCredentialsDir(dataDir);
    expect((await stat(credentials)).mode & 0o777).toBe(0o700);
    for (const user of NATS_USERS) {
      expect((await stat(natsPasswordFile(credentials, user))).mode & 0o777, user).toBe(0o600);
    }
    const admin = await connectBus({
      servers: s.nats.url!,
      name: "launcher-test",
      credentials: { user: "admin", passwordFile: natsPasswordFile(credentials, "admin") },
    });
    const jsm = admin.jsm;
    const streams: string[] = [];
    for await (const si of jsm.streams.list()) streams.push(si.config.name);
    expect(streams).toEqual(
      expect.arrayContaining([
        "KV_controller",
        "KV_spec-builder",
        "KV_task-executor",
        "KV_proc-monitor",
        "KV_hypervisor-seed-fetcher",
        "TASK_EVENTS",
      ]),
    );

    const v = await containerdVersion(s.containerd.address!);
    expect(v.grpcStatus).toBe("0");
    expect(v.body.toString("latin1")).toMatch(/\d+\.\d+\.\d+/);

    // The worker connected as its own user: its probe is in its bucket, which only it may write.
    const probe = await until(
      "the worker's probe",
      async () => (await (await admin.bucket(WORKER)).get("Probe.fixture").catch(() => null)) ?? undefined,
    );
    expect(probe.json<{ user: string }>().user).toBe(WORKER);
    await admin.close();

    // The CLI, as root, with no credentials given: it finds them under the data dir.
    const get = await runNode(BUILT.cli, ["get"], {
      env: { NATS_URL: s.nats.url!, EVE_DATA_DIR: dataDir, NATS_USER: "", NATS_PASSWORD_FILE: "" },
    });
    expect({ code: get.code, stderr: get.stderr }).toEqual({ code: 0, stderr: "no apps\n" });

    // The apps table follows the bus: a status appearing is a line of the launcher's output.
    const bus = await connectBus({
      servers: s.nats.url!,
      name: "launcher-test-status",
      credentials: { user: "task-executor", passwordFile: natsPasswordFile(credentials, "task-executor") },
    });
    try {
      const uuid = "0a0b0c0d-0000-4000-8000-000000000042";
      const now = new Date().toISOString();
      await new Publication(bus, messageTable("TaskStatus")).publish(uuid, {
        schemaVersion: 1,
        uuid,
        version: "1",
        configRevision: 1,
        node: "local",
        state: "RUNNING",
        taskId: 4242,
        lastTaskId: 4242,
        anchorStartTicks: 1,
        exitCode: null,
        signal: null,
        oomKilled: false,
        restarts: 0,
        memoryLimitBytes: 64 * 2 ** 20,
        anchorTaxBytes: 0,
        logPath: "/x",
        waitingFor: null,
        startedAt: now,
        finishedAt: null,
        updatedAt: now,
        error: null,
      });
      await until("the apps line", () =>
        Promise.resolve(output.includes(`app ${uuid}: RUNNING, taskId 4242`) ? true : undefined),
      );
    } finally {
      await bus.close();
    }

    expect(output).toContain(`NATS           ${s.nats.url}`);
    expect(output).toContain("npx eve-tasks get");
  });

  it("restarts a worker that dies, with a new PID and a count", async () => {
    const before = (await state())!.workers[WORKER]!;
    expect(alive(before.pid!)).toBe(true);
    process.kill(before.pid!, "SIGKILL");
    const after = await until(
      "a new worker PID",
      async () => {
        const w = (await state())?.workers[WORKER];
        return w && w.state === "running" && w.pid !== null && w.pid !== before.pid ? w : undefined;
      },
      15_000,
    );
    expect(after.restarts).toBe(before.restarts + 1);
    expect(after.lastExit).toMatchObject({ signal: "SIGKILL" });
    expect(alive(after.pid!)).toBe(true);
    expect(output).toMatch(
      new RegExp(`${WORKER} \\(pid \\d+\\) exited with signal SIGKILL .* restart #1 in 1 s`),
    );
  });

  it("on SIGINT stops its tasks, then everything it started, by PID, and exits 0", async () => {
    // A task in the launcher's containerd, made once the executor has synchronized (its
    // start-up sweep would remove a container nobody configured).
    await executorRunning();
    const s0 = (await state())!;
    const rootfs = await makeRootfs(path.join(tmp, "rootfs"));
    const client = new ContainerdClient({ address: s0.containerd.address!, namespace: CONTAINERD_NAMESPACE });
    const id = "launcher-test-task";
    await client.containers.create({
      id,
      spec: buildSpec(withArgs(["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]), withHostname(id)),
    });
    const { pid: taskPid } = await client.tasks.create({
      containerId: id,
      rootfs: [{ type: "bind", source: rootfs.path, options: ["rbind", "rw"] }],
    });
    await client.tasks.start(id);
    expect(alive(taskPid)).toBe(true);
    const s = (await state())!;
    const owned = [...seen.entries()];
    expect(owned.length).toBeGreaterThanOrEqual(4); // nats, containerd, two worker PIDs
    launcher.kill("SIGINT");
    const { code, signal } = await exited;
    expect({ code, signal, output: code === 0 ? "" : output }).toEqual({ code: 0, signal: null, output: "" });
    for (const [pid, ticks] of [...owned, [s.launcher.pid, s.launcher.startTicks] as const]) {
      expect({ pid, alive: alive(pid, ticks) }).toEqual({ pid, alive: false });
    }
    const final = (await readStateFile(stateFilePath(dataDir)))!;
    expect(final.launcher.phase).toBe("stopped");
    expect(final.pids).toEqual([]);
    expect(output).toContain(`task ${id} (pid ${taskPid}) stopped by SIGTERM`);
    expect(alive(taskPid)).toBe(false);
    client.close();
  });
});
