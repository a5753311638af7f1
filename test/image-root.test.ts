// Image roots end to end, with real parts: an open docker-registry on loopback holding a busybox
// image built by the test, a private nats-server and containerd, and the built spec-builder,
// hypervisor-seed-fetcher and task-executor as processes. An app whose root is `root.image` is
// pulled into a seed, built from the image's config and run on an overlay of the seed.
import { existsSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subscribe } from "@eve-tasks/bus";
import type { Subscription } from "@eve-tasks/bus";
import { imageSeedKey, messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, SeedSchema, TaskStatus, TaskStatusSchema } from "@eve-tasks/schemas";
import { startNode, statusWaiter, tempDir, uuidMaker, waitFor } from "./harness/index.js";
import type { StatusWaiter, TestNode } from "./harness/index.js";
import { skopeoCopy, startRegistry } from "./harness/registry.js";
import type { TestRegistry } from "./harness/registry.js";
import { OciLayout, busyboxEntries } from "./harness/registry-images.js";

/** A shell that keeps running until SIGTERM (PID 1 ignores it unless it traps it). */
const STAY = "trap 'exit 0' TERM; /bin/busybox sleep 3600 & wait";

const newUuid = uuidMaker("1a6e0000");

describe("apps whose root is an image", () => {
  let registry: TestRegistry;
  let ref: string;
  let node: TestNode;
  let dataDir: string;
  let containerd: TestNode["containerd"];
  let configs: TestNode["configs"];
  let statuses: Subscription<typeof TaskStatusSchema>;
  let seeds: Subscription<typeof SeedSchema>;
  const history = new Map<string, TaskStatus[]>();

  beforeAll(async () => {
    const dir = await tempDir("img-");
    // The image: a static busybox whose config says what to run, with which env, as root.
    const layout = new OciLayout(join(dir, "layout"));
    const image = await layout.image({
      layers: [{ entries: await busyboxEntries() }],
      config: {
        Entrypoint: ["/bin/sh", "-c"],
        Cmd: [`echo "image default: $GREETING"; ${STAY}`],
        Env: ["PATH=/bin", "GREETING=from-the-image"],
        WorkingDir: "/tmp",
      },
    });
    await layout.tag(image, "app");
    registry = await startRegistry();
    ref = `${registry.host}/app:1`;
    await skopeoCopy(`oci:${layout.dir}:app`, `docker://${ref}`);
    node = await startNode({
      name: "img",
      workers: ["spec-builder", "hypervisor-seed-fetcher", "task-executor"],
      env: () => ({ EVE_NODE_MEMORY_MIB: "2048", EVE_INSECURE_REGISTRIES: registry.host }),
    });
    ({ dataDir, containerd, configs } = node);
    // Every status each app went through, not only its latest.
    const record = (k: string, v: TaskStatus) => void history.set(k, [...(history.get(k) ?? []), v]);
    statuses = await subscribe(node.bus, {
      ...messageTable("TaskStatus"),
      onCreate: record,
      onModify: record,
    });
    seeds = await subscribe(node.bus, {
      ...messageTable("ImageSeed"),
      onCreate: () => undefined,
    });
  }, 90_000);

  afterAll(async () => {
    await seeds?.close();
    await statuses?.close();
    await node?.stop();
  }, 90_000);

  function app(uuid: string, over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `img-${uuid.slice(-6)}`,
      activate: true,
      node: "local",
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { image: { ref } },
      stopTimeoutMs: 3000,
      ...over,
    } as AppInstanceConfigInput;
  }

  const until = (...a: Parameters<StatusWaiter["until"]>) => statusWaiter(statuses, 20_000).until(...a);
  const logOf = (s: TaskStatus) => readFile(s.logPath, "utf8").catch(() => "");
  const logHas = (s: TaskStatus, text: string) =>
    waitFor(async () => (await logOf(s)).includes(text), {
      timeoutMs: 10_000,
      message: `${s.uuid}'s log never said ${JSON.stringify(text)}`,
    }).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; log: ${JSON.stringify(await logOf(s))}`, { cause: err });
    });
  /** The app's upper dir: `<taskDir>/overlay/<key of its seed>/upper` (one seed per app here). */
  const upper = (uuid: string) => {
    const overlay = join(dataDir, "tasks", uuid, "overlay");
    const [seed] = existsSync(overlay) ? readdirSync(overlay) : [];
    return join(overlay, seed ?? "(none yet)", "upper");
  };

  it("runs the image's command, or the app's args with the image's env, each on its own overlay", async () => {
    const plain = newUuid();
    const writerB = newUuid();
    const writerC = newUuid();
    // B and C write the same path; C keeps looking for a file only B writes.
    const argsB = `echo "args: $GREETING $EXTRA in $(pwd)"; echo b > /mark; echo b > /only-b; ${STAY}`;
    const argsC =
      "echo c > /mark; echo c-ready; while :; do [ -e /only-b ] && echo 'c sees b'; " +
      "/bin/busybox sleep 0.2; done";
    await Promise.all([
      configs.publish(plain, app(plain)),
      configs.publish(
        writerB,
        app(writerB, { process: { args: ["/bin/sh", "-c", argsB], env: { EXTRA: "from-the-app" } } }),
      ),
      configs.publish(writerC, app(writerC, { process: { args: ["/bin/sh", "-c", argsC] } })),
    ]);

    const a = await until(plain, (s) => s.state === "RUNNING", "never RUNNING");
    // The image's Entrypoint + Cmd, its env and its WorkingDir.
    await logHas(a, "image default: from-the-image");
    const b = await until(writerB, (s) => s.state === "RUNNING", "never RUNNING");
    await logHas(b, "args: from-the-image from-the-app in /tmp");
    const c = await until(writerC, (s) => s.state === "RUNNING", "never RUNNING");
    await logHas(c, "c-ready");
    // Before RUNNING the status said what it waited for, when that was seen at all (a fast pull
    // can go by between two statuses).
    for (const uuid of [plain, writerB, writerC]) {
      for (const s of history.get(uuid) ?? []) {
        if (s.state === "PENDING") expect(["seed", "pull"]).toContain(s.waitingFor);
      }
      expect(history.get(uuid)?.some((s) => s.state === "FAILED")).toBe(false);
    }

    // Writes land in each app's own upper dir, never in the shared seed.
    const seed = seeds.get(imageSeedKey("local", ref));
    expect(seed?.state).toBe("READY");
    const seedRoot = seed?.rootfsPath ?? "";
    expect(existsSync(join(seedRoot, "bin", "busybox"))).toBe(true);
    await waitFor(
      () => existsSync(join(upper(writerB), "only-b")) && existsSync(join(upper(writerC), "mark")),
      {
        message: "the writes in the upper dirs",
      },
    );
    expect(await readFile(join(upper(writerB), "mark"), "utf8")).toBe("b\n");
    expect(await readFile(join(upper(writerC), "mark"), "utf8")).toBe("c\n");
    expect(existsSync(join(upper(writerC), "only-b"))).toBe(false);
    expect(existsSync(join(seedRoot, "mark"))).toBe(false);
    expect(existsSync(join(seedRoot, "only-b"))).toBe(false);
    // C has looked for B's file several times since B wrote it, and never saw it.
    const lines = (await logOf(c)).split("\n").length;
    await new Promise((r) => setTimeout(r, 600));
    expect((await logOf(c)).split("\n").length).toBe(lines);
    expect(await logOf(c)).not.toContain("c sees b");
    expect(await logOf(a)).not.toContain("args:");

    // Deleting the apps removes their containers and their task dirs (upper dirs included).
    for (const uuid of [plain, writerB, writerC]) await configs.unpublish(uuid);
    await waitFor(() => [plain, writerB, writerC].every((u) => statuses.get(u) === undefined), {
      timeoutMs: 20_000,
      message: "statuses not removed",
    });
    const left = (await containerd.containers.list()).map((x) => x.id);
    for (const uuid of [plain, writerB, writerC]) {
      expect(left).not.toContain(uuid);
      expect(existsSync(join(dataDir, "tasks", uuid))).toBe(false);
    }
    expect(existsSync(join(seedRoot, "bin", "busybox"))).toBe(true);
  }, 40_000);

  it("an image the registry does not have: FAILED with the registry's answer, from the seed fetcher", async () => {
    const uuid = newUuid();
    const missing = `${registry.host}/nothing:1`;
    await configs.publish(uuid, app(uuid, { root: { image: { ref: missing } } }));
    const s = await until(uuid, (x) => x.state === "FAILED", "never FAILED");
    expect(s.taskId).toBe(0);
    expect(s.error?.source).toBe("hypervisor-seed-fetcher");
    expect(s.error?.message).toMatch(new RegExp(`^${missing.replace(/[.]/g, "\\.")}: not found: manifest `));
    expect(s.error?.message).toContain("MANIFEST_UNKNOWN");
    expect(s.error?.message).toContain("404");
    expect((await containerd.containers.list()).map((x) => x.id)).not.toContain(uuid);
    await configs.unpublish(uuid);
    await waitFor(() => statuses.get(uuid) === undefined, { message: "status not removed" });
  }, 30_000);
});
