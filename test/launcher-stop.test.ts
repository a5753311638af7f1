// Ctrl-C of `npm start`, end to end: the built launcher with the real spec-builder,
// hypervisor-seed-fetcher and task-executor in a temporary data dir runs a VM (the built-in tools
// image and the test guest, under TCG) and a container. On SIGINT the launcher asks the
// task-executor to stop the node's tasks: the VM through QMP system_powerdown (the guest powers
// off), the container by SIGTERM, as any stop of theirs goes. The next start runs them again.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { cp, copyFile, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, readEvents, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { isSameProcessAlive, readStateFile, stateFilePath } from "@eve-tasks/launcher";
import { natsCredentialsDir, natsPasswordFile, removeTreeSafely } from "@eve-tasks/embedded";
import { messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, TaskEvent, TaskStatus, TaskStatusSchema } from "@eve-tasks/schemas";
import { buildToolsImage, defaultToolsImageDir } from "@eve-tasks/tools-image";
import { BUILT, makeRootfs, statusWaiter, uuidMaker, waitFor } from "./harness/index.js";
import { endLeftoverTasks } from "./harness/leftover-tasks.js";
import { ensureVmGuest } from "./harness/vm-guest.js";
import type { VmGuest } from "./harness/vm-guest.js";

const launcherMain = path.join(import.meta.dirname, "..", "packages/launcher/dist/main.js");
const TOOLS_CACHE = process.env.EVE_TEST_TOOLS_CACHE ?? "/var/cache/eve-tasks/tools-image";
const newUuid = uuidMaker("c7c7c7c7");

let tmp: string;
let dataDir: string;
let servicesDir: string;
let guest: VmGuest;
/** Every process a launcher said it owns, with its start ticks (cleanup never hits a reused PID). */
const owned = new Map<number, number | undefined>();

interface RunningLauncher {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}
let current: RunningLauncher | undefined;

function startLauncher(): RunningLauncher {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    EVE_DATA_DIR: dataDir,
    EVE_RUN_DIR: path.join(tmp, "run"),
    // Nested KVM here opens /dev/kvm and then hangs: no probe, TCG.
    EVE_ACCEL: "tcg",
    LOG_LEVEL: "info",
  };
  delete env.NATS_URL;
  delete env.CONTAINERD_ADDRESS;
  delete env.EVE_NODE;
  delete env.EVE_VOLUME_ROOTS;
  const child = spawn(process.execPath, [launcherMain, "--services-dir", servicesDir], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  current = { child, output: () => output, exited };
  return current;
}

/** npm start's NATS user `controller` (writes AppInstanceConfig, reads statuses and events). */
function controller(): { user: string; passwordFile: string } {
  return { user: "controller", passwordFile: natsPasswordFile(natsCredentialsDir(dataDir), "controller") };
}

