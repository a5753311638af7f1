// Integration: the built spec-builder (`npx tsc -b services/spec-builder` first; `npm test` does it)
// runs as three separate processes against the shared nats-server. Every spec-builder process test
// lives in this file: the durable consumer "spec-builder" is fixed, so two files running
// spec-builders against one server would take each other's work. Each test uses its own uuids and
// asserts only on them.
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { imageSeedKey, messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  TaskConfig,
  AppInstanceConfigSchema,
  TaskConfigSchema,
} from "@eve-tasks/schemas";
import { harnessEnv, spawnReplicas, tempDir, waitFor } from "./harness/index.js";
import type { JsonObject, Replicas } from "./harness/index.js";
import { assertValidOciSpec } from "./oci-schema.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const ENTRY = path.join(REPO, "services/spec-builder/dist/main.js");
const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MiB = 2 ** 20;

/**
 * Fails clearly when a package's build is missing or older than its sources: the test runs the
 * built worker, and testing stale JavaScript would prove nothing.
 */
function assertBuilt(packageDir: string): void {
  const src = path.join(REPO, packageDir, "src");
  const stale: string[] = [];
  for (const file of readdirSync(src, { recursive: true, encoding: "utf8" })) {
    if (!file.endsWith(".ts") || file.endsWith(".d.ts")) continue;
    const out = path.join(REPO, packageDir, "dist", file.replace(/\.ts$/, ".js"));
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(path.join(src, file)).mtimeMs) {
      stale.push(path.join(packageDir, "src", file));
    }
  }
  if (stale.length > 0) {
    throw new Error(
      `not built, or built before the last change: ${stale.join(", ")}; run \`npx tsc -b services/spec-builder\` ` +
        `(if dist was deleted by hand, delete ${packageDir}/tsconfig.tsbuildinfo too)`,
    );
  }
}

/** The design's example app under a fresh uuid. */
function designExample(
  uuid: string,
  overrides: Partial<AppInstanceConfigInput> = {},
): AppInstanceConfigInput {
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: "hello",
    activate: true,
    restartCounter: 0,
    node: "local",
    arch: "x86_64",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { volume: { path: "/var/lib/eve/volumes/hello/rootfs", readOnly: false } },
    volumes: [{ path: "/var/lib/eve/volumes/hello/data", mountPoint: "/data", readOnly: false }],
    process: {
      args: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo hello; sleep 3600 & wait"],
      env: { GREETING: "hi" },
      cwd: "/",
      user: "0:0",
    },
    restartPolicy: { mode: "never" },
    stopTimeoutMs: 10000,
    ...overrides,
  } as AppInstanceConfigInput;
}

let bus: Bus;
let kv: KV;
let configs: Publication<typeof AppInstanceConfigSchema>;
let taskConfigs: Subscription<typeof TaskConfigSchema>;
let builders: Replicas;
/** Every TaskConfig value seen, per key, in order (the subscription sees every write). */
const history = new Map<string, TaskConfig[]>();
/** The uuids this file published configs for. */
const mine = new Set<string>();
/** Keys whose TaskConfig was deleted, with the deleted value. */
const deleted = new Map<string, TaskConfig>();

function record(key: string, value: TaskConfig): void {
  const list = history.get(key) ?? [];
  list.push(value);
  history.set(key, list);
}

/** Stores raw bytes as an AppInstanceConfig (what a buggy publisher may do); returns the revision. */
async function putRaw(uuid: string, value: string | Uint8Array): Promise<number> {
  mine.add(uuid);
  return kv.put(`AppInstanceConfig.${uuid}`, value);
}

/** Publishes a config through the schema-checked publication; returns its KV revision. */
async function publish(uuid: string, config: AppInstanceConfigInput): Promise<number> {
  mine.add(uuid);
  const revision = await configs.publish(uuid, config);
  if (revision === undefined) throw new Error(`publishing ${uuid} sent nothing`);
  return revision;
}

/** Waits until the TaskConfig of `uuid` has `configRevision` `revision`, and returns it. */
function taskConfigAt(uuid: string, revision: number, timeoutMs = 20_000): Promise<TaskConfig> {
  return waitFor(
    () => {
      const tc = taskConfigs.get(uuid);
      return tc !== undefined && tc.configRevision === revision ? tc : undefined;
    },
    { timeoutMs, message: `TaskConfig ${uuid} at configRevision ${revision}` },
  );
}

