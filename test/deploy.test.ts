// The deployment files in deploy/: nats-server configs (checked with `nats-server -t`, the single
// node and the 3-node cluster started for real, a leaf node joined to the cluster), the users and
// subject permissions (exercised with the bus's own code under each user), the bucket bootstrap
// script, the containerd config (started on private paths) and the systemd units (systemd-analyze
// verify, and what they reference). Every server this file starts has its own temp dir, listens
// on loopback only and is stopped by its PID; the shared harness servers are not used.
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, openSync, closeSync } from "node:fs";
import { cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { pino } from "pino";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import {
  Outbox,
  Publication,
  connectBus,
  ensureBucket,
  ensureBuckets,
  ensureEventsStream,
  subscribe,
  waitForBucket,
  workQueueConsumerConfig,
} from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import {
  DISABLED_CONTAINERD_PLUGINS,
  findExecutable,
  natsCredentialsDir,
  natsPasswordFile,
  pathWithSbin,
  renderContainerdConfig,
  renderNatsPermissions,
} from "@eve-tasks/embedded";
import { MALLOC_TUNABLES, workerNodeOptions } from "@eve-tasks/launcher";
import {
  SPEC_BUILDER_DURABLE,
  agents,
  natsInboxPrefix,
  seedFetcherDurables,
  signalSubject,
  messageTable,
} from "@eve-tasks/schemas";
import { SeedStore } from "@eve-tasks/registry";
import type { AppInstanceConfigInput, TaskConfig, TaskConfigSchema } from "@eve-tasks/schemas";
import { startSpecBuilder } from "../services/spec-builder/src/spec-builder.js";
import { startSeedFetcher } from "../services/hypervisor-seed-fetcher/src/seed-fetcher.js";
import { OciLayout, busyboxEntries } from "./harness/registry-images.js";

const REPO = resolve(import.meta.dirname, "..");
const DEPLOY = join(REPO, "deploy");
const NATS_DIR = join(DEPLOY, "nats");
const MiB = 2 ** 20;

const NATS_SERVER = findExecutable("nats-server") ?? "nats-server";
const CONTAINERD = findExecutable("containerd") ?? "containerd";
const CTR = findExecutable("ctr") ?? "ctr";
const SYSTEMD_ANALYZE = findExecutable("systemd-analyze");

const USERS = [
  "admin",
  "controller",
  "viewer",
  "spec-builder",
  "task-executor",
  "proc-monitor",
  "hypervisor-seed-fetcher",
] as const;
type User = (typeof USERS)[number];

/** `hypervisor-seed-fetcher` → `EVE_NATS_HYPERVISOR_SEED_FETCHER_PASSWORD`. */
const passwordVar = (name: string): string => `EVE_NATS_${name.toUpperCase().replaceAll("-", "_")}_PASSWORD`;

/** Fresh passwords for this run: letters and digits, starting with a letter, as deploy/ asks. */
const PASSWORDS: Record<string, string> = Object.fromEntries(
  [...USERS, "route", "leaf"].map((u) => [u, `p${randomBytes(16).toString("hex")}`]),
);
const NATS_ENV: Record<string, string> = Object.fromEntries(
  Object.entries(PASSWORDS).map(([u, p]) => [passwordVar(u), p]),
);
const LEAF_NODE = "edge-1";
/** What every nats config needs in the environment (the hub URL is the leaf's). */
const CONFIG_ENV: Record<string, string> = {
  ...NATS_ENV,
  EVE_NODE: LEAF_NODE,
  EVE_NATS_HUB_URL: `"nats-leaf://leaf:${PASSWORDS.leaf}@127.0.0.1:7422"`,
  EVE_NATS_ROUTES: routesValue([6222, 6223, 6224]),
};
/** EVE_NATS_ROUTES as deploy/systemd/nats.env.example shows it: a config array of route URLs. */
function routesValue(ports: number[]): string {
  return `[${ports.map((p) => `"nats-route://route:${PASSWORDS.route}@127.0.0.1:${p}"`).join(", ")}]`;
}
/** The processes' environment: the test's own minus anything that could change a config. */
function envWith(extra: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("EVE_NATS_") && k !== "EVE_NODE"),
  );
  return { ...base, ...extra };
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 20_000) {
  return new Promise<RunResult>((done) => {
    execFile(cmd, args, { env, timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

// ---- processes this file starts, each stopped by its PID -----------------------------------------

interface Started {
  pid: number;
  child: ChildProcess;
  exited: Promise<void>;
  stop(): Promise<void>;
}
const started: Started[] = [];

function startProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv, logFile: string): Started {
  const fd = openSync(logFile, "a");
  const child = spawn(cmd, args, { env, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  const pid = child.pid;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const proc: Started = {
    pid,
    child,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(pid, "SIGTERM");
      const t = sleep(10_000).then(() => "timeout" as const);
      if ((await Promise.race([exited, t])) === "timeout") {
        process.kill(pid, "SIGKILL");
        await exited;
      }
    },
  };
  started.push(proc);
  return proc;
}

afterAll(async () => {
  await Promise.allSettled(started.map((p) => p.stop()));
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err instanceof Error ? err : new Error(String(err));
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    }
    await sleep(50);
  }
}

interface NatsProc extends Started {
  url: string;
  monitorUrl: string;
  log: string;
}

/**
 * Starts nats-server on `conf` (a temp copy) on a random loopback client port and monitoring
 * port; resolves once the ports file of exactly this PID names them.
 */
async function startNats(conf: string, env: Record<string, string>, extra: string[] = []): Promise<NatsProc> {
  const dir = dirname(conf);
  const log = `${conf}.log`;
  const p = startProcess(
    NATS_SERVER,
    ["-c", conf, "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "--ports_file_dir", dir, ...extra],
    envWith(env),
    log,
  );
  const portsFile = join(dir, `nats-server_${p.pid}.ports`);
  const ports = await waitFor(`nats-server ${conf}`, async () => {
    if (p.child.exitCode !== null) throw new Error(`exited: ${await readFile(log, "utf8")}`);
    if (!existsSync(portsFile)) return undefined;
    const parsed = JSON.parse(await readFile(portsFile, "utf8")) as {
      nats?: string[];
      monitoring?: string[];
    };
    return parsed.nats?.[0] && parsed.monitoring?.[0] ? parsed : undefined;
  });
  return { ...p, url: ports.nats![0]!, monitorUrl: ports.monitoring![0]!, log };
}

/** Replaces `from` in `text`, insisting it occurs exactly `times` times (so the test tracks the file). */
function replaceExactly(text: string, from: string, to: string, times = 1): string {
  const n = text.split(from).length - 1;
  if (n !== times) throw new Error(`expected ${times} occurrence(s) of ${JSON.stringify(from)}, found ${n}`);
  return text.replaceAll(from, to);
}

/** Copies deploy/nats to a temp dir and points the JetStream store of `conf` (relative) at it. */
async function tempNatsCopy(conf: string, edit: (text: string) => string = (t) => t): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "eve-deploy-nats-"));
  tempDirs.push(dir);
  await cp(NATS_DIR, dir, { recursive: true });
  const file = join(dir, conf);
  let text = await readFile(file, "utf8");
  text = replaceExactly(text, '"/var/lib/eve-tasks/nats"', JSON.stringify(join(dirname(file), "js")));
  await writeFile(file, edit(text));
  return file;
}
const tempDirs: string[] = [];
afterAll(async () => {
  if (process.env.EVE_TEST_KEEP === "1") return;
  await Promise.allSettled(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

// ---- NATS clients under each user ----------------------------------------------------------------

const connections: NatsConnection[] = [];
afterAll(async () => {
  await Promise.allSettled(connections.map((nc) => nc.close()));
});

/** A plain nats.js client as `user`, on its own inbox prefix (the only one its permissions allow). */
async function connectAs(url: string | string[], user: User): Promise<NatsConnection> {
  const nc = await connect({
    servers: url,
    user,
    pass: PASSWORDS[user],
    name: `deploy-test ${user}`,
    inboxPrefix: natsInboxPrefix(user),
  });
  connections.push(nc);
  return nc;
}

/**
 * connectBus as `user`, with a password file the way a worker gets its credentials
 * (NATS_USER + NATS_PASSWORD_FILE, deploy/systemd/<worker>.env.example).
 */
async function busAs(url: string | string[], user: User): Promise<Bus> {
  const bus = await connectBus({
    servers: (Array.isArray(url) ? url : [url]).join(","),
    name: `deploy-test ${user}`,
    credentials: { user, passwordFile: await passwordFileOf(user) },
  });
  connections.push(bus.nc);
  return bus;
}

/** A 0600 file holding `user`'s password, in a temp dir of this file's. */
async function passwordFileOf(user: string): Promise<string> {
  if (passwordDir === undefined) {
    passwordDir = await mkdtemp(join(tmpdir(), "eve-deploy-passwords-"));
    tempDirs.push(passwordDir);
  }
  const file = join(passwordDir, `${user}.password`);
  await writeFile(file, `${PASSWORDS[user]}\n`, { mode: 0o600 });
  return file;
}
let passwordDir: string | undefined;

const DENIED = /Permissions Violation/;

/** Any schema-checked value with a configRevision: permissions do not look at content. */
const Loose = z.looseObject({ schemaVersion: z.literal(1), configRevision: z.number().int().optional() });

function appConfig(uuid: string): AppInstanceConfigInput {
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: "hello",
    activate: true,
    restartCounter: 0,
    node: "local",
    arch: "x86_64",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { volume: { path: "/var/lib/eve/volumes/hello/rootfs", readOnly: false } },
    process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], cwd: "/", user: "0:0" },
    restartPolicy: { mode: "never" },
    stopTimeoutMs: 10000,
  };
}

// =================================================================================================

const NATS_CONFIGS = [
  "single-node.conf",
  "leaf-node.conf",
  "cluster/node-1.conf",
  "cluster/node-2.conf",
  "cluster/node-3.conf",
];

describe("deploy/nats: config test mode (nats-server -t)", () => {
  it.each(NATS_CONFIGS)("%s is valid with its variables set", async (conf) => {
    const r = await run(NATS_SERVER, ["-t", "-c", join(NATS_DIR, conf)], envWith(CONFIG_ENV));
    expect(r.stderr + r.stdout).toContain("is valid");
    expect(r.code).toBe(0);
  });

  it("permissions.conf is the render of the one source `npm start` uses too, for node `local`", async () => {
    const file = join(NATS_DIR, "permissions.conf");
    expect(await readFile(file, "utf8")).toBe(renderNatsPermissions({ nodes: ["local"] }));
    const script = join(NATS_DIR, "render-permissions.mjs");
    const same = await run("node", [script, "--check", "--node", "local", file]);
    expect(same.stderr).toBe("");
    expect(same.code).toBe(0);
    // Another node's fetcher durables are not in it: the check says so.
    const other = await run("node", [script, "--check", "--node", "edge-7", file]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/is not the render for nodes edge-7; first difference at line \d+/);
    const rendered = await run("node", [script, "--node", "edge-7"]);
    expect(rendered.stdout).toBe(renderNatsPermissions({ nodes: ["edge-7"] }));
    expect(rendered.stdout).toContain(
      '"$JS.API.CONSUMER.CREATE.KV_controller.hypervisor-seed-fetcher-edge-7-tools"',
    );
  });

  it("credentials.mjs makes the passwords once (files, 0600) and nats-server's env file from them", async () => {
    const tmp = await mkdtemp(join(tmpdir(), "eve-deploy-creds-"));
    tempDirs.push(tmp);
    const dir = join(tmp, "var-lib", "nats-credentials");
    const envFile = join(tmp, "nats-users.env");
    const script = join(NATS_DIR, "credentials.mjs");
    const first = await run("node", [script, dir, envFile]);
    expect(first.stderr).toBe("");
    expect(first.stdout).toBe(`7 NATS users: passwords in ${dir}, nats-server's environment in ${envFile}\n`);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(envFile)).mode & 0o777).toBe(0o600);
    const env = Object.fromEntries(
      (await readFile(envFile, "utf8"))
        .split("\n")
        .filter((l) => /^EVE_NATS_/.test(l))
        .map((l) => l.split("=", 2) as [string, string]),
    );
    expect(Object.keys(env).sort()).toEqual(USERS.map(passwordVar).sort());
    for (const user of USERS) {
      const file = natsPasswordFile(dir, user);
      expect((await stat(file)).mode & 0o777, user).toBe(0o600);
      expect((await readFile(file, "utf8")).trim(), user).toBe(env[passwordVar(user)]);
    }
    // Run again: the same passwords.
    await run("node", [script, dir, envFile]);
    expect(await readFile(natsPasswordFile(dir, "admin"), "utf8")).toBe(`${env.EVE_NATS_ADMIN_PASSWORD}\n`);
    // nats-server and the unit's password check accept the env file as it is.
    const single = join(NATS_DIR, "single-node.conf");
    const checked = await run("/bin/sh", [join(NATS_DIR, "check-passwords.sh"), single], envWith(env));
    expect({ code: checked.code, stderr: checked.stderr }).toEqual({ code: 0, stderr: "" });
    const valid = await run(NATS_SERVER, ["-t", "-c", single], envWith(env));
    expect(valid.code).toBe(0);
    // A worker gets in with its file (NATS_USER + NATS_PASSWORD_FILE), on a server run with the env.
    const server = await startNats(await tempNatsCopy("single-node.conf"), env);
    const worker = await connectBus({
      servers: server.url,
      name: "deploy-test credentials",
      credentials: { user: "proc-monitor", passwordFile: natsPasswordFile(dir, "proc-monitor") },
    });
    connections.push(worker.nc);
    await ensureBucket(worker, "proc-monitor");
    await server.stop();
  });

  it("has no password of its own: without a password variable nats-server refuses the config", async () => {
    const { EVE_NATS_TASK_EXECUTOR_PASSWORD: _, ...without } = CONFIG_ENV;
    for (const conf of NATS_CONFIGS) {
      const r = await run(NATS_SERVER, ["-t", "-c", join(NATS_DIR, conf)], envWith(without));
      expect(r.code, conf).not.toBe(0);
      expect(r.stderr, conf).toMatch(/EVE_NATS_TASK_EXECUTOR_PASSWORD.*can not be found/);
    }
    for (const file of [...NATS_CONFIGS, "permissions.conf"]) {
      const text = await readFile(join(NATS_DIR, file), "utf8");
      for (const m of text.matchAll(/^\s*password\s*:\s*(\S+)/gm)) {
        expect(m[1], `${file}: ${m[0]}`).toMatch(/^\$EVE_NATS_[A-Z_]+_PASSWORD$/);
      }
    }
  });

  it("check-passwords.sh (ExecStartPre of the nats unit) refuses empty, short and misparsable passwords", async () => {
    const script = join(NATS_DIR, "check-passwords.sh");
    for (const conf of NATS_CONFIGS) {
      const ok = await run("/bin/sh", [script, join(NATS_DIR, conf)], envWith(CONFIG_ENV));
      expect(ok.stderr, conf).toBe("");
      expect(ok.code, conf).toBe(0);
    }
    const single = join(NATS_DIR, "single-node.conf");
    const cases: [Record<string, string>, RegExp][] = [
      [{ EVE_NATS_VIEWER_PASSWORD: "" }, /EVE_NATS_VIEWER_PASSWORD is empty/],
      [{ EVE_NATS_ADMIN_PASSWORD: "short1" }, /EVE_NATS_ADMIN_PASSWORD is shorter than 16/],
      [{ EVE_NATS_CONTROLLER_PASSWORD: "abc$def#ghijklmnopq" }, /letters and digits only/],
      [{ EVE_NATS_CONTROLLER_PASSWORD: "8abcdefghijklmnopq" }, /starting with a letter/],
    ];
    for (const [change, message] of cases) {
      const r = await run("/bin/sh", [script, single], envWith({ ...CONFIG_ENV, ...change }));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    }
    // Why: a leading digit makes nats-server read a number and fail...
    const digit = await run(
      NATS_SERVER,
      ["-t", "-c", single],
      // What `openssl rand -hex` may well print: nats-server reads 8e12… as a float.
      envWith({ ...CONFIG_ENV, EVE_NATS_VIEWER_PASSWORD: "8e12345678901234ab" }),
    );
    expect(digit.code).toBe(1);
    expect(digit.stderr).toMatch(/EVE_NATS_VIEWER_PASSWORD.*could not be parsed/);
    // ... and an empty password passes nats-server's own check (a user with no password).
    const empty = await run(
      NATS_SERVER,
      ["-t", "-c", single],
      envWith({ ...CONFIG_ENV, EVE_NATS_VIEWER_PASSWORD: "" }),
    );
    expect(empty.code).toBe(0);
  });
});

