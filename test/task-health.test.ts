// Task health end to end, with real parts: exits and their codes, OOM kills, the restart
// policy, signals, memory admission, task events and the CLI that shows them. The file has its
// own nats-server and containerd (recovery tests restart them) and runs the real spec-builder
// and task-executor as processes.
import { spawn } from "node:child_process";
import { readFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  Publication,
  connectBus,
  ensureBuckets,
  ensureEventsStream,
  followEvents,
  readEvents,
  request,
  subscribe,
} from "@eve-tasks/bus";
import type { Bus, EventFollower, Subscription } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import { cleanupContainerd, startContainerd } from "@eve-tasks/embedded";
import type { RunningContainerd } from "@eve-tasks/embedded";
import { readProcStat } from "@eve-tasks/procfs";
import {
  CONTAINERD_NAMESPACE,
  SignalReplySchema,
  SignalRequestSchema,
  TaskEventSchema,
  signalSubject,
  messageTable,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  TaskEvent,
  AppInstanceConfigSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import {
  deferCleanup,
  makeRootfs,
  spawnReplicas,
  tempDir,
  waitFor,
  withPrivateNats,
  BUILT,
  runNode,
  statusWaiter,
  uuidMaker,
} from "./harness/index.js";
import type { PrivateNats, Replicas, StatusWaiter } from "./harness/index.js";

const SPEC_BUILDER = BUILT.specBuilder;
const EXECUTOR = BUILT.taskExecutor;
const CLI = BUILT.cli;
/** The node's memory for admission: two 160 MiB apps do not fit together. */
const NODE_MEMORY_MIB = 256;
const echo = process.env.EVE_TEST_ECHO === "1";

const newUuid = uuidMaker("4ea17400");

describe("task health", () => {
  let nats: PrivateNats;
  let containerdServer: RunningContainerd;
  let containerdDir: string;
  let bus: Bus;
  let containerd: ContainerdClient;
  let configs: Publication<typeof AppInstanceConfigSchema>;
  let statuses: Subscription<typeof TaskStatusSchema>;
  let follower: EventFollower;
  const events: TaskEvent[] = [];
  let specBuilder: Replicas;
  let executor: Replicas;
  let rootfs: string;
  let env: Record<string, string>;

  let executorExited = true;
  /** Starts the executor. One started inside a test is stopped when that test ends. */
  const startExecutor = async () => {
    executor = spawnReplicas({ entry: EXECUTOR, count: 1, name: "task-executor", env, echo });
    executorExited = false;
    void executor.replicas[0]!.exited.then(() => (executorExited = true));
    await executor.waitForLine((l) => l.json?.event === "resynced", 60_000);
  };
  beforeEach(async () => {
    if (executorExited) await startExecutor();
  }, 60_000);

  beforeAll(async () => {
    const dir = await tempDir("health-");
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "busybox", "rootfs");
    await mkdir(rootfs, { recursive: true });
    await makeRootfs(rootfs);
    nats = await withPrivateNats();
    containerdDir = join(dir, "ctrd");
    containerdServer = await startContainerd({ dir: containerdDir });
    deferCleanup(async () => {
      await cleanupContainerd(containerdServer.address, [CONTAINERD_NAMESPACE]).catch(() => undefined);
      await containerdServer.stop();
    });
    env = {
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: containerdServer.address,
      EVE_DATA_DIR: join(dir, "data"),
      EVE_RUN_DIR: join(dir, "run"),
      EVE_VOLUME_ROOTS: volumes,
      EVE_NODE_MEMORY_MIB: String(NODE_MEMORY_MIB),
      LOG_LEVEL: "debug",
    };
    bus = await connectBus({ servers: nats.url, name: "health-test" });
    await ensureBuckets(bus);
    await ensureEventsStream(bus);
    specBuilder = spawnReplicas({ entry: SPEC_BUILDER, count: 1, name: "spec-builder", env, echo });
    await startExecutor();
    containerd = new ContainerdClient({ address: containerdServer.address, namespace: CONTAINERD_NAMESPACE });
    configs = new Publication(bus, messageTable("AppInstanceConfig"));
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
    follower = followEvents(bus, (e) => events.push(e));
  }, 90_000);

  afterAll(async () => {
    if (executorExited) await startExecutor();
    const all = await configs?.getAll();
    for (const uuid of all?.keys() ?? []) await configs.unpublish(uuid);
    if (all?.size) {
      await waitFor(async () => (await containerd.containers.list()).length === 0, {
        timeoutMs: 60_000,
        message: "containers left after deleting every config",
      }).catch((err: unknown) => console.error((err as Error).message));
    }
    await follower?.close();
    await statuses?.close();
    await bus?.close();
    containerd?.close();
    await specBuilder?.stopAll();
    await executor?.stopAll();
  }, 90_000);

  function app(uuid: string, over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `health-${uuid.slice(-6)}`,
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: false } },
      process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], cwd: "/", user: "0:0" },
      stopTimeoutMs: 3000,
      ...over,
    } as AppInstanceConfigInput;
  }

  const until = (...a: Parameters<StatusWaiter["until"]>) => statusWaiter(statuses).until(...a);
  const running = (uuid: string) => statusWaiter(statuses).running(uuid);
  const eventsOf = (uuid: string) => events.filter((e) => e.uuid === uuid);
  const remove = async (uuid: string) => {
    await configs.unpublish(uuid);
    await waitFor(() => statuses.get(uuid) === undefined, {
      timeoutMs: 30_000,
      message: `${uuid} not removed`,
    });
  };

  /** Runs the CLI to completion. */
  const cli = (args: string[]) => runNode(CLI, args, { env: { NATS_URL: nats.url } });

  it("kill -9 of an anchor: BROKEN with exit status 137 and SIGKILL", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, app(uuid));
    const s = await running(uuid);
    // How fast the exit is seen is the bench's `exit` scenario; here only what is recorded.
    process.kill(s.taskId, "SIGKILL");
    const after = await until(
      uuid,
      (x) => x.taskId === 0 && x.lastTaskId === s.taskId,
      "exit never recorded",
      10_000,
    );
    expect(after).toMatchObject({ state: "BROKEN", exitCode: 137, signal: "SIGKILL", oomKilled: false });
    await waitFor(() => eventsOf(uuid).some((e) => e.type === "exited" && e.fields.exitCode === 137), {
      message: "no exited event",
    });
    // never: it stays down.
    expect(eventsOf(uuid).some((e) => e.type === "restarting")).toBe(false);
    await remove(uuid);
  });

  it("a task allocating past its memory limit: oomKilled true, SIGKILL", async () => {
    const uuid = newUuid();
    // A shell variable that doubles until the 16 MiB limit stops it.
    await configs.publish(
      uuid,
      app(uuid, {
        resources: { memoryMiB: 16, vcpus: 1 },
        process: {
          args: ["/bin/sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done"],
          cwd: "/",
          user: "0:0",
        },
      }),
    );
    const s = await until(
      uuid,
      (x) => x.lastTaskId > 0 && x.taskId === 0 && x.exitCode !== null,
      "never ended",
    );
    expect(s).toMatchObject({ state: "BROKEN", exitCode: 137, signal: "SIGKILL", oomKilled: true });
    await waitFor(() => eventsOf(uuid).some((e) => e.type === "exited" && e.fields.oomKilled === true), {
      message: "no exited event with oomKilled",
    });
    await remove(uuid);
  });

  it("on-failure: restarts with growing back-off, seen in events, and gives up at maxRestarts", async () => {
    const uuid = newUuid();
    await configs.publish(
      uuid,
      app(uuid, {
        process: { args: ["/bin/sh", "-c", "echo run-$$; exit 3"], cwd: "/", user: "0:0" },
        restartPolicy: { mode: "on-failure", maxRestarts: 2, backoffMs: 300, maxBackoffMs: 500 },
      }),
    );
    const s = await until(uuid, (x) => x.state === "BROKEN" && x.error !== null, "never gave up");
    expect(s.exitCode).toBe(3);
    expect(s.restarts).toBe(2);
    expect(s.error?.message).toContain("restart policy gave up after 2 restart(s)");
    await waitFor(() => eventsOf(uuid).some((e) => e.type === "not-restarting"), {
      message: "no not-restarting",
    });
    const mine = eventsOf(uuid);
    const restarting = mine.filter((e) => e.type === "restarting");
    expect(restarting.map((e) => e.fields.delayMs)).toEqual([300, 500]);
    expect(mine.filter((e) => e.type === "started")).toHaveLength(3);
    expect(mine.find((e) => e.type === "not-restarting")?.fields.gaveUp).toBe(true);
    // Each restart waited its back-off after the exit before the task was created again.
    const times = (type: string) => mine.filter((e) => e.type === type).map((e) => Date.parse(e.time));
    const exits = times("exited");
    const creates = times("created");
    expect(creates[1]! - exits[0]!).toBeGreaterThanOrEqual(300 - 50);
    expect(creates[2]! - exits[1]!).toBeGreaterThanOrEqual(500 - 50);
    const log = await readFile(s.logPath, "utf8");
    expect(log.match(/run-\d+/g)).toHaveLength(3);
    // It stays BROKEN: nothing else starts it.
    await new Promise((r) => setTimeout(r, 700));
    expect(eventsOf(uuid).filter((e) => e.type === "started")).toHaveLength(3);
    // A user's restart clears the give-up and starts counting again.
    await configs.publish(uuid, { ...app(uuid), restartCounter: 1, restartPolicy: { mode: "never" } });
    const again = await running(uuid);
    expect(again.error).toBeNull();
    expect(again.restarts).toBe(0);
    await remove(uuid);
  });

  it("signals: kill --signal HUP reaches the anchor's trap; bad requests get a clear refusal", async () => {
    const uuid = newUuid();
    await configs.publish(
      uuid,
      app(uuid, {
        process: {
          args: [
            "/bin/sh",
            "-c",
            "trap 'echo got-HUP' HUP; trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
          ],
          cwd: "/",
          user: "0:0",
        },
      }),
    );
    const s = await running(uuid);
    const r = await cli(["kill", "--signal", "HUP", uuid]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(`SIGHUP sent to`);
    expect(r.code).toBe(0);
    await waitFor(async () => (await readFile(s.logPath, "utf8").catch(() => "")).includes("got-HUP"), {
      message: "the trap never ran",
    });
    await waitFor(() => eventsOf(uuid).some((e) => e.type === "killed" && e.fields.signal === "SIGHUP"), {
      message: "no killed event",
    });
    expect(statuses.get(uuid)?.taskId).toBe(s.taskId); // still the same task

    const bogus = await cli(["kill", "--signal", "BOGUS", uuid]);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toContain('unknown signal "BOGUS"');
    const unknown = await request(
      bus,
      signalSubject("local"),
      { request: SignalRequestSchema, reply: SignalReplySchema },
      { uuid: newUuid(), signal: "SIGHUP" },
    );
    expect(unknown).toMatchObject({ accepted: false });
    expect(unknown.error).toMatch(/^no app .* on node local$/);

    // SIGKILL on request: it ended by itself as far as the policy goes (never): BROKEN.
    expect((await cli(["kill", "--signal", "9", uuid])).code).toBe(0);
    const killed = await until(uuid, (x) => x.taskId === 0, "SIGKILL had no effect");
    expect(killed).toMatchObject({ state: "BROKEN", signal: "SIGKILL" });
    const refused = await cli(["kill", uuid]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("has no running task (state BROKEN)");
    await remove(uuid);
  });

  it("events: the CLI lists an app's events and follows new ones", async () => {
    const uuid = newUuid();
    await configs.publish(uuid, app(uuid));
    await running(uuid);
    await waitFor(() => eventsOf(uuid).some((e) => e.type === "started"), { message: "no started event" });
    const listed = await cli(["events", uuid]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/ created +task created with anchor PID \d+/);
    expect(listed.stdout).toMatch(/ started +task started, anchor PID \d+/);
    const json = await cli(["events", uuid, "--json"]);
    const parsed = json.stdout
      .trim()
      .split("\n")
      .map((l) => TaskEventSchema.parse(JSON.parse(l)));
    expect(parsed.map((e) => e.type)).toEqual(["created", "started"]);
    expect(parsed.every((e) => e.uuid === uuid)).toBe(true);
    expect((await cli(["events", uuid, "--last", "1", "--json"])).stdout.trim().split("\n")).toHaveLength(1);

    const follow = spawn(process.execPath, [CLI, "events", uuid, "--follow"], {
      env: { ...process.env, NATS_URL: nats.url },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const followed = follow.pid!;
    deferCleanup(() => void (follow.exitCode === null && process.kill(followed, "SIGKILL")));
    let out = "";
    follow.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes(" started "), { message: "follow did not print the stored events" });
    await configs.publish(uuid, app(uuid, { activate: false }));
    await waitFor(() => out.includes(" stopping ") && out.includes(" exited "), {
      message: `follow did not print new events: ${out}`,
    });
    process.kill(followed, "SIGINT");
    await new Promise((r) => follow.once("close", r));
    await remove(uuid);
  });

  it("admission: a task that does not fit waits PENDING for memory and starts when memory frees up", async () => {
    const [a, b] = [newUuid(), newUuid()];
    await configs.publish(a, app(a, { resources: { memoryMiB: 160, vcpus: 1 } }));
    await running(a);
    await configs.publish(b, app(b, { resources: { memoryMiB: 160, vcpus: 1 } }));
    const pending = await until(b, (x) => x.state === "PENDING", "never PENDING");
    expect(pending).toMatchObject({ waitingFor: "memory", taskId: 0 });
    await waitFor(() => eventsOf(b).some((e) => e.type === "received" && e.fields.waitingFor === "memory"), {
      message: "no waiting event",
    });
    expect(eventsOf(b).find((e) => e.fields.waitingFor === "memory")?.message).toBe(
      "waiting for memory: needs 160 MiB, 96 MiB free (256 MiB usable, 160 MiB held by 1 task(s))",
    );
    expect((await containerd.tasks.list()).some((t) => t.id === b)).toBe(false);
    await configs.publish(a, app(a, { resources: { memoryMiB: 160, vcpus: 1 }, activate: false }));
    await until(a, (x) => x.state === "HALTED", "a never HALTED");
    const started = await running(b);
    expect(started.waitingFor).toBeNull();
    await remove(a);
    await remove(b);
  });

  describe("recovery", () => {
    it("executor killed while tasks exit: after its restart the exits are in status with their codes", async () => {
      const [a, b] = [newUuid(), newUuid()];
      const trapping = {
        args: ["/bin/sh", "-c", "trap 'exit 5' USR1; sleep 3600 & wait"],
        cwd: "/",
        user: "0:0",
      };
      await configs.publish(a, app(a, { process: trapping }));
      await configs.publish(b, app(b));
      const [sa, sb] = [await running(a), await running(b)];
      await executor.kill(0, "SIGKILL");
      process.kill(sa.taskId, "SIGUSR1");
      process.kill(sb.taskId, "SIGKILL");
      await waitFor(
        async () => (await containerd.tasks.list()).filter((t) => t.status === "STOPPED").length >= 2,
        {
          message: "tasks did not stop",
        },
      );
      await startExecutor();
      expect(await until(a, (x) => x.taskId === 0, "a's exit not recorded")).toMatchObject({
        state: "BROKEN",
        exitCode: 5,
        signal: null,
        lastTaskId: sa.taskId,
      });
      expect(await until(b, (x) => x.taskId === 0, "b's exit not recorded")).toMatchObject({
        state: "BROKEN",
        exitCode: 137,
        signal: "SIGKILL",
        lastTaskId: sb.taskId,
      });
      await remove(a);
      await remove(b);
    });

    it("containerd restarted: tasks keep running, the executor reconnects and resyncs, nothing restarted", async () => {
      const uuid = newUuid();
      await configs.publish(uuid, app(uuid));
      const s = await running(uuid);
      const ticks = (await readProcStat(s.taskId))?.startTimeTicks;
      // Events come through the executor's outbox, after the status: count the creation once it is in.
      await waitFor(() => eventsOf(uuid).some((e) => e.type === "created"), {
        timeoutMs: 10_000,
        message: "the created event never arrived",
      });
      const createdBefore = eventsOf(uuid).filter((e) => e.type === "created").length;
      await containerdServer.stop();
      // The broken Tasks.Wait makes the executor look, and containerd is not there.
      await until(uuid, (x) => x.state === "UNKNOWN", "never UNKNOWN while containerd was down");
      expect(process.kill(s.taskId, 0)).toBe(true);
      containerdServer = await startContainerd({ dir: containerdDir });
      const back = await until(uuid, (x) => x.state === "RUNNING", "never RUNNING again");
      expect(back.taskId).toBe(s.taskId);
      expect((await readProcStat(s.taskId))?.startTimeTicks).toBe(ticks);
      expect(eventsOf(uuid).filter((e) => e.type === "created")).toHaveLength(createdBefore);
      // And exits are still seen after the reconnect.
      process.kill(s.taskId, "SIGKILL");
      await until(
        uuid,
        (x) => x.taskId === 0 && x.signal === "SIGKILL",
        "exit after reconnect not seen",
        10_000,
      );
      await remove(uuid);
    });

    it("nats-server restarted: workers resync, a config published meanwhile applies, outage events arrive once", async () => {
      const [a, b] = [newUuid(), newUuid()];
      await configs.publish(a, app(a));
      const sa = await running(a);
      await nats.stop();
      // The executor sees this exit while NATS is down: its events wait in the outbox.
      process.kill(sa.taskId, "SIGKILL");
      await waitFor(
        () =>
          executor.lines.some(
            (l) => l.json?.event === "exited" && l.json.uuid === a && l.json.anchorPid === sa.taskId,
          ),
        { message: "the executor did not notice the exit during the outage" },
      );
      await nats.start();
      // The test's own client reconnects too; its first puts may time out meanwhile.
      await waitFor(
        () =>
          configs.publish(b, app(b)).then(
            () => true,
            () => false,
          ),
        {
          timeoutMs: 30_000,
          message: "cannot publish after the nats-server restart",
        },
      );
      await running(b);
      expect(await until(a, (x) => x.taskId === 0, "a's exit not published after the outage")).toMatchObject({
        state: "BROKEN",
        exitCode: 137,
      });
      // Exactly one exited event for that anchor in the stream.
      await waitFor(
        async () => {
          const stored: TaskEvent[] = [];
          for await (const e of readEvents(bus, { uuid: a })) stored.push(e.event);
          return stored.some((e) => e.type === "exited");
        },
        { message: "the outage's exit event never reached the stream" },
      );
      const stored: TaskEvent[] = [];
      for await (const e of readEvents(bus, { uuid: a })) stored.push(e.event);
      expect(stored.filter((e) => e.type === "exited" && e.fields.anchorPid === sa.taskId)).toHaveLength(1);
      await remove(a);
      await remove(b);
    });

    it("a config published while the executor is down is applied when it comes back", async () => {
      const uuid = newUuid();
      await executor.kill(0, "SIGTERM");
      await configs.publish(uuid, app(uuid));
      await startExecutor();
      await running(uuid);
      await remove(uuid);
    });
  });
});
