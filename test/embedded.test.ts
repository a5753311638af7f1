// @eve-tasks/embedded against the real binaries: nats-server and a private containerd, started,
// restarted and stopped by PID; cleanupContainerd against real runc tasks; prerequisites.
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import {
  ContainerdStartError,
  DISABLED_CONTAINERD_PLUGINS,
  NatsServerStartError,
  PrerequisiteError,
  ProcessError,
  SocketPathTooLongError,
  canConnect,
  checkPrerequisites,
  cleanupContainerd,
  detectCgroups,
  ensurePrerequisites,
  isProcessAlive,
  renderContainerdConfig,
  spawnLogged,
  startContainerd,
  startNatsServer,
  stopProcess,
} from "@eve-tasks/embedded";
import type { HostFacts } from "@eve-tasks/embedded";
import { removeEmptyCgroup } from "./harness/cgroups.js";
import { deferCleanup, harnessEnv, makeRootfs, tempDir, waitFor } from "./harness/index.js";

const execFileAsync = promisify(execFile);

/** Runs ctr against a containerd socket; resolves with stdout. */
async function ctr(address: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync("ctr", ["--address", address, ...args], { timeout: 30_000 });
  return stdout;
}

/** Connects to a nats-server and resolves with its INFO line (parsed). */
function natsInfo(url: string): Promise<Record<string, unknown>> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let buf = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buf += chunk;
      const end = buf.indexOf("\r\n");
      if (end < 0) return;
      socket.destroy();
      const line = buf.slice(0, end);
      if (!line.startsWith("INFO ")) reject(new Error(`unexpected first line: ${line}`));
      else resolve(JSON.parse(line.slice(5)) as Record<string, unknown>);
    });
    socket.on("error", reject);
    setTimeout(() => {
      socket.destroy();
      reject(new Error(`no INFO from ${url}`));
    }, 5_000);
  });
}

/** PID and parent PID of the tasks in a namespace, from `ctr tasks list`. */
async function taskPids(address: string, namespace: string): Promise<Map<string, number>> {
  const out = await ctr(address, "--namespace", namespace, "tasks", "list");
  const pids = new Map<string, number>();
  for (const line of out.split("\n").slice(1)) {
    const [id, pid] = line.trim().split(/\s+/);
    if (id && pid) pids.set(id, Number(pid));
  }
  return pids;
}