/** The launcher's state file once it runs the task-executor (synchronized), recording its PIDs. */
async function running(l: RunningLauncher) {
  return waitFor(
    async () => {
      const s = await readStateFile(stateFilePath(dataDir));
      if (!s) return undefined;
      for (const r of [s.nats.process, s.containerd.process]) if (r) owned.set(r.pid, r.startTicks);
      for (const w of Object.values(s.workers)) if (w.pid) owned.set(w.pid, w.startTicks ?? undefined);
      const ex = s.workers["task-executor"];
      return s.launcher.phase === "running" && ex?.state === "running" && s.nats.url ? s : undefined;
    },
    { timeoutMs: 120_000, message: "the launcher to run its workers" },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n--- launcher output ---\n${l.output()}`, { cause: err });
  });
}

async function sigint(l: RunningLauncher): Promise<void> {
  l.child.kill("SIGINT");
  const { code, signal } = await l.exited;
  expect({ code, signal, output: code === 0 ? "" : l.output() }).toEqual({
    code: 0,
    signal: null,
    output: "",
  });
  current = undefined;
}

beforeAll(async () => {
  // Short: containerd's sockets and the QMP socket live in the run dir (108-byte limit).
  tmp = await mkdtemp("/tmp/evs-");
  dataDir = path.join(tmp, "data");
  servicesDir = path.join(tmp, "services");
  for (const [name, main] of [
    ["spec-builder", BUILT.specBuilder],
    ["hypervisor-seed-fetcher", BUILT.seedFetcher],
    ["task-executor", BUILT.taskExecutor],
  ] as const) {
    await mkdir(path.join(servicesDir, name, "dist"), { recursive: true });
    await writeFile(
      path.join(servicesDir, name, "dist", "main.js"),
      `import ${JSON.stringify(pathToFileURL(main).href)};\n`,
    );
  }
  // The built-in tools image, from the tests' cache (the launcher finds it built).
  const [image, vmGuest] = await Promise.all([buildToolsImage({ outDir: TOOLS_CACHE }), ensureVmGuest()]);
  guest = vmGuest;
  await cp(image.layoutDir, path.join(defaultToolsImageDir(dataDir), image.tag), { recursive: true });
  // The guest and a busybox root under the default volume root.
  const volumes = path.join(dataDir, "volumes");
  await mkdir(path.join(volumes, "guest"), { recursive: true });
  await copyFile(guest.kernelPath, path.join(volumes, "guest", "vmlinuz"));
  await copyFile(guest.initrdPath, path.join(volumes, "guest", "initrd.img"));
  await makeRootfs(path.join(volumes, "busybox"));
}, 600_000);

afterAll(async () => {
  if (current && current.child.exitCode === null && current.child.signalCode === null) {
    current.child.kill("SIGKILL");
  }
  for (const [pid, ticks] of owned) {
    if (isSameProcessAlive({ pid, startTicks: ticks })) process.kill(pid, "SIGKILL");
  }
  // A test that failed before its Ctrl-C leaves tasks running under their shims.
  if (tmp) await endLeftoverTasks(path.join(tmp, "run", "containerd.sock"));
  if (tmp) await removeTreeSafely(tmp);
}, 60_000);

describe("Ctrl-C of the launcher", () => {
  it("stops a VM through QMP system_powerdown and a container by SIGTERM; the next start runs both again", async () => {
    const vm = newUuid();
    const box = newUuid();
    const volumes = path.join(dataDir, "volumes");
    const vmApp: AppInstanceConfigInput = {
      schemaVersion: 1,
      uuid: vm,
      version: "1",
      displayName: "vm",
      activate: true,
      virtualization: "HVM",
      resources: { memoryMiB: 128, vcpus: 1 },
      vm: {
        kernel: path.join(volumes, "guest", "vmlinuz"),
        initrd: path.join(volumes, "guest", "initrd.img"),
        cmdline: guest.cmdline,
      },
      stopTimeoutMs: 30_000,
    };
    const boxApp: AppInstanceConfigInput = {
      schemaVersion: 1,
      uuid: box,
      version: "1",
      displayName: "box",
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: path.join(volumes, "busybox"), readOnly: true } },
      process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] },
      stopTimeoutMs: 10_000,
    };

    // First start: both apps run, the guest boots.
    const first = startLauncher();
    let s = await running(first);
    let bus: Bus = await connectBus({
      servers: s.nats.url!,
      credentials: controller(),
      name: "launcher-stop-test",
    });
    let statuses: Subscription<typeof TaskStatusSchema> = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
    const configs = (b: Bus) => new Publication(b, messageTable("AppInstanceConfig"));
    await configs(bus).publish(vm, vmApp);
    await configs(bus).publish(box, boxApp);
    const vmRun = await statusWaiter(statuses).until(
      vm,
      (x) => x.state === "RUNNING",
      "VM never RUNNING",
      180_000,
    );
    const boxRun = await statusWaiter(statuses).running(box);
    await waitFor(
      async () => (await readFile(vmRun.logPath, "utf8").catch(() => "")).includes(guest.marker),
      {
        timeoutMs: 180_000,
        message: "the guest never came up",
      },
    );
    await statuses.close();
    await bus.close();

    // Ctrl-C: the executor stops both, each by its kind, before the workers and services stop.
    await sigint(first);
    const out = first.output();
    expect(out).toContain(`task ${vm} (pid ${vmRun.taskId}) stopped by system_powerdown`);
    expect(out).toContain(`task ${box} (pid ${boxRun.taskId}) stopped by SIGTERM`);
    expect(out).toContain("2 task(s) stopped; they start again with the next npm start");
    expect(isSameProcessAlive({ pid: vmRun.taskId })).toBe(false);
    expect(isSameProcessAlive({ pid: boxRun.taskId })).toBe(false);
    expect(await readFile(vmRun.logPath, "utf8")).toContain(guest.powerdownMarker);

    // Second start: both run again (new PIDs), and the VM's exit event says how it was stopped.
    const second = startLauncher();
    s = await running(second);
    bus = await connectBus({ servers: s.nats.url!, credentials: controller(), name: "launcher-stop-test-2" });
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
    const again = (uuid: string, before: TaskStatus) =>
      statusWaiter(statuses).until(
        uuid,
        (x) => x.state === "RUNNING" && x.taskId !== before.taskId,
        "not started again",
        180_000,
      );
    expect((await again(vm, vmRun)).taskId).not.toBe(vmRun.taskId);
    expect((await again(box, boxRun)).taskId).not.toBe(boxRun.taskId);
    const events: TaskEvent[] = [];
    for await (const e of readEvents(bus, { uuid: vm })) events.push(e.event);
    const exited = events.find(
      (e) => e.type === "exited" && e.fields.source !== "proc-monitor" && e.fields.anchorPid === vmRun.taskId,
    );
    expect(exited?.fields).toMatchObject({ stoppedBy: "system_powerdown", requested: true, exitCode: 0 });
    expect(events.find((e) => e.type === "stopping" && e.fields.anchorPid === vmRun.taskId)?.message).toBe(
      "stopping: the node is stopping its tasks (QMP system_powerdown, quit after 30000 ms, SIGKILL 5000 ms later)",
    );

    // Done: delete both apps, then stop.
    await configs(bus).unpublish(vm);
    await configs(bus).unpublish(box);
    await waitFor(() => statuses.get(vm) === undefined && statuses.get(box) === undefined, {
      timeoutMs: 60_000,
      message: "apps not removed",
    });
    await statuses.close();
    await bus.close();
    await sigint(second);
  }, 900_000);
});
