// The task-executor's operator surface, end to end with the real executor process, containerd,
// its shim and the task logger: its Prometheus endpoint, found through its $SRV.INFO and scraped,
// with values that move when a task starts; task logs read over NATS
// (eve.rpc.task-executor.<node>.logs) by the real CLI, the tail, all of it, and `--follow` seeing
// output written after it started across several rotations, none lost or twice; and a reader that
// fell behind the files kept is told of the gap and reads on.
import { spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { request } from "@eve-tasks/bus";
import { discoverWorkers } from "@eve-tasks/runtime";
import { LogsReplySchema, LogsRequestSchema, logsSubject } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, LogCursor, LogsReply, LogsRequest } from "@eve-tasks/schemas";
import {
  BUILT,
  REPO_ROOT,
  deferCleanup,
  makeRootfs,
  runNode,
  tempDir,
  uuidMaker,
  waitFor,
} from "./harness/index.js";
import { sampleValue, scrape } from "./harness/prometheus.js";
import { startExecutorNode } from "./executor-node.js";
import type { ExecutorNode } from "./executor-node.js";

const newUuid = uuidMaker("e0180000");
const MAX_BYTES = 4096;
const FILES = 3;
const NODE = "local";

let node: ExecutorNode;
let rootfs: string;

beforeAll(async () => {
  const dir = await tempDir("operator-");
  const volumes = join(dir, "volumes");
  rootfs = join(volumes, "rootfs");
  await mkdir(volumes, { recursive: true });
  await makeRootfs(rootfs);
  node = await startExecutorNode(dir, {
    EVE_LOG_MAX_BYTES: String(MAX_BYTES),
    EVE_LOG_FILES: String(FILES),
    EVE_METRICS_PORT: "0",
  });
}, 90_000);

function app(uuid: string, script: string): AppInstanceConfigInput {
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: `ops-${uuid.slice(-4)}`,
    virtualization: "NOHYPER",
    resources: { memoryMiB: 32, vcpus: 1 },
    root: { volume: { path: rootfs, readOnly: true } },
    volumes: [],
    process: { args: ["/bin/sh", "-c", script] },
    stopTimeoutMs: 2000,
  };
}

/** `count` numbered lines (`line-42 …`, about 45 bytes), `perPause` of them between pauses of `pause` s. */
function numbered(count: number, perPause: number, pause: string): string {
  return (
    `i=0; while [ $i -lt ${count} ]; do echo "line-$i abcdefghijklmnopqrstuvwxyz0123456"; ` +
    `i=$((i+1)); [ $((i % ${perPause})) -eq 0 ] && sleep ${pause}; done; true`
  );
}
const line = (i: number): string => `line-${i} abcdefghijklmnopqrstuvwxyz0123456\n`;

/** The CLI against the node's NATS (no users there). */
function cli(args: string[]) {
  return runNode(BUILT.cli, args, { env: { NATS_URL: node.env.NATS_URL, EVE_DATA_DIR: node.dataDir } });
}

/** One LogsRequest, as any NATS client sends it. */
function logs(body: LogsRequest, timeoutMs = 5000): Promise<LogsReply> {
  return request(
    node.bus,
    logsSubject(NODE),
    { request: LogsRequestSchema, reply: LogsReplySchema },
    body,
    timeoutMs,
  );
}