function ready(tc: TaskConfig): Extract<TaskConfig, { status: "READY" }> {
  if (tc.status !== "READY") throw new Error(`expected READY, got ${JSON.stringify(tc)}`);
  assertValidOciSpec(tc.spec, `the spec of ${tc.uuid}`);
  return tc;
}

function failed(tc: TaskConfig): Extract<TaskConfig, { status: "FAILED" }> {
  if (tc.status !== "FAILED") throw new Error(`expected FAILED, got ${JSON.stringify(tc)}`);
  expect(tc.error.source).toBe("spec-builder");
  expect(tc.error.configRevision).toBe(tc.configRevision);
  return tc;
}

/** The builders' JSON log lines about `uuids` with a given event. */
function events(event: string, uuids: ReadonlySet<string>): (JsonObject & { replica: number })[] {
  return builders.lines
    .filter((l) => l.json?.event === event && uuids.has(String(l.json.uuid)))
    .map((l) => ({ ...(l.json as JsonObject), replica: l.replica }));
}

/**
 * Waits until the builders logged `event` for each of `uuids` (a log line comes just after the
 * write it reports, so it may trail the subscription), and returns those lines.
 */
async function eventsFor(
  event: string,
  uuids: readonly string[],
  pred: (e: JsonObject) => boolean = () => true,
): Promise<(JsonObject & { replica: number })[]> {
  const set = new Set(uuids);
  await waitFor(
    () => {
      const seen = new Set(
        events(event, set)
          .filter(pred)
          .map((e) => String(e.uuid)),
      );
      return uuids.every((u) => seen.has(u));
    },
    { message: `${event} log lines for ${uuids.length} uuid(s)` },
  );
  return events(event, set);
}

beforeAll(async () => {
  assertBuilt("packages/oci-spec");
  assertBuilt("services/spec-builder");
  const { natsUrl } = harnessEnv();
  bus = await connectBus({ servers: natsUrl, name: "spec-builder-test" });
  await ensureBuckets(bus);
  kv = await bus.bucket("controller");
  configs = new Publication(bus, messageTable("AppInstanceConfig"));
  taskConfigs = await subscribe(bus, {
    ...messageTable("TaskConfig"),
    onCreate: (key, value) => record(key, value),
    onModify: (key, value) => record(key, value),
    onDelete: (key, old) => void deleted.set(key, old),
  });
  await taskConfigs.synchronized;

  const dir = await tempDir("sb-");
  const started = Date.now();
  builders = spawnReplicas({
    entry: ENTRY,
    count: 3,
    name: "spec-builder",
    env: { NATS_URL: natsUrl, EVE_RUN_DIR: dir, EVE_DATA_DIR: dir, LOG_LEVEL: "info" },
  });
  await Promise.all(
    [0, 1, 2].map((i) => builders.waitForLine((l) => l.replica === i && l.json?.event === "running", 20_000)),
  );
  process.stderr.write(`[spec-builder.test] 3 replicas running in ${Date.now() - started} ms\n`);
});

afterAll(async () => {
  await builders?.stopAll();
  await taskConfigs?.close();
  await bus?.close();
});

