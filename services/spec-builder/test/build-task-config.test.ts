import { describe, expect, it } from "vitest";
import {
  AppInstanceConfigSchema,
  ImageSeedSchema,
  TaskConfigSchema,
  imageSeedKey,
  specSha256,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  AppInstanceConfigInput,
  FailedTaskConfig,
  ImageSeed,
  NativeAppInstanceConfig,
  PendingTaskConfig,
  ReadyTaskConfig,
} from "@eve-tasks/schemas";
import { DEFAULT_PATH } from "@eve-tasks/oci-spec";
import { assertValidOciSpec } from "../../../test/oci-schema.js";
import { ARGS_REQUIRED, IMAGE_ANNOTATION, buildTaskConfig, imageProcess } from "../src/build-task-config.js";
import {
  RawConfigSchema,
  giveUp,
  identityOf,
  rejectInvalidConfig,
  sameFailure,
} from "../src/failed-task-config.js";
import type { BuildContext, BuildOutcome } from "../src/outcome.js";

const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
const TIME = new Date("2024-05-01T12:00:00.000Z");
const ctx: BuildContext = { key: UUID, revision: 7, time: TIME };
const MiB = 2 ** 20;

function config(overrides: Partial<AppInstanceConfigInput> = {}): AppInstanceConfig {
  return AppInstanceConfigSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    version: "1",
    displayName: "hello",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 2 },
    root: { volume: { path: "/var/lib/eve/volumes/hello/rootfs", readOnly: false } },
    volumes: [
      { path: "/var/lib/eve/volumes/hello/data", mountPoint: "/data", readOnly: false },
      { path: "/var/lib/eve/volumes/hello/conf", mountPoint: "/etc/app", readOnly: true },
    ],
    process: { args: ["/bin/sh", "-c", "echo hi"], env: { GREETING: "hi" }, cwd: "/srv", user: "1000:1001" },
    restartPolicy: { mode: "on-failure" },
    stopTimeoutMs: 5000,
    ...overrides,
  });
}

/** The READY TaskConfig of an outcome; it must pass the TaskConfig schema and the OCI schema. */
function ready(outcome: BuildOutcome): ReadyTaskConfig {
  if (outcome.status !== "READY") throw new Error(`expected READY, got ${JSON.stringify(outcome)}`);
  expect(TaskConfigSchema.parse(outcome.taskConfig)).toEqual(outcome.taskConfig);
  assertValidOciSpec(outcome.taskConfig.spec);
  return outcome.taskConfig;
}

/** The FAILED TaskConfig of an outcome (with its reason); it must pass the TaskConfig schema. */
function failure(outcome: BuildOutcome): FailedTaskConfig & { reason: string } {
  if (outcome.status !== "FAILED") throw new Error(`expected FAILED, got ${JSON.stringify(outcome)}`);
  expect(TaskConfigSchema.parse(outcome.taskConfig)).toEqual(outcome.taskConfig);
  return { ...outcome.taskConfig, reason: outcome.reason };
}

