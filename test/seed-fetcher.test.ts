// Integration: the built hypervisor-seed-fetcher (`npx tsc -b services/hypervisor-seed-fetcher`
// first) as two replica processes on one node, against a private nats-server and a real
// docker-registry on loopback: HypervisorToolsConfig and apps' image roots become seeds
// (PULLING → READY with the unpacked root), failures end in the seed, unused seeds are collected.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { SeedSchema, hypervisorSeedKey, imageSeedKey, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  Seed,
  AppInstanceConfigSchema,
  HypervisorToolsConfigSchema,
} from "@eve-tasks/schemas";
import { deferCleanup, spawnReplicas, tempDir, waitFor, withPrivateNats } from "./harness/index.js";
import type { Replicas } from "./harness/index.js";
import { skopeoCopy, startRegistry } from "./harness/registry.js";
import type { TestRegistry } from "./harness/registry.js";
import { buildTestImages } from "./registry/images.js";
import type { TestImages } from "./registry/images.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const ENTRY = path.join(REPO, "services/hypervisor-seed-fetcher/dist/main.js");

let bus: Bus;
let images: TestImages;
let registry: TestRegistry;
let fetchers: Replicas;
let dataDir: string;
let tools: Publication<typeof HypervisorToolsConfigSchema>;
let apps: Publication<typeof AppInstanceConfigSchema>;
/** Every seed value seen, per `<Type>.<key>`, in order. */
const history = new Map<string, Seed[]>();
const current = new Map<string, Seed | undefined>();

function imageApp(uuid: string, ref: string): AppInstanceConfigInput {
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: `img-${uuid.slice(0, 4)}`,
    node: "local",
    arch: "x86_64",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { image: { ref } },
  };
}

function seedAt(type: string, key: string, state: Seed["state"], timeoutMs = 30_000): Promise<Seed> {
  return waitFor(
    () => {
      const s = current.get(`${type}.${key}`);
      return s?.state === state ? s : undefined;
    },
    { timeoutMs, message: `${type}.${key} ${state} (now ${JSON.stringify(current.get(`${type}.${key}`))})` },
  );
}

beforeAll(async () => {
  const dir = await tempDir("sf-");
  dataDir = path.join(dir, "data");
  images = await buildTestImages(dir);
  const [nats, reg] = await Promise.all([withPrivateNats(), startRegistry()]);
  registry = reg;
  const src = (tag: string): string => `oci:${images.dir}:${tag}`;
  await Promise.all([
    skopeoCopy(src("busybox"), `docker://${registry.host}/bb:1`),
    skopeoCopy(src("whiteouts"), `docker://${registry.host}/wh:1`),
    skopeoCopy(src("multi"), `docker://${registry.host}/multi:1`, ["--all"]),
    skopeoCopy(src("zstd"), `docker://${registry.host}/zstd:1`),
  ]);
  bus = await connectBus({ servers: nats.url, name: "seed-fetcher-test" });
  deferCleanup(() => bus.drain());
  await ensureBuckets(bus);
  tools = new Publication(bus, messageTable("HypervisorToolsConfig"));
  apps = new Publication(bus, messageTable("AppInstanceConfig"));
  for (const type of ["HypervisorSeed", "ImageSeed"]) {
    const record = (key: string, value: Seed | undefined): void => {
      current.set(`${type}.${key}`, value);
      if (value) history.set(`${type}.${key}`, [...(history.get(`${type}.${key}`) ?? []), value]);
    };
    const sub = await subscribe(bus, {
      agent: "hypervisor-seed-fetcher",
      type,
      schema: SeedSchema,
      onCreate: (key, value) => record(key, value),
      onModify: (key, value) => record(key, value),
      onDelete: (key) => record(key, undefined),
    });
    deferCleanup(() => sub.close());
  }
  fetchers = spawnReplicas({
    entry: ENTRY,
    count: 2,
    name: "seed-fetcher",
    env: {
      NATS_URL: nats.url,
      EVE_DATA_DIR: dataDir,
      EVE_RUN_DIR: path.join(dir, "run"),
      EVE_INSECURE_REGISTRIES: `${registry.host},127.0.0.1:1`,
      EVE_SEED_GC_GRACE_MS: "0",
      EVE_OCI_LAYOUT_ROOTS: dir,
      LOG_LEVEL: "info",
    },
  });
  await Promise.all(
    [0, 1].map((i) => fetchers.waitForLine((l) => l.replica === i && l.json?.event === "started", 20_000)),
  );
}, 90_000);

