import { describe, expect, it } from "vitest";
import { AppInstanceConfigSchema, TaskConfigSchema, specSha256 } from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  AppInstanceConfigInput,
  FailedTaskConfig,
  ReadyTaskConfig,
} from "@eve-tasks/schemas";
import { DEFAULT_PATH } from "@eve-tasks/oci-spec";
import { assertValidOciSpec } from "../../../test/oci-schema.js";
import { ARGS_REQUIRED, VM_NOT_SUPPORTED, buildTaskConfig } from "../src/build-task-config.js";
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

  it("refuses VMs and image roots for now, saying so", () => {
    const vm = AppInstanceConfigSchema.parse({
      schemaVersion: 1,
      uuid: UUID,
      version: "3",
      node: "edge-1",
      virtualization: "HVM",
      resources: { memoryMiB: 512, vcpus: 1 },
      vm: { kernel: "/var/lib/eve/volumes/vm/vmlinuz" },
    });
    const f = failure(buildTaskConfig(vm, ctx));
    expect(f).toMatchObject({ node: "edge-1", version: "3", reason: "unsupported" });
    expect(f.error.message).toBe(VM_NOT_SUPPORTED);
    const img = failure(
      buildTaskConfig(config({ root: { image: { ref: "registry.example:5000/app:1" } } }), ctx),
    );
    expect(img.error.message).toContain('root.image ("registry.example:5000/app:1") is not supported yet');
    expect(img.error.message).toContain("hypervisor-seed-fetcher");
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
