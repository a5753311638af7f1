// @eve-tasks/containerd against a real containerd: the one the global setup provides
// (inject("containerdAddress")), or CONTAINERD_ADDRESS. Tasks run a static busybox from a
// rootfs directory bind-mounted read-only through Tasks.Create's rootfs mounts, in a namespace
// of their own; every task and container is removed afterwards.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, open, readFile, readdir, rmdir, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { removeTreeSafely } from "@eve-tasks/embedded";
import {
  ContainerdClient,
  ContainerdError,
  RUNC_V2_RUNTIME,
  SPEC_TYPE_URL,
  exitSignal,
  fileUri,
  isAlreadyExists,
  isCancelled,
  isNotFound,
  isUnavailable,
  specFromAny,
} from "@eve-tasks/containerd";
import type { ContainerdEvent, ContainerdEventTopic, EventSubscription, Mount } from "@eve-tasks/containerd";

const MiB = 1024 * 1024;
const CGROUP_PARENT = "eve-user-apps-test";
const NAMESPACE = `eve-tasks-test-${randomBytes(4).toString("hex")}`;
const APPLETS = ["sh", "sleep", "echo", "cat", "true", "false", "env"];
const CAPS = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

let client: ContainerdClient;
let workDir: string;
let rootfsMounts: Mount[];
let seq = 0;
/** Containers (and their tasks) this file created and has not removed yet. */
const created = new Set<string>();

function containerdAddress(): string {
  // The global setup declares ProvidedContext's keys; read this one without depending on that.
  const provided = (inject as (key: string) => unknown)("containerdAddress");
  const address = typeof provided === "string" && provided !== "" ? provided : process.env.CONTAINERD_ADDRESS;
  if (address === undefined || address === "") {
    throw new Error("no containerd: the global setup provides containerdAddress, or set CONTAINERD_ADDRESS");
  }
  return address;
}

/** A statically linked busybox (Debian: apt-get install -y busybox-static). */
async function findStaticBusybox(): Promise<string> {
  for (const candidate of ["/bin/busybox", "/usr/bin/busybox"]) {
    if (!existsSync(candidate)) continue;
    if (await isStaticElf(candidate)) return candidate;
    throw new Error(
      `${candidate} is dynamically linked; the tests need busybox-static (apt-get install -y busybox-static)`,
    );
  }
  throw new Error("no busybox: the tests need a static busybox (apt-get install -y busybox-static)");
}

/** True if the ELF64 file has no PT_INTERP program header (no dynamic loader). */
async function isStaticElf(path: string): Promise<boolean> {
  const fh = await open(path, "r");
  try {
    const header = Buffer.alloc(64);
    await fh.read(header, 0, 64, 0);
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    await fh.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (table.readUInt32LE(i * phentsize) === 3) return false;
    return true;
  } finally {
    await fh.close();
  }
}

/** A read-only rootfs directory: busybox, its applets as symlinks, empty mount points. */
async function prepareRootfs(dir: string): Promise<void> {
  const busybox = await findStaticBusybox();
  for (const d of ["bin", "proc", "dev", "sys", "run", "tmp", "etc"])
    await mkdir(join(dir, d), { recursive: true });
  await copyFile(busybox, join(dir, "bin", "busybox"));
  await chmod(join(dir, "bin", "busybox"), 0o755);
  for (const applet of APPLETS) await symlink("busybox", join(dir, "bin", applet));
}

function nextId(what: string): string {
  seq += 1;
  return `${what}-${seq}-${randomBytes(3).toString("hex")}`;
}

/** A minimal OCI runtime spec for a busybox task, with the node facts filled in as the executor would. */
function ociSpec(id: string, args: string[], memoryLimitBytes = 64 * MiB): object {
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: ["PATH=/bin", `TASK_ID=${id}`],
      cwd: "/",
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
      // No CAP_SYS_RESOURCE here: rlimits must stay at or below the current hard limit.
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs", readonly: true },
    hostname: "task",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
      {
        destination: "/run",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "nodev", "mode=755", "size=8m"],
      },
      {
        destination: "/tmp",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "nodev", "mode=1777", "size=8m"],
      },
    ],
    linux: {
      cgroupsPath: `/${CGROUP_PARENT}/${id}`,
      resources: {
        devices: [{ allow: false, access: "rwm" }],
        memory: { limit: memoryLimitBytes },
      },
      namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "network" }],
      maskedPaths: ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}

