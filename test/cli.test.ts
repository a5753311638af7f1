// The built `eve-tasks` CLI (packages/cli/dist/main.js) as a user runs it, against the harness's
// nats-server. No task-executor runs here: the tests write TaskStatus themselves, as the executor
// would, and a small fake executor answers config changes for the --wait tests. Every app is on
// a node of its own, so a real executor another test file runs against the same server ignores it.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets, kvKey, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { AppInstanceConfigSchema, decodeValue, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  AppInstanceConfigInput,
  TaskStatus,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import { deferCleanup, harnessEnv, runNode, tempDir, waitFor } from "./harness/index.js";
import type { NodeRun } from "./harness/index.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI_DIR = join(ROOT, "packages", "cli");
const MAIN = join(CLI_DIR, "dist", "main.js");
/** The node of every app of this file: no real executor serves it. */
const NODE = `clitest-${randomBytes(3).toString("hex")}`;

let natsUrl: string;
let bus: Bus;
let statuses: Publication<typeof TaskStatusSchema>;

/** Builds the CLI when dist/main.js is missing or older than a source file. */
function buildIfStale(): void {
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
      ),
    );
  if (existsSync(MAIN) && statSync(MAIN).mtimeMs >= newest(join(CLI_DIR, "src"))) return;
  const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
  const r = spawnSync(process.execPath, [tsc, "-b", CLI_DIR], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`building the CLI failed:\n${r.stdout}${r.stderr}`);
}

type CliResult = NodeRun;

/** Runs `eve-tasks <args>` to completion. */
function cli(
  args: string[],
  options: { input?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return runNode(MAIN, args, { env: { NATS_URL: natsUrl, ...options.env }, input: options.input ?? "" });
}

/** A long-running `eve-tasks <args>` (watch), its output read line by line. */
function cliBackground(args: string[]) {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, NATS_URL: natsUrl },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = child.pid!;
  const lines: string[] = [];
  let stderr = "";
  createInterface({ input: child.stdout }).on("line", (l) => lines.push(l));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  deferCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGKILL");
    await exited;
  });
  return { pid, lines, exited, stderr: () => stderr };
}

/** A unique app: its uuid, display name and config. */
function newApp(over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfigInput & { uuid: string } {
  const uuid = randomUUID();
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: `app-${uuid.slice(0, 8)}`,
    node: NODE,
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { host: { readOnly: true } },
    process: { args: ["/bin/sleep", "3600"] },
    ...over,
  } as AppInstanceConfigInput & { uuid: string };
}

/** Applies an app with the CLI (stdin), expecting success. */
async function apply(config: AppInstanceConfigInput): Promise<void> {
  const r = await cli(["apply", "-f", "-"], { input: JSON.stringify(config) });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
}

/** The stored config entry of `uuid`. */
async function storedConfig(
  uuid: string,
): Promise<{ revision: number; value: AppInstanceConfig } | undefined> {
  const kv = await bus.bucket("controller");
  const e = await kv.get(kvKey("AppInstanceConfig", uuid));
  if (!e || e.operation !== "PUT") return undefined;
  const d = decodeValue(AppInstanceConfigSchema, e.value);
  if (!d.ok) throw new Error(d.message);
  return { revision: e.revision, value: d.value };
}

/** A TaskStatus as the executor would write it. */
function status(uuid: string, configRevision: number, over: Partial<TaskStatus> = {}): TaskStatus {
  const now = new Date().toISOString();
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    configRevision,
    node: NODE,
    state: "RUNNING",
    taskId: 4242,
    lastTaskId: 4242,
    anchorStartTicks: 1000,
    exitCode: null,
    signal: null,
    oomKilled: false,
    restarts: 0,
    memoryLimitBytes: 64 * 1048576,
    anchorTaxBytes: 0,
    logPath: `/data/tasks/${uuid}/console.log`,
    waitingFor: null,
    startedAt: now,
    finishedAt: null,
    updatedAt: now,
    error: null,
    interfaces: [],
    ...over,
  };
}

