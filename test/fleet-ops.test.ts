// The operator's surface from a fleet's hub (docs/fleet.md "Logs and signals from the hub"): a hub
// of three nats-servers and a device (a real `npm start` launcher in device mode, its leaf
// connected to hub server 1 only) running an app. The real CLI, connected ONLY to hub server 3
// as the hub's own users (viewer to read, controller to signal), reads the app's log (`--tail`,
// all of it, `--follow` seeing a line written after it started) and signals it (`kill`): the
// requests cross the hub's cluster route and the device's leaf connection to the device's
// task-executor, and its replies come back the same way. Every process is stopped by PID.
import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { RequestError, connectBus, request } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { removeTreeSafely } from "@eve-tasks/embedded";
import { startHub } from "@eve-tasks/launcher";
import type { RunningHub } from "@eve-tasks/launcher";
import {
  StopTasksReplySchema,
  StopTasksRequestSchema,
  TaskStatusSchema,
  nodeReplyPrefix,
  stopTasksSubject,
} from "@eve-tasks/schemas";
import type { TaskStatus } from "@eve-tasks/schemas";
import { BUILT, REPO_ROOT, deferCleanup, runNode, uuidMaker, waitFor } from "./harness/index.js";
import { freeHubBase, startFleetDevice, stopFleetDevice } from "./harness/fleet.js";
import type { FleetDevice } from "./harness/fleet.js";

const logger = pino({ level: "warn" });
const newUuid = uuidMaker("f1ee0b50");
const NODE = "ops1";

let tmp: string;
let hub: RunningHub;
let device: FleetDevice | undefined;
let hubViewer: Bus;
/** The app on the device, its display name, and the file whose creation makes it write `after-go`. */
const uuid = newUuid();
const name = `ops-${uuid.slice(-6)}`;
let goFile: string;

/** The CLI against hub server 3 only, as hub user `user` (nothing of the device's). */
function cliEnv(user: "viewer" | "controller"): Record<string, string> {
  return {
    NATS_URL: hub.servers[2]!.clientUrl,
    NATS_USER: user,
    NATS_PASSWORD_FILE: hub.passwordFile(user),
    EVE_DATA_DIR: path.join(tmp, "no-local-node"),
  };
}
const cli = (user: "viewer" | "controller", args: string[]) =>
  runNode(BUILT.cli, args, { env: cliEnv(user) });

/** waitFor, whose error says what `explain` tells at the time it gave up. */
async function until<T>(
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  explain: () => string | Promise<string>,
): Promise<T> {
  try {
    return await waitFor(fn, { timeoutMs });
  } catch (err) {
    throw new Error(`${await explain()} (${(err as Error).message})`, { cause: err });
  }
}

async function hubStatus(): Promise<TaskStatus | undefined> {
  const kv = await hubViewer.bucket("task-executor");
  const e = await kv.get(`TaskStatus.${uuid}`);
  return e && e.operation === "PUT" ? TaskStatusSchema.parse(e.json()) : undefined;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "eve-fleet-ops-"));
  goFile = path.join(tmp, "go");
  hub = await startHub({
    dir: path.join(tmp, "hub"),
    devices: [NODE],
    basePort: await freeHubBase(),
    logger,
  });
  hubViewer = await connectBus({
    servers: hub.servers[2]!.clientUrl,
    name: "fleet-ops-test-viewer",
    logger,
    credentials: { user: "viewer", passwordFile: hub.passwordFile("viewer") },
  });
  // The device's leaf goes to hub server 1 only; the operator is on server 3.
  const leaf = (await hub.deviceLeafUrl(NODE)).split(",")[0]!;
  await startFleetDevice(tmp, NODE, leaf, {
    extraArgs: ["--no-tools-image"],
    onStarted: (d) => (device = d),
  });
  const app = {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: name,
    activate: true,
    node: NODE,
    virtualization: "NOHYPER",
    resources: { memoryMiB: 16, vcpus: 1 },
    root: { host: { readOnly: true } },
    process: {
      args: [
        "/bin/sh",
        "-c",
        "trap 'echo got-HUP' HUP; trap 'exit 0' TERM; " +
          'for i in 1 2 3 4 5; do echo "line-$i"; done; ' +
          `while [ ! -e ${goFile} ]; do sleep 0.1; done; echo after-go; ` +
          "while true; do sleep 1 & wait; done",
      ],
    },
    restartPolicy: { mode: "never" },
    stopTimeoutMs: 2000,
  };
  const file = path.join(tmp, "app.json");
  await writeFile(file, JSON.stringify(app));
  const applied = await cli("controller", ["apply", "-f", file]);
  expect(applied.stderr + applied.stdout).toContain(`controller-${NODE}`);
  expect(applied.code).toBe(0);
  await until(
    async () => (await hubStatus())?.state === "RUNNING" || undefined,
    60_000,
    async () => `${name} never RUNNING on the hub: ${JSON.stringify(await hubStatus())}`,
  );
}, 180_000);

