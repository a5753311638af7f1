// The task-executor's lease on its node, with real parts: when another process holds it, the
// executor stops and exits non-zero (so its supervisor starts it again), and the node's tasks go
// on running meanwhile; started again once the lease is free, it takes the node back.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { LeaseValue } from "@eve-tasks/bus";
import { makeRootfs, startNode, uuidMaker, waitFor } from "./harness/index.js";

const newUuid = uuidMaker("1ea5e000");

describe("the task-executor's lease", () => {
  it("lost to another holder: the executor exits 1, its task runs on, and a new executor adopts it", async () => {
    const node = await startNode({
      name: "executor-lease",
      workers: ["spec-builder", "task-executor"],
      prepare: async (n) => void (await makeRootfs(join(n.volumes, "busybox"))),
    });
    const uuid = newUuid();
    await node.configs.publish(uuid, {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "lease-neighbour",
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: join(node.volumes, "busybox"), readOnly: true } },
      process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], cwd: "/", user: "0:0" },
    });
    const running = await node.until(uuid, (s) => s.state === "RUNNING", "never RUNNING", 60_000);

    // Another executor's lease, as one on another host would write it.
    const kv = await node.bus.bucket("task-executor");
    const keys: string[] = [];
    for await (const k of await kv.keys("TaskExecutorLease.>")) keys.push(k);
    expect(keys).toHaveLength(1);
    const held = (await kv.get(keys[0]!))!.json<LeaseValue>();
    await kv.put(keys[0]!, JSON.stringify({ ...held, pid: held.pid + 1, host: "elsewhere" }));

    const executor = node.workers["task-executor"]!;
    const exit = await Promise.race([
      executor.replicas[0]!.exited,
      new Promise<"running">((r) => setTimeout(() => r("running"), 20_000)),
    ]);
    expect(exit, "the executor that lost its lease").toEqual({ code: 1, signal: null });
    expect(executor.lines.some((l) => l.json?.event === "lease-lost")).toBe(true);

    // Its task did not notice.
    const task = await node.containerd.tasks.get(uuid);
    expect({ pid: task.pid, status: task.status }).toEqual({ pid: running.taskId, status: "RUNNING" });

    // The other holder goes away; started again, the executor takes the node back, task untouched.
    await kv.purge(keys[0]!);
    const restarted = executor.respawn(0);
    await executor.waitForLine((l) => l.pid === restarted.pid && l.json?.event === "running", 60_000);
    await waitFor(async () => (await kv.get(keys[0]!))?.json<LeaseValue>().pid === restarted.pid, {
      timeoutMs: 10_000,
      message: "the lease is the new executor's",
    });
    expect((await node.containerd.tasks.get(uuid)).pid).toBe(running.taskId);
    await node.stop();
  }, 180_000);
});