function halted(uuid: string, configRevision: number, lastTaskId = 4242): TaskStatus {
  const now = new Date().toISOString();
  return status(uuid, configRevision, {
    state: "HALTED",
    taskId: 0,
    lastTaskId,
    anchorStartTicks: null,
    exitCode: 143,
    signal: "SIGTERM",
    finishedAt: now,
  });
}

/**
 * A fake executor for the apps in `served`: a little after each config change it publishes
 * RUNNING (a new PID per restartCounter) or HALTED, and removes the status when the config goes.
 */
const served = new Set<string>();
let fakeExecutor: Subscription<typeof AppInstanceConfigSchema>;
function startFakeExecutor(): Promise<Subscription<typeof AppInstanceConfigSchema>> {
  const react = (uuid: string, c: AppInstanceConfig | undefined, revision: number): void => {
    if (!served.has(uuid)) return;
    setTimeout(() => {
      const pid = 5000 + (c?.restartCounter ?? 0);
      const next = !c
        ? undefined
        : c.activate
          ? status(uuid, revision, { taskId: pid, lastTaskId: pid })
          : halted(uuid, revision, pid);
      void (next ? statuses.publish(uuid, next) : statuses.unpublish(uuid));
    }, 300);
  };
  return subscribe(bus, {
    ...messageTable("AppInstanceConfig"),
    onCreate: (k, v, rev) => react(k, v, rev),
    onModify: (k, v, _old, rev) => react(k, v, rev),
    onDelete: (k, _old, rev) => react(k, undefined, rev),
  });
}

beforeAll(async () => {
  buildIfStale();
  natsUrl = harnessEnv().natsUrl;
  bus = await connectBus({ servers: natsUrl, name: "cli-test" });
  await ensureBuckets(bus);
  statuses = new Publication(bus, messageTable("TaskStatus"));
  fakeExecutor = await startFakeExecutor();
});

afterAll(async () => {
  await fakeExecutor?.close();
  await bus?.close();
});

