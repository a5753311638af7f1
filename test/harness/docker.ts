/**
 * A Docker engine for the tests that need one (the test kit's nats-server in a container): the
 * one DOCKER_HOST or /var/run/docker.sock names when it answers; otherwise, as root with
 * Debian's docker.io installed, a private dockerd started here and stopped by its PID: its own
 * socket, data root, exec root (and so its own containerd), daemon config, key file and cgroup
 * parent; no bridge, no iptables, no IP forwarding or masquerading (containers use the host's
 * network), so it changes nothing on the host outside its directory. Without either, the reason
 * to skip.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rmdir, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { findExecutable, isProcessAlive, removeTreeSafely } from "@eve-tasks/embedded";
import { killProcessesNaming } from "./launcher.js";
import { waitFor } from "./wait.js";

/** An engine to use, and how to let go of it. */
export type DockerEngine =
  | { readonly ok: true; readonly host: string; readonly startedHere: boolean; stop(): Promise<void> }
  | { readonly ok: false; readonly reason: string };

/** Whether the engine at unix socket `socket` answers `GET /_ping`. */
function pings(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path: "/_ping", timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => (req.destroy(), resolve(false)));
    req.end();
  });
}

const socketOf = (host: string): string | undefined =>
  host.startsWith("unix://") ? host.slice("unix://".length) : undefined;

/**
 * The engine to use: an existing one, or a private dockerd. Sets DOCKER_HOST for this process
 * (testcontainers reads it) while a private one runs.
 */
export async function ensureDocker(): Promise<DockerEngine> {
  const given =
    process.env.DOCKER_HOST ??
    (existsSync("/var/run/docker.sock") ? "unix:///var/run/docker.sock" : undefined);
  if (given !== undefined) {
    const socket = socketOf(given);
    if (socket === undefined || (await pings(socket))) {
      return { ok: true, host: given, startedHere: false, stop: () => Promise.resolve() };
    }
  }
  const dockerd = findExecutable("dockerd");
  if (dockerd === undefined)
    return {
      ok: false,
      reason: "no Docker engine: dockerd is not installed (Debian: apt-get install docker.io)",
    };
  if (process.getuid?.() !== 0)
    return { ok: false, reason: "no Docker engine running, and starting dockerd needs root" };

  const dir = await mkdtemp("/tmp/evdock-");
  const socket = join(dir, "docker.sock");
  const cgroupParent = `eve-tasks-test-docker-${process.pid}`;
  const hadRunDocker = existsSync("/run/docker");
  // The trust key would otherwise go to /etc/docker/key.json.
  await writeFile(join(dir, "daemon.json"), JSON.stringify({ "deprecated-key-path": join(dir, "key.json") }));
  const child = spawn(
    dockerd,
    [
      `--host=unix://${socket}`,
      `--data-root=${join(dir, "root")}`,
      `--exec-root=${join(dir, "exec")}`,
      `--pidfile=${join(dir, "dockerd.pid")}`,
      `--config-file=${join(dir, "daemon.json")}`,
      `--cgroup-parent=/${cgroupParent}`,
      "--bridge=none",
      "--iptables=false",
      "--ip6tables=false",
      "--ip-masq=false",
      "--ip-forward=false",
      "--userland-proxy=false",
      "--log-level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"], detached: true },
  );
  let log = "";
  child.stderr.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4_000)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const pid = child.pid!;

  const stop = async (): Promise<void> => {
    if (isProcessAlive(pid)) process.kill(pid, "SIGTERM");
    const done = await Promise.race([
      exited.then(() => true),
      new Promise<false>((r) => setTimeout(r, 20_000, false)),
    ]);
    if (!done && isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    // Its containerd and shims name its directory.
    await killProcessesNaming(dir);
    if (process.env.DOCKER_HOST === `unix://${socket}`) delete process.env.DOCKER_HOST;
    // The cgroups its containers lived under (empty once they are gone).
    for (const hierarchy of await readdir("/sys/fs/cgroup").catch(() => [])) {
      await rmdir(join("/sys/fs/cgroup", hierarchy, cgroupParent)).catch(() => undefined);
    }
    // dockerd makes /run/docker/plugins whatever its exec root; remove it when it was not there.
    if (!hadRunDocker) {
      await rmdir("/run/docker/plugins").catch(() => undefined);
      await rmdir("/run/docker").catch(() => undefined);
    }
    await removeTreeSafely(dir);
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`dockerd exited with ${child.exitCode}`);
        return pings(socket);
      },
      { timeoutMs: 30_000, intervalMs: 200, message: "dockerd to answer" },
    );
  } catch (err) {
    await stop();
    return { ok: false, reason: `dockerd did not start: ${(err as Error).message}\n${log}` };
  }
  process.env.DOCKER_HOST = `unix://${socket}`;
  return { ok: true, host: process.env.DOCKER_HOST, startedHere: true, stop };
}