// =================================================================================================

describe("deploy/nats/single-node.conf: users and permissions, on a running server", () => {
  let server: NatsProc;
  const bus = {} as Record<User, Bus>;
  const createBuckets = join(NATS_DIR, "create-buckets.mjs");

  beforeAll(async () => {
    const conf = await tempNatsCopy("single-node.conf");
    server = await startNats(conf, NATS_ENV);
    // The operator's bootstrap, as admin: every bucket and TASK_EVENTS.
    const r = await run("node", [createBuckets], {
      ...process.env,
      NATS_URL: server.url,
      NATS_USER: "admin",
      NATS_PASSWORD: PASSWORDS.admin,
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual([
      ...agents.map((a) => `KV_${a}: created, replicas 1`),
      "TASK_EVENTS: created, replicas 1",
    ]);
    for (const user of USERS) bus[user] = await busAs(server.url, user);
  });

  it("listens on loopback, refuses clients without a valid user, and takes 1 MiB values", async () => {
    expect(new URL(server.url).hostname).toBe("127.0.0.1");
    expect(await readFile(join(NATS_DIR, "single-node.conf"), "utf8")).toMatch(
      /^listen: 127\.0\.0\.1:4222$/m,
    );
    await expect(connect({ servers: server.url })).rejects.toThrow(/Authorization Violation/);
    await expect(connect({ servers: server.url, user: "viewer", pass: "wrong" })).rejects.toThrow(
      /Authorization Violation/,
    );
    const te = bus["task-executor"];
    expect(te.nc.info?.max_payload).toBeGreaterThan(MiB + 64 * 1024);
    const kv = await te.bucket("task-executor");
    // A 1 MiB value reaches the bucket (the connection's limit is above it); one byte more is
    // refused loudly by the bucket (max_msg_size), not dropped.
    expect(await kv.put("Probe.big", new Uint8Array(MiB))).toBeGreaterThan(0);
    await expect(kv.put("Probe.big", new Uint8Array(MiB + 1))).rejects.toThrow(/maximum/i);
  });

  it("every bucket has exactly one writer: its agent (and admin)", async () => {
    for (const user of USERS) {
      for (const agent of agents) {
        const kv = await bus[user].bucket(agent);
        const put = kv.put(`Probe.${user}`, JSON.stringify({ by: user }));
        if (user === "admin" || user === agent)
          await expect(put, `${user} → ${agent}`).resolves.toBeGreaterThan(0);
        else await expect(put, `${user} → ${agent}`).rejects.toThrow(DENIED);
      }
    }
    // A plain publish (no ack) is dropped as well: nothing reaches the bucket.
    bus["task-executor"].nc.publish("$KV.controller.AppInstanceConfig.plain", "{}");
    await bus["task-executor"].nc.flush();
    const controllerKv = await bus.admin.bucket("controller");
    expect(await controllerKv.get("AppInstanceConfig.plain")).toBeNull();
  });

  it("only admin updates, purges or deletes a stream, or deletes a consumer", async () => {
    for (const user of ["controller", "viewer", "task-executor", "spec-builder"] as const) {
      const jsm = bus[user].jsm;
      await expect(jsm.streams.delete("KV_controller"), user).rejects.toThrow(DENIED);
      await expect(jsm.streams.purge("KV_task-executor"), user).rejects.toThrow(DENIED);
      await expect(jsm.streams.update("KV_spec-builder", { max_msgs_per_subject: 5 }), user).rejects.toThrow(
        DENIED,
      );
    }
  });

  it("the pipeline runs under its users: controller → spec-builder → task-executor → proc-monitor, watched by viewer", async () => {
    const uuid = randomUUID();
    // spec-builder: the worker's real wiring (durable consumer `spec-builder`, compare-and-set).
    await ensureBucket(bus["spec-builder"], "controller");
    await ensureBucket(bus["spec-builder"], "spec-builder");
    const queue = await startSpecBuilder({ bus: bus["spec-builder"], logger: pino({ level: "silent" }) });
    // task-executor: what its main does before reconciling: its own bucket, the one it reads, events.
    await ensureBucket(bus["task-executor"], "task-executor");
    await waitForBucket(bus["task-executor"], "spec-builder");
    await ensureEventsStream(bus["task-executor"]);
    const seen = new Map<string, TaskConfig>();
    const taskConfigs: Subscription<typeof TaskConfigSchema> = await subscribe(bus["task-executor"], {
      ...messageTable("TaskConfig"),
      onCreate: (key, value) => void seen.set(key, value),
      onModify: (key, value) => void seen.set(key, value),
    });
    await taskConfigs.synchronized;
    try {
      const configs = new Publication(bus.controller, messageTable("AppInstanceConfig"));
      const configRevision = await configs.publish(uuid, appConfig(uuid));
      const tc = await waitFor("TaskConfig", () => Promise.resolve(seen.get(uuid)));
      expect(tc.configRevision).toBe(configRevision);
      expect(tc.status).toBe("READY");

      // task-executor writes status (compare-and-set) and an event through its outbox.
      const status = new Publication(bus["task-executor"], {
        agent: "task-executor",
        type: "TaskStatus",
        schema: Loose,
      });
      expect(await status.putIfNewer(uuid, { schemaVersion: 1, configRevision: tc.configRevision })).toBe(
        "written",
      );
      const outDir = await mkdtemp(join(tmpdir(), "eve-deploy-outbox-"));
      tempDirs.push(outDir);
      const outbox = await Outbox.open(bus["task-executor"], { file: join(outDir, "task-executor.jsonl") });
      await outbox.emit({
        schemaVersion: 1,
        uuid,
        type: "received",
        time: new Date().toISOString(),
        message: "x",
      });
      await outbox.flushed();
      await outbox.close();

      // proc-monitor reads TaskStatus, writes TaskMetrics and anchor events.
      const statuses = new Map<string, unknown>();
      const pmSub = await subscribe(bus["proc-monitor"], {
        agent: "task-executor",
        type: "TaskStatus",
        schema: Loose,
        onCreate: (key, value) => void statuses.set(key, value),
      });
      await pmSub.synchronized;
      expect(statuses.get(uuid)).toMatchObject({ configRevision: tc.configRevision });
      await pmSub.close();
      const metrics = new Publication(bus["proc-monitor"], {
        agent: "proc-monitor",
        type: "TaskMetrics",
        schema: Loose,
      });
      expect(await metrics.publish(uuid, { schemaVersion: 1, rssBytes: 1 })).toBeGreaterThan(0);
      await bus["proc-monitor"].js.publish(`eve.events.${uuid}`, JSON.stringify({ anchor: true }));

      // viewer and controller read everything: status, metrics, events; a plain subscription too.
      for (const user of ["viewer", "controller"] as const) {
        const got = await new Publication(bus[user], {
          agent: "task-executor",
          type: "TaskStatus",
          schema: Loose,
        }).get(uuid);
        expect(got, user).toMatchObject({ configRevision: tc.configRevision });
        const all = await new Publication(bus[user], {
          agent: "proc-monitor",
          type: "TaskMetrics",
          schema: Loose,
        }).getAll();
        expect(all.get(uuid), user).toMatchObject({ rssBytes: 1 });
        const events = await bus[user].js.consumers.get("TASK_EVENTS", {
          filter_subjects: `eve.events.${uuid}`,
        });
        const first = await events.next({ expires: 2000 });
        expect(first?.json<{ type: string }>().type, user).toBe("received");
      }
      const changes: string[] = [];
      const plain = bus.viewer.nc.subscribe("$KV.task-executor.TaskStatus.>", {
        callback: (_e, m) => {
          changes.push(m.subject);
        },
      });
      await bus.viewer.nc.flush();
      expect(
        await status.putIfNewer(uuid, { schemaVersion: 1, configRevision: tc.configRevision, n: 2 }),
      ).toBe("written");
      await waitFor("plain subscription", () => Promise.resolve(changes.length > 0 ? true : undefined));
      plain.unsubscribe();

      // What is not theirs to write, they cannot write, whatever the path.
      await expect(bus.controller.js.publish(`eve.events.${uuid}`, "{}")).rejects.toThrow(DENIED);
      await expect(bus.viewer.js.publish(`eve.events.${uuid}`, "{}")).rejects.toThrow(DENIED);
      await expect(bus["spec-builder"].js.publish(`eve.events.${uuid}`, "{}")).rejects.toThrow(DENIED);
      await expect(configs.unpublish(uuid).then(() => "ok")).resolves.toBe("ok");
      const asViewer = new Publication(bus.viewer, messageTable("AppInstanceConfig"));
      await expect(asViewer.publish(randomUUID(), appConfig(randomUUID()))).rejects.toThrow(DENIED);
    } finally {
      await taskConfigs.close();
      await queue.stop();
    }
  });

  it("reads are limited to each worker's inputs (DESIGN.md's table) and its own bucket", async () => {
    // hypervisor-seed-fetcher reads the controller's tables, writes seeds; spec-builder reads seeds.
    const tools = new Publication(bus.controller, {
      agent: "controller",
      type: "HypervisorToolsConfig",
      schema: Loose,
    });
    await tools.publish("default", { schemaVersion: 1, image: "oci:/x:1" });
    const fetcherView = new Map<string, unknown>();
    const fetcherSub = await subscribe(bus["hypervisor-seed-fetcher"], {
      agent: "controller",
      type: "HypervisorToolsConfig",
      schema: Loose,
      onCreate: (key, value) => void fetcherView.set(key, value),
    });
    await fetcherSub.synchronized;
    await fetcherSub.close();
    expect(fetcherView.get("default")).toMatchObject({ image: "oci:/x:1" });
    const seeds = new Publication(bus["hypervisor-seed-fetcher"], {
      agent: "hypervisor-seed-fetcher",
      type: "HypervisorSeed",
      schema: Loose,
    });
    await seeds.publish("local.default", { schemaVersion: 1, state: "READY" });
    const builderView = new Map<string, unknown>();
    const builderSub = await subscribe(bus["spec-builder"], {
      agent: "hypervisor-seed-fetcher",
      type: "HypervisorSeed",
      keyPrefix: "local",
      schema: Loose,
      onCreate: (key, value) => void builderView.set(key, value),
    });
    await builderSub.synchronized;
    await builderSub.close();
    expect(builderView.get("local.default")).toMatchObject({ state: "READY" });

    // ... and not what others' tables hold that they do not need.
    const notInputs: [User, string][] = [
      ["task-executor", "proc-monitor"],
      ["proc-monitor", "controller"],
      ["proc-monitor", "hypervisor-seed-fetcher"],
      ["hypervisor-seed-fetcher", "task-executor"],
      ["spec-builder", "task-executor"],
    ];
    for (const [user, agent] of notInputs) {
      const kv = await bus[user].bucket(agent);
      await expect(kv.get("Probe.x"), `${user} get ${agent}`).rejects.toThrow(DENIED);
      await expect(kv.watch({ key: ">" }), `${user} watch ${agent}`).rejects.toThrow(DENIED);
    }
    // The task-executor watches the controller bucket's NetworkInstanceConfigs only: no other key.
    const controller = await bus["task-executor"].bucket("controller");
    for (const key of [">", "AppInstanceConfig.>", "HypervisorToolsConfig.>"]) {
      await expect(controller.watch({ key }), `task-executor watch controller ${key}`).rejects.toThrow(
        DENIED,
      );
    }
    const networks = await controller.watch({ key: "NetworkInstanceConfig.>" });
    networks.stop();
  });

  it("the hypervisor-seed-fetcher's real work queues run under its user: fetch, ack (MSG.NEXT, $JS.ACK)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "eve-deploy-fetcher-"));
    tempDirs.push(dir);
    const layout = new OciLayout(join(dir, "layout"));
    await layout.tag(await layout.image({ layers: [{ entries: await busyboxEntries() }] }), "tools");
    const tools = new Publication(bus.controller, messageTable("HypervisorToolsConfig"));
    await tools.publish("deploytest", { schemaVersion: 1, image: `oci:${layout.dir}:tools` });
    const fetcher = await startSeedFetcher({
      bus: bus["hypervisor-seed-fetcher"],
      logger: pino({ level: "silent" }),
      node: "local",
      // The tools image is the test's own OCI layout (oci: refs must be under these roots).
      seeds: new SeedStore({ dataDir: join(dir, "data"), durable: false, ociLayoutRoots: [layout.dir] }),
    });
    try {
      const seeds = new Publication(bus.viewer, messageTable("HypervisorSeed"));
      const seed = await waitFor("HypervisorSeed READY", async () => {
        const s = await seeds.get("local.deploytest");
        return s?.state === "READY" ? s : undefined;
      });
      expect(existsSync(join(seed.rootfsPath ?? "", "bin", "busybox"))).toBe(true);
      // Every delivery of both queues was acknowledged (an ack refused would stay pending and
      // come back after ack_wait).
      const names = seedFetcherDurables("local");
      for (const name of [names.tools, names.images]) {
        const info = await waitFor(`${name} acked`, async () => {
          const i = await bus.admin.jsm.consumers.info("KV_controller", name);
          return i.delivered.consumer_seq > 0 && i.num_ack_pending === 0 && i.num_pending === 0
            ? i
            : undefined;
        });
        expect(info.ack_floor.consumer_seq, name).toBe(info.delivered.consumer_seq);
      }
    } finally {
      await fetcher.stop();
      await tools.unpublish("deploytest");
    }
  });

  it("the workers' durable consumers are theirs alone: controller and viewer cannot create, change or drain them", async () => {
    const durables = [SPEC_BUILDER_DURABLE, ...Object.values(seedFetcherDurables("local"))];
    for (const name of durables) {
      const before = await bus.admin.jsm.consumers.info("KV_controller", name);
      for (const user of ["controller", "viewer"] as const) {
        const what = `${user} → ${name}`;
        await expect(
          bus[user].jsm.consumers.add("KV_controller", { ...before.config, max_deliver: 1 }),
          what,
        ).rejects.toThrow(DENIED);
        await expect(bus[user].jsm.consumers.delete("KV_controller", name), what).rejects.toThrow(DENIED);
        const next = bus[user].nc.request(`$JS.API.CONSUMER.MSG.NEXT.KV_controller.${name}`, "1", {
          timeout: 2000,
        });
        await expect(next, what).rejects.toThrow(DENIED);
      }
      const after = await bus.admin.jsm.consumers.info("KV_controller", name);
      expect(after.config, name).toEqual(before.config);
    }
  });

  it("the durable consumer `spec-builder` is the spec-builders' alone", async () => {
    const wanted = workQueueConsumerConfig({
      source: messageTable("AppInstanceConfig"),
      durable: "spec-builder",
    });
    for (const user of ["controller", "viewer", "task-executor", "hypervisor-seed-fetcher"] as const) {
      await expect(bus[user].jsm.consumers.add("KV_controller", wanted), user).rejects.toThrow(DENIED);
      await expect(bus[user].jsm.consumers.delete("KV_controller", "spec-builder"), user).rejects.toThrow(
        DENIED,
      );
      const next = bus[user].nc.request("$JS.API.CONSUMER.MSG.NEXT.KV_controller.spec-builder", "1", {
        timeout: 2000,
      });
      await expect(next, user).rejects.toThrow(DENIED);
    }
    // The spec-builder (which created it in the pipeline test) may re-create it, never delete it.
    await expect(bus["spec-builder"].jsm.consumers.add("KV_controller", wanted)).resolves.toMatchObject({
      name: "spec-builder",
    });
    await expect(bus["spec-builder"].jsm.consumers.delete("KV_controller", "spec-builder")).rejects.toThrow(
      DENIED,
    );
  });

  it("signal requests: the controller asks, the task-executor answers, nobody else does either", async () => {
    const subject = signalSubject("local");
    const sub = bus["task-executor"].nc.subscribe(subject, {
      callback: (_err, m) => void m.respond(JSON.stringify({ accepted: true, error: null })),
    });
    await bus["task-executor"].nc.flush();
    const reply = await bus.controller.nc.request(
      subject,
      JSON.stringify({ uuid: randomUUID(), signal: "SIGHUP" }),
      {
        timeout: 2000,
      },
    );
    expect(reply.json()).toEqual({ accepted: true, error: null });
    await expect(bus.viewer.nc.request(subject, "{}", { timeout: 2000 })).rejects.toThrow(DENIED);
    sub.unsubscribe();
    // A worker that is not the executor cannot take the executor's requests.
    const errors: string[] = [];
    const stolen = bus["spec-builder"].nc.subscribe(subject, {
      callback: (err) => {
        if (err) errors.push(err.message);
      },
    });
    await waitFor("subscription refused", () => Promise.resolve(stolen.isClosed() ? true : undefined), 3000);
    expect(errors.join()).toMatch(DENIED);
  });

  it("who creates buckets: admin all of them, each agent only its own when missing", async () => {
    await bus.admin.jsm.streams.delete("KV_proc-monitor");
    const env = { ...process.env, NATS_URL: server.url, NATS_USER: "admin", NATS_PASSWORD: PASSWORDS.admin };
    // The bootstrap as anyone but admin fails: a worker may not even look at buckets it does not read.
    const asExecutor = await run("node", [createBuckets], {
      ...env,
      NATS_USER: "task-executor",
      NATS_PASSWORD: PASSWORDS["task-executor"],
    });
    expect(asExecutor.code).toBe(1);
    expect(asExecutor.stderr).toMatch(
      /Permissions Violation for Publish to "\$JS\.API\.STREAM\.INFO\.KV_proc-monitor"/,
    );
    // Another worker cannot create an agent's bucket (nor even look at it: not its input)...
    const te = await busAs(server.url, "task-executor");
    await expect(ensureBucket(te, "proc-monitor")).rejects.toThrow(DENIED);
    // ... its owner can, with the bus's configuration.
    const pm = await busAs(server.url, "proc-monitor");
    await ensureBucket(pm, "proc-monitor");
    expect((await bus.admin.jsm.streams.info("KV_proc-monitor")).config.max_msg_size).toBe(MiB);
    await ensureBuckets(bus.admin);
    // The bootstrap finds everything in place; on a standalone server it refuses replicas 3.
    const again = await run("node", [createBuckets], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("KV_proc-monitor: exists, replicas 1");
    const r3 = await run("node", [createBuckets, "--replicas", "3"], env);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/needs a clustered nats-server/);
  });
});

// =================================================================================================

describe("deploy/nats/cluster: three nodes, buckets with replicas 3, and a leaf-node device", () => {
  const nodes: NatsProc[] = [];
  let leaf: NatsProc;
  const leafPorts: number[] = [];

  beforeAll(async () => {
    const routePorts = await Promise.all([0, 1, 2].map(() => freePort()));
    leafPorts.push(...(await Promise.all([0, 1, 2].map(() => freePort()))));
    const dir = await mkdtemp(join(tmpdir(), "eve-deploy-cluster-"));
    tempDirs.push(dir);
    await cp(NATS_DIR, dir, { recursive: true });
    const confs: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const file = join(dir, "cluster", `node-${i}.conf`);
      let text = await readFile(file, "utf8");
      text = replaceExactly(text, '"/var/lib/eve-tasks/nats"', JSON.stringify(join(dir, `js-${i}`)));
      text = replaceExactly(text, "listen: 0.0.0.0:6222", `listen: 127.0.0.1:${routePorts[i - 1]}`);
      text = replaceExactly(text, "listen: 0.0.0.0:7422", `listen: 127.0.0.1:${leafPorts[i - 1]}`);
      await writeFile(file, text);
      confs.push(file);
    }
    const env = { ...NATS_ENV, EVE_NATS_ROUTES: routesValue(routePorts) };
    nodes.push(...(await Promise.all(confs.map((c) => startNats(c, env)))));
    // JetStream's meta group has a leader and both followers are current.
    // (Only the leader's /jsz lists the followers.)
    await waitFor("JetStream cluster", async () => {
      for (const node of nodes) {
        const res = await fetch(`${node.monitorUrl}/jsz`);
        const jsz = (await res.json()) as { meta_cluster?: { replicas?: { current: boolean }[] } };
        const replicas = jsz.meta_cluster?.replicas;
        if (replicas?.length === 2 && replicas.every((r) => r.current)) return true;
      }
      return undefined;
    });
  });

  it("routes authenticate with the env password and a replicas-3 bucket works across the nodes", async () => {
    // A worker comes first and creates its bucket as the bus does (replicas 1); then the operator's
    // bootstrap raises it to 3 and creates the rest with 3.
    const te = await busAs(nodes[1]!.url, "task-executor");
    await ensureBucket(te, "task-executor");
    const r = await run("node", [join(NATS_DIR, "create-buckets.mjs"), "--replicas", "3"], {
      ...process.env,
      NATS_URL: nodes.map((n) => n.url).join(","),
      NATS_USER: "admin",
      NATS_PASSWORD: PASSWORDS.admin,
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("KV_task-executor: replicas 1 -> 3");
    expect(r.stdout).toContain("KV_controller: created, replicas 3");
    const admin = await busAs(nodes[0]!.url, "admin");
    for (const stream of [...agents.map((a) => `KV_${a}`), "TASK_EVENTS"]) {
      const info = await waitFor(`${stream} replicas`, async () => {
        const i = await admin.jsm.streams.info(stream);
        return i.cluster?.replicas?.length === 2 && i.cluster.replicas.every((p) => p.current)
          ? i
          : undefined;
      });
      expect(info.config.num_replicas, stream).toBe(3);
    }
    // The bus's check accepts the 3-replica buckets; a put on one node is read on another.
    await ensureBuckets(admin);
    await ensureBucket(te, "task-executor");
    const status = new Publication(te, { agent: "task-executor", type: "TaskStatus", schema: Loose });
    const uuid = randomUUID();
    await status.publish(uuid, { schemaVersion: 1, configRevision: 1 });
    const viewer = await busAs(nodes[2]!.url, "viewer");
    const got = await new Publication(viewer, {
      agent: "task-executor",
      type: "TaskStatus",
      schema: Loose,
    }).get(uuid);
    expect(got).toMatchObject({ configRevision: 1 });
    const controllerKv = await te.bucket("controller");
    await expect(controllerKv.put("AppInstanceConfig.x", "{}")).rejects.toThrow(DENIED);
  });

  it("a leaf-node device keeps its buckets local; the hub reaches them through the device's domain", async () => {
    const conf = await tempNatsCopy("leaf-node.conf");
    leaf = await startNats(conf, {
      ...NATS_ENV,
      EVE_NODE: LEAF_NODE,
      EVE_NATS_HUB_URL: `"nats-leaf://leaf:${PASSWORDS.leaf}@127.0.0.1:${leafPorts[0]}"`,
    });
    await waitFor("leaf connection", async () => {
      const res = await fetch(`${nodes[0]!.monitorUrl}/leafz`);
      return ((await res.json()) as { leafnodes?: number }).leafnodes === 1 ? true : undefined;
    });
    const env = { ...process.env, NATS_URL: leaf.url, NATS_USER: "admin", NATS_PASSWORD: PASSWORDS.admin };
    const boot = await run("node", [join(NATS_DIR, "create-buckets.mjs")], env);
    expect(boot.stderr).toBe("");
    expect(boot.code).toBe(0);
    expect(boot.stdout).toContain("KV_task-executor: created, replicas 1");

    // The device's own JetStream answers its local clients.
    const local = await busAs(leaf.url, "task-executor");
    const account = await local.jsm.getAccountInfo();
    expect(account.domain).toBe(LEAF_NODE);
    const uuid = randomUUID();
    await new Publication(local, { agent: "task-executor", type: "TaskStatus", schema: Loose }).publish(
      uuid,
      {
        schemaVersion: 1,
        configRevision: 7,
      },
    );
    // Not on the hub: a plain `$KV.` publish does not cross the leaf link either.
    const hub = await busAs(nodes[0]!.url, "admin");
    const hubKv = await hub.bucket("task-executor");
    const other = randomUUID();
    const overTheLink: string[] = [];
    const watchers = [">", "$KV.>"].map((filter) =>
      hub.nc.subscribe(filter, { callback: (_e, m) => void overTheLink.push(m.subject) }),
    );
    await hub.nc.flush();
    await sleep(300); // the subscription's interest reaches the device
    local.nc.publish(`$KV.task-executor.TaskStatus.${other}`, "{}");
    await local.js.publish(`eve.events.${other}`, "{}");
    await local.nc.flush();
    const localKv = await local.bucket("task-executor");
    await waitFor("plain put stored on the device", async () =>
      (await localKv.get(`TaskStatus.${other}`)) ? true : undefined,
    );
    expect(await hubKv.get(`TaskStatus.${uuid}`)).toBeNull();
    expect(await hubKv.get(`TaskStatus.${other}`)).toBeNull();
    for (const w of watchers) w.unsubscribe();
    expect(overTheLink.filter((subject) => subject.includes(other))).toEqual([]);

    // A controller on the hub reads the device's status and writes its `controller` bucket
    // through the domain.
    const hubController = await connectAs(nodes[1]!.url, "controller");
    const deviceJs = jetstream(hubController, { domain: LEAF_NODE });
    const deviceStatus = await new Kvm(deviceJs).open("task-executor");
    const e = await waitFor("status through the domain", () =>
      deviceStatus.get(`TaskStatus.${uuid}`).then((x) => x ?? undefined),
    );
    expect(e.json<{ configRevision: number }>().configRevision).toBe(7);
    const deviceConfig = await new Kvm(deviceJs).open("controller");
    await deviceConfig.put(`AppInstanceConfig.${uuid}`, JSON.stringify(appConfig(uuid)));
    const deviceAdmin = await busAs(leaf.url, "admin");
    const onDevice = await (await deviceAdmin.bucket("controller")).get(`AppInstanceConfig.${uuid}`);
    expect(onDevice?.json<{ uuid: string }>().uuid).toBe(uuid);
    // A signal request from the hub reaches the device's executor, and its reply comes back.
    const rpc = local.nc.subscribe(signalSubject(LEAF_NODE), {
      callback: (_e, m) => void m.respond(JSON.stringify({ accepted: true, error: null })),
    });
    await local.nc.flush();
    const reply = await waitFor("signal over the leaf link", () =>
      hubController.request(signalSubject(LEAF_NODE), "{}", { timeout: 1000 }),
    );
    expect(reply.json()).toEqual({ accepted: true, error: null });
    rpc.unsubscribe();
    // The device's users cannot reach the hub's JetStream (nor another device's) by domain.
    const deviceController = await connectAs(leaf.url, "controller");
    const hubFromDevice = new Kvm(jetstream(deviceController, { domain: "hub", timeout: 1000 }));
    await expect(
      hubFromDevice.open("controller").then((kv) => kv.put("AppInstanceConfig.y", "{}")),
    ).rejects.toThrow();
    // ... and only that bucket: the domain path keeps the one-writer rule.
    await expect(deviceStatus.put(`TaskStatus.${uuid}`, "{}")).rejects.toThrow(DENIED);
  });
});

// =================================================================================================

/** `section.key` → value of a TOML file as simple as containerd's (no inline tables, no multi-line). */
function flatToml(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = `${s[1]}.`;
      continue;
    }
    const kv = /^([A-Za-z0-9_.-]+)\s*=\s*(.+)$/.exec(line);
    if (!kv) throw new Error(`unparsed TOML line: ${line}`);
    out.set(`${section}${kv[1]}`, kv[2]!);
  }
  return out;
}