async function parentPid(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

describe("startNatsServer", () => {
  it("starts with JetStream on a random loopback port and accepts a client connection", async () => {
    const dir = await tempDir("nats-");
    const nats = await startNatsServer({ storeDir: join(dir, "store"), serverName: "embedded-test" });
    deferCleanup(() => nats.stop());

    expect(nats.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(nats.port).toBeGreaterThan(0);
    expect(isProcessAlive(nats.pid)).toBe(true);
    const info = await natsInfo(nats.url);
    expect(info).toMatchObject({ jetstream: true, port: nats.port, server_name: "embedded-test" });
    // The ports file of exactly this PID was used.
    expect(await readdir(join(dir, "store"))).toContain(`nats-server_${nats.pid}.ports`);
  });

  it("restarts on the same port and store after a stop, and stop leaves no process with the PID", async () => {
    const dir = await tempDir("nats-");
    const storeDir = join(dir, "store");
    const first = await startNatsServer({ storeDir });
    await first.stop();
    await first.stop(); // idempotent
    expect(isProcessAlive(first.pid)).toBe(false);
    expect(existsSync(`/proc/${first.pid}`)).toBe(false);
    await expect(natsInfo(first.url)).rejects.toThrow();

    const second = await startNatsServer({ storeDir, port: first.port });
    deferCleanup(() => second.stop());
    expect(second.pid).not.toBe(first.pid);
    expect(second.url).toBe(first.url);
    expect((await natsInfo(second.url)).jetstream).toBe(true);
    expect(existsSync(join(storeDir, "jetstream"))).toBe(true);
    // The log is appended across restarts: two starts in one file.
    const log = await readFile(second.logFile, "utf8");
    expect(log.match(/Server is ready/g)).toHaveLength(2);
  });

  it("stops exactly the PID it started: another nats-server keeps running", async () => {
    const dir = await tempDir("nats-");
    const a = await startNatsServer({ storeDir: join(dir, "a") });
    const b = await startNatsServer({ storeDir: join(dir, "b") });
    deferCleanup(() => b.stop());
    await a.stop();
    expect(await a.exited).not.toBeUndefined();
    expect(isProcessAlive(a.pid)).toBe(false);
    expect(isProcessAlive(b.pid)).toBe(true);
    expect((await natsInfo(b.url)).port).toBe(b.port);
    // The shared harness server is untouched too.
    expect((await natsInfo(harnessEnv().natsUrl)).jetstream).toBe(true);
  });

  it("fails with the log tail when the port is taken", async () => {
    const dir = await tempDir("nats-");
    const a = await startNatsServer({ storeDir: join(dir, "a") });
    deferCleanup(() => a.stop());
    const err: unknown = await startNatsServer({
      storeDir: join(dir, "b"),
      port: a.port,
      startTimeoutMs: 5_000,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    const e = err as NatsServerStartError;
    expect(e.name).toBe("NatsServerStartError");
    expect(e.message).toMatch(/address already in use/);
    expect(e.context).toMatchObject({ port: a.port });
    expect(isProcessAlive(Number(e.context.pid))).toBe(false);
  });

  it("fails clearly when the binary does not exist", async () => {
    const dir = await tempDir("nats-");
    await expect(startNatsServer({ storeDir: dir, binary: "no-such-nats-server" })).rejects.toThrow(
      /no-such-nats-server not found/,
    );
  });
});

describe("startContainerd", () => {
  it("runs privately next to the harness containerd and answers on its socket", async () => {
    const dir = await tempDir("ctd-");
    const started = Date.now();
    const containerd = await startContainerd({ dir });
    deferCleanup(() => containerd.stop());
    const startMs = Date.now() - started;
    expect(startMs).toBeLessThan(10_000);

    expect(containerd.address).toBe(join(dir, "containerd.sock"));
    expect(containerd.root.startsWith(dir)).toBe(true);
    expect(containerd.state.startsWith(dir)).toBe(true);
    const version = await ctr(containerd.address, "version");
    expect(version).toMatch(/Server:\s+Version:\s+\S+/);

    // Private: a namespace created here is not seen by the harness containerd.
    const namespace = `private-${process.pid}`;
    await ctr(containerd.address, "namespaces", "create", namespace);
    expect(await ctr(containerd.address, "namespaces", "list", "--quiet")).toContain(namespace);
    expect(await ctr(harnessEnv().containerdAddress, "namespaces", "list", "--quiet")).not.toContain(
      namespace,
    );

    // Its config keeps CRI out and has no TCP listeners.
    const config = await readFile(containerd.configFile, "utf8");
    expect(config).toContain('"io.containerd.grpc.v1.cri"');
    expect(config).toMatch(/tcp_address = ""/);
    expect(await readFile(containerd.logFile, "utf8")).not.toMatch(/level=(error|fatal)/);
  });

  it("stops exactly its own PID; the harness containerd keeps answering", async () => {
    const dir = await tempDir("ctd-");
    const containerd = await startContainerd({ dir });
    await containerd.stop();
    await containerd.stop(); // idempotent
    expect(isProcessAlive(containerd.pid)).toBe(false);
    expect(await canConnect({ path: containerd.address })).toBe(false);
    expect(await ctr(harnessEnv().containerdAddress, "version")).toMatch(/Server:/);
  });

  it("refuses a socket path over the unix limit, before spawning anything", async () => {
    const dir = await tempDir("ctd-");
    const longDir = join(dir, "x".repeat(120));
    const err: unknown = await startContainerd({ dir, socketDir: longDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketPathTooLongError);
    expect((err as SocketPathTooLongError).message).toMatch(/108/);
    expect(existsSync(longDir)).toBe(false);
  });

  it("refuses to take over the socket of a running containerd", async () => {
    const dir = await tempDir("ctd-");
    const socketDir = harnessEnv().harnessDir; // where the harness containerd's socket is
    const err: unknown = await startContainerd({ dir, socketDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContainerdStartError);
    expect((err as Error).message).toMatch(/already listening/);
    expect(await ctr(harnessEnv().containerdAddress, "version")).toMatch(/Server:/);
  });

  it("renders a config with private paths and the host-touching plugins disabled", () => {
    const text = renderContainerdConfig({
      root: "/d/root",
      state: "/d/state",
      temp: "/d/tmp",
      grpcAddress: "/d/c.sock",
      ttrpcAddress: "/d/c.sock.ttrpc",
    });
    expect(text).toMatch(/^version = 2$/m);
    expect(text).toContain('root = "/d/root"');
    expect(text).toContain('state = "/d/state"');
    expect(text).toContain('address = "/d/c.sock"');
    expect(text).toContain('address = "/d/c.sock.ttrpc"');
    for (const plugin of DISABLED_CONTAINERD_PLUGINS) expect(text).toContain(JSON.stringify(plugin));
    expect(text).not.toMatch(/\/run\/containerd|\/var\/lib\/containerd/);
  });
});

describe("cleanupContainerd", () => {
  it("kills and deletes every task and container, so no task or shim outlives it", async () => {
    const dir = await tempDir("ctd-");
    const containerd = await startContainerd({ dir });
    deferCleanup(() => containerd.stop());
    const rootfs = await makeRootfs(join(dir, "rootfs"));
    const address = containerd.address;
    // Unique names and a private runc root: runc's default state dir (/run/containerd/runc/<ns>) is
    // shared by every containerd on the machine.
    const nsA = `eve-embedded-a-${process.pid}`;
    const nsB = `eve-embedded-b-${process.pid}`;
    // Runs after containerd's stop (last in, first out): the tasks are gone by then.
    deferCleanup(async () => {
      await removeEmptyCgroup(nsA);
      await removeEmptyCgroup(nsB);
    });
    const runcRoot = join(dir, "runc");
    const run = (ns: string, id: string): Promise<string> =>
      ctr(
        address,
        "--namespace",
        ns,
        "run",
        "-d",
        "--null-io",
        "--runc-root",
        runcRoot,
        "--rootfs",
        rootfs.path,
        id,
        "/bin/sleep",
        "3600",
      );
    // ctr's default spec keeps RLIMIT_NOFILE at 1024, under the sandbox's hard limit (no CAP_SYS_RESOURCE).
    await run(nsA, "sleeper-1");
    await run(nsA, "sleeper-2");
    await run(nsB, "sleeper-3");
    // A container with no task at all.
    await ctr(
      address,
      "--namespace",
      nsB,
      "containers",
      "create",
      "--rootfs",
      rootfs.path,
      "idle",
      "/bin/true",
    );

    const pids = new Map([...(await taskPids(address, nsA)), ...(await taskPids(address, nsB))]);
    expect([...pids.keys()].sort()).toEqual(["sleeper-1", "sleeper-2", "sleeper-3"]);
    const shims = await Promise.all([...pids.values()].map((pid) => parentPid(pid)));
    for (const pid of [...pids.values(), ...shims]) expect(isProcessAlive(pid)).toBe(true);
    for (const shim of shims) {
      expect(await readFile(`/proc/${shim}/cmdline`, "utf8")).toContain("containerd-shim-runc-v2");
    }

    const result = await cleanupContainerd(address);
    const byNs = new Map(result.namespaces.map((n) => [n.namespace, n]));
    expect([...(byNs.get(nsA)?.tasks ?? [])].sort()).toEqual(["sleeper-1", "sleeper-2"]);
    expect([...(byNs.get(nsB)?.containers ?? [])].sort()).toEqual(["idle", "sleeper-3"]);
    expect(await ctr(address, "--namespace", nsA, "containers", "list", "--quiet")).toBe("");
    expect(await ctr(address, "--namespace", nsB, "containers", "list", "--quiet")).toBe("");
    expect(await ctr(address, "--namespace", nsB, "tasks", "list", "--quiet")).toBe("");
    // The anchors and their shims are gone (a shim may linger as a zombie until reaped).
    await waitFor(() => [...pids.values(), ...shims].every((pid) => !isProcessAlive(pid)), {
      timeoutMs: 10_000,
      message: "tasks and shims to exit",
    });

    // Running it again is a no-op; "not found" races are tolerated.
    const again = await cleanupContainerd(address, [nsA, "never-existed"]);
    expect(again.namespaces.flatMap((n) => [...n.tasks, ...n.containers])).toEqual([]);
  });
});

describe("process helpers", () => {
  it("stopProcess escalates to SIGKILL for a process that ignores SIGTERM, by its exact PID", async () => {
    const dir = await tempDir("proc-");
    const script = join(dir, "stubborn.mjs");
    await writeFile(
      script,
      "process.on('SIGTERM', () => console.log('ignored')); setInterval(() => {}, 1000); console.log('up');\n",
    );
    const proc = await spawnLogged({
      command: process.execPath,
      args: [script],
      logFile: join(dir, "out.log"),
    });
    const bystander = spawn(process.execPath, [script], { stdio: "ignore" });
    deferCleanup(() => stopProcess(bystander, { graceMs: 100 }));
    await waitFor(async () => (await readFile(proc.logFile, "utf8")).includes("up"), {
      message: "stubborn to start",
    });

    const started = Date.now();
    await stopProcess(proc.child, { graceMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(proc.child.signalCode).toBe("SIGKILL");
    expect(await proc.exited).toBeNull();
    expect(await readFile(proc.logFile, "utf8")).toContain("ignored");
    expect(isProcessAlive(proc.pid)).toBe(false);
    // Only that PID: the other copy of the same program is still running.
    expect(isProcessAlive(bystander.pid ?? -1)).toBe(true);

    // The bare-PID form works too.
    await stopProcess(bystander.pid ?? -1, { graceMs: 200 });
    expect(isProcessAlive(bystander.pid ?? -1)).toBe(false);
  });

  it("never signals a process group: PIDs 0 and -1 are refused", async () => {
    expect(isProcessAlive(0)).toBe(false);
    expect(isProcessAlive(-1)).toBe(false);
    await expect(stopProcess(0)).rejects.toBeInstanceOf(ProcessError);
    await expect(stopProcess(-1)).rejects.toThrow(/not a single process ID/);
  });

  it("spawnLogged reports a missing executable clearly", async () => {
    const dir = await tempDir("proc-");
    await expect(
      spawnLogged({ command: "no-such-binary-xyz", args: [], logFile: join(dir, "l") }),
    ).rejects.toThrow(/no-such-binary-xyz: not found/);
  });
});

describe("prerequisites", () => {
  const debianRoot: HostFacts = { isRoot: true, isDebian: true, aptGet: "/usr/bin/apt-get" };
  const silent = (): void => undefined;
  const v1 = () => detectCgroups("cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n");

  it("finds the installed binaries (including those in /usr/sbin) and names the missing ones", () => {
    const all = checkPrerequisites();
    expect(all).toMatchObject({ ok: true, missing: [] });
    expect(all.found["nats-server"]).toMatch(/nats-server$/);
    expect(all.found.runc).toMatch(/runc$/);
    // The helpers' headers, listed by path, are there too.
    expect(all.found["/usr/include/libmnl/libmnl.h"]).toBe("/usr/include/libmnl/libmnl.h");
    const some = checkPrerequisites(["sh", "no-such-command-xyz", "/usr/include/eve-no-such-header.h"]);
    expect(some.ok).toBe(false);
    expect(some.missing).toEqual(["no-such-command-xyz", "/usr/include/eve-no-such-header.h"]);
  });

  it("detects cgroup v1, v2, hybrid and none", () => {
    expect(
      detectCgroups(
        "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\ncgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n",
      ),
    ).toEqual({
      version: "v1",
      hybrid: false,
      controllers: ["cpu", "name=systemd"],
    });
    expect(detectCgroups("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n", "cpu memory pids\n")).toEqual({
      version: "v2",
      hybrid: false,
      controllers: ["cpu", "memory", "pids"],
    });
    expect(
      detectCgroups(
        "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
      ),
    ).toMatchObject({ version: "v1", hybrid: true });
    expect(detectCgroups("proc /proc proc rw 0 0\n").version).toBe("none");
    expect(["v1", "v2"]).toContain(detectCgroups().version);
  });

  it("does nothing when everything is installed", async () => {
    const calls: string[] = [];
    const report = await ensurePrerequisites({
      log: silent,
      host: debianRoot,
      detectCgroups: v1,
      runCommand: (cmd, args) => {
        calls.push([cmd, ...args].join(" "));
        return Promise.resolve();
      },
    });
    expect(report).toMatchObject({ ok: true, installed: [], cgroups: { version: "v1" } });
    expect(calls).toEqual([]);
  });

  it("as root on Debian runs apt-get update and install, and fails if still missing", async () => {
    const calls: Array<{ line: string; env: Readonly<Record<string, string>> }> = [];
    const logged: string[] = [];
    const err: unknown = await ensurePrerequisites({
      commands: ["nats-server", "no-such-command-xyz"],
      log: (l) => logged.push(l),
      host: debianRoot,
      detectCgroups: v1,
      runCommand: (cmd, args, _log, env) => {
        calls.push({ line: [cmd, ...args].join(" "), env });
        return Promise.resolve();
      },
    }).catch((e: unknown) => e);
    expect(calls.map((c) => c.line)).toEqual([
      "/usr/bin/apt-get update",
      "/usr/bin/apt-get install -y nats-server containerd runc iproute2 nftables dnsmasq-base gcc libc6-dev libmnl-dev libnftables-dev",
    ]);
    expect(calls[1]?.env).toEqual({ DEBIAN_FRONTEND: "noninteractive" });
    expect(logged.join("\n")).toMatch(
      /apt-get install -y nats-server containerd runc iproute2 nftables dnsmasq-base gcc libc6-dev libmnl-dev libnftables-dev/,
    );
    expect(err).toBeInstanceOf(PrerequisiteError);
    expect((err as Error).message).toMatch(/still missing .*no-such-command-xyz/);
  });

  it("tells a non-root user to run as root or install the packages", async () => {
    const err: unknown = await ensurePrerequisites({
      commands: ["no-such-command-xyz"],
      log: silent,
      host: { ...debianRoot, isRoot: false },
      detectCgroups: v1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PrerequisiteError);
    expect((err as PrerequisiteError).name).toBe("PrerequisiteError");
    expect((err as Error).message).toMatch(/Run as root/);
    expect((err as Error).message).toMatch(
      /apt-get install -y nats-server containerd runc iproute2 nftables dnsmasq-base gcc libc6-dev libmnl-dev libnftables-dev/,
    );
  });

  it("outside Debian names the packages and the tested platform", async () => {
    const err: unknown = await ensurePrerequisites({
      commands: ["no-such-command-xyz"],
      log: silent,
      host: { isRoot: true, isDebian: false, aptGet: undefined },
      detectCgroups: v1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PrerequisiteError);
    expect((err as Error).message).toMatch(/nats-server .*containerd .*runc/);
    expect((err as Error).message).toMatch(/Debian 12 is the tested platform/);
  });

  it("fails when no cgroup filesystem is mounted", async () => {
    await expect(
      ensurePrerequisites({ log: silent, host: debianRoot, detectCgroups: () => detectCgroups("") }),
    ).rejects.toThrow(/no cgroup filesystem/);
  });
});
