// The NATS users of `npm start`, with real parts: a nats-server started by @eve-tasks/embedded with
// the project's users and permissions (the render deploy/nats/permissions.conf is made from) and
// passwords generated under a temp data dir, a private containerd, an open docker-registry on
// loopback, and the four built workers as processes, each connected as its own NATS user
// (NATS_USER + NATS_PASSWORD_FILE). The CLI (as root) finds the generated credentials itself. The
// attacks come from the controller and viewer users (and the other workers): they must not create,
// re-configure, delete or drain any worker's durable consumer.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import type { ConsumerConfig, ConsumerInfo } from "@nats-io/jetstream";
import { Svcm } from "@nats-io/services";
import {
  Publication,
  connectBus,
  ensureBuckets,
  ensureEventsStream,
  request,
  subscribe,
} from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import {
  NATS_USERS,
  cleanupContainerd,
  natsCredentialsDir,
  prepareNatsAuth,
  startContainerd,
  startNatsServer,
} from "@eve-tasks/embedded";
import type { NatsAuth, NatsUser, RunningNatsServer } from "@eve-tasks/embedded";
import {
  CONTAINERD_NAMESPACE,
  LogsReplySchema,
  LogsRequestSchema,
  SPEC_BUILDER_DURABLE,
  hypervisorSeedKey,
  imageSeedKey,
  logsSubject,
  natsInboxPrefix,
  seedFetcherDurables,
  signalSubject,
  stopTasksSubject,
  messageTable,
} from "@eve-tasks/schemas";
import { discoverWorkers } from "@eve-tasks/runtime";
import type {
  Seed,
  TaskMetrics,
  TaskStatus,
  SeedSchema,
  TaskMetricsSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import {
  BUILT,
  REPO_ROOT,
  deferCleanup,
  runNode,
  spawnReplicas,
  statusWaiter,
  tempDir,
  uuidMaker,
  waitFor,
} from "./harness/index.js";
import type { NodeRun, Replicas } from "./harness/index.js";
import { sampleValue, scrape } from "./harness/prometheus.js";
import { RUNTIME_CACHE } from "./harness/runtimes.js";
import { skopeoCopy, startRegistry } from "./harness/registry.js";
import { OciLayout, busyboxEntries } from "./harness/registry-images.js";

const echo = process.env.EVE_TEST_ECHO === "1";
const NODE = "local";
const STAY = "trap 'exit 0' TERM; /bin/busybox sleep 3600 & wait";
const newUuid = uuidMaker("a07b0000");
const DENIED = /Permissions Violation/;
const WORKERS = [
  {
    user: "spec-builder",
    entry: BUILT.specBuilder,
    ready: (j: Record<string, unknown>) => j.event === "running",
  },
  {
    user: "task-executor",
    entry: BUILT.taskExecutor,
    ready: (j: Record<string, unknown>) => j.event === "resynced",
  },
  {
    user: "proc-monitor",
    entry: BUILT.procMonitor,
    ready: (j: Record<string, unknown>) => j.event === "running",
  },
  {
    user: "hypervisor-seed-fetcher",
    entry: BUILT.seedFetcher,
    ready: (j: Record<string, unknown>) => j.event === "started",
  },
] as const;

const byWorker = (a: { worker: string }, b: { worker: string }): number => a.worker.localeCompare(b.worker);

let dir: string;
let dataDir: string;
let server: RunningNatsServer;
let auth: NatsAuth;
let imageRef: string;
let toolsRef: string;
const workers = new Map<string, Replicas>();
const buses = new Map<NatsUser, Bus>();
const raw: NatsConnection[] = [];

/** connectBus as `user`, with its password file, as a worker does. */
async function busAs(user: NatsUser): Promise<Bus> {
  const bus = await connectBus({
    servers: server.url,
    name: `nats-auth-test ${user}`,
    credentials: { user, passwordFile: auth.passwordFile(user) },
  });
  buses.set(user, bus);
  return bus;
}

/** The CLI as root, from the repository, told only where the data dir and the server are. */
function cli(args: string[], env: Record<string, string> = {}, input = ""): Promise<NodeRun> {
  return runNode(BUILT.cli, args, {
    env: { NATS_URL: server.url, EVE_DATA_DIR: dataDir, NATS_USER: "", NATS_PASSWORD_FILE: "", ...env },
    input,
  });
}

beforeAll(async () => {
  dir = await tempDir("auth-");
  dataDir = join(dir, "data");
  // The server as the launcher starts it: users, permissions and passwords from @eve-tasks/embedded.
  auth = await prepareNatsAuth({
    credentialsDir: natsCredentialsDir(dataDir),
    configDir: join(dataDir, "nats"),
    nodes: [NODE],
  });
  const [nats, registry, containerdServer] = await Promise.all([
    startNatsServer({
      storeDir: join(dataDir, "nats"),
      configFile: auth.configFile,
      env: auth.env,
      serverName: "eve-tasks-auth-test",
    }),
    startRegistry(),
    startContainerd({ dir: join(dir, "ctrd") }),
  ]);
  server = nats;
  deferCleanup(() => nats.stop());
  deferCleanup(async () => {
    await cleanupContainerd(containerdServer.address, [CONTAINERD_NAMESPACE]).catch(() => undefined);
    await containerdServer.stop();
  });

  // An app image in the registry, and a "tools" image as a local OCI layout.
  const layout = new OciLayout(join(dir, "layout"));
  const image = await layout.image({
    layers: [{ entries: await busyboxEntries() }],
    config: {
      Entrypoint: ["/bin/sh", "-c"],
      Cmd: [`echo "hello from the image"; ${STAY}`],
      Env: ["PATH=/bin"],
    },
  });
  await layout.tag(image, "app");
  await layout.tag(image, "tools");
  imageRef = `${registry.host}/auth-app:1`;
  toolsRef = `oci:${layout.dir}:tools`;
  await skopeoCopy(`oci:${layout.dir}:app`, `docker://${imageRef}`);

  // The buckets and the events stream, as admin (what the launcher does).
  const admin = await busAs("admin");
  await ensureBuckets(admin);
  await ensureEventsStream(admin);

  const env = {
    NATS_URL: server.url,
    CONTAINERD_ADDRESS: containerdServer.address,
    EVE_NODE: NODE,
    EVE_DATA_DIR: dataDir,
    EVE_RUN_DIR: join(dir, "run"),
    EVE_VOLUME_ROOTS: join(dir, "volumes"),
    // The tools image is the test's own OCI layout (oci: refs must be under these roots).
    EVE_OCI_LAYOUT_ROOTS: join(dir, "layout"),
    EVE_NODE_MEMORY_MIB: "2048",
    EVE_INSECURE_REGISTRIES: registry.host,
    EVE_METRICS_INTERVAL_MS: "500",
    LOG_LEVEL: "debug",
  };
  for (const w of WORKERS) {
    const r = spawnReplicas({
      entry: w.entry,
      name: w.user,
      env: { ...env, NATS_USER: w.user, NATS_PASSWORD_FILE: auth.passwordFile(w.user), NATS_PASSWORD: "" },
      echo,
    });
    workers.set(w.user, r);
  }
  await Promise.all(
    WORKERS.map((w) =>
      workers.get(w.user)!.waitForLine((l) => l.json !== undefined && w.ready(l.json), 30_000),
    ),
  );
}, 90_000);

afterAll(async () => {
  for (const r of [...workers.values()].reverse()) await r.stopAll();
  for (const b of buses.values()) await b.close().catch(() => undefined);
  for (const nc of raw) await nc.close().catch(() => undefined);
}, 60_000);

describe("npm start's nats-server: who may connect", () => {
  it("keeps the passwords in files only root reads, and refuses anonymous and wrong passwords", async () => {
    const credDir = natsCredentialsDir(dataDir);
    expect((await stat(credDir)).mode & 0o777).toBe(0o700);
    for (const user of NATS_USERS) {
      const st = await stat(auth.passwordFile(user));
      expect({ user, mode: st.mode & 0o777, uid: st.uid }).toEqual({ user, mode: 0o600, uid: 0 });
    }
    await expect(connect({ servers: server.url })).rejects.toThrow(/Authorization Violation/);
    await expect(
      connect({ servers: server.url, user: "viewer", pass: "pwrong0000000000000" }),
    ).rejects.toThrow(/Authorization Violation/);
    // The bus says which user was refused, and does not retry a refusal until its deadline.
    const started = Date.now();
    await expect(
      connectBus({
        servers: server.url,
        name: "t",
        credentials: { user: "viewer", password: "pwrong00000000000" },
      }),
    ).rejects.toThrow(/refused the connection as NATS user viewer: .*Authorization Violation/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("gives each user its own inbox: no user receives another's replies", async () => {
    const viewer = await connect({
      servers: server.url,
      user: "viewer",
      pass: auth.env.EVE_NATS_VIEWER_PASSWORD,
      inboxPrefix: natsInboxPrefix("viewer"),
    });
    raw.push(viewer);
    for (const subject of [
      "_INBOX.>",
      `${natsInboxPrefix("controller")}.>`,
      `${natsInboxPrefix("spec-builder")}.x`,
    ]) {
      const errors: string[] = [];
      const sub = viewer.subscribe(subject, { callback: (err) => void (err && errors.push(err.message)) });
      await waitFor(() => sub.isClosed(), {
        timeoutMs: 3000,
        message: `subscription to ${subject} not refused`,
      });
      expect(errors.join(), subject).toMatch(DENIED);
    }
    // Its own prefix works: a request/reply of the JetStream API as viewer.
    const bus = buses.get("viewer") ?? (await busAs("viewer"));
    await expect(bus.jsm.streams.info("KV_task-executor")).resolves.toMatchObject({
      config: { name: "KV_task-executor" },
    });
  });
});

describe("every worker's real code path, under its own NATS user", () => {
  it("tools and image seeds (the fetcher's two work queues), TaskConfig, a task, metrics, events, signals, delete", async () => {
    const controller = await busAs("controller");
    const viewer = buses.get("viewer") ?? (await busAs("viewer"));

    // hypervisor-seed-fetcher, tools queue: HypervisorToolsConfig → HypervisorSeed READY.
    const tools = new Publication(controller, messageTable("HypervisorToolsConfig"));
    await tools.publish("authtest", { schemaVersion: 1, image: toolsRef });
    const seeds = new Map<string, Seed>();
    const seedSub: Subscription<typeof SeedSchema> = await subscribe(viewer, {
      ...messageTable("HypervisorSeed"),
      onCreate: (k, v) => void seeds.set(`HypervisorSeed.${k}`, v),
      onModify: (k, v) => void seeds.set(`HypervisorSeed.${k}`, v),
    });
    const imageSeedSub: Subscription<typeof SeedSchema> = await subscribe(viewer, {
      ...messageTable("ImageSeed"),
      onCreate: (k, v) => void seeds.set(`ImageSeed.${k}`, v),
      onModify: (k, v) => void seeds.set(`ImageSeed.${k}`, v),
    });
    const statuses: Subscription<typeof TaskStatusSchema> = await subscribe(viewer, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
    const metrics = new Map<string, TaskMetrics>();
    const metricsSub: Subscription<typeof TaskMetricsSchema> = await subscribe(viewer, {
      ...messageTable("TaskMetrics"),
      onCreate: (k, v) => void metrics.set(k, v),
      onModify: (k, v) => void metrics.set(k, v),
    });
    try {
      const toolsSeed = await waitFor(
        () => {
          const s = seeds.get(`HypervisorSeed.${hypervisorSeedKey(NODE, "authtest")}`);
          return s?.state === "READY" ? s : undefined;
        },
        { timeoutMs: 30_000, message: "HypervisorSeed never READY" },
      );
      expect(existsSync(join(toolsSeed.rootfsPath ?? "", "bin", "busybox"))).toBe(true);

      // The CLI (root, no flags but the data dir) applies as controller: image seed (fetcher's
      // images queue) → TaskConfig (spec-builder's queue) → task (executor) → metrics (proc-monitor).
      const uuid = newUuid();
      const app = {
        schemaVersion: 1,
        uuid,
        version: "1",
        displayName: `auth-${uuid.slice(-6)}`,
        node: NODE,
        virtualization: "NOHYPER",
        resources: { memoryMiB: 32, vcpus: 1 },
        root: { image: { ref: imageRef } },
        stopTimeoutMs: 3000,
      };
      const applied = await cli(["apply", "-f", "-"], {}, JSON.stringify(app));
      expect(applied.stderr).toBe("");
      expect(applied.stdout).toMatch(new RegExp(`^applied auth-\\w+ \\(${uuid}\\) at revision \\d+`));
      const running: TaskStatus = await statusWaiter(statuses, 60_000).running(uuid);
      expect(running.taskId).toBeGreaterThan(0);
      expect(seeds.get(`ImageSeed.${imageSeedKey(NODE, imageRef)}`)?.state).toBe("READY");
      await waitFor(() => (metrics.get(uuid)?.rssBytes ?? 0) > 0, {
        timeoutMs: 20_000,
        message: "no TaskMetrics from the proc-monitor",
      });

      // Viewer reads: get and events.
      const get = await cli(["get", uuid]);
      expect(get.stderr).toBe("");
      expect(get.stdout).toContain("RUNNING");
      // Viewer (the CLI's reading user): the task's output through the executor's logs endpoint.
      const logs = await cli(["logs", uuid]);
      expect(logs.stderr).toBe("");
      expect(logs.stdout).toBe("hello from the image\n");
      // Controller: a signal request the executor answers (request/reply across two private inboxes).
      const kill = await cli(["kill", "--signal", "TERM", uuid]);
      expect(kill.stderr).toBe("");
      expect(kill.stdout).toMatch(/^SIGTERM sent to /);
      await waitFor(
        () =>
          statuses.get(uuid)?.state === "HALTED" ||
          statuses.get(uuid)?.state === "BROKEN" ||
          statuses.get(uuid)?.taskId === 0,
        {
          timeoutMs: 20_000,
          message: "the signalled task never ended",
        },
      );
      const events = await cli(["events", uuid]);
      expect(events.stderr).toBe("");
      // The executor's (created, started, killed, exited) and the proc-monitor's (exited, gone).
      expect(events.stdout).toMatch(/exited +anchor PID \d+ is gone \(seen by proc-monitor\)/);
      for (const type of ["created", "started", "killed", "exited"]) {
        expect(events.stdout, type).toContain(` ${type} `);
      }
      const deleted = await cli(["delete", uuid, "--wait", "--timeout", "30s"]);
      expect(deleted.stderr).toBe("");
      expect(statuses.get(uuid)).toBeUndefined();
      await tools.unpublish("authtest");
    } finally {
      await Promise.all([seedSub.close(), imageSeedSub.close(), statuses.close(), metricsSub.close()]);
    }
    // Nothing any worker did was refused by the server.
    for (const [user, r] of workers) {
      const denied = r.lines.filter((l) => /Permissions Violation|Authorization Violation/.test(l.text));
      expect(denied.map((l) => l.text).slice(0, 3), user).toEqual([]);
      expect(
        r.replicas.every((x) => x.child.exitCode === null),
        `${user} still running`,
      ).toBe(true);
    }
  }, 150_000);
});

describe("the operator surface: each worker's NATS service and metrics, under its own user", () => {
  it("$SRV.PING and $SRV.INFO find every worker as eve-tasks-<worker>, with a metrics URL that scrapes", async () => {
    const viewer = buses.get("viewer") ?? (await busAs("viewer"));
    const found = await discoverWorkers(viewer.nc, { maxWaitMs: 1500 });
    const expected = WORKERS.map((w) => ({ worker: w.user, pid: String(workers.get(w.user)!.pids[0]) }));
    expect(found.map((w) => ({ worker: w.worker, pid: w.metadata.pid })).sort(byWorker)).toEqual(
      expected.sort(byWorker),
    );
    const pings = await new Svcm(viewer.nc).client({ strategy: "timer", maxWait: 1500 }).ping();
    const pinged: string[] = [];
    for await (const p of pings) pinged.push(p.name);
    expect(pinged.sort()).toEqual(WORKERS.map((w) => `eve-tasks-${w.user}`).sort());
    const own: Record<string, string> = {
      "spec-builder": "eve_tasks_spec_builds_total",
      "task-executor": "eve_tasks_tasks",
      "proc-monitor": "eve_tasks_sampled_tasks",
      "hypervisor-seed-fetcher": "eve_tasks_pulls_total",
    };
    const everyFamily = new Set<string>();
    for (const w of found) {
      expect(w.metadata.node).toBe(NODE);
      const families = await scrape(w.metadata.metrics);
      for (const name of families.keys()) everyFamily.add(name);
      expect(
        sampleValue(families, "eve_tasks_process_cpu_seconds_total", { worker: w.worker }),
        w.worker,
      ).toBeDefined();
      expect(families.has(own[w.worker]!), `${w.worker}: ${own[w.worker]}`).toBe(true);
    }
    // deploy/grafana's dashboard asks only for metrics the workers really serve.
    const dashboard = JSON.parse(
      await readFile(join(REPO_ROOT, "deploy", "grafana", "eve-tasks-dashboard.json"), "utf8"),
    ) as { panels: { targets: { expr: string }[] }[] };
    const asked = new Set(
      dashboard.panels.flatMap((p) =>
        p.targets.flatMap((t) => [...t.expr.matchAll(/\beve_tasks_\w+/g)].map((m) => m[0])),
      ),
    );
    expect(asked.size).toBeGreaterThan(10);
    for (const name of asked) {
      const family = name.replace(/_(bucket|count|sum)$/, "");
      expect(everyFamily.has(name) || everyFamily.has(family), `dashboard metric ${name}`).toBe(true);
    }
    const executor = found.find((w) => w.worker === "task-executor")!;
    expect(executor.endpoints.map((e) => e.name).sort()).toEqual(["logs", "signal", "stop-tasks"]);
  });

  it("viewer reads logs and discovers workers but signals, stops and answers as no one; no worker answers as another", async () => {
    const viewer = buses.get("viewer") ?? (await busAs("viewer"));
    // Reading logs is allowed: the executor answers (here: no such app).
    const reply = await request(
      viewer,
      logsSubject(NODE),
      { request: LogsRequestSchema, reply: LogsReplySchema },
      { uuid: newUuid() },
    );
    expect(reply.error).toMatch(/no log of app/);
    for (const subject of [signalSubject(NODE), stopTasksSubject(NODE)]) {
      await expect(viewer.nc.request(subject, "{}", { timeout: 2000 }), subject).rejects.toThrow(DENIED);
    }
    // Nobody but the executor subscribes to its requests or a worker's $SRV subjects.
    const attempts: [NatsUser, string][] = [
      ["viewer", logsSubject(NODE)],
      ["viewer", "$SRV.PING"],
      ["controller", logsSubject(NODE)],
      ["proc-monitor", logsSubject(NODE)],
      ["proc-monitor", "$SRV.INFO.eve-tasks-task-executor"],
      ["spec-builder", "$SRV.PING.eve-tasks-hypervisor-seed-fetcher"],
    ];
    for (const [user, subject] of attempts) {
      const bus = buses.get(user) ?? (await busAs(user));
      const errors: string[] = [];
      const sub = bus.nc.subscribe(subject, { callback: (err) => void (err && errors.push(err.message)) });
      await waitFor(() => sub.isClosed(), {
        timeoutMs: 3000,
        message: `${user} may subscribe to ${subject}`,
      });
      expect(errors.join(), `${user} → ${subject}`).toMatch(DENIED);
    }
  });
});

describe("the workers' durable consumers are theirs alone", () => {
  /** Every durable consumer on KV_controller, as admin sees it. */
  async function durables(): Promise<Map<string, ConsumerInfo>> {
    const admin = buses.get("admin")!;
    const found = new Map<string, ConsumerInfo>();
    for await (const ci of admin.jsm.consumers.list("KV_controller")) {
      if (ci.config.durable_name) found.set(ci.name, ci);
    }
    return found;
  }

  it("no other user creates, re-configures, deletes or takes the messages of one", async () => {
    const before = await durables();
    const fetcher = seedFetcherDurables(NODE);
    // Exactly the workers' own (a new one must be added to the permissions' protected list).
    expect([...before.keys()].sort()).toEqual([SPEC_BUILDER_DURABLE, fetcher.images, fetcher.tools].sort());
    const owners: Record<string, NatsUser> = {
      [SPEC_BUILDER_DURABLE]: "spec-builder",
      [fetcher.tools]: "hypervisor-seed-fetcher",
      [fetcher.images]: "hypervisor-seed-fetcher",
    };
    const attackers: NatsUser[] = [
      "controller",
      "viewer",
      "spec-builder",
      "task-executor",
      "proc-monitor",
      "hypervisor-seed-fetcher",
    ];
    for (const user of attackers) {
      const bus = buses.get(user) ?? (await busAs(user));
      for (const [name, info] of before) {
        if (owners[name] === user) continue;
        const what = `${user} → ${name}`;
        const altered: Partial<ConsumerConfig> = { ...info.config, max_deliver: 1, ack_wait: 1e9 };
        // The client's own API (new-style create, with the filter in the subject).
        await expect(bus.jsm.consumers.add("KV_controller", altered), what).rejects.toThrow(DENIED);
        await expect(
          bus.jsm.consumers.update("KV_controller", name, { max_deliver: 1 }),
          what,
        ).rejects.toThrow(DENIED);
        await expect(bus.jsm.consumers.delete("KV_controller", name), what).rejects.toThrow(DENIED);
        // Every other subject a create could take on nats-server 2.9: new-style without the
        // filter, the legacy durable create, the legacy ephemeral create naming it.
        const body = (config: Partial<ConsumerConfig>) =>
          JSON.stringify({ stream_name: "KV_controller", config });
        for (const [subject, config] of [
          [`$JS.API.CONSUMER.CREATE.KV_controller.${name}`, { ...altered, filter_subject: undefined }],
          [`$JS.API.CONSUMER.DURABLE.CREATE.KV_controller.${name}`, altered],
          ["$JS.API.CONSUMER.CREATE.KV_controller", altered],
          ["$JS.API.CONSUMER.CREATE.KV_controller", { ...altered, durable_name: undefined, name }],
        ] as const) {
          await expect(
            bus.nc.request(subject, body(config), { timeout: 2000 }),
            `${what}: ${subject}`,
          ).rejects.toThrow(DENIED);
        }
        // Taking its messages.
        await expect(
          bus.nc.request(
            `$JS.API.CONSUMER.MSG.NEXT.KV_controller.${name}`,
            JSON.stringify({ batch: 1, no_wait: true }),
            {
              timeout: 2000,
            },
          ),
          what,
        ).rejects.toThrow(DENIED);
      }
    }
    // Untouched: same configuration, same delivery state.
    const after = await durables();
    for (const [name, info] of before) {
      expect(after.get(name)?.config, name).toEqual(info.config);
      expect(after.get(name)?.created, name).toBe(info.created);
    }
  }, 60_000);

  it("viewer and controller still watch and read every stream (ephemeral consumers)", async () => {
    for (const user of ["viewer", "controller"] as const) {
      const bus = buses.get(user) ?? (await busAs(user));
      const kv = await bus.bucket("controller");
      const w = await kv.watch({ key: "AppInstanceConfig.>" });
      w.stop();
      const events = await bus.js.consumers.get("TASK_EVENTS");
      await events.next({ expires: 1000 });
    }
  });
});

describe("the CLI and npm start's credentials", () => {
  it("as root it finds them under the data dir; another user gets a clear error", async () => {
    const asRoot = await cli(["get"]);
    expect(asRoot.stderr).toBe("no apps\n");
    expect(asRoot.code).toBe(0);
    // Without the data dir's credentials: the server refuses, and the CLI says how to connect.
    const anon = await cli(["get"], { EVE_DATA_DIR: join(dir, "elsewhere") });
    expect(anon.code).toBe(1);
    expect(anon.stderr).toMatch(
      /refused the connection without credentials.*Authorization Violation.*NATS_USER/,
    );
    // Explicit credentials win (and are the way for any other user).
    const explicit = await cli(["get"], {
      EVE_DATA_DIR: join(dir, "elsewhere"),
      NATS_USER: "viewer",
      NATS_PASSWORD_FILE: auth.passwordFile("viewer"),
    });
    expect(explicit.stderr).toBe("no apps\n");
    expect(explicit.code).toBe(0);
    // Another user: the files are root's.
    const nobody = await new Promise<NodeRun>((done) => {
      const child = spawn(process.execPath, [BUILT.cli, "get"], {
        cwd: REPO_ROOT,
        uid: 65534,
        gid: 65534,
        env: { PATH: process.env.PATH, NATS_URL: server.url, EVE_DATA_DIR: dataDir },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("close", (code) => done({ code, stdout, stderr }));
    });
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toMatch(
      /^eve-tasks: cannot read the NATS credentials `npm start` made \(.*viewer\.password: permission denied\): they are root's, mode 0600, and this is uid 65534\. Run eve-tasks as root, or connect as a NATS user of your own: NATS_USER with NATS_PASSWORD_FILE\n$/,
    );
  }, 30_000);
});

describe("eve-tasks-tools-image register on a server with users", () => {
  /** The tool from the repository, given the server and only the credentials in `env`. */
  const toolsImage = (env: Record<string, string>): Promise<NodeRun> =>
    runNode(
      join(REPO_ROOT, "packages/tools-image/dist/main.js"),
      ["register", "--out", RUNTIME_CACHE, "emulators"],
      {
        env: {
          NATS_URL: server.url,
          EVE_DATA_DIR: dataDir,
          NATS_USER: "",
          NATS_PASSWORD_FILE: "",
          NATS_PASSWORD: "",
          ...env,
        },
      },
    );

  it("connects as NATS_USER (controller) with its password file; without one it is refused, and a viewer cannot write", async () => {
    const tools = new Publication(buses.get("admin")!, messageTable("HypervisorToolsConfig"));
    const anon = await toolsImage({});
    expect(anon.code).toBe(1);
    expect(anon.stderr).toMatch(/Authorization Violation/);
    expect(await tools.get("emulators")).toBeUndefined();

    const viewer = await toolsImage({ NATS_USER: "viewer", NATS_PASSWORD_FILE: auth.passwordFile("viewer") });
    expect(viewer.code).toBe(1);
    expect(await tools.get("emulators")).toBeUndefined();

    const noPassword = await toolsImage({ NATS_USER: "admin" });
    expect(noPassword.code).toBe(2);
    expect(noPassword.stderr).toMatch(/NATS_PASSWORD_FILE/);

    const controller = await toolsImage({
      NATS_USER: "controller",
      NATS_PASSWORD_FILE: auth.passwordFile("controller"),
    });
    expect(controller.stderr + controller.stdout).toMatch(
      /HypervisorToolsConfig\.emulators: registered the built-in image oci:/,
    );
    expect(controller.code).toBe(0);
    expect((await tools.get("emulators"))?.image).toMatch(/^oci:/);
  }, 120_000);
});