/** Creates a container for a busybox task and remembers it for clean-up. */
async function createContainer(id: string, args: string[], memoryLimitBytes?: number): Promise<void> {
  await client.containers.create({
    id,
    labels: { "org.lfedge.eve-tasks.uuid": id },
    spec: ociSpec(id, args, memoryLimitBytes),
  });
  created.add(id);
}

function logPath(id: string): string {
  return join(workDir, "logs", id, "console.log");
}

/** Creates the container's task with stdout and stderr appended to its log file. */
async function createTask(id: string): Promise<number> {
  const log = fileUri(logPath(id));
  const { pid } = await client.tasks.create({
    containerId: id,
    rootfs: rootfsMounts,
    stdout: log,
    stderr: log,
  });
  return pid;
}

function ignoreNotFound(err: unknown): undefined {
  if (isNotFound(err)) return undefined;
  throw err;
}

/** Kills, reaps and deletes whatever is left of container `id`, ignoring what is already gone. */
async function remove(id: string): Promise<void> {
  const ignore = (err: unknown): void => {
    if (!(err instanceof ContainerdError)) throw err;
  };
  const task = await client.tasks.get(id).catch(ignoreNotFound);
  if (task !== undefined) {
    if (task.status !== "STOPPED") {
      await client.tasks.kill(id, "SIGKILL", { all: true }).catch(ignore);
      await client.tasks.wait(id, { timeoutMs: 10_000 }).catch(ignore);
    }
    await client.tasks.delete(id).catch(ignoreNotFound);
  }
  await client.containers.delete(id).catch(ignoreNotFound);
  created.delete(id);
}

function memoryLimitFile(id: string): string {
  return existsSync("/sys/fs/cgroup/cgroup.controllers")
    ? `/sys/fs/cgroup/${CGROUP_PARENT}/${id}/memory.max`
    : `/sys/fs/cgroup/memory/${CGROUP_PARENT}/${id}/memory.limit_in_bytes`;
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function readLog(id: string): Promise<string> {
  return readFile(logPath(id), "utf8").catch(() => "");
}

type EventOfTopic<T extends ContainerdEventTopic> = Extract<ContainerdEvent, { topic: T }>;

/** Drains a subscription in the background and lets a test wait for matching events. */
class EventCollector {
  readonly events: ContainerdEvent[] = [];
  readonly done: Promise<void>;
  #wake: (() => void) | undefined;

  constructor(subscription: EventSubscription<ContainerdEvent>) {
    this.done = (async () => {
      for await (const event of subscription) {
        this.events.push(event);
        this.#wake?.();
      }
    })();
  }

  async next<T extends ContainerdEventTopic>(
    topic: T,
    match: (event: EventOfTopic<T>) => boolean,
    timeoutMs = 10_000,
  ): Promise<EventOfTopic<T>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(
        (e): e is EventOfTopic<T> => e.topic === topic && match(e as EventOfTopic<T>),
      );
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `no ${topic} event within ${timeoutMs} ms; saw ${this.events.map((e) => e.topic).join(", ")}`,
        );
      }
      await Promise.race([
        new Promise<void>((resolve) => (this.#wake = resolve)),
        sleep(Math.min(left, 200)),
      ]);
    }
  }
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "eve-ctrd-test-"));
  const rootfsDir = join(workDir, "rootfs");
  await prepareRootfs(rootfsDir);
  rootfsMounts = [{ type: "bind", source: rootfsDir, options: ["rbind", "ro"] }];
  client = new ContainerdClient({ address: containerdAddress(), namespace: NAMESPACE });
  await client.waitForReady(20_000);
});

afterEach(async () => {
  for (const id of [...created]) await remove(id);
});

afterAll(async () => {
  if (client !== undefined) {
    for (const id of [...created]) await remove(id);
    await client.namespaces.delete(NAMESPACE).catch(ignoreNotFound);
    client.close();
  }
  // The per-test cgroups went with their tasks; drop the shared parents if nobody else uses them.
  const hierarchies = await readdir("/sys/fs/cgroup").catch(() => []);
  for (const parent of [CGROUP_PARENT, ...hierarchies.map((h) => join(h, CGROUP_PARENT))]) {
    await rmdir(join("/sys/fs/cgroup", parent)).catch(() => undefined);
  }
  if (workDir !== undefined) await removeTreeSafely(workDir);
});