describe("hypervisor-seed-fetcher", () => {
  it("seeds every HypervisorToolsConfig and image root: PULLING, then READY with the unpacked root", async () => {
    await tools.publish("default", { schemaVersion: 1, image: `oci:${images.dir}:busybox` });
    await tools.publish("remote", { schemaVersion: 1, image: `${registry.host}/multi:1` });
    const uuids = [randomUUID(), randomUUID(), randomUUID()];
    const refs = [`${registry.host}/wh:1`, `${registry.host}/bb:1`, `${registry.host}/zstd:1`];
    await Promise.all(uuids.map((u, i) => apps.publish(u, imageApp(u, refs[i] ?? ""))));

    const hv = await seedAt("HypervisorSeed", hypervisorSeedKey("local", "default"), "READY");
    expect(hv).toMatchObject({
      schemaVersion: 1,
      state: "READY",
      ref: `oci:${images.dir}:busybox`,
      digest: images.busybox.digest,
      indexDigest: null,
      platform: "linux/amd64",
      process: {
        args: ["/bin/sh", "-c", "echo hello"],
        env: { PATH: "/bin", GREETING: "hi=there" },
        cwd: "/tmp",
        user: "1000:1000",
      },
      error: null,
    });
    expect(hv.rootfsPath).toBe(path.join(dataDir, "seeds", images.busybox.digest.slice(7), "rootfs"));
    expect((await stat(path.join(hv.rootfsPath ?? "", "bin/busybox"))).mode & 0o111).not.toBe(0);

    const remote = await seedAt("HypervisorSeed", hypervisorSeedKey("local", "remote"), "READY");
    expect(remote).toMatchObject({ indexDigest: images.multi.digest, platform: "linux/amd64" });
    expect(await readFile(path.join(remote.rootfsPath ?? "", "which"), "utf8")).toBe("amd64\n");

    const wh = await seedAt("ImageSeed", imageSeedKey("local", refs[0] ?? "", "x86_64"), "READY");
    expect(wh.digest).toBe(images.whiteouts.digest);
    expect(await readFile(path.join(wh.rootfsPath ?? "", "opq/new"), "utf8")).toBe("new\n");
    expect(existsSync(path.join(wh.rootfsPath ?? "", "opq/lower1"))).toBe(false);
    await seedAt("ImageSeed", imageSeedKey("local", refs[1] ?? "", "x86_64"), "READY");
    await seedAt("ImageSeed", imageSeedKey("local", refs[2] ?? "", "x86_64"), "READY");

    // Each READY seed came after a PULLING one; progress, when given, never goes backwards.
    for (const [key, values] of history) {
      if (values.at(-1)?.state !== "READY") continue;
      expect(values[0]?.state, key).toBe("PULLING");
      const done = values.flatMap((v) => (v.progress ? [v.progress.doneBytes] : []));
      expect(
        [...done].sort((a, b) => a - b),
        key,
      ).toEqual(done);
    }
    // Replicas shared the work: no seed was pulled by both.
    const ready = fetchers.lines.filter((l) => l.json?.event === "seed-ready");
    const bySeed = new Map<string, Set<number>>();
    for (const l of ready) {
      const seed = String(l.json?.seed);
      bySeed.set(seed, (bySeed.get(seed) ?? new Set()).add(l.replica));
    }
    for (const [seed, replicas] of bySeed) expect(replicas.size, seed).toBe(1);
    expect(bySeed.size).toBeGreaterThanOrEqual(5);
  });

  it("puts errors in the seed: not found, unknown platform, registry down (retried)", async () => {
    const missing = randomUUID();
    await apps.publish(missing, imageApp(missing, `${registry.host}/nothing:1`));
    const arm = randomUUID();
    await apps.publish(arm, {
      ...imageApp(arm, `${registry.host}/bb:1`),
      arch: "riscv64",
    });
    await tools.publish("down", { schemaVersion: 1, image: "127.0.0.1:1/tools:1" });

    const nf = await seedAt(
      "ImageSeed",
      imageSeedKey("local", `${registry.host}/nothing:1`, "x86_64"),
      "FAILED",
    );
    expect(nf.error?.message).toBe(
      `not found: manifest ${registry.host}/nothing:1 (MANIFEST_UNKNOWN: manifest unknown) (404 from http://${registry.host}/v2/nothing/manifests/1)`,
    );
    const down = await seedAt("HypervisorSeed", hypervisorSeedKey("local", "down"), "FAILED");
    expect(down.error?.message).toMatch(
      /^registry unreachable: http:\/\/127\.0\.0\.1:1: ECONNREFUSED \(retrying in 2 s, attempt 1\)$/,
    );
    await waitFor(
      () =>
        /attempt 2\)$/.test(
          current.get(`HypervisorSeed.${hypervisorSeedKey("local", "down")}`)?.error?.message ?? "",
        ),
      {
        timeoutMs: 15_000,
        message: "a second attempt",
      },
    );
    await tools.unpublish("down");
    await waitFor(() => !current.get(`HypervisorSeed.${hypervisorSeedKey("local", "down")}`), {
      timeoutMs: 15_000,
      message: "the down seed unpublished",
    });
    // The riscv64 app shares its ref with the x86_64 one, but seeds are per (ref, arch): the image
    // has no riscv64 platform, so that seed is FAILED and the x86_64 one stays READY.
    const riscv = await seedAt(
      "ImageSeed",
      imageSeedKey("local", `${registry.host}/bb:1`, "riscv64"),
      "FAILED",
    );
    expect(riscv.error?.message).toMatch(/riscv64/);
    expect(current.get(`ImageSeed.${imageSeedKey("local", `${registry.host}/bb:1`, "x86_64")}`)?.state).toBe(
      "READY",
    );
    await apps.unpublish(missing);
    await apps.unpublish(arm);
  });

  it("unpublishes and removes a seed once nothing references it", async () => {
    const ref = `${registry.host}/zstd:1`;
    const key = imageSeedKey("local", ref, "x86_64");
    const seed = await seedAt("ImageSeed", key, "READY");
    const users = [...(await apps.getAll())].filter(
      ([, a]) => a.virtualization === "NOHYPER" && a.root?.image?.ref === ref,
    );
    expect(users.length).toBe(1);
    for (const [uuid] of users) await apps.unpublish(uuid);
    await waitFor(() => !current.has(`ImageSeed.${key}`) || current.get(`ImageSeed.${key}`) === undefined, {
      timeoutMs: 20_000,
      message: "the zstd seed unpublished",
    });
    await waitFor(() => !existsSync(seed.rootfsPath ?? "/nonexistent"), {
      timeoutMs: 20_000,
      message: "the zstd seed's files removed",
    });
    await waitFor(
      () => !existsSync(path.join(dataDir, "content/blobs/sha256", (seed.digest ?? "").slice(7))),
      {
        timeoutMs: 10_000,
        message: "the zstd manifest's blob removed",
      },
    );
    // Seeds still used stay.
    const bb = current.get(`ImageSeed.${imageSeedKey("local", `${registry.host}/bb:1`, "x86_64")}`);
    expect(existsSync(bb?.rootfsPath ?? "/nonexistent")).toBe(true);
  });
});