describe("buildTaskConfig: READY", () => {
  it("builds a volume-root container's TaskConfig and spec", () => {
    const tc = ready(buildTaskConfig(config(), ctx));
    expect(tc).toMatchObject({
      schemaVersion: 1,
      status: "READY",
      uuid: UUID,
      configRevision: 7,
      node: "local",
      version: "1",
      displayName: "hello",
      activate: true,
      restartCounter: 0,
      virtualization: "NOHYPER",
      rootfs: { kind: "volume", path: "/var/lib/eve/volumes/hello/rootfs", readOnly: false },
      volumes: [
        { path: "/var/lib/eve/volumes/hello/data", mountPoint: "/data", readOnly: false },
        { path: "/var/lib/eve/volumes/hello/conf", mountPoint: "/etc/app", readOnly: true },
      ],
      memoryMiB: 64,
      anchorTaxMiB: 0,
      restartPolicy: {
        mode: "on-failure",
        maxRestarts: 5,
        windowMs: 600000,
        backoffMs: 1000,
        maxBackoffMs: 60000,
      },
      stopTimeoutMs: 5000,
    });
    expect(tc.specSha256).toBe(specSha256(tc.spec));
    const spec = tc.spec;
    expect(spec.process).toMatchObject({
      args: ["/bin/sh", "-c", "echo hi"],
      env: [`PATH=${DEFAULT_PATH}`, "GREETING=hi"],
      cwd: "/srv",
      user: { uid: 1000, gid: 1001 },
    });
    expect(spec.hostname).toBe(UUID);
    expect(spec.root).toEqual({ path: "rootfs", readonly: false });
    expect(spec.linux.resources.memory.limit).toBe(64 * MiB);
    expect(spec.linux.resources.cpu).toMatchObject({ period: 100_000, quota: 200_000 });
    expect(spec.linux.namespaces?.map((n) => n.type)).toEqual(["pid", "ipc", "uts", "mount", "network"]);
    expect(spec.linux.cgroupsPath).toBeUndefined();
    expect(spec.mounts?.filter((m) => m.type === "bind")).toEqual([
      {
        destination: "/data",
        type: "bind",
        source: "/var/lib/eve/volumes/hello/data",
        options: ["rbind", "rw"],
      },
      {
        destination: "/etc/app",
        type: "bind",
        source: "/var/lib/eve/volumes/hello/conf",
        options: ["rbind", "ro"],
      },
    ]);
    expect(spec.annotations).toEqual({ "org.lfedge.eve-tasks.uuid": UUID });
  });

  it("builds a host-root container read-only, with the default cwd, user and PATH", () => {
    const tc = ready(
      buildTaskConfig(config({ root: { host: {} }, volumes: [], process: { args: ["/bin/true"] } }), ctx),
    );
    expect(tc.rootfs).toEqual({ kind: "host", readOnly: true });
    expect(tc.volumes).toEqual([]);
    expect(tc.spec.root).toEqual({ path: "rootfs", readonly: true });
    expect(tc.spec.process).toMatchObject({
      cwd: "/",
      user: { uid: 0, gid: 0 },
      env: [`PATH=${DEFAULT_PATH}`],
    });
    expect(tc.spec.mounts?.some((m) => m.type === "bind")).toBe(false);
  });

  it("is deterministic, and the spec ignores what must not restart a task", () => {
    const a = ready(buildTaskConfig(config(), ctx));
    const b = ready(buildTaskConfig(config(), { ...ctx, time: new Date() }));
    expect(b).toEqual(a);
    const renamed = ready(
      buildTaskConfig(config({ displayName: "renamed", version: "2" }), { ...ctx, revision: 8 }),
    );
    expect(renamed.specSha256).toBe(a.specSha256);
    const more = ready(buildTaskConfig(config({ resources: { memoryMiB: 128, vcpus: 2 } }), ctx));
    expect(more.specSha256).not.toBe(a.specSha256);
  });

  it("keeps an env PATH given by the config", () => {
    const tc = ready(
      buildTaskConfig(config({ process: { args: ["/x"], env: { PATH: "/opt/bin", A: "1" } } }), ctx),
    );
    expect(tc.spec.process.env).toEqual(["PATH=/opt/bin", "A=1"]);
  });
});

describe("buildTaskConfig: FAILED", () => {
  it("refuses a uuid that is not the key", () => {
    const other = "00000000-0000-4000-8000-000000000001";
    const f = failure(buildTaskConfig(config({ uuid: other }), ctx));
    expect(f).toMatchObject({
      uuid: UUID,
      configRevision: 7,
      node: "local",
      version: "1",
      reason: "uuid-mismatch",
    });
    expect(f.error).toEqual({
      source: "spec-builder",
      configRevision: 7,
      time: TIME.toISOString(),
      message: `uuid "${other}" does not match the key "${UUID}": an AppInstanceConfig must be published under its own uuid`,
    });
  });

  it("refuses a user name, naming the field and why", () => {
    const f = failure(buildTaskConfig(config({ process: { args: ["/x"], user: "nobody" } }), ctx));
    expect(f.reason).toBe("spec");
    expect(f.error.message).toMatch(/^process\.user: user "nobody" uses a name; .*\/etc\/passwd/);
  });

  it("requires process.args without an image", () => {
    const f = failure(buildTaskConfig(config({ process: { env: { A: "1" } } }), ctx));
    expect(f.error.message).toBe(ARGS_REQUIRED);
    const none = failure(buildTaskConfig(config({ process: undefined }), ctx));
    expect(none.error.message).toBe(ARGS_REQUIRED);
  });

  it("refuses a TaskConfig over 64 KiB built from a config under it", () => {
    const env = Object.fromEntries(Array.from({ length: 44 }, (_, i) => [`V${i}`, "x".repeat(1440)]));
    const input = config({ root: { host: {} }, volumes: [], process: { args: ["/x"], env } });
    expect(Buffer.byteLength(JSON.stringify(input))).toBeLessThanOrEqual(65_536);
    const f = failure(buildTaskConfig(input, ctx));
    expect(f.reason).toBe("output-too-large");
    expect(f.error.message).toMatch(
      /^the built TaskConfig is \d+ bytes, over the 65536-byte \(64 KiB\) limit/,
    );
  });

  it("reports nothing for a key that is not a uuid", () => {
    const o = buildTaskConfig(config(), { ...ctx, key: "not-a-uuid" });
    expect(o.status).toBe("UNREPORTABLE");
    if (o.status === "UNREPORTABLE") {
      expect(o.message).toContain('the key "not-a-uuid" is not a lowercase UUID');
    }
  });
});

