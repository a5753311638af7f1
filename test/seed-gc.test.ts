// Seed garbage collection against a real task: an app runs on an image seed, its config then
// names a ref that fails, and the task keeps running on its last good config. The seed is no
// longer named by any config, but the task's overlay uses it: the collector must keep it (it
// used to remove it under the running task). Once the app is deleted, the seed goes.
// Real parts: docker-registry on loopback, private nats-server and containerd, the built
// spec-builder, hypervisor-seed-fetcher (grace 0) and task-executor.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subscribe } from "@eve-tasks/bus";
import type { Subscription } from "@eve-tasks/bus";
import { imageSeedKey, messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, SeedSchema } from "@eve-tasks/schemas";
import { startNode, statusWaiter, tempDir, uuidMaker, waitFor } from "./harness/index.js";
import type { Replicas, TestNode } from "./harness/index.js";
import { skopeoCopy, startRegistry } from "./harness/registry.js";
import { OciLayout, busyboxEntries } from "./harness/registry-images.js";

const newUuid = uuidMaker("5eed0c00");

describe("seed GC and running tasks", () => {
  let node: TestNode;
  let configs: TestNode["configs"];
  let statuses: TestNode["statuses"];
  let seeds: Subscription<typeof SeedSchema>;
  let fetcher: Replicas;
  let host: string;

  beforeAll(async () => {
    const dir = await tempDir("sgc-");
    const layout = new OciLayout(join(dir, "layout"));
    // The task reads a file of its image every 0.2 s: files vanishing from the lower dir show.
    const image = await layout.image({
      layers: [{ entries: await busyboxEntries() }],
      config: {
        Entrypoint: ["/bin/sh", "-c"],
        Cmd: [
          "trap 'exit 0' TERM; while :; do /bin/busybox cat /etc/hostname || echo LOST; /bin/busybox sleep 0.2; done",
        ],
      },
    });
    await layout.tag(image, "app");
    const reg = await startRegistry();
    host = reg.host;
    await skopeoCopy(`oci:${layout.dir}:app`, `docker://${host}/app:1`);
    node = await startNode({
      name: "sgc",
      workers: ["spec-builder", "hypervisor-seed-fetcher", "task-executor"],
      env: () => ({
        EVE_NODE_MEMORY_MIB: "2048",
        EVE_INSECURE_REGISTRIES: host,
        EVE_SEED_GC_GRACE_MS: "0",
        EVE_SEED_GC_INTERVAL_MS: "1000",
      }),
    });
    ({ configs, statuses } = node);
    fetcher = node.workers["hypervisor-seed-fetcher"]!;
    seeds = await subscribe(node.bus, { ...messageTable("ImageSeed"), onCreate: () => undefined });
  }, 90_000);

  afterAll(async () => {
    await seeds?.close();
    await node?.stop();
  }, 90_000);

  const app = (uuid: string, ref: string): AppInstanceConfigInput => ({
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: `gc-${uuid.slice(-6)}`,
    activate: true,
    node: "local",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 32, vcpus: 1 },
    root: { image: { ref } },
    stopTimeoutMs: 3000,
  });

  /** Resolves once the fetcher finished a collection that started after now. */
  const nextGc = async (): Promise<void> => {
    const from = fetcher.lines.length;
    await fetcher.waitForLine((l) => fetcher.lines.indexOf(l) >= from && l.json?.event === "gc-run", 20_000);
  };

  it("keeps the seed of a task running on its last good config, and removes it once the app is gone", async () => {
    const until = statusWaiter(statuses, 30_000).until;
    const uuid = newUuid();
    const good = `${host}/app:1`;
    await configs.publish(uuid, app(uuid, good));
    const running = await until(uuid, (s) => s.state === "RUNNING", "never RUNNING");
    const seed = seeds.get(imageSeedKey("local", good));
    const rootfs = seed?.rootfsPath ?? "";
    expect(existsSync(join(rootfs, "etc/hostname"))).toBe(true);

    // A new revision names an image that does not exist: the task stays on the good one.
    const bad = `${host}/nothing:1`;
    await configs.publish(uuid, app(uuid, bad));
    const kept = await until(
      uuid,
      (s) => s.error?.source === "hypervisor-seed-fetcher" && s.error.message.includes("not found"),
      "the bad ref's error never reached the status",
    );
    expect(kept.state).toBe("RUNNING");
    expect(kept.taskId).toBe(running.taskId);
    await waitFor(() => seeds.get(imageSeedKey("local", good)) === undefined, {
      timeoutMs: 20_000,
      message: "the good ref's seed was never unpublished (no config names it)",
    });
    // Two more collections (they run every second here): the seed is still there.
    await nextGc();
    await nextGc();
    expect(existsSync(join(rootfs, "etc/hostname"))).toBe(true);
    const gcLine = fetcher.lines.filter((l) => l.json?.event === "gc-run").at(-1);
    expect(gcLine?.json?.mounted).toContain(seed?.digest);
    expect(statuses.get(uuid)?.taskId).toBe(running.taskId);
    const log = await readFile(running.logPath, "utf8");
    expect(log).toContain("busybox");
    expect(log).not.toContain("LOST");

    // The app goes: its task and mount with it, then the seed.
    await configs.unpublish(uuid);
    await waitFor(() => statuses.get(uuid) === undefined, {
      timeoutMs: 20_000,
      message: "status not removed",
    });
    await waitFor(() => !existsSync(rootfs), {
      timeoutMs: 90_000,
      message: "the unused seed was never removed",
    });
  }, 180_000);
});
