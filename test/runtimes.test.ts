// Runtimes are images (DESIGN "Public contract v2"): real workers, containerd, the built-in
// runtime images built from Debian's packages, and runtime images this test writes itself.
//
// - a JAR built here (javac + jar) runs on the built-in `jvm` runtime: its max heap is ¾ of its
//   memory, a stop ends it HALTED, a JAR that over-allocates ends BROKEN, a file that is no JAR
//   ends BROKEN with the JVM's message in the log;
// - an arm64 busybox (Debian's busybox-static:arm64) with `arch: "aarch64"` runs under the
//   `emulators` runtime's qemu-aarch64, registered with binfmt_misc by the executor: `uname -m`
//   says aarch64, a child arm64 process runs, /proc/<taskId>/exe is the emulator;
// - a runtime image the project did not write (busybox + a shell loader) runs an app and is
//   stopped by the StopSignal its image declares, with no change to any worker;
// - bad runtimes, each a clear error in status: no runtime label, a loader that exits at once
//   (BROKEN, its output in the log), a device the node does not allow (EVE_ALLOW_DEVICES=kvm
//   here), an artifact outside EVE_VOLUME_ROOTS.
import { execFile } from "node:child_process";
import { readFileSync, readlinkSync } from "node:fs";
import { chmod, copyFile, mkdir, readFile, readdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import type { ContainerdClient } from "@eve-tasks/containerd";
import { BINFMT_DIR, BINFMT_PREFIX, binfmtEntry, removeBinfmt } from "@eve-tasks/executor";
import { HypervisorSeedSchema, messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, TaskEvent, TaskStatus } from "@eve-tasks/schemas";
import { arm64Busybox } from "./harness/arm64-busybox.js";
import { deferCleanup, startNode, statusWaiter, tempDir, uuidMaker, waitFor } from "./harness/index.js";
import type { TestNode } from "./harness/index.js";
import { OciLayout, busyboxEntries } from "./harness/registry-images.js";
import { RUNTIME_CACHE, builtInRuntime } from "./harness/runtimes.js";

const run = promisify(execFile);
const newUuid = uuidMaker("0b0e7a11");

/** A one-class JAR: prints its max heap, then hogs memory when asked ("hog"), else waits. */
const HEAP_JAVA = `
public class Heap {
  public static void main(String[] args) throws Exception {
    System.out.println("maxHeapBytes=" + Runtime.getRuntime().maxMemory());
    System.out.flush();
    if (args.length > 0 && args[0].equals("hog")) {
      java.util.List<byte[]> kept = new java.util.ArrayList<>();
      while (true) kept.add(new byte[1 << 20]);
    }
    Thread.sleep(Long.MAX_VALUE);
  }
}
`;

/** The loader of the test's own runtime: says what the contract gave it, then waits. */
const OWN_LOADER = `#!/bin/sh
echo "loader args: $*"
env | grep '^EVE_TASK_' | sort
echo "artifact: $(cat /eve/artifacts/note.txt)"
trap 'echo "loader: stopped by USR1"; exit 0' USR1
while :; do sleep 1; done
`;

describe("runtime images", () => {
  let bus: Bus;
  let containerd: ContainerdClient;
  let configs: TestNode["configs"];
  let statuses: TestNode["statuses"];
  let volumes: string;
  let events: readonly TaskEvent[] = [];

  beforeAll(async () => {
    const dir = await tempDir("runtimes-");
    const dataDir = join(dir, "data");
    volumes = join(dir, "volumes");
    await mkdir(volumes, { recursive: true });
    const layouts = join(dir, "layouts");
    // The binfmt_misc entries the executor registered for this test (those of its data dir's
    // seeds), removed once the node has stopped: registered before it, so it runs after.
    deferCleanup(async () => {
      for (const name of await readdir(BINFMT_DIR).catch(() => [] as string[])) {
        if (!name.startsWith(BINFMT_PREFIX)) continue;
        const entry = await readFile(join(BINFMT_DIR, name), "utf8").catch(() => "");
        if (entry.includes(`\ninterpreter ${dataDir}/`)) await removeBinfmt(name);
      }
    });

    // A runtime image: busybox, a loader and the given labels.
    const image = async (
      name: string,
      labels: Record<string, string>,
      loader: string,
      stopSignal?: string,
    ) => {
      const layout = new OciLayout(join(layouts, name));
      const entries = [
        ...(await busyboxEntries()),
        { name: "eve/", type: "directory" as const },
        { name: "eve/loader.sh", content: loader, mode: 0o755 },
      ];
      await layout.tag(
        await layout.image({
          layers: [{ entries }],
          config: {
            Entrypoint: ["/bin/sh", "/eve/loader.sh"],
            Env: ["PATH=/bin"],
            Labels: labels,
            ...(stopSignal ? { StopSignal: stopSignal } : {}),
          },
        }),
        "1",
      );
      return `oci:${layout.dir}:1`;
    };
    const runtimeLabel = { "org.lfedge.eve-tasks.runtime": "1" };
    const [jvm, emulators, own, quitter, tunner, plain] = await Promise.all([
      builtInRuntime("jvm"),
      builtInRuntime("emulators"),
      image("own", { ...runtimeLabel, "org.lfedge.eve-tasks.stop": "signal" }, OWN_LOADER, "SIGUSR1"),
      image("quitter", runtimeLabel, '#!/bin/sh\necho "loader: no such engine, giving up" >&2\nexit 3\n'),
      image("tunner", { ...runtimeLabel, "org.lfedge.eve-tasks.devices": '["tun"]' }, OWN_LOADER),
      image("plain", {}, OWN_LOADER),
    ]);

    // The JARs, built here with Debian's JDK.
    const src = join(dir, "java");
    await mkdir(src, { recursive: true });
    await writeFile(join(src, "Heap.java"), HEAP_JAVA);
    await run("javac", ["-d", src, join(src, "Heap.java")], { timeout: 120_000 });
    await run("jar", ["cfe", join(volumes, "heap.jar"), "Heap", "-C", src, "Heap.class"], {
      timeout: 60_000,
    });
    await writeFile(join(volumes, "notajar.jar"), "this is not a zip file\n");
    await writeFile(join(volumes, "note.txt"), "a note for the loader\n");

    // The arm64 root: busybox and the applets the app runs, as symlinks.
    const armRoot = join(volumes, "arm64-root");
    // Read-only: the mount points runc needs are there already.
    for (const d of ["bin", "proc", "dev", "sys", "tmp"]) await mkdir(join(armRoot, d), { recursive: true });
    await copyFile(await arm64Busybox(), join(armRoot, "bin", "busybox"));
    await chmod(join(armRoot, "bin", "busybox"), 0o755);
    for (const applet of ["sh", "uname", "sleep", "echo", "cat"]) {
      await symlink("busybox", join(armRoot, "bin", applet));
    }

    const node = await startNode({
      name: "runtimes",
      dir,
      workers: ["spec-builder", "hypervisor-seed-fetcher", "task-executor"],
      env: () => ({
        EVE_OCI_LAYOUT_ROOTS: `${RUNTIME_CACHE}:${layouts}`,
        EVE_NODE_MEMORY_MIB: "4096",
        // This node gives tasks /dev/kvm but not /dev/net/tun.
        EVE_ALLOW_DEVICES: "kvm",
      }),
      readyTimeoutMs: 60_000,
      prepare: async (n) => {
        const tools = new Publication(n.bus, messageTable("HypervisorToolsConfig"));
        for (const [name, ref] of Object.entries({
          jvm: jvm.ref,
          emulators: emulators.ref,
          own,
          quitter,
          tunner,
          plain,
        })) {
          await tools.publish(name, { schemaVersion: 1, image: ref });
        }
      },
    });
    ({ bus, containerd, configs, statuses, events } = node);
    // The emulators seed first: an app naming its arch is built with the seed the node has.
    const seeds = await subscribe(bus, {
      agent: "hypervisor-seed-fetcher",
      type: "HypervisorSeed",
      schema: HypervisorSeedSchema,
      onCreate: () => undefined,
    });
    await waitFor(() => seeds.get("local.emulators")?.state === "READY", {
      timeoutMs: 120_000,
      message: "the emulators seed never became READY",
    });
    await seeds.close();
  }, 300_000);

  const until = (uuid: string, pred: (s: TaskStatus) => boolean, what: string, timeoutMs = 120_000) =>
    statusWaiter(statuses).until(uuid, pred, what, timeoutMs);
  const eventsOf = (uuid: string) => events.filter((e) => e.uuid === uuid);
  const logOf = (s: TaskStatus) => readFile(s.logPath, "utf8").catch(() => "");
  const isExecutorExit = (e: TaskEvent) => e.type === "exited" && e.fields.source !== "proc-monitor";
  const logHas = (s: TaskStatus, pattern: RegExp, timeoutMs = 60_000) =>
    waitFor(async () => pattern.test(await logOf(s)), {
      timeoutMs,
      message: `${s.logPath} never matched ${pattern}`,
    }).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; log: ${(await logOf(s)).slice(-2000)}`, { cause: err });
    });

  function runtimeApp(
    uuid: string,
    tools: string,
    artifacts: { name: string; path: string }[],
    over: Partial<AppInstanceConfigInput> = {},
  ): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `${tools}-${uuid.slice(-4)}`,
      activate: true,
      resources: { memoryMiB: 256, vcpus: 1 },
      runtime: { tools, artifacts: artifacts.map((a) => ({ ...a, readOnly: true })) },
      stopTimeoutMs: 5000,
      ...over,
    } as AppInstanceConfigInput;
  }

  it("runs a JAR on the jvm runtime with ¾ of its memory as heap; a stop HALTs it, OOM BREAKs it", async () => {
    const jar = [{ name: "heap.jar", path: join(volumes, "heap.jar") }];
    const app = newUuid();
    const hog = newUuid();
    const bad = newUuid();
    await Promise.all([
      configs.publish(app, runtimeApp(app, "jvm", jar)),
      configs.publish(hog, runtimeApp(hog, "jvm", jar, { process: { args: ["hog"] } })),
      configs.publish(bad, runtimeApp(bad, "jvm", [{ name: "app.jar", path: join(volumes, "notajar.jar") }])),
    ]);
    const s = await until(app, (x) => x.state === "RUNNING", "never RUNNING");
    // The anchor is the JVM the loader exec'd, from the runtime's seed (RUNNING is seen when the
    // loader starts; its exec of java follows a moment later, same PID).
    const exe = await waitFor(
      () => {
        const e = readlinkSync(`/proc/${s.taskId}/exe`);
        return /\/opt\/eve-jre\/bin\/java$/.test(e) ? e : undefined;
      },
      { timeoutMs: 10_000, message: "the loader never exec'd java" },
    );
    expect(exe).toMatch(/\/opt\/eve-jre\/bin\/java$/);
    expect(s.memoryLimitBytes).toBe(256 * 2 ** 20);
    await logHas(s, /maxHeapBytes=\d+/);
    const heap = Number(/maxHeapBytes=(\d+)/.exec(await logOf(s))![1]);
    expect(heap / (256 * 2 ** 20)).toBeGreaterThanOrEqual(0.7);
    expect(heap / (256 * 2 ** 20)).toBeLessThanOrEqual(0.8);
    await configs.publish(app, runtimeApp(app, "jvm", jar, { activate: false }));
    const halted = await until(app, (x) => x.state === "HALTED", "never HALTED", 60_000);
    expect(halted).toMatchObject({ taskId: 0, lastTaskId: s.taskId });
    const exited = await waitFor(() => eventsOf(app).find(isExecutorExit), { timeoutMs: 10_000 });
    expect(exited.fields).toMatchObject({ stoppedBy: "SIGTERM", requested: true });

    const h = await until(hog, (x) => x.state === "BROKEN", "the hog never BROKEN");
    expect(h.exitCode).not.toBe(0);
    expect(await logOf(h)).toMatch(/OutOfMemoryError|Terminating due to java\.lang\.OutOfMemoryError/);

    const b = await until(bad, (x) => x.state === "BROKEN", "the non-JAR never BROKEN");
    expect(await logOf(b)).toMatch(/Invalid or corrupt jarfile \/eve\/artifacts\/app\.jar/);
  }, 300_000);

  it("runs an arm64 busybox under the emulators runtime's qemu-aarch64, registered with binfmt_misc", async () => {
    const uuid = newUuid();
    const app: AppInstanceConfigInput = {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "arm64",
      activate: true,
      arch: "aarch64",
      virtualization: "NOHYPER",
      resources: { memoryMiB: 64, vcpus: 1 },
      root: { volume: { path: join(volumes, "arm64-root"), readOnly: true } },
      process: {
        args: [
          "/bin/sh",
          "-c",
          'echo "arch $(uname -m)"; /bin/sh -c \'echo "child $(uname -m)"\'; sleep 0.1 && echo "applet by name"; trap "exit 0" TERM; sleep 3600 & wait',
        ],
      },
      stopTimeoutMs: 5000,
    };
    await configs.publish(uuid, app);
    const s = await until(uuid, (x) => x.state === "RUNNING", "never RUNNING");
    // runc's start returns once its init is released; the execve (through binfmt) follows.
    const exe = await waitFor(
      () => {
        const e = readlinkSync(`/proc/${s.taskId}/exe`);
        return /\/usr\/bin\/qemu-aarch64-static$/.test(e) ? e : undefined;
      },
      { timeoutMs: 10_000, message: "the anchor never became the emulator" },
    );
    expect(exe).toMatch(/\/usr\/bin\/qemu-aarch64-static$/);
    const entry = readFileSync(join(BINFMT_DIR, binfmtEntry("aarch64", exe).name), "utf8");
    expect(entry).toMatch(/^flags: PF$/m);
    expect(entry).toMatch(/^interpreter \/.*-binfmt-P$/m);
    await logHas(s, /^arch aarch64$/m);
    await logHas(s, /^child aarch64$/m);
    // The shell runs busybox's applets by name: the emulator keeps each program's argv[0].
    await logHas(s, /^applet by name$/m);
    // The emulation tax is in the limit: 64 MiB + what the emulators image declares.
    expect(s.anchorTaxBytes).toBeGreaterThan(0);
    expect(s.memoryLimitBytes).toBe(64 * 2 ** 20 + (s.anchorTaxBytes ?? 0));
    const created = eventsOf(uuid).find((e) => e.type === "created");
    expect(created?.fields).toMatchObject({ arch: "aarch64" });
    await configs.publish(uuid, { ...app, activate: false });
    await until(uuid, (x) => x.state === "HALTED", "never HALTED", 60_000);
  }, 300_000);

  it("runs an app on a runtime image this test wrote, stopped by the StopSignal its image declares", async () => {
    const uuid = newUuid();
    const note = [{ name: "note.txt", path: join(volumes, "note.txt") }];
    await configs.publish(
      uuid,
      runtimeApp(uuid, "own", note, {
        resources: { memoryMiB: 64, vcpus: 2 },
        process: { args: ["hello", "world"] },
      }),
    );
    const s = await until(uuid, (x) => x.state === "RUNNING", "never RUNNING");
    await logHas(s, /^artifact: a note for the loader$/m);
    const log = await logOf(s);
    expect(log).toContain("loader args: hello world");
    expect(log).toContain(`EVE_TASK_UUID=${uuid}`);
    expect(log).toContain("EVE_TASK_MEMORY_MIB=64");
    expect(log).toContain("EVE_TASK_VCPUS=2");
    expect(log).toContain("EVE_TASK_ACCEL=tcg");
    expect(log).toContain("EVE_TASK_ARTIFACTS=note.txt");
    expect(log).toMatch(/^EVE_TASK_ARCH=x86_64$/m);
    expect(log).not.toContain("EVE_TASK_QMP_SOCKET");
    // No tax declared: the limit is the app's memory.
    expect(s.memoryLimitBytes).toBe(64 * 2 ** 20);
    // The same app, deactivated (any other change to its spec would replace the container, and
    // the HALTED of the stop would give way to the INSTALLED of the new one).
    await configs.publish(
      uuid,
      runtimeApp(uuid, "own", note, {
        activate: false,
        resources: { memoryMiB: 64, vcpus: 2 },
        process: { args: ["hello", "world"] },
      }),
    );
    await until(uuid, (x) => x.state === "HALTED", "never HALTED", 60_000);
    const exited = await waitFor(() => eventsOf(uuid).find(isExecutorExit), { timeoutMs: 10_000 });
    expect(exited.fields).toMatchObject({ stoppedBy: "SIGUSR1", exitCode: 0 });
    expect(await logOf(s)).toContain("loader: stopped by USR1");
  }, 180_000);

  it("says in status why a runtime cannot run: no label, a loader that quits, a denied device", async () => {
    const note = [{ name: "note.txt", path: join(volumes, "note.txt") }];
    const plain = newUuid();
    const quitter = newUuid();
    const tunner = newUuid();
    const outside = newUuid();
    await Promise.all([
      configs.publish(plain, runtimeApp(plain, "plain", note)),
      configs.publish(quitter, runtimeApp(quitter, "quitter", note)),
      configs.publish(tunner, runtimeApp(tunner, "tunner", note)),
      configs.publish(outside, runtimeApp(outside, "own", [{ name: "x", path: "/etc/hostname" }])),
    ]);
    const failed = (uuid: string) => until(uuid, (x) => x.state === "FAILED", "never FAILED");
    const p = await failed(plain);
    expect(p.error?.message).toMatch(
      /^runtime "plain" \(oci:.*:1\) cannot run tasks: it has no label org\.lfedge\.eve-tasks\.runtime, so it is not a runtime image$/,
    );
    const t = await failed(tunner);
    expect(t.error).toMatchObject({ source: "task-executor" });
    expect(t.error?.message).toMatch(
      /^refused by this node's policy: runtime\.devices \(declared by runtime "tunner" \(oci:.*\)\): \/dev\/net\/tun is not allowed on this node \(EVE_ALLOW_DEVICES: kvm\)$/,
    );
    const o = await failed(outside);
    expect(o.error?.message).toMatch(
      /^volume \/eve\/artifacts\/x \/etc\/hostname is outside EVE_VOLUME_ROOTS/,
    );
    const q = await until(quitter, (x) => x.state === "BROKEN", "the quitting loader never BROKEN");
    expect(q.exitCode).toBe(3);
    expect(await logOf(q)).toContain("loader: no such engine, giving up");
    for (const uuid of [plain, tunner, outside]) await expect(containerd.tasks.get(uuid)).rejects.toThrow();
  }, 180_000);
});