afterAll(async () => {
  await hubViewer?.close();
  if (device) await stopFleetDevice(device);
  await hub?.stop();
  if (tmp) await removeTreeSafely(tmp).catch(() => undefined);
}, 120_000);

describe("logs and signals from the hub, for an app on a device", () => {
  it("logs --tail N and logs read the device's output through the hub", async () => {
    const all = "line-1\nline-2\nline-3\nline-4\nline-5\n";
    let last = await cli("viewer", ["logs", name]);
    const whole = await until(
      async () => {
        last = await cli("viewer", ["logs", name]);
        return last.code === 0 && last.stdout === all ? last : undefined;
      },
      15_000,
      () => `logs through the hub never showed the five lines: ${JSON.stringify(last)}`,
    );
    expect(whole.stderr).toBe("");
    const tail = await cli("viewer", ["logs", "--tail", "2", name]);
    expect(tail).toEqual({ code: 0, stdout: "line-4\nline-5\n", stderr: "" });
  });

  it("logs --follow sees a line the app writes after it started", async () => {
    const child = spawn(process.execPath, [BUILT.cli, "logs", "--follow", "--tail", "1", uuid], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...cliEnv("viewer") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const pid = child.pid!;
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    deferCleanup(async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGKILL");
      await exited;
    });
    await until(
      () => stdout === "line-5\n" || undefined,
      15_000,
      () => `the follower never showed the tail: stdout ${JSON.stringify(stdout)}, stderr ${stderr}`,
    );
    await writeFile(goFile, "");
    await until(
      () => stdout.includes("after-go\n") || undefined,
      30_000,
      () => `the follower never saw the line written after it started: ${JSON.stringify(stdout)} ${stderr}`,
    );
    process.kill(pid, "SIGINT");
    expect(await exited).toBe(0);
    expect(stdout).toBe("line-5\nafter-go\n");
    expect(stderr).toBe("");
  });

  it("kill --signal HUP from the hub reaches the device's task (its trap runs, the task stays)", async () => {
    const before = await hubStatus();
    expect(before?.state).toBe("RUNNING");
    // Reading is not signalling: the hub's viewer may not send a signal.
    const refused = await cli("viewer", ["kill", "--signal", "HUP", name]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/permission|not allowed|authoriz/i);

    const r = await cli("controller", ["kill", "--signal", "HUP", name]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("SIGHUP sent to");
    expect(r.code).toBe(0);
    let l = await cli("viewer", ["logs", "--tail", "1", name]);
    await until(
      async () => {
        l = await cli("viewer", ["logs", "--tail", "1", name]);
        return l.stdout === "got-HUP\n" || undefined;
      },
      15_000,
      () => `the trap's line never showed in the log read through the hub: ${JSON.stringify(l)}`,
    );
    const after = await hubStatus();
    expect(after).toMatchObject({ state: "RUNNING", taskId: before!.taskId });
  });

  it("the hub reaches only signal and logs: stop-tasks (the device's launcher's) is refused even to the hub's admin", async () => {
    const admin = await connectBus({
      servers: hub.servers[2]!.clientUrl,
      name: "fleet-ops-test-admin",
      logger,
      credentials: { user: "admin", passwordFile: hub.passwordFile("admin") },
    });
    try {
      const err = await request(
        admin,
        stopTasksSubject(NODE),
        { request: StopTasksRequestSchema, reply: StopTasksReplySchema },
        {},
        5000,
        { replyPrefix: nodeReplyPrefix(admin.inboxPrefix, NODE) },
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RequestError);
      expect((err as Error).message).toMatch(/nobody answers/);
    } finally {
      await admin.close();
    }
    expect(await hubStatus()).toMatchObject({ state: "RUNNING" });
  });
});