describe("eve-tasks apply", () => {
  it("publishes a config from a file and says at which revision; re-applying it changes nothing", async () => {
    const dir = await tempDir("cli-");
    const app = newApp();
    const file = join(dir, "app.json");
    await writeFile(file, JSON.stringify(app));
    const first = await cli(["apply", "-f", file]);
    expect(first.code).toBe(0);
    const stored = await storedConfig(app.uuid);
    expect(stored?.value).toEqual(AppInstanceConfigSchema.parse(app));
    expect(first.stdout).toBe(`applied ${app.displayName} (${app.uuid}) at revision ${stored!.revision}\n`);

    const again = await cli(["apply", "-f", file]);
    expect(again.stdout).toBe(
      `applied ${app.displayName} (${app.uuid}) at revision ${stored!.revision} (unchanged)\n`,
    );
    expect((await storedConfig(app.uuid))?.revision).toBe(stored!.revision);

    const changed = await cli(["apply", "-f", "-"], { input: JSON.stringify({ ...app, version: "2" }) });
    const now = await storedConfig(app.uuid);
    expect(now?.revision).toBeGreaterThan(stored!.revision);
    expect(now?.value.version).toBe("2");
    expect(changed.stdout).toBe(`applied ${app.displayName} (${app.uuid}) at revision ${now!.revision}\n`);
  });

  it("refuses invalid JSON and publishes nothing", async () => {
    const dir = await tempDir("cli-");
    const app = newApp();
    const file = join(dir, "bad.json");
    await writeFile(file, JSON.stringify(app).slice(0, -1));
    const r = await cli(["apply", "-f", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^eve-tasks: ${file} is not valid JSON: .*line 1 column \\d+`));
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await storedConfig(app.uuid)).toBeUndefined();
  });

  it("refuses a schema violation naming the field, and publishes nothing", async () => {
    const app = newApp({ resources: { memoryMiB: 0, vcpus: 1 } });
    const r = await cli(["apply", "-f", "-"], { input: JSON.stringify(app) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("eve-tasks: invalid AppInstanceConfig in stdin:");
    expect(r.stderr).toContain("→ at resources.memoryMiB");
    expect(r.stdout).toBe("");
    expect(await storedConfig(app.uuid)).toBeUndefined();
  });

  it("validates only with --dry-run", async () => {
    const app = newApp();
    const r = await cli(["apply", "--dry-run", "-f", "-"], { input: JSON.stringify(app) });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("nothing published (dry run)");
    expect(await storedConfig(app.uuid)).toBeUndefined();
  });
});

describe("eve-tasks get", () => {
  it("joins configs with statuses: state, task id, memory, age, and '-' without a status", async () => {
    const a = newApp();
    const b = newApp();
    await apply(a);
    await apply(b);
    const rev = (await storedConfig(a.uuid))!.revision;
    await statuses.publish(a.uuid, status(a.uuid, rev, { memoryLimitBytes: 128 * 1048576 }));

    const r = await cli(["get"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^NAME\s+UUID\s+STATE\s+TASK ID\s+MEMORY\s+AGE$/);
    const row = (uuid: string) => lines.find((l) => l.includes(uuid))?.split(/\s{3,}/);
    expect(row(a.uuid)).toEqual([
      a.displayName,
      a.uuid,
      "RUNNING",
      "4242",
      "128Mi",
      expect.stringMatching(/^\d+s$/),
    ]);
    expect(row(b.uuid)).toEqual([b.displayName, b.uuid, "-", "-", "64Mi", expect.stringMatching(/^\d+s$/)]);

    const one = await cli(["get", b.displayName!]);
    expect(one.stdout.trim().split("\n")).toHaveLength(2);
    expect(one.stdout).toContain(b.uuid);
  });

  it("shows a stage error, and prints {config, status} objects with --json", async () => {
    const a = newApp();
    await apply(a);
    const rev = (await storedConfig(a.uuid))!.revision;
    const error = {
      source: "spec-builder" as const,
      message: "image not found",
      configRevision: rev,
      time: new Date().toISOString(),
    };
    await statuses.publish(
      a.uuid,
      status(a.uuid, rev, { state: "FAILED", taskId: 0, anchorStartTicks: null, error }),
    );

    const r = await cli(["get", a.uuid]);
    expect(r.stdout.split("\n")[0]).toMatch(/AGE\s+ERROR$/);
    expect(r.stdout).toContain(`spec-builder: image not found (config revision ${rev})`);

    const j = await cli(["get", a.displayName!, "--json"]);
    expect(j.code).toBe(0);
    const parsed = JSON.parse(j.stdout) as {
      uuid: string;
      revision: number;
      config: unknown;
      status: TaskStatus;
    }[];
    expect(parsed).toHaveLength(1);
    expect(parsed[0]).toMatchObject({
      uuid: a.uuid,
      revision: rev,
      config: AppInstanceConfigSchema.parse(a),
    });
    expect(parsed[0]!.status).toMatchObject({ state: "FAILED", error });
  });

  it("says an unknown app is unknown", async () => {
    const r = await cli(["get", "no-such-app-here"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^eve-tasks: no app "no-such-app-here" \(by uuid or name\); apps: /);
  });
});

describe("eve-tasks stop, start, restart, delete", () => {
  it("sets activate and raises restartCounter in the stored config, by name or uuid", async () => {
    const app = newApp();
    await apply(app);
    const r0 = (await storedConfig(app.uuid))!.revision;

    const stop = await cli(["stop", app.displayName!]);
    expect(stop.code).toBe(0);
    const s1 = (await storedConfig(app.uuid))!;
    expect(s1.value.activate).toBe(false);
    expect(s1.revision).toBeGreaterThan(r0);
    expect(stop.stdout).toBe(
      `stopping ${app.displayName} (${app.uuid}): activate false at revision ${s1.revision}\n`,
    );

    const again = await cli(["stop", app.uuid]);
    expect(again.stdout).toContain("is already stopped");
    expect((await storedConfig(app.uuid))!.revision).toBe(s1.revision);

    expect((await cli(["start", app.uuid])).code).toBe(0);
    expect((await storedConfig(app.uuid))!.value.activate).toBe(true);

    const restart = await cli(["restart", app.uuid.slice(0, 13)]);
    expect(restart.code).toBe(0);
    const s3 = (await storedConfig(app.uuid))!;
    expect(s3.value.restartCounter).toBe(1);
    expect(restart.stdout).toBe(
      `restarting ${app.displayName} (${app.uuid}): restartCounter 1 at revision ${s3.revision}\n`,
    );
    // Everything else is as applied.
    expect({ ...s3.value, restartCounter: 0 }).toEqual(AppInstanceConfigSchema.parse(app));
  });

  it("never loses a concurrent edit: parallel restarts and a stop all land", async () => {
    const app = newApp();
    await apply(app);
    const results = await Promise.all([
      ...Array.from({ length: 6 }, () => cli(["restart", app.uuid])),
      cli(["stop", app.uuid]),
    ]);
    expect(results.map((r) => r.code)).toEqual(results.map(() => 0));
    expect(results.filter((r) => r.stderr.includes("eve-tasks:"))).toEqual([]);
    const s = (await storedConfig(app.uuid))!;
    expect(s.value.restartCounter).toBe(6);
    expect(s.value.activate).toBe(false);
  });

  it("deletes the config with a KV delete", async () => {
    const app = newApp();
    await apply(app);
    const r = await cli(["delete", app.displayName!]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`deleted ${app.displayName} (${app.uuid})\n`);
    const kv = await bus.bucket("controller");
    expect((await kv.get(kvKey("AppInstanceConfig", app.uuid)))?.operation).toBe("DEL");
    const gone = await cli(["delete", app.uuid]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^eve-tasks: no app "[0-9a-f-]+"/);
  });

  it("refuses an ambiguous name, listing the candidates, and an unknown one", async () => {
    const name = `twin-${randomBytes(4).toString("hex")}`;
    const a = newApp({ displayName: name });
    const b = newApp({ displayName: name });
    await apply(a);
    await apply(b);
    const r = await cli(["stop", name]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^eve-tasks: "${name}" is ambiguous: it names 2 apps: .*; use the uuid\\n$`),
    );
    expect(r.stderr).toContain(`${name} (${a.uuid})`);
    expect(r.stderr).toContain(`${name} (${b.uuid})`);
    expect((await storedConfig(a.uuid))!.value.activate).toBe(true);
    expect((await storedConfig(b.uuid))!.value.activate).toBe(true);

    const unknown = await cli(["restart", `nobody-${name}`]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(
      /^eve-tasks: no app "nobody-twin-[0-9a-f]+" \(by uuid or name\); apps: .+\n$/,
    );
  });

  it("waits with --wait until the status shows the change: HALTED, RUNNING, a new task, gone", async () => {
    const app = newApp();
    served.add(app.uuid);
    await apply(app);
    await waitFor(async () => (await statuses.get(app.uuid))?.state === "RUNNING", {
      message: "first RUNNING",
    });

    const stop = await cli(["stop", app.uuid, "--wait", "--timeout", "10s"]);
    expect(stop.stdout).toMatch(/is HALTED\n$/);
    expect((await statuses.get(app.uuid))?.state).toBe("HALTED");

    const start = await cli(["start", app.uuid, "--wait"]);
    expect(start.stdout).toMatch(/is RUNNING \(taskId 5000\)\n$/);

    const restart = await cli(["restart", app.uuid, "--wait"]);
    expect(restart.stdout).toMatch(/is RUNNING \(taskId 5001\)\n$/);

    const del = await cli(["delete", app.uuid, "--wait"]);
    expect(del.code).toBe(0);
    expect(del.stdout).toMatch(/is gone\n$/);
    expect(await statuses.get(app.uuid)).toBeUndefined();
  });

  it("gives up waiting after --timeout, saying where the app is", async () => {
    const app = newApp();
    await apply(app);
    const rev = (await storedConfig(app.uuid))!.revision;
    await statuses.publish(app.uuid, status(app.uuid, rev));
    const r = await cli(["stop", app.uuid, "--wait", "--timeout", "500ms"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^eve-tasks: timed out after 0s waiting for .* to be HALTED; it is RUNNING \(taskId 4242\)\n$/,
    );
    // The change itself was made.
    expect((await storedConfig(app.uuid))!.value.activate).toBe(false);
  });
});

describe("eve-tasks watch", () => {
  it("prints the current state, then one line per change, until Ctrl-C", async () => {
    const app = newApp();
    const other = newApp();
    await apply(app);
    await apply(other);
    const rev = (await storedConfig(app.uuid))!.revision;
    const pending = {
      state: "PENDING",
      taskId: 0,
      lastTaskId: 0,
      anchorStartTicks: null,
      waitingFor: "seed",
    } as const;
    await statuses.publish(app.uuid, status(app.uuid, rev, pending));

    const w = cliBackground(["watch", app.displayName!]);
    const line = (re: RegExp) =>
      waitFor(() => w.lines.find((l) => re.test(l)), { message: `a line matching ${re}` });
    const prefix = `^\\d\\d:\\d\\d:\\d\\d ${app.displayName} ${app.uuid} `;
    await line(new RegExp(`${prefix}PENDING, waiting for seed$`));

    await statuses.publish(app.uuid, status(app.uuid, rev));
    await line(new RegExp(`${prefix}PENDING → RUNNING, taskId 0 → 4242$`));

    await statuses.publish(other.uuid, status(other.uuid, rev));
    const error = {
      source: "task-executor" as const,
      message: "disk full",
      configRevision: rev,
      time: new Date().toISOString(),
    };
    await statuses.publish(app.uuid, status(app.uuid, rev, { error }));
    await line(new RegExp(`${prefix}error: task-executor: disk full \\(config revision ${rev}\\)$`));

    await cli(["stop", app.uuid]);
    const rev2 = (await storedConfig(app.uuid))!.revision;
    await line(new RegExp(`${prefix}config changed \\(revision ${rev2}\\): activate true → false$`));
    await statuses.publish(app.uuid, halted(app.uuid, rev2));
    await line(
      new RegExp(
        `${prefix}RUNNING → HALTED, taskId 4242 → 0, exit 143 \\(SIGTERM\\), config revision ${rev2}, error cleared$`,
      ),
    );

    expect(w.lines.some((l) => l.includes(other.uuid))).toBe(false);
    process.kill(w.pid, "SIGINT");
    expect(await w.exited).toBe(0);
    expect(w.stderr()).toBe("");
  });

  it("prints one JSON object per line with --json", async () => {
    const app = newApp();
    await apply(app);
    const rev = (await storedConfig(app.uuid))!.revision;
    const w = cliBackground(["watch", app.uuid, "--json"]);
    const events = () =>
      w.lines.map(
        (l) => JSON.parse(l) as { event: string; uuid: string; changes: string[]; status: TaskStatus | null },
      );
    await waitFor(() => events().length >= 1, { message: "the current state" });
    expect(events()[0]).toMatchObject({
      event: "current",
      uuid: app.uuid,
      name: app.displayName,
      status: null,
      revision: rev,
    });

    await statuses.publish(app.uuid, status(app.uuid, rev));
    await waitFor(() => events().length >= 2, { message: "the status event" });
    expect(events()[1]).toMatchObject({
      event: "status-created",
      changes: ["RUNNING", "taskId 4242"],
      status: { state: "RUNNING" },
    });

    await cli(["delete", app.uuid]);
    await waitFor(() => events().some((e) => e.event === "config-deleted"), { message: "the delete event" });
    process.kill(w.pid, "SIGINT");
    expect(await w.exited).toBe(0);
  });
});

describe("eve-tasks without NATS", () => {
  it("says in one line that NATS cannot be reached, exit 1", async () => {
    const r = await cli(["get"], { env: { NATS_URL: "nats://127.0.0.1:1" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      "eve-tasks: cannot reach NATS at nats://127.0.0.1:1: is `npm start` running? set NATS_URL (or --server) to the right server\n",
    );
    const flag = await cli(["--server", "nats://127.0.0.1:2", "stop", "x"]);
    expect(flag.stderr).toContain("cannot reach NATS at nats://127.0.0.1:2");
  });
});
