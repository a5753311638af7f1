// The test harness itself: shared services from globalSetup, per-test nats-servers that can be
// stopped and restarted, worker replicas as separate processes, waitFor, tempDir, test rootfs.
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync, rmdirSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { access, readFile, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { WaitTimeoutError, isProcessAlive } from "@eve-tasks/embedded";
import { harnessEnv, makeRootfs, spawnReplicas, tempDir, waitFor, withPrivateNats } from "./harness/index.js";
import { removeStaleShimSockets, shimSocketFiles } from "./harness/shim-sockets.js";

const execFileAsync = promisify(execFile);
const echoWorker = fileURLToPath(new URL("./harness/fixtures/echo-worker.ts", import.meta.url));

function canConnect(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("harness", () => {
  it("provides the shared nats-server and containerd", async () => {
    const env = harnessEnv();
    expect(env.natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(await canConnect(env.natsUrl)).toBe(true);
    expect(existsSync(env.harnessDir)).toBe(true);
    expect(env.containerdAddress.startsWith(env.harnessDir)).toBe(true);
    const { stdout } = await execFileAsync("ctr", ["--address", env.containerdAddress, "version"]);
    expect(stdout).toMatch(/Server:/);
  });

  it("withPrivateNats stops and restarts a server on the same URL", async () => {
    const nats = await withPrivateNats();
    expect(await canConnect(nats.url)).toBe(true);
    const firstPid = nats.pid;
    await nats.stop();
    expect(nats.running).toBe(false);
    expect(await canConnect(nats.url)).toBe(false);
    expect(isProcessAlive(firstPid ?? -1)).toBe(false);
    await nats.start();
    expect(await canConnect(nats.url)).toBe(true);
    expect(nats.pids).toHaveLength(2);
    expect(nats.pid).not.toBe(firstPid);
    await nats.restart();
    expect(nats.pids).toHaveLength(3);
    await nats.cleanup();
    for (const pid of nats.pids) expect(isProcessAlive(pid)).toBe(false);
  });

  it("withPrivateNats supports await using", async () => {
    let pid: number | undefined;
    {
      await using nats = await withPrivateNats();
      pid = nats.pid;
      expect(isProcessAlive(pid ?? -1)).toBe(true);
    }
    expect(isProcessAlive(pid ?? -1)).toBe(false);
  });

  it("spawnReplicas runs separate processes and captures their lines", async () => {
    const replicas = spawnReplicas({
      entry: echoWorker,
      count: 3,
      name: "echo",
      env: { GREETING: "hi" },
      envFor: (i) => ({ EXTRA: `x${i}` }),
    });
    expect(replicas.pids).toHaveLength(3);
    expect(new Set(replicas.pids).size).toBe(3);
    expect(replicas.pids).not.toContain(process.pid);

    const started = await Promise.all(
      [0, 1, 2].map((i) => replicas.waitForLine((l) => l.replica === i && l.json?.msg === "started", 20_000)),
    );
    for (const [i, line] of started.entries()) {
      expect(line.pid).toBe(replicas.pids[i]);
      expect(line.json).toMatchObject({
        name: `echo-${i}`,
        index: String(i),
        greeting: "hi",
        pid: replicas.pids[i],
      });
    }
    await replicas.waitForLine((l) => l.text === "plain line from echo-2" && l.json === undefined);

    // Killing one replica leaves the others running.
    const exit = await replicas.kill(1, "SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    await replicas.waitForLine((l) => l.replica === 1 && l.json?.msg === "stopping");
    const oldPid = replicas.pids[1];
    expect(isProcessAlive(oldPid ?? -1)).toBe(false);
    expect(isProcessAlive(replicas.pids[0] ?? -1)).toBe(true);

    const fresh = replicas.respawn(1);
    expect(fresh.pid).not.toBe(oldPid);
    await replicas.waitForLine((l) => l.pid === fresh.pid && l.json?.msg === "started", 20_000);

    await expect(replicas.waitForLine((l) => l.text === "never printed", 200)).rejects.toBeInstanceOf(
      WaitTimeoutError,
    );

    await replicas.stopAll();
    expect(replicas.allPids).toHaveLength(4);
    for (const pid of replicas.allPids) expect(isProcessAlive(pid)).toBe(false);
  });

  it("waitFor resolves with the value or fails with the message", async () => {
    let n = 0;
    expect(await waitFor(() => (++n >= 3 ? n : undefined), { intervalMs: 5 })).toBe(3);
    const err: unknown = await waitFor(
      () => {
        throw new Error("boom");
      },
      { timeoutMs: 100, intervalMs: 10, message: "the impossible" },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect((err as Error).message).toMatch(/the impossible; last error: boom/);
  });

  let keptDir = "";
  it("tempDir makes a short directory ...", async () => {
    keptDir = await tempDir("x-");
    expect(keptDir).toMatch(/\/eve-x-[^/]{6}$/);
    await writeFile(join(keptDir, "f"), "1");
  });
  it("... that is gone after the test that made it", async () => {
    await expect(access(keptDir)).rejects.toThrow();
  });

  it("makeRootfs builds a root filesystem with a shell and sleep", async () => {
    const dir = await tempDir("rootfs-");
    const rootfs = await makeRootfs(join(dir, "rootfs"));
    expect(rootfs.commands).toEqual(expect.arrayContaining(["sh", "sleep"]));
    // It runs: chroot into it.
    const { stdout } = await execFileAsync("chroot", [rootfs.path, "/bin/sh", "-c", "echo ok; /bin/sleep 0"]);
    expect(stdout.trim()).toBe("ok");
    expect(await readFile(join(rootfs.path, "bin", "sh"))).toBeInstanceOf(Buffer);
  });

  it("removes the shim sockets a killed process left, and no socket anyone listens on", async () => {
    // containerd makes it with its first shim; made here, it goes again at the end.
    const made = mkdirSync("/run/containerd/s", { recursive: true });
    const before = shimSocketFiles();
    // Two processes listening where shims do; one is then killed, as a test might kill a shim.
    const listen = (path: string) => {
      const child = spawn(
        process.execPath,
        ["-e", `require("node:net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      const up = new Promise((r) => child.stdout.once("data", r));
      return { child, up };
    };
    const deadPath = `/run/containerd/s/eve-tasks-test-${randomUUID()}`;
    const livePath = `/run/containerd/s/eve-tasks-test-${randomUUID()}`;
    const dead = listen(deadPath);
    const live = listen(livePath);
    try {
      await Promise.all([dead.up, live.up]);
      const killed = new Promise((r) => dead.child.once("exit", r));
      dead.child.kill("SIGKILL");
      await killed;
      expect(existsSync(deadPath), "a killed listener cannot remove its socket").toBe(true);

      const removed = removeStaleShimSockets(before);
      expect(removed).toContain(deadPath);
      expect(removed).not.toContain(livePath);
      expect(existsSync(deadPath)).toBe(false);
      expect(existsSync(livePath)).toBe(true);
    } finally {
      dead.child.kill("SIGKILL");
      live.child.kill("SIGKILL");
      rmSync(deadPath, { force: true });
      rmSync(livePath, { force: true });
      // Only if empty: a shim of another test may have put its socket there meanwhile.
      if (made !== undefined)
        for (const dir of ["/run/containerd/s", "/run/containerd"].filter((d) => d.startsWith(made)))
          try {
            rmdirSync(dir);
          } catch {
            // Not empty (or gone): left as it is.
          }
    }
  });
});