describe("deploy/containerd/config.toml", () => {
  const file = join(DEPLOY, "containerd", "config.toml");

  it("has exactly the settings @eve-tasks/embedded renders, with the node's paths", async () => {
    const deployed = flatToml(await readFile(file, "utf8"));
    const rendered = flatToml(
      renderContainerdConfig({
        root: "/var/lib/eve-tasks/containerd/root",
        state: "/var/lib/eve-tasks/containerd/state",
        temp: "/var/lib/eve-tasks/containerd/tmp",
        grpcAddress: "/run/eve-tasks/containerd.sock",
        ttrpcAddress: "/run/eve-tasks/containerd.sock.ttrpc",
      }),
    );
    expect(Object.fromEntries(deployed)).toEqual(Object.fromEntries(rendered));
    expect(deployed.get("disabled_plugins")).toContain('"io.containerd.grpc.v1.cri"');
    expect(DISABLED_CONTAINERD_PLUGINS).toContain("io.containerd.grpc.v1.cri");
  });

  it("starts containerd (on temp paths) whose socket answers, with CRI not loaded", async () => {
    // Short: the sockets live in it (108-byte limit).
    const dir = await mkdtemp(join(tmpdir(), "evd-"));
    tempDirs.push(dir);
    let text = await readFile(file, "utf8");
    text = replaceExactly(text, '"/var/lib/eve-tasks/containerd/', `"${dir}/data/`, 3);
    text = replaceExactly(text, '"/run/eve-tasks/containerd.sock', `"${dir}/c.sock`, 2);
    const conf = join(dir, "config.toml");
    await writeFile(conf, text);
    const sock = join(dir, "c.sock");
    const env = { ...process.env, PATH: pathWithSbin(process.env.PATH) };
    const proc = startProcess(CONTAINERD, ["--config", conf], env, join(dir, "containerd.log"));
    try {
      const version = await waitFor(
        "containerd socket",
        async () => {
          if (proc.child.exitCode !== null)
            throw new Error(await readFile(join(dir, "containerd.log"), "utf8"));
          const r = await run(CTR, ["--address", sock, "version"], env, 5000);
          return r.code === 0 ? r.stdout : undefined;
        },
        20_000,
      );
      expect(version).toMatch(/Server:\s*\n\s*Version:\s*1\.6\./);
      const plugins = await run(CTR, ["--address", sock, "plugins", "ls"], env);
      expect(plugins.code).toBe(0);
      expect(plugins.stdout).toMatch(/io\.containerd\.runtime\.v2\s+task\s+\S+\s+ok/);
      expect(plugins.stdout).not.toMatch(/\bcri\b/);
      expect(existsSync(join(dir, "data", "root"))).toBe(true);
      expect(existsSync(join(dir, "data", "state"))).toBe(true);
    } finally {
      await proc.stop();
    }
    expect(proc.child.exitCode !== null || proc.child.signalCode !== null).toBe(true);
  });
});