describe("buildTaskConfig: image roots", () => {
  const REF = "registry.example:5000/app:1";
  const DIGEST = `sha256:${"ab".repeat(32)}`;
  const ROOTFS = `/var/lib/eve/seeds/${"ab".repeat(32)}/rootfs`;
  const imageConfig = (over: Record<string, unknown> = {}): NativeAppInstanceConfig => {
    const input: Partial<AppInstanceConfigInput> = {
      root: { image: { ref: REF } },
      volumes: [],
      process: undefined,
      ...over,
    };
    const c = config(input);
    if (c.virtualization !== "NOHYPER") throw new Error("expected a native config");
    return c as NativeAppInstanceConfig;
  };
  const seed = (over: Partial<ImageSeed> = {}): ImageSeed =>
    ImageSeedSchema.parse({
      schemaVersion: 1,
      state: "READY",
      ref: REF,
      digest: DIGEST,
      indexDigest: null,
      platform: "linux/amd64",
      rootfsPath: ROOTFS,
      process: {
        args: ["/bin/sh", "-c", "echo hello"],
        env: { PATH: "/usr/bin:/bin", GREETING: "hi", LANG: "C" },
        cwd: "/tmp",
        user: "1000:1000",
      },
      progress: null,
      error: null,
      ...over,
    });
  const pending = (outcome: BuildOutcome): PendingTaskConfig => {
    if (outcome.status !== "PENDING") throw new Error(`expected PENDING, got ${JSON.stringify(outcome)}`);
    expect(TaskConfigSchema.parse(outcome.taskConfig)).toEqual(outcome.taskConfig);
    return outcome.taskConfig;
  };

  it("waits for the seed while none is published, then for the pull", () => {
    expect(pending(buildTaskConfig(imageConfig(), ctx))).toEqual({
      schemaVersion: 1,
      uuid: UUID,
      configRevision: 7,
      node: "local",
      status: "PENDING",
      version: "1",
      waitingFor: "seed",
      message: `waiting for the hypervisor-seed-fetcher on node local to pull ${REF}`,
    });
    const pulling = seed({
      state: "PULLING",
      digest: null,
      platform: null,
      rootfsPath: null,
      process: null,
      progress: { doneBytes: 10, totalBytes: 100 },
    });
    expect(pending(buildTaskConfig(imageConfig(), { ...ctx, imageSeed: pulling }))).toMatchObject({
      waitingFor: "pull",
      message: `pulling ${REF}`,
    });
  });

  it("passes a FAILED seed's error on, as the hypervisor-seed-fetcher's, prefixed with the ref", () => {
    const bad = seed({
      state: "FAILED",
      digest: null,
      platform: null,
      rootfsPath: null,
      process: null,
      error: { message: "not found: manifest (404)", time: "2024-05-01T11:00:00.000Z" },
    });
    const f = failure(buildTaskConfig(imageConfig(), { ...ctx, imageSeed: bad }));
    expect(f.reason).toBe("seed");
    expect(f.error).toEqual({
      source: "hypervisor-seed-fetcher",
      message: `${REF}: not found: manifest (404)`,
      configRevision: 7,
      time: TIME.toISOString(),
    });
  });

  it("builds from a READY seed: the image's process, a writable overlay root over the seed", () => {
    const tc = ready(buildTaskConfig(imageConfig(), { ...ctx, imageSeed: seed() }));
    expect(tc.rootfs).toEqual({ kind: "image", seedKey: imageSeedKey("local", REF), rootfsPath: ROOTFS });
    expect(tc.spec.root).toEqual({ path: "rootfs", readonly: false });
    expect(tc.spec.process).toMatchObject({
      args: ["/bin/sh", "-c", "echo hello"],
      env: ["PATH=/usr/bin:/bin", "GREETING=hi", "LANG=C"],
      cwd: "/tmp",
      user: { uid: 1000, gid: 1000 },
    });
    expect(tc.spec.annotations).toEqual({
      "org.lfedge.eve-tasks.uuid": UUID,
      [IMAGE_ANNOTATION]: `${REF}@${DIGEST}`,
    });
    expect(tc).toMatchObject({ memoryMiB: 64, anchorTaxMiB: 0, volumes: [], virtualization: "NOHYPER" });
    // Another image digest is another spec (the executor replaces the task).
    const moved = ready(
      buildTaskConfig(imageConfig(), { ...ctx, imageSeed: seed({ digest: `sha256:${"cd".repeat(32)}` }) }),
    );
    expect(moved.specSha256).not.toBe(tc.specSha256);
  });

  it("builds an app naming its arch from that arch's seed, with the node's emulators when READY", () => {
    const emulatorsSeed = seed({
      ref: "oci:/x/emulators:1",
      rootfsPath: "/var/lib/eve/seeds/ee/rootfs",
      process: { args: [], env: {}, cwd: "/", user: "" },
    });
    const arm = imageConfig({ arch: "aarch64" });
    const tc = ready(
      buildTaskConfig(arm, { ...ctx, imageSeed: seed({ platform: "linux/arm64" }), emulatorsSeed }),
    );
    expect(tc.rootfs).toEqual({
      kind: "image",
      seedKey: imageSeedKey("local", REF, "aarch64"),
      rootfsPath: ROOTFS,
    });
    expect(tc.emulation).toEqual({
      arch: "aarch64",
      emulators: { seedKey: "local.emulators", rootfsPath: "/var/lib/eve/seeds/ee/rootfs" },
    });
    expect(tc.anchorTaxMiB).toBe(0);
    // Without a READY emulators seed the executor decides on the node (it needs none for its
    // own arch); while one is being pulled the app waits.
    expect(ready(buildTaskConfig(arm, { ...ctx, imageSeed: seed() })).emulation).toEqual({
      arch: "aarch64",
      emulators: null,
    });
    const pullingEmulators = seed({
      state: "PULLING",
      digest: null,
      platform: null,
      rootfsPath: null,
      process: null,
      progress: null,
    });
    expect(
      pending(buildTaskConfig(arm, { ...ctx, imageSeed: seed(), emulatorsSeed: pullingEmulators })),
    ).toMatchObject({ waitingFor: "pull" });
    // No arch named: no emulation.
    expect(
      ready(buildTaskConfig(imageConfig(), { ...ctx, imageSeed: seed(), emulatorsSeed })).emulation,
    ).toBe(undefined);
  });

  it("overrides the image's process field by field with the app's", () => {
    const tc = ready(
      buildTaskConfig(
        imageConfig({
          process: { args: ["/bin/env"], env: { GREETING: "yo", EXTRA: "1" }, user: "0:0" },
          volumes: [{ path: "/var/lib/eve/volumes/d", mountPoint: "/data", readOnly: false }],
        }),
        { ...ctx, imageSeed: seed() },
      ),
    );
    expect(tc.spec.process).toMatchObject({
      args: ["/bin/env"],
      env: ["PATH=/usr/bin:/bin", "GREETING=yo", "LANG=C", "EXTRA=1"],
      cwd: "/tmp",
      user: { uid: 0, gid: 0 },
    });
    expect(tc.volumes).toEqual([{ path: "/var/lib/eve/volumes/d", mountPoint: "/data", readOnly: false }]);
    expect(tc.spec.mounts?.find((m) => m.destination === "/data")).toMatchObject({ type: "bind" });
    const process = seed().process!;
    expect(imageProcess(imageConfig({ process: { cwd: "/srv" } }), { ...process, user: "" })).toEqual({
      args: process.args,
      env: process.env,
      cwd: "/srv",
      user: "0:0",
    });
    // The default PATH when neither gives one.
    const noPath = ready(
      buildTaskConfig(imageConfig(), { ...ctx, imageSeed: seed({ process: { ...process, env: {} } }) }),
    );
    expect(noPath.spec.process.env).toEqual([`PATH=${DEFAULT_PATH}`]);
  });

  it("refuses an image without a command when the app gives none, and user names", () => {
    const process = seed().process!;
    const none = seed({ process: { ...process, args: [] } });
    const f = failure(buildTaskConfig(imageConfig(), { ...ctx, imageSeed: none }));
    expect(f.error).toMatchObject({
      source: "spec-builder",
      message: `the image ${REF} defines no command (Entrypoint/Cmd): give process.args`,
    });
    expect(
      ready(buildTaskConfig(imageConfig({ process: { args: ["/x"] } }), { ...ctx, imageSeed: none })).spec
        .process.args,
    ).toEqual(["/x"]);
    const named = seed({ process: { ...process, user: "nginx" } });
    const u = failure(buildTaskConfig(imageConfig(), { ...ctx, imageSeed: named }));
    expect(u.error.message).toMatch(
      new RegExp(
        `^process\\.user: not given, and the user of the image ${REF} is refused: user "nginx" uses a name`,
      ),
    );
    expect(
      ready(buildTaskConfig(imageConfig({ process: { user: "101:101" } }), { ...ctx, imageSeed: named })).spec
        .process.user,
    ).toMatchObject({ uid: 101, gid: 101 });
    const appNamed = failure(
      buildTaskConfig(imageConfig({ process: { user: "www" } }), { ...ctx, imageSeed: seed() }),
    );
    expect(appNamed.error.message).toMatch(/^process\.user: user "www" uses a name/);
  });
});

