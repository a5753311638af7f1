// A containerd shim left without a task, with real parts: containerd 1.6 leaves one when a
// client goes away while its Tasks.Create runs the shim's `start` (an executor SIGKILLed at
// that moment). The test makes one exactly as containerd does (`containerd-shim-runc-v2 … start`
// in a bundle dir, then no Tasks.Create), restarts the real executor, and checks that it ends
// that shim before it creates anything, and leaves a running app's shim and task alone.
import { execFileSync } from "node:child_process";
import { closeSync, constants, existsSync, openSync, readlinkSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { endShim, findShimDaemons } from "@eve-tasks/executor";
import type { ShimDaemon } from "@eve-tasks/executor";
import { CONTAINERD_NAMESPACE } from "@eve-tasks/schemas";
import { deferCleanup, makeRootfs, startNode, uuidMaker, waitFor } from "./harness/index.js";

const newUuid = uuidMaker("1ea4ed5e");

/**
 * Starts a shim daemon for `id` the way containerd's Tasks.Create does, and creates no task in
 * it. The daemon opens its log FIFO (which containerd makes and reads) after `start` returns;
 * in the leak containerd has closed its end. `logRead` "until-open": the test reads the FIFO
 * until the daemon has it open, so the daemon gets to serve; "never": it blocks opening it.
 */
async function leakShim(
  address: string,
  id: string,
  bundle: string,
  logRead: "until-open" | "never",
): Promise<ShimDaemon & { socket: string }> {
  await mkdir(bundle, { recursive: true });
  await writeFile(join(bundle, "config.json"), "{}");
  const log = join(bundle, "log");
  execFileSync("mkfifo", [log]);
  const reader = logRead === "never" ? undefined : openSync(log, constants.O_RDWR | constants.O_NONBLOCK);
  let shim: (ShimDaemon & { socket: string }) | undefined;
  try {
    const socket = execFileSync(
      "containerd-shim-runc-v2",
      [
        "-namespace",
        CONTAINERD_NAMESPACE,
        "-address",
        address,
        "-publish-binary",
        "containerd",
        "-id",
        id,
        "start",
      ],
      { cwd: bundle, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" },
    ).trim();
    const found = findShimDaemons(address, CONTAINERD_NAMESPACE).find((s) => s.id === id);
    if (!found) throw new Error(`no shim daemon for ${id} after its start (socket ${socket})`);
    const path = socket.replace(/^unix:\/\//, "");
    const daemon = { ...found, socket: path };
    shim = daemon;
    deferCleanup(async () => {
      await endShim(daemon);
      if (path.startsWith("/") && existsSync(path)) await rm(path, { force: true });
    });
    if (reader !== undefined) {
      // Its stderr becomes the FIFO once it has opened it.
      await waitFor(() => readlinkSync(`/proc/${daemon.pid}/fd/2`) === log, {
        timeoutMs: 10_000,
        message: `shim ${daemon.pid} never opened its log`,
      });
    }
  } finally {
    if (reader !== undefined) closeSync(reader);
  }
  return shim;
}

describe("a containerd shim left without a task", () => {
  it("is ended by the executor when it starts; a running app's shim and task are left alone", async () => {
    const node = await startNode({
      name: "leaked-shim",
      workers: ["spec-builder", "task-executor"],
      prepare: async (n) => void (await makeRootfs(join(n.volumes, "busybox"))),
    });
    const running = newUuid();
    await node.configs.publish(running, {
      schemaVersion: 1,
      uuid: running,
      version: "1",
      displayName: "leaked-shim-neighbour",
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: join(node.volumes, "busybox"), readOnly: true } },
      process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], cwd: "/", user: "0:0" },
    });
    const before = await node.until(running, (s) => s.state === "RUNNING", "never RUNNING", 60_000);
    const shims = () => findShimDaemons(node.containerdAddress, CONTAINERD_NAMESPACE);
    const neighbour = shims().find((s) => s.id === running);
    expect(neighbour, "the running app's shim").toBeDefined();

    // Shims with no task and no container, as a cut-short Tasks.Create leaves them: one that got
    // as far as serving, one blocked opening its log.
    const serving = await leakShim(
      node.containerdAddress,
      newUuid(),
      join(node.dir, "leaked-1"),
      "until-open",
    );
    const blocked = await leakShim(node.containerdAddress, newUuid(), join(node.dir, "leaked-2"), "never");
    for (const s of [serving, blocked])
      expect(await node.containerd.tasks.get(s.id).catch(() => undefined)).toBeUndefined();

    const executor = node.workers["task-executor"]!;
    await executor.kill(0, "SIGTERM");
    const restarted = executor.respawn(0);
    await executor.waitForLine((l) => l.pid === restarted.pid && l.json?.event === "running", 60_000);

    const ended = executor.lines
      .filter((l) => l.pid === restarted.pid && l.json?.event === "leaked-shim-ended")
      .map((l) => ({ uuid: l.json?.uuid, pid: l.json?.shimPid, signal: l.json?.signal }));
    // The serving one ends on SIGTERM (SIGKILL only if the machine is too slow for the grace).
    const byUuid = new Map(ended.map((e) => [e.uuid, e]));
    expect(ended).toHaveLength(2);
    expect(byUuid.get(serving.id)).toMatchObject({ pid: serving.pid });
    expect(["SIGTERM", "SIGKILL"]).toContain(byUuid.get(serving.id)?.signal);
    expect(byUuid.get(blocked.id)).toEqual({ uuid: blocked.id, pid: blocked.pid, signal: "SIGKILL" });
    await waitFor(() => !shims().some((s) => s.pid === serving.pid || s.pid === blocked.pid), {
      timeoutMs: 5_000,
      message: "a leaked shim still running",
    });
    // Their sockets in containerd's socket dir went with them, the SIGKILLed one's too.
    expect(blocked.socket).toMatch(/^\//);
    for (const s of [serving, blocked]) expect(existsSync(s.socket), s.socket).toBe(false);
    // The running app: the same shim, the same task, never restarted.
    expect(shims().filter((s) => s.id === running)).toEqual([neighbour]);
    const task = await node.containerd.tasks.get(running);
    expect({ pid: task.pid, status: task.status }).toEqual({ pid: before.taskId, status: "RUNNING" });
    expect(node.statuses.get(running)).toMatchObject({
      state: "RUNNING",
      taskId: before.taskId,
      restarts: 0,
    });
  }, 150_000);
});