// =================================================================================================

type Unit = Map<string, Map<string, string[]>>;

/** A unit file: section → key → every value (keys may repeat). */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = new Map();
      unit.set(s[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 0) throw new Error(`unparsed unit line: ${line}`);
    const key = line.slice(0, eq);
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1)]);
  }
  return unit;
}

/** Every value of `key` in `section`, split on spaces (After=, Wants= take lists). */
function values(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section)?.get(key) ?? []).flatMap((v) => v.split(/\s+/)).filter(Boolean);
}
const one = (unit: Unit, section: string, key: string): string | undefined =>
  unit.get(section)?.get(key)?.at(-1);

/** Where each installed path comes from in the repo (deploy/README.md, "Install"). */
function repoPathOf(installed: string): string | undefined {
  if (installed.startsWith("/opt/eve-tasks/")) return join(REPO, installed.slice("/opt/eve-tasks/".length));
  if (installed.startsWith("/etc/eve-tasks/nats/"))
    return join(NATS_DIR, installed.slice("/etc/eve-tasks/nats/".length));
  if (installed === "/etc/eve-tasks/containerd/config.toml") return join(DEPLOY, "containerd", "config.toml");
  // Written on the node by deploy/nats/credentials.mjs.
  if (installed === "/etc/eve-tasks/nats-users.env") return join(NATS_DIR, "credentials.mjs");
  const env = /^\/etc\/eve-tasks\/([a-z-]+\.env)$/.exec(installed);
  if (env) {
    const base = join(DEPLOY, "systemd", env[1]!);
    return existsSync(base) ? base : `${base}.example`;
  }
  return undefined;
}