describe("invalid configs", () => {
  it("takes node and version from a readable raw value, else node local", () => {
    expect(identityOf({ node: "edge-1", version: "9", junk: 1 })).toEqual({ node: "edge-1", version: "9" });
    expect(identityOf({ node: "bad node", version: 9 })).toEqual({ node: "local", version: undefined });
    expect(identityOf(undefined)).toEqual({ node: "local", version: undefined });
    expect(identityOf([1])).toEqual({ node: "local", version: undefined });
    expect(RawConfigSchema.safeParse({ anything: true, node: 5 }).success).toBe(true);
    expect(RawConfigSchema.parse({ node: "x", deep: { a: 1 } })).toEqual({ node: "x", deep: { a: 1 } });
    expect(RawConfigSchema.safeParse("text").success).toBe(false);
  });

  it("words each decode failure", () => {
    const id = { node: "edge-1", version: "4" };
    const big = failure(
      rejectInvalidConfig(
        { reason: "too-large", message: "value is 70000 bytes; the limit is 65536 bytes (64 KiB)" },
        id,
        ctx,
      ),
    );
    expect(big.error.message).toBe(
      "AppInstanceConfig too large: value is 70000 bytes; the limit is 65536 bytes (64 KiB)",
    );
    expect(big).toMatchObject({ node: "edge-1", version: "4", reason: "too-large" });
    const json = failure(
      rejectInvalidConfig({ reason: "malformed-json", message: "malformed JSON: x" }, id, ctx),
    );
    expect(json.error.message).toBe("invalid AppInstanceConfig: malformed JSON: x");
    const schema = failure(rejectInvalidConfig({ reason: "schema", message: "✖ bad\n  → at a" }, id, ctx));
    expect(schema.error.message).toBe("invalid AppInstanceConfig:\n✖ bad\n  → at a");
    const noVersion = failure(rejectInvalidConfig({ reason: "schema", message: "x" }, identityOf(null), ctx));
    expect("version" in noVersion).toBe(false);
  });

  it("gives up with the last error", () => {
    const f = failure(giveUp(new Error("nats: timeout"), { node: "local", version: "1" }, ctx));
    expect(f.reason).toBe("gave-up");
    expect(f.error.message).toContain("gave up building this config after repeated failures: nats: timeout");
  });

  it("sameFailure ignores the time only", () => {
    const none = identityOf(null);
    const a = failure(rejectInvalidConfig({ reason: "schema", message: "x" }, none, ctx));
    const b = failure(
      rejectInvalidConfig({ reason: "schema", message: "x" }, none, { ...ctx, time: new Date() }),
    );
    const c = failure(rejectInvalidConfig({ reason: "schema", message: "y" }, none, ctx));
    expect(sameFailure(a, b)).toBe(true);
    expect(sameFailure(a, c)).toBe(false);
    expect(sameFailure(a, { ...b, configRevision: 8, error: { ...b.error, configRevision: 8 } })).toBe(false);
  });
});