describe("@eve-tasks/containerd against containerd", () => {
  it("reports containerd's version", async () => {
    const v = await client.version();
    expect(v.version).toMatch(/\d+\.\d+/);
    expect(typeof v.revision).toBe("string");
    expect(client.namespace).toBe(NAMESPACE);
    expect(client.target.startsWith("unix:")).toBe(true);
  });

  it("creates a container with labels and gets, lists, updates and deletes it", async () => {
    const id = nextId("record");
    const spec = ociSpec(id, ["/bin/true"]);
    const labels = {
      "org.lfedge.eve-tasks.uuid": id,
      "org.lfedge.eve-tasks.version": "1",
      "org.lfedge.eve-tasks.config-revision": "7",
    };
    const before = Date.now();
    const made = await client.containers.create({ id, labels, spec });
    created.add(id);
    expect(made.id).toBe(id);
    expect(made.labels).toEqual(labels);
    expect(made.runtime.name).toBe(RUNC_V2_RUNTIME);
    expect(made.spec?.typeUrl).toBe(SPEC_TYPE_URL);

    const got = await client.containers.get(id);
    expect(got.labels).toEqual(labels);
    expect(got.runtime).toEqual({ name: RUNC_V2_RUNTIME, options: null });
    expect(got.spec).not.toBeNull();
    if (got.spec !== null) expect(specFromAny(got.spec)).toEqual(spec);
    expect(got.createdAt).toBeInstanceOf(Date);
    expect(got.createdAt.getTime()).toBeGreaterThanOrEqual(before - 5_000);
    expect(got.createdAt.getTime()).toBeLessThanOrEqual(Date.now() + 5_000);

    const byLabel = await client.containers.list([
      `labels."org.lfedge.eve-tasks.uuid"==${JSON.stringify(id)}`,
    ]);
    expect(byLabel.map((c) => c.id)).toEqual([id]);
    expect((await client.containers.list()).map((c) => c.id)).toContain(id);
    // The labels-only listing: the same containers, their ids and labels, nothing else.
    const all = await client.containers.list();
    const labelsOnly = await client.containers.listLabels();
    expect(labelsOnly).toEqual(all.map((c) => ({ id: c.id, labels: c.labels })));
    expect(
      await client.containers.listLabels([`labels."org.lfedge.eve-tasks.uuid"==${JSON.stringify(id)}`]),
    ).toEqual([{ id, labels }]);
    expect((await client.namespaces.list()).map((n) => n.name)).toContain(NAMESPACE);

    const updated = await client.containers.update(
      { id, labels: { "org.lfedge.eve-tasks.version": "2" } },
      { fieldPaths: ["labels.org.lfedge.eve-tasks.version"] },
    );
    expect(updated.labels).toEqual({ ...labels, "org.lfedge.eve-tasks.version": "2" });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(updated.createdAt.getTime());

    const duplicate = await client.containers.create({ id, spec }).catch((err: unknown) => err);
    expect(isAlreadyExists(duplicate)).toBe(true);

    await client.containers.delete(id);
    created.delete(id);
    const gone = await client.containers.get(id).catch((err: unknown) => err);
    expect(isNotFound(gone)).toBe(true);
  });

  it("runs a task: PIDs, IO to a file:// log, cgroup memory limit, SIGTERM, wait, delete", async () => {
    const id = nextId("lifecycle");
    const memoryLimit = 48 * MiB;
    await createContainer(
      id,
      ["/bin/sh", "-c", "trap 'exit 42' TERM; echo hello-stdout; echo hello-stderr >&2; sleep 3600 & wait"],
      memoryLimit,
    );

    const t0 = performance.now();
    const pid = await createTask(id);
    const t1 = performance.now();
    expect(pid).toBeGreaterThan(0);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    const createdTask = await client.tasks.get(id);
    expect(createdTask).toMatchObject({ containerId: id, pid, status: "CREATED", exitedAt: null });

    const exit = client.tasks.wait(id);
    const started = await client.tasks.start(id);
    const t2 = performance.now();
    expect(started.pid).toBe(pid);
    console.log(
      `[containerd.test] Tasks.Create ${(t1 - t0).toFixed(1)} ms, Tasks.Start ${(t2 - t1).toFixed(1)} ms, create+start ${(t2 - t0).toFixed(1)} ms`,
    );

    const running = await client.tasks.get(id);
    expect(running).toMatchObject({ pid, status: "RUNNING", terminal: false });
    expect(running.stdout).toBe(fileUri(logPath(id)));
    expect((await client.tasks.list()).map((p) => p.containerId)).toContain(id);

    const log = await until("both lines in the log", async () => {
      const text = await readLog(id);
      return text.includes("hello-stdout") && text.includes("hello-stderr") ? text : undefined;
    });
    expect(log).toContain("hello-stdout\n");

    const limit = (await readFile(memoryLimitFile(id), "utf8")).trim();
    expect(Number(limit)).toBe(memoryLimit);

    const pids = await until("the shell and its sleep", async () => {
      const list = await client.tasks.pids(id);
      return list.length >= 2 ? list : undefined;
    });
    expect(pids.map((p) => p.pid)).toContain(pid);

    // A running task cannot be deleted (containerd 1.6 says UNKNOWN, not FAILED_PRECONDITION).
    const busy = await client.tasks.delete(id).catch((err: unknown) => err);
    expect(busy).toBeInstanceOf(ContainerdError);
    expect((busy as ContainerdError).details).toContain("running");
    expect((await client.tasks.get(id)).status).toBe("RUNNING");

    await client.tasks.kill(id, "SIGTERM");
    const exited = await exit;
    expect(exited.exitStatus).toBe(42);
    expect(exited.exitedAt).toBeInstanceOf(Date);
    expect(exitSignal(exited.exitStatus)).toBeNull();

    const stopped = await client.tasks.get(id);
    expect(stopped).toMatchObject({ status: "STOPPED", exitStatus: 42 });
    expect(stopped.exitedAt?.getTime()).toBe(exited.exitedAt?.getTime());

    const deleted = await client.tasks.delete(id);
    expect(deleted).toMatchObject({ pid, exitStatus: 42 });
    expect(deleted.exitedAt).toBeInstanceOf(Date);
    expect(existsSync(memoryLimitFile(id))).toBe(false);
    expect(isNotFound(await client.tasks.get(id).catch((err: unknown) => err))).toBe(true);
  });

  it("returns the exit status of a fast-exiting task to a Wait issued before Start", async () => {
    const id = nextId("fast");
    await createContainer(id, ["/bin/sh", "-c", "echo fast-exit; exit 7"]);
    await createTask(id);
    const exit = client.tasks.wait(id);
    await client.tasks.start(id);
    const { exitStatus, exitedAt } = await exit;
    expect(exitStatus).toBe(7);
    expect(exitedAt).toBeInstanceOf(Date);
    expect(
      await until("the log line", async () => ((await readLog(id)).includes("fast-exit") ? true : undefined)),
    ).toBe(true);
    const deleted = await client.tasks.delete(id);
    expect(deleted.exitStatus).toBe(7);
  });

  it("SIGTERM is ignored by a PID 1 without a handler; SIGKILL ends it with 137; an aborted Wait rejects", async () => {
    const id = nextId("kill");
    await createContainer(id, ["/bin/sleep", "3600"]);
    const pid = await createTask(id);
    const exit = client.tasks.wait(id);
    await client.tasks.start(id);

    const controller = new AbortController();
    const abandoned = client.tasks.wait(id, { signal: controller.signal });
    controller.abort(new Error("test gives up"));
    const aborted = await abandoned.catch((err: unknown) => err);
    expect(isCancelled(aborted)).toBe(true);
    expect((aborted as ContainerdError).method).toBe("Tasks.Wait");

    await client.tasks.kill(id, "SIGTERM", { all: true });
    await sleep(300);
    expect((await client.tasks.get(id)).status).toBe("RUNNING");

    await client.tasks.kill(id, 9, { all: true });
    const { exitStatus } = await exit;
    expect(exitStatus).toBe(137);
    expect(exitSignal(exitStatus)).toBe("SIGKILL");
    await until("the anchor to be reaped", () => (existsSync(`/proc/${pid}`) ? undefined : true));
    expect((await client.tasks.delete(id)).exitStatus).toBe(137);
  });

  it("surfaces NOT_FOUND as a typed ContainerdError", async () => {
    const id = `missing-${randomBytes(3).toString("hex")}`;
    const err = await client.tasks.get(id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContainerdError);
    expect(isNotFound(err)).toBe(true);
    const e = err as ContainerdError;
    expect(e).toMatchObject({
      code: "NOT_FOUND",
      method: "Tasks.Get",
      containerId: id,
      namespace: NAMESPACE,
    });
    expect(e.cause).toBeInstanceOf(Error);
    expect(e.message).toContain("NOT_FOUND");
    for (const call of [
      () => client.tasks.kill(id, "SIGTERM"),
      () => client.tasks.start(id),
      () => client.tasks.delete(id),
      () => client.tasks.wait(id),
      () => client.containers.get(id),
      () => client.containers.delete(id),
      () => client.containers.update({ id, labels: {} }),
    ]) {
      const failure = await call().catch((x: unknown) => x);
      expect(isNotFound(failure), String(failure)).toBe(true);
    }
    // Creating a task needs the container.
    expect(isNotFound(await client.tasks.create({ containerId: id }).catch((x: unknown) => x))).toBe(true);
  });

  it("reports UNAVAILABLE for a socket nobody serves", async () => {
    const nobody = new ContainerdClient({ address: join(workDir, "nobody.sock"), namespace: NAMESPACE });
    try {
      const err = await nobody.version().catch((e: unknown) => e);
      expect(isUnavailable(err)).toBe(true);
      const t0 = Date.now();
      expect(isUnavailable(await nobody.waitForReady(300).catch((e: unknown) => e))).toBe(true);
      expect(Date.now() - t0).toBeLessThan(3_000);
    } finally {
      nobody.close();
    }
  });

  it("sees /tasks/create, /tasks/start, /tasks/exit and /tasks/delete with decoded payloads; stops on abort", async () => {
    const id = nextId("events");
    const controller = new AbortController();
    const events = new EventCollector(
      client.events.subscribe({
        filters: ['topic~="^/tasks/"', 'topic~="^/containers/"'],
        signal: controller.signal,
      }),
    );
    await createContainer(id, ["/bin/sh", "-c", "echo events; exit 3"]);
    // Events are not replayed: make sure the subscription is live before the task starts.
    let probe = 0;
    await until("the subscription to see a container update", async () => {
      probe += 1;
      await client.containers.update(
        { id, labels: { probe: String(probe) } },
        { fieldPaths: ["labels.probe"] },
      );
      return events.events.some((e) => e.topic === "/containers/update" && e.payload.id === id)
        ? true
        : undefined;
    });

    const pid = await createTask(id);
    const exit = client.tasks.wait(id);
    await client.tasks.start(id);
    expect((await exit).exitStatus).toBe(3);
    await client.tasks.delete(id);

    const create = await events.next("/tasks/create", (e) => e.payload.containerId === id);
    expect(create.payload.pid).toBe(pid);
    expect(create.payload.io.stdout).toBe(fileUri(logPath(id)));
    expect(create.payload.rootfs[0]).toMatchObject({ type: "bind", options: ["rbind", "ro"] });
    expect(create.namespace).toBe(NAMESPACE);
    expect(create.timestamp).toBeInstanceOf(Date);
    const start = await events.next("/tasks/start", (e) => e.payload.containerId === id);
    expect(start.payload.pid).toBe(pid);
    const exited = await events.next("/tasks/exit", (e) => e.payload.containerId === id);
    expect(exited.payload).toMatchObject({ id, pid, exitStatus: 3 });
    expect(exited.payload.exitedAt).toBeInstanceOf(Date);
    const deleted = await events.next("/tasks/delete", (e) => e.payload.containerId === id);
    expect(deleted.payload).toMatchObject({ pid, exitStatus: 3 });

    await client.containers.delete(id);
    created.delete(id);
    await events.next("/containers/delete", (e) => e.payload.id === id);

    const order = events.events
      .filter((e) => e.topic.startsWith("/tasks/"))
      .map((e) => e.topic)
      .filter((t, i, all) => all.indexOf(t) === i);
    expect(order).toEqual(["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
    expect(events.events.every((e) => e.namespace === NAMESPACE)).toBe(true);

    controller.abort();
    await expect(events.done).resolves.toBeUndefined();
  });

  it("close() cancels a pending Wait and ends subscriptions without an error", async () => {
    const id = nextId("close");
    await createContainer(id, ["/bin/sleep", "3600"]);
    await createTask(id);
    const other = new ContainerdClient({ address: containerdAddress(), namespace: NAMESPACE });
    const events = new EventCollector(other.events.subscribe());
    const waiting = other.tasks.wait(id).catch((err: unknown) => err);
    await sleep(100);
    other.close();
    expect(isCancelled(await waiting)).toBe(true);
    await expect(events.done).resolves.toBeUndefined();
    expect(other.closed).toBe(true);
    expect(isCancelled(await other.version().catch((err: unknown) => err))).toBe(true);

    // A task that was created but never started is rolled back by SIGKILL, Wait, Delete (deleting
    // it directly works too, but the shim then waits 2 s for its IO).
    const exit = client.tasks.wait(id);
    await client.tasks.kill(id, "SIGKILL");
    expect((await exit).exitStatus).toBe(137);
    const deleted = await client.tasks.delete(id);
    expect(deleted).toMatchObject({ id, exitStatus: 137 });
  });
});