describe("the executor's Prometheus endpoint", () => {
  it("is announced in its $SRV.INFO, scrapes as valid text, and moves when a task starts", async () => {
    const pid = node.executor.pids[0]!;
    const found = await discoverWorkers(node.bus.nc, { maxWaitMs: 1000 });
    const executor = found.find((w) => w.worker === "task-executor" && w.metadata.pid === String(pid));
    expect(executor, JSON.stringify(found)).toBeDefined();
    expect(executor!.metadata.node).toBe(NODE);
    expect(executor!.metadata.metrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(executor!.endpoints.map((e) => [e.name, e.subject]).sort()).toEqual([
      ["logs", logsSubject(NODE)],
      ["signal", `eve.rpc.task-executor.${NODE}.signal`],
      ["stop-tasks", `eve.rpc.task-executor.${NODE}.stop-tasks`],
    ]);
    const url = executor!.metadata.metrics;
    const before = await scrape(url);
    const running = (m: typeof before) => sampleValue(m, "eve_tasks_tasks", { state: "RUNNING" }) ?? -1;
    const starts = (m: typeof before) =>
      sampleValue(m, "eve_tasks_task_start_duration_seconds_count", { outcome: "ok" }) ?? 0;
    const creates = (m: typeof before) =>
      sampleValue(m, "eve_tasks_containerd_call_duration_seconds_count", {
        method: "createTask",
        outcome: "ok",
      }) ?? 0;

    const uuid = newUuid();
    await node.put(node.build(app(uuid, "trap 'exit 0' TERM; echo up; sleep 3600 & wait"), 1));
    await node.until(uuid, (s) => s.state === "RUNNING", "never RUNNING");
    const after = await waitFor(
      async () => {
        const m = await scrape(url);
        // The start is measured once it has returned (after RUNNING is published and its events).
        return running(m) === running(before) + 1 && starts(m) > starts(before) ? m : undefined;
      },
      { timeoutMs: 10_000, message: "eve_tasks_tasks{state=RUNNING} or the starts did not go up by one" },
    );
    const show = (m: typeof before, name: string) =>
      JSON.stringify(m.get(name)?.samples.filter((x) => !x.name.endsWith("_bucket")));
    expect(starts(after), show(after, "eve_tasks_task_start_duration_seconds")).toBe(starts(before) + 1);
    expect(creates(after)).toBe(creates(before) + 1);
    expect(
      sampleValue(after, "eve_tasks_reconcile_actions_total", { action: "start" }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleValue(after, "eve_tasks_task_events_emitted_total", { type: "started" }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleValue(after, "eve_tasks_reconcile_duration_seconds_count", { outcome: "ok" }),
    ).toBeGreaterThan(0);
    // Every state is there (0 or more), each sample labelled with the worker and node.
    for (const state of [
      "PENDING",
      "INSTALLED",
      "BOOTING",
      "RUNNING",
      "HALTING",
      "HALTED",
      "BROKEN",
      "FAILED",
      "UNKNOWN",
    ]) {
      expect(
        sampleValue(after, "eve_tasks_tasks", { state, worker: "task-executor", node: NODE }),
        state,
      ).toBeDefined();
    }
    // Process metrics, and the bus's (KV writes of TaskStatus).
    expect(sampleValue(after, "eve_tasks_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(sampleValue(after, "eve_tasks_kv_writes_total", { bucket: "task-executor" })).toBeGreaterThan(0);
    // Bounded labels: no app's uuid anywhere.
    for (const f of after.values()) {
      for (const s of f.samples) expect(Object.values(s.labels).join(" "), s.name).not.toContain(uuid);
    }

    await node.remove(uuid);
    await waitFor(async () => running(await scrape(url)) === running(before), {
      timeoutMs: 20_000,
      message: "eve_tasks_tasks{state=RUNNING} did not come back down",
    });
  });
});

describe("task logs over NATS", () => {
  it("prints all kept output, or its tail, through the CLI; an unknown app is a clear error", async () => {
    const uuid = newUuid();
    await node.put(node.build(app(uuid, numbered(40, 40, "0")), 1));
    const s = await node.until(uuid, (x) => x.state === "HALTED", "never HALTED");
    const all = Array.from({ length: 40 }, (_, i) => line(i)).join("");
    expect(await readFile(s.logPath, "utf8")).toBe(all);

    const whole = await cli(["logs", uuid]);
    expect(whole.stderr).toBe("");
    expect(whole.code).toBe(0);
    expect(whole.stdout).toBe(all);
    const tail = await cli(["logs", "--tail", "3", uuid]);
    expect(tail.stdout).toBe(line(37) + line(38) + line(39));

    const unknown = await logs({ uuid: newUuid() });
    expect(unknown.error).toMatch(/no log of app .* on node local/);
    const invalid = await node.bus.nc.request(logsSubject(NODE), JSON.stringify({ uuid: "../../etc" }), {
      timeout: 5000,
    });
    expect(LogsReplySchema.parse(invalid.json()).error).toMatch(/invalid request/);
    await node.remove(uuid);
  });

  it("logs --follow sees output written after it started, across rotations, none lost or twice", async () => {
    const uuid = newUuid();
    const total = 900; // 40 KiB: about ten rotations of 4 KiB files while the CLI follows
    // The task waits for a go file, so the CLI is surely following before most lines are written.
    const go = join(rootfs, "..", `go-${uuid.slice(-6)}`);
    const script = `echo ready; while [ ! -e /tmp/go ]; do sleep 0.05; done; ${numbered(total, 30, "0.05")}`;
    await mkdir(go, { recursive: true });
    await node.put(
      node.build({ ...app(uuid, script), volumes: [{ path: go, mountPoint: "/tmp", readOnly: true }] }, 1),
    );
    await node.until(uuid, (x) => x.state === "RUNNING", "never RUNNING");

    const child = spawn(process.execPath, [BUILT.cli, "logs", "--follow", uuid], {
      cwd: REPO_ROOT,
      env: { ...process.env, NATS_URL: node.env.NATS_URL, EVE_DATA_DIR: node.dataDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const pid = child.pid!;
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    deferCleanup(async () => {
      if (child.exitCode === null) process.kill(pid, "SIGKILL");
      await exited;
    });
    await waitFor(() => stdout.includes("ready\n"), { timeoutMs: 15_000, message: `no output: ${stderr}` });
    await writeFile(join(go, "go"), "");
    await waitFor(() => stdout.includes(line(total - 1)), {
      timeoutMs: 60_000,
      message: `the follower never saw the last line (${stdout.length} bytes; stderr ${stderr})`,
    });
    // The task wrote ten times what the log keeps: the files now hold only the end of it.
    const s = await node.until(uuid, (x) => x.state === "HALTED", "never HALTED");
    expect(await readFile(s.logPath, "utf8")).not.toContain(line(0));
    process.kill(pid, "SIGINT");
    expect(await exited).toBe(0);
    const expected = "ready\n" + Array.from({ length: total }, (_, i) => line(i)).join("");
    expect(stderr).toBe("");
    expect(stdout).toBe(expected);
    await node.remove(uuid);
  });

  it("a reader that fell behind the files kept is told of the gap, then reads on from the oldest file", async () => {
    const uuid = newUuid();
    await node.put(node.build(app(uuid, "echo first; trap 'exit 0' TERM; sleep 3600 & wait"), 1));
    await node.until(uuid, (x) => x.state === "RUNNING", "never RUNNING");
    const start = await waitFor(
      async () => {
        const r = await logs({ uuid });
        return Buffer.from(r.dataBase64, "base64").toString() === "first\n" ? r : undefined;
      },
      { timeoutMs: 10_000, message: "never read the first line" },
    );
    const cursor: LogCursor = start.cursor!;
    // The app deleted, its log goes with its task dir: the reader is told so.
    await node.remove(uuid);
    await waitFor(async () => /no log of app/.test((await logs({ uuid, cursor })).error ?? ""), {
      timeoutMs: 20_000,
      message: "the deleted app's log is still read",
    });

    // A new app writes far more than the files keep while the reader waits after its first line.

    const second = newUuid();
    await node.put(node.build(app(second, `echo first; sleep 1; ${numbered(400, 400, "0")}`), 1));
    await node.until(second, (x) => x.state === "RUNNING", "never RUNNING");
    const early = await waitFor(
      async () => {
        const r = await logs({ uuid: second });
        return Buffer.from(r.dataBase64, "base64").toString() === "first\n" ? r : undefined;
      },
      { timeoutMs: 10_000, message: "never read the first line" },
    );
    const done = await node.until(second, (x) => x.state === "HALTED", "never HALTED");
    const kept = (
      await Promise.all(
        [2, 1, 0].map((i) => readFile(i === 0 ? done.logPath : `${done.logPath}.${i}`, "utf8")),
      )
    ).join("");
    let text = "";
    let c: LogCursor | undefined = early.cursor!;
    const gaps: string[] = [];
    for (let i = 0; i < 100; i++) {
      const r = await logs({ uuid: second, cursor: c });
      if (r.gap) gaps.push(r.gap.message);
      text += Buffer.from(r.dataBase64, "base64").toString();
      c = r.cursor ?? undefined;
      if (!r.more) break;
    }
    expect(gaps).toEqual([expect.stringMatching(/rotated past this reader/)]);
    expect(text).toBe(kept);
    await node.remove(second);
  });
});