describe("spec-builder", () => {
  it("builds READY TaskConfigs from a volume root and from the host root", async () => {
    const vol = randomUUID();
    const host = randomUUID();
    const volRev = await publish(vol, designExample(vol));
    const hostRev = await publish(
      host,
      designExample(host, {
        resources: { memoryMiB: 100, vcpus: 3 },
        root: { host: { readOnly: true } },
        volumes: [
          { path: "/var/lib/eve/volumes/tools/conf", mountPoint: "/etc/tool", readOnly: true },
          { path: "/var/lib/eve/volumes/tools/state", mountPoint: "/var/lib/tool", readOnly: false },
        ],
        process: {
          args: ["/usr/bin/env"],
          env: { PATH: "/opt/bin:/usr/bin", A: "1" },
          cwd: "/tmp",
          user: "1000",
        },
        restartPolicy: { mode: "on-failure", maxRestarts: 2 },
        stopTimeoutMs: 2500,
      }),
    );

    const v = ready(await taskConfigAt(vol, volRev));
    expect(v).toMatchObject({
      uuid: vol,
      configRevision: volRev,
      node: "local",
      version: "1",
      displayName: "hello",
      activate: true,
      restartCounter: 0,
      virtualization: "NOHYPER",
      rootfs: { kind: "volume", path: "/var/lib/eve/volumes/hello/rootfs", readOnly: false },
      volumes: [{ path: "/var/lib/eve/volumes/hello/data", mountPoint: "/data", readOnly: false }],
      memoryMiB: 64,
      anchorTaxMiB: 0,
      restartPolicy: {
        mode: "never",
        maxRestarts: 5,
        windowMs: 600000,
        backoffMs: 1000,
        maxBackoffMs: 60000,
      },
      stopTimeoutMs: 10000,
    });
    expect(v.spec.hostname).toBe(vol);
    expect(v.spec.root).toEqual({ path: "rootfs", readonly: false });
    expect(v.spec.process).toMatchObject({
      args: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo hello; sleep 3600 & wait"],
      env: [DEFAULT_PATH, "GREETING=hi"],
      cwd: "/",
      user: { uid: 0, gid: 0 },
      noNewPrivileges: true,
    });
    expect(v.spec.linux.resources.memory.limit).toBe(64 * MiB);
    expect(v.spec.linux.resources.cpu).toMatchObject({ period: 100000, quota: 100000 });
    expect(v.spec.linux.namespaces?.map((n) => n.type).sort()).toEqual([
      "ipc",
      "mount",
      "network",
      "pid",
      "uts",
    ]);
    expect(v.spec.linux.cgroupsPath).toBeUndefined();
    expect(v.spec.mounts?.filter((m) => m.type === "bind")).toEqual([
      {
        destination: "/data",
        type: "bind",
        source: "/var/lib/eve/volumes/hello/data",
        options: ["rbind", "rw"],
      },
    ]);

    const h = ready(await taskConfigAt(host, hostRev));
    expect(h).toMatchObject({
      rootfs: { kind: "host", readOnly: true },
      memoryMiB: 100,
      restartPolicy: { mode: "on-failure", maxRestarts: 2 },
      stopTimeoutMs: 2500,
    });
    expect(h.spec.root).toEqual({ path: "rootfs", readonly: true });
    expect(h.spec.hostname).toBe(host);
    expect(h.spec.process).toMatchObject({
      args: ["/usr/bin/env"],
      env: ["PATH=/opt/bin:/usr/bin", "A=1"],
      cwd: "/tmp",
      user: { uid: 1000, gid: 0 },
    });
    expect(h.spec.linux.resources.memory.limit).toBe(100 * MiB);
    expect(h.spec.linux.resources.cpu).toMatchObject({ period: 100000, quota: 300000 });
    expect(h.spec.mounts?.filter((m) => m.type === "bind")).toEqual([
      {
        destination: "/etc/tool",
        type: "bind",
        source: "/var/lib/eve/volumes/tools/conf",
        options: ["rbind", "ro"],
      },
      {
        destination: "/var/lib/tool",
        type: "bind",
        source: "/var/lib/eve/volumes/tools/state",
        options: ["rbind", "rw"],
      },
    ]);
    expect(h.volumes.map((x) => x.mountPoint)).toEqual(["/etc/tool", "/var/lib/tool"]);

    // One log line per event, carrying the app's uuid.
    const built = await eventsFor("spec-built", [vol, host], (e) => e.result === "written");
    expect(
      built
        .filter((e) => e.result === "written")
        .map((e) => e.uuid)
        .sort(),
    ).toEqual([vol, host].sort());
  });

  it("turns each bad input into a FAILED TaskConfig with a clear message", async () => {
    const id = () => randomUUID();
    const cases: {
      name: string;
      uuid: string;
      put: (uuid: string) => Promise<number>;
      check: (tc: TaskConfig) => void;
    }[] = [
      {
        name: "malformed JSON",
        uuid: id(),
        put: (u) => putRaw(u, `{"schemaVersion": 1, "uuid": "${u}", "node": "edge-2",`),
        check: (tc) => {
          const f = failed(tc);
          expect(f.error.message).toMatch(
            /^invalid AppInstanceConfig: malformed JSON: .* at line 1 column \d+/,
          );
          expect(f.node).toBe("local"); // unreadable: the default node
          expect(f.version).toBeUndefined();
        },
      },
      {
        name: "a value failing the schema",
        uuid: id(),
        put: (u) =>
          putRaw(
            u,
            JSON.stringify({
              ...designExample(u, { node: "edge-7", version: "5" }),
              resources: { memoryMiB: 0, vcpus: 1 },
            }),
          ),
        check: (tc) => {
          const f = failed(tc);
          expect(f.error.message).toContain("invalid AppInstanceConfig:");
          expect(f.error.message).toContain("must be at least 1 MiB");
          expect(f.error.message).toContain("resources.memoryMiB");
          expect(f.node).toBe("edge-7"); // readable: taken from the raw value
          expect(f.version).toBe("5");
        },
      },
      {
        name: "a uuid different from the key",
        uuid: id(),
        put: (u) => publish(u, designExample("00000000-0000-4000-8000-0000000000aa")),
        check: (tc) => {
          const f = failed(tc);
          expect(f.error.message).toBe(
            `uuid "00000000-0000-4000-8000-0000000000aa" does not match the key "${tc.uuid}": ` +
              `an AppInstanceConfig must be published under its own uuid`,
          );
          expect(f.version).toBe("1");
        },
      },
      {
        name: "an unknown virtualization mode",
        uuid: id(),
        put: (u) => putRaw(u, JSON.stringify({ ...designExample(u), virtualization: "XEN" })),
        check: (tc) => {
          const f = failed(tc);
          expect(f.error.message).toContain(
            'virtualization must be "NOHYPER" (native container) or "HVM" (VM); got "XEN"',
          );
        },
      },
      {
        name: "a value over 64 KiB",
        uuid: id(),
        put: (u) =>
          putRaw(
            u,
            JSON.stringify(designExample(u, { process: { args: ["/x"], env: { BIG: "x".repeat(70_000) } } })),
          ),
        check: (tc) => {
          const f = failed(tc);
          expect(f.error.message).toMatch(
            /^AppInstanceConfig too large: value is 7\d{4} bytes; the limit is 65536 bytes \(64 KiB\)$/,
          );
        },
      },
      {
        name: "a VM with neither a kernel nor a disk",
        uuid: id(),
        put: (u) =>
          putRaw(
            u,
            JSON.stringify({
              schemaVersion: 1,
              uuid: u,
              version: "vm-1",
              virtualization: "HVM",
              resources: { memoryMiB: 512, vcpus: 1 },
              vm: { cmdline: "console=ttyS0" },
            }),
          ),
        check: (tc) => {
          expect(failed(tc).error.message).toMatch(
            /a VM needs vm\.kernel or at least one disk in vm\.disks to boot/,
          );
        },
      },
      {
        name: "a user name",
        uuid: id(),
        put: (u) => publish(u, designExample(u, { process: { args: ["/bin/true"], user: "nobody" } })),
        check: (tc) => {
          expect(failed(tc).error.message).toMatch(
            /^process\.user: user "nobody" uses a name; names can only be resolved from the root filesystem's \/etc\/passwd/,
          );
        },
      },
    ];
    const revisions = await Promise.all(cases.map((c) => c.put(c.uuid)));
    for (const [i, c] of cases.entries()) {
      const tc = await taskConfigAt(c.uuid, revisions[i]!);
      expect(tc.uuid, c.name).toBe(c.uuid);
      c.check(tc);
    }
    const rejected = await eventsFor(
      "config-rejected",
      cases.map((c) => c.uuid),
    );
    expect(new Set(rejected.map((e) => e.uuid)).size).toBe(cases.length);
    for (const e of rejected) expect(e.level).toBe("warn");
  });

  it("builds an image root from its seed: PENDING until the seed is READY, re-built when the seed changes", async () => {
    // The test plays the hypervisor-seed-fetcher: it writes the seeds itself.
    const seeds = new Publication(bus, messageTable("ImageSeed"));
    const ref = `registry.example:5000/app-${randomUUID().slice(0, 8)}:1`;
    // The app names its arch (designExample: x86_64): its seed is the one of (ref, arch).
    const key = imageSeedKey("local", ref, "x86_64");
    const digest = `sha256:${"ab".repeat(32)}`;
    const base = {
      schemaVersion: 1,
      ref,
      digest: null,
      indexDigest: null,
      platform: null,
      rootfsPath: null,
      process: null,
      progress: null,
      error: null,
    } as const;
    const uuid = randomUUID();
    const badUuid = randomUUID();
    const badRef = `registry.example:5000/missing-${randomUUID().slice(0, 8)}:1`;
    const rev = await publish(uuid, designExample(uuid, { root: { image: { ref } }, process: undefined }));
    const badRev = await publish(
      badUuid,
      designExample(badUuid, { root: { image: { ref: badRef } }, process: undefined }),
    );
    try {
      const waiting = await taskConfigAt(uuid, rev);
      expect(waiting).toMatchObject({
        status: "PENDING",
        waitingFor: "seed",
        message: `waiting for the hypervisor-seed-fetcher on node local to pull ${ref}`,
      });
      await seeds.publish(key, { ...base, state: "PULLING", progress: { doneBytes: 0, totalBytes: null } });
      await waitFor(
        () => {
          const tc = taskConfigs.get(uuid);
          return tc?.status === "PENDING" && tc.waitingFor === "pull";
        },
        { message: "PENDING waitingFor pull" },
      );
      expect(taskConfigs.get(uuid)).toMatchObject({ configRevision: rev, message: `pulling ${ref}` });
      await seeds.publish(key, {
        ...base,
        state: "READY",
        digest,
        platform: "linux/amd64",
        rootfsPath: `/var/lib/eve/seeds/${"ab".repeat(32)}/rootfs`,
        process: { args: ["/bin/sh", "-c", "echo hi"], env: { PATH: "/bin" }, cwd: "/", user: "" },
      });
      const built = ready(
        await waitFor(
          () => {
            const tc = taskConfigs.get(uuid);
            return tc?.status === "READY" ? tc : undefined;
          },
          { message: "READY after the seed" },
        ),
      );
      expect(built).toMatchObject({
        configRevision: rev,
        rootfs: { kind: "image", seedKey: key, rootfsPath: `/var/lib/eve/seeds/${"ab".repeat(32)}/rootfs` },
      });
      expect(built.spec.process).toMatchObject({
        args: ["/bin/sh", "-c", "echo hi"],
        env: ["PATH=/bin"],
        user: { uid: 0, gid: 0 },
      });
      await eventsFor("spec-pending", [uuid]);

      const badKey = imageSeedKey("local", badRef, "x86_64");
      await seeds.publish(badKey, {
        ...base,
        ref: badRef,
        state: "FAILED",
        error: { message: "not found: manifest unknown (404)", time: new Date().toISOString() },
      });
      const f = await waitFor(
        () => {
          const tc = taskConfigs.get(badUuid);
          return tc?.status === "FAILED" ? tc : undefined;
        },
        { message: "FAILED after the seed failed" },
      );
      expect(f).toMatchObject({
        configRevision: badRev,
        error: {
          source: "hypervisor-seed-fetcher",
          message: `${badRef}: not found: manifest unknown (404)`,
          configRevision: badRev,
        },
      });
      await seeds.unpublish(badKey);
    } finally {
      await seeds.unpublish(key);
    }
  });

  it("replaces a FAILED TaskConfig with a later good revision, and removes it when the config is deleted", async () => {
    const uuid = randomUUID();
    const bad = await putRaw(
      uuid,
      JSON.stringify({ ...designExample(uuid), resources: { memoryMiB: 64, vcpus: 0 } }),
    );
    const f = failed(await taskConfigAt(uuid, bad));
    expect(f.error.message).toContain("resources.vcpus");

    const good = await publish(uuid, designExample(uuid, { version: "2" }));
    expect(good).toBeGreaterThan(bad);
    const r = ready(await taskConfigAt(uuid, good));
    expect(r.version).toBe("2");

    await configs.unpublish(uuid);
    await waitFor(() => deleted.has(uuid) && taskConfigs.get(uuid) === undefined, {
      timeoutMs: 20_000,
      message: `TaskConfig ${uuid} deleted`,
    });
    expect(history.get(uuid)?.map((tc) => [tc.status, tc.configRevision])).toEqual([
      ["FAILED", bad],
      ["READY", good],
    ]);
    await eventsFor("task-config-deleted", [uuid], (e) => e.result === "deleted");
  });

  it("Three spec-builder replicas build 50 configs, each once per revision, the latest revision winning", async () => {
    const uuids = Array.from({ length: 50 }, () => randomUUID());
    const ours = new Set(uuids);
    const latest = new Map<string, { revision: number; memoryMiB: number }>();
    const started = Date.now();
    // Three revisions of each, every round published at once, so revisions of a key race
    // across the replicas.
    for (let round = 1; round <= 3; round++) {
      await Promise.all(
        uuids.map(async (uuid, i) => {
          const memoryMiB = 32 * round + i;
          const revision = await publish(
            uuid,
            designExample(uuid, { version: `r${round}`, resources: { memoryMiB, vcpus: 1 + (i % 4) } }),
          );
          latest.set(uuid, { revision, memoryMiB });
        }),
      );
    }
    await waitFor(() => uuids.every((u) => taskConfigs.get(u)?.configRevision === latest.get(u)!.revision), {
      timeoutMs: 60_000,
      message: "every one of the 50 TaskConfigs at its latest revision",
    });
    const elapsedMs = Date.now() - started;
    await eventsFor(
      "spec-built",
      uuids,
      (e) => e.result === "written" && e.configRevision === latest.get(String(e.uuid))?.revision,
    );

    for (const uuid of uuids) {
      const want = latest.get(uuid)!;
      const tc = ready(taskConfigs.get(uuid)!);
      expect(tc).toMatchObject({ configRevision: want.revision, version: "r3", memoryMiB: want.memoryMiB });
      expect(tc.spec.linux.resources.memory.limit).toBe(want.memoryMiB * MiB);
      // Never an older revision over a newer one.
      const seen = (history.get(uuid) ?? []).map((h) => h.configRevision);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
      expect(new Set(seen).size).toBe(seen.length);
    }

    // Each (uuid, revision) was WRITTEN at most once, the latest exactly once. Handlers are
    // level-triggered, so an older revision may be skipped (its message is handled after a newer
    // value was stored), and duplicates show up as "unchanged" or "stale", never as writes.
    const built = events("spec-built", ours);
    const writes = new Map<string, number>();
    for (const e of built) {
      if (e.result !== "written") continue;
      const k = `${String(e.uuid)}@${String(e.configRevision)}`;
      writes.set(k, (writes.get(k) ?? 0) + 1);
    }
    expect([...writes].filter(([, n]) => n > 1)).toEqual([]);
    for (const uuid of uuids) expect(writes.get(`${uuid}@${latest.get(uuid)!.revision}`), uuid).toBe(1);
    expect(built.every((e) => ["written", "unchanged", "stale"].includes(String(e.result)))).toBe(true);
    // No write the logs do not claim (a watcher that lags may miss a value replaced at once, so
    // it can see fewer, never more).
    const logged = [...writes.values()].reduce((a, b) => a + b, 0);
    const observed = uuids.reduce((n, u) => n + (history.get(u)?.length ?? 0), 0);
    expect(observed).toBeLessThanOrEqual(logged);
    expect(observed).toBeGreaterThanOrEqual(uuids.length);
    // The work was shared.
    const byReplica = new Map<number, number>();
    for (const e of built) byReplica.set(e.replica, (byReplica.get(e.replica) ?? 0) + 1);
    expect([...byReplica.keys()].sort()).toEqual([0, 1, 2]);
    process.stderr.write(
      `[spec-builder.test] 150 revisions of 50 configs settled in ${elapsedMs} ms; handled per replica ` +
        `${JSON.stringify(Object.fromEntries(byReplica))}, ${logged} writes\n`,
    );
  }, 90_000);

  it("every spec the suite produced validates against the official OCI runtime-spec schema", () => {
    const specs = [...mine].flatMap((u) => history.get(u) ?? []).filter((tc) => tc.status === "READY");
    expect(specs.length).toBeGreaterThan(50);
    for (const tc of specs) assertValidOciSpec(tc.spec, `the spec of ${tc.uuid} at ${tc.configRevision}`);
  });

  it("stops cleanly on SIGTERM: the queue stops, then its NATS service, then NATS drains", async () => {
    const exit = await builders.kill(2, "SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    const steps = builders.lines
      .filter((l) => l.replica === 2 && l.json?.msg === "shutdown: step done")
      .map((l) => l.json?.step);
    expect(steps).toEqual([
      "stop the work queue and the seed subscription",
      "stop the NATS service",
      "drain NATS",
      "close the metrics endpoint",
      "remove liveness file",
    ]);
  });
});