const DESIGN_ENV = [
  "EVE_DATA_DIR",
  "NATS_URL",
  "CONTAINERD_ADDRESS",
  "EVE_NODE",
  "EVE_VOLUME_ROOTS",
  "EVE_RUN_DIR",
  "EVE_MEMORY_RESERVE_MIB",
  "EVE_NODE_MEMORY_MIB",
  "EVE_VMM_OVERHEAD_MIB",
  "EVE_ACCEL",
  "EVE_INSECURE_REGISTRIES",
  "EVE_REGISTRY_AUTH_FILE",
];

describe("deploy/systemd", () => {
  const dir = join(DEPLOY, "systemd");
  const units = new Map<string, Unit>();
  const WORKERS = ["spec-builder", "task-executor", "proc-monitor", "hypervisor-seed-fetcher"];
  const SERVICES = [
    "eve-tasks-nats.service",
    "eve-tasks-containerd.service",
    ...WORKERS.map((w) => `eve-tasks-${w}.service`),
  ];

  beforeAll(async () => {
    for (const name of await readdir(dir)) {
      if (name.endsWith(".service") || name.endsWith(".target")) {
        units.set(name, parseUnit(await readFile(join(dir, name), "utf8")));
      }
    }
  });

  it.skipIf(SYSTEMD_ANALYZE === undefined)("systemd-analyze verify accepts every unit", async () => {
    const files = [...units.keys()].map((u) => join(dir, u));
    const r = await run(SYSTEMD_ANALYZE!, ["verify", ...files]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("has the units, a target that wants them all, and restarts on failure", () => {
    // Plus the replica templates of the workers that scale on a node (docs/fleet.md).
    const TEMPLATES = ["eve-tasks-spec-builder@.service", "eve-tasks-hypervisor-seed-fetcher@.service"];
    expect([...units.keys()].sort()).toEqual([...SERVICES, ...TEMPLATES, "eve-tasks.target"].sort());
    for (const name of TEMPLATES) {
      const u = units.get(name)!;
      expect(one(u, "Service", "Restart"), name).toBe("on-failure");
      expect(values(u, "Install", "WantedBy"), name).toEqual(["eve-tasks.target"]);
      expect(one(u, "Service", "ExecStart"), name).toBe(
        one(units.get(name.replace("@", ""))!, "Service", "ExecStart"),
      );
    }
    const target = units.get("eve-tasks.target")!;
    expect(values(target, "Unit", "Wants").sort()).toEqual([...SERVICES].sort());
    expect(values(target, "Install", "WantedBy")).toEqual(["multi-user.target"]);
    for (const name of SERVICES) {
      const u = units.get(name)!;
      expect(one(u, "Service", "Restart"), name).toBe("on-failure");
      expect(values(u, "Unit", "PartOf"), name).toEqual(["eve-tasks.target"]);
      expect(values(u, "Install", "WantedBy"), name).toEqual(["eve-tasks.target"]);
      expect(one(u, "Service", "KillMode"), name).toMatch(/^(process|mixed)$/);
    }
  });

  it("never kills tasks: containerd stops alone, the executor's cgroup holds no task", () => {
    const containerd = units.get("eve-tasks-containerd.service")!;
    expect(one(containerd, "Service", "KillMode")).toBe("process");
    expect(one(containerd, "Service", "Delegate")).toBe("yes");
    expect(one(containerd, "Service", "Type")).toBe("notify");
    const executor = units.get("eve-tasks-task-executor.service")!;
    expect(["process", "mixed"]).toContain(one(executor, "Service", "KillMode"));
    // Longer than the executor's own 30 s grace for stops in progress.
    expect(Number(one(executor, "Service", "TimeoutStopSec"))).toBeGreaterThan(30);
  });

  it("orders the workers after their services", () => {
    const executor = units.get("eve-tasks-task-executor.service")!;
    expect(values(executor, "Unit", "Requires")).toEqual(["eve-tasks-containerd.service"]);
    expect(values(executor, "Unit", "After")).toEqual(
      expect.arrayContaining(["eve-tasks-containerd.service", "eve-tasks-nats.service"]),
    );
    const builder = units.get("eve-tasks-spec-builder.service")!;
    expect(values(builder, "Unit", "After")).toContain("eve-tasks-nats.service");
    expect(values(builder, "Unit", "Requires")).toEqual([]);
    expect(values(builder, "Unit", "Wants")).toContain("eve-tasks-nats.service");
  });

  it("references files that exist in the repo, and the workers' entry points", () => {
    for (const [name, u] of units) {
      const refs = [...u.values()]
        .flatMap((s) => [...s.values()].flat())
        .flatMap((v) => v.match(/\/(?:opt|etc)\/eve-tasks\/[^\s"]+/g) ?? []);
      for (const ref of refs) {
        const local = repoPathOf(ref.replace(/\/$/, ""));
        expect(local, `${name}: ${ref}`).toBeDefined();
        expect(existsSync(local!), `${name}: ${ref} → ${local}`).toBe(true);
      }
    }
    for (const w of WORKERS) {
      const u = units.get(`eve-tasks-${w}.service`)!;
      // The same node options as the launcher gives the worker.
      const options = workerNodeOptions(w)
        .map((o) => `${o} `)
        .join("");
      expect(one(u, "Service", "ExecStart")).toBe(
        `/usr/bin/node ${options}/opt/eve-tasks/services/${w}/dist/main.js`,
      );
      expect(existsSync(join(REPO, "services", w, "src", "main.ts"))).toBe(true);
    }
    // Every Node unit (replicas too) runs with the launcher's malloc setting.
    for (const [name, u] of units) {
      if (!one(u, "Service", "ExecStart")?.startsWith("/usr/bin/node ")) continue;
      expect(values(u, "Service", "Environment"), name).toContain(`GLIBC_TUNABLES=${MALLOC_TUNABLES}`);
    }
    const nats = units.get("eve-tasks-nats.service")!;
    expect(one(nats, "Service", "ExecStart")).toBe("/usr/sbin/nats-server -c ${EVE_NATS_CONFIG}");
    const configPath = values(nats, "Service", "Environment").find((e) => e.startsWith("EVE_NATS_CONFIG="));
    expect(existsSync(repoPathOf(configPath!.split("=")[1]!)!)).toBe(true);
  });

  it("sets the environment of DESIGN.md consistently with the other deploy files", async () => {
    const envFile = await readFile(join(dir, "eve-tasks.env"), "utf8");
    for (const name of DESIGN_ENV.filter((n) => n !== "NATS_URL")) {
      expect(envFile, name).toMatch(new RegExp(`^#?${name}=`, "m"));
    }
    const executor = units.get("eve-tasks-task-executor.service")!;
    const env = Object.fromEntries(
      values(executor, "Service", "Environment").map((e) => e.split("=", 2) as [string, string]),
    );
    const containerd = flatToml(await readFile(join(DEPLOY, "containerd", "config.toml"), "utf8"));
    expect(JSON.stringify(env.CONTAINERD_ADDRESS)).toBe(containerd.get("grpc.address"));
    expect(env.NATS_URL).toBe("nats://127.0.0.1:4222");
    expect(await readFile(join(NATS_DIR, "single-node.conf"), "utf8")).toContain("listen: 127.0.0.1:4222");
    expect(env.EVE_RUN_DIR).toBe("/run/eve-tasks");
    expect(env.EVE_DATA_DIR).toBe("/var/lib/eve-tasks");
    // No secret in the repository: nats.env.example's are empty placeholders, and the users'
    // passwords are not in it at all (credentials.mjs makes them, as files, on the node).
    const secrets = await readFile(join(dir, "nats.env.example"), "utf8");
    for (const m of secrets.matchAll(/^#?(EVE_NATS_\w+_PASSWORD)=(.*)$/gm)) expect(m[2], m[1]).toBe("");
    for (const user of USERS) expect(secrets).not.toMatch(new RegExp(`^#?${passwordVar(user)}=`, "m"));
    // Each worker connects as its own user, with its file where credentials.mjs and `npm start`
    // (EVE_DATA_DIR=/var/lib/eve-tasks) put it; its optional env file only shows overrides.
    for (const w of WORKERS) {
      const unit = units.get(`eve-tasks-${w}.service`)!;
      const vars = Object.fromEntries(
        values(unit, "Service", "Environment").map((e) => e.split("=", 2) as [string, string]),
      );
      expect(vars.NATS_USER, w).toBe(w);
      expect(vars.NATS_PASSWORD_FILE, w).toBe(natsPasswordFile(natsCredentialsDir(vars.EVE_DATA_DIR!), w));
      const example = await readFile(join(dir, `${w}.env.example`), "utf8");
      expect(example, w).not.toMatch(/^[A-Z_]+=/m);
      expect(example, w).toContain(`#NATS_PASSWORD_FILE=${vars.NATS_PASSWORD_FILE}`);
    }
  });
  it("gives each worker a fixed metrics port, and deploy/prometheus scrapes exactly those", async () => {
    const scrape = await readFile(join(DEPLOY, "prometheus", "prometheus.yml"), "utf8");
    const targets = [
      ...scrape.matchAll(/targets: \["127\.0\.0\.1:(\d+)"\]\n\s+labels: \{ eve_worker_unit: (\S+) \}/g),
    ].map((m) => [m[2], m[1]]);
    const ports = WORKERS.map((w) => {
      const vars = Object.fromEntries(
        values(units.get(`eve-tasks-${w}.service`)!, "Service", "Environment").map(
          (e) => e.split("=", 2) as [string, string],
        ),
      );
      return [`eve-tasks-${w}.service`, vars.EVE_METRICS_PORT];
    });
    expect(targets.sort()).toEqual(ports.sort());
    expect(new Set(ports.map((p) => p[1])).size).toBe(WORKERS.length);
  });
});
