// Runtime tasks: an app with a runtime section, and a VM (its `vm` section is the short form of a
// runtime). The runtime image's seed is the root, its loader the command with the app's args
// after it, its labels the stop method, the tax and the devices; the task gets the contract's
// EVE_TASK_* environment and its artifacts at /eve/artifacts/<name>. Nothing is specific to a
// runtime: the same build makes the qemu, the JVM and an unknown operator's runtime tasks.
import { describe, expect, it } from "vitest";
import {
  AppInstanceConfigSchema,
  HypervisorSeedSchema,
  RUNTIME_LABELS,
  TOOLS_ANNOTATION,
  TaskConfigSchema,
  VM_ACCEL_ANNOTATION,
  VM_VCPUS_ANNOTATION,
  estimateAnchorTaxMiB,
} from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, HypervisorSeed, ReadyTaskConfig } from "@eve-tasks/schemas";
import { assertValidOciSpec } from "../../../test/oci-schema.js";
import { buildTaskConfig } from "../src/build-task-config.js";
import { noToolsConfigMessage } from "../src/build-runtime-task-config.js";
import type { BuildContext, BuildOutcome } from "../src/outcome.js";

const UUID = "0b0e0000-0000-4000-8000-00000000000a";
const ctx: BuildContext = { key: UUID, revision: 4, time: new Date("2026-01-01T00:00:00Z") };
const MiB = 2 ** 20;
const DIGEST = `sha256:${"ab".repeat(32)}`;
const TOOLS_REF = "oci:/var/lib/eve-tasks/tools-images/default/qemu-7.2:qemu-7.2";
const ROOTFS = "/var/lib/eve-tasks/seeds/tools/rootfs";
/** The labels of the built-in `default` runtime. */
const QEMU_LABELS = {
  [RUNTIME_LABELS.runtime]: "1",
  [RUNTIME_LABELS.stop]: "qmp",
  [RUNTIME_LABELS.tax]: '{"baseMiB":370,"perVcpuMiB":3,"perGuestMiB":0.025}',
  [RUNTIME_LABELS.devices]: '["kvm","tun"]',
};

function vmConfig(over: Partial<AppInstanceConfigInput> = {}, vm: object = {}) {
  return AppInstanceConfigSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    version: "2",
    displayName: "guest",
    virtualization: "HVM",
    resources: { memoryMiB: 128, vcpus: 2 },
    vm: {
      kernel: "/var/lib/eve/volumes/vm/vmlinuz",
      initrd: "/var/lib/eve/volumes/vm/initrd.img",
      cmdline: "console=ttyS0 quiet",
      disks: [{ path: "/var/lib/eve/volumes/vm/data.qcow2", format: "qcow2" }],
      ...vm,
    },
    ...over,
  });
}

function runtimeApp(runtime: object = {}, over: object = {}) {
  return AppInstanceConfigSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    version: "3",
    resources: { memoryMiB: 256, vcpus: 1 },
    runtime: {
      tools: "jvm",
      artifacts: [{ name: "app.jar", path: "/var/lib/eve/volumes/jars/app.jar" }],
      ...runtime,
    },
    process: { args: ["--port", "8080"], env: { EVE_JVM_OPTIONS: "-Dx=1" } },
    ...over,
  });
}

function toolsSeed(
  over: Partial<HypervisorSeed> = {},
  labels: Record<string, string> = QEMU_LABELS,
): HypervisorSeed {
  return HypervisorSeedSchema.parse({
    schemaVersion: 1,
    state: "READY",
    ref: TOOLS_REF,
    digest: DIGEST,
    indexDigest: null,
    platform: "linux/amd64",
    rootfsPath: ROOTFS,
    process: { args: ["/eve/loader"], env: { PATH: "/usr/bin:/bin" }, cwd: "/", user: "" },
    progress: null,
    error: null,
    labels,
    stopSignal: null,
    ...over,
  });
}

function ready(outcome: BuildOutcome): ReadyTaskConfig {
  if (outcome.status !== "READY") throw new Error(`expected READY, got ${JSON.stringify(outcome)}`);
  expect(TaskConfigSchema.parse(outcome.taskConfig)).toEqual(outcome.taskConfig);
  assertValidOciSpec(outcome.taskConfig.spec);
  return outcome.taskConfig;
}

function failedWith(outcome: BuildOutcome): string {
  if (outcome.status !== "FAILED") throw new Error(`expected FAILED, got ${JSON.stringify(outcome)}`);
  return outcome.taskConfig.error.message;
}

describe("buildTaskConfig: VMs, the short form of a runtime", () => {
  it("runs the runtime's loader with the guest's files as artifacts and its resources in the env", () => {
    const tc = ready(buildTaskConfig(vmConfig(), { ...ctx, toolsSeed: toolsSeed() }));
    const tax = estimateAnchorTaxMiB({ memoryMiB: 128, vcpus: 2 });
    expect(tax).toBe(380);
    expect(tc).toMatchObject({
      virtualization: "HVM",
      rootfs: { kind: "tools", seedKey: "local.default", rootfsPath: ROOTFS },
      memoryMiB: 128,
      anchorTaxMiB: tax,
      runtime: {
        name: "default",
        accel: "auto",
        stop: { method: "qmp" },
        devices: ["kvm", "tun"],
        taxFromApp: false,
        vcpus: 2,
      },
      volumes: [
        { path: "/var/lib/eve/volumes/vm/vmlinuz", mountPoint: "/eve/artifacts/kernel", readOnly: true },
        { path: "/var/lib/eve/volumes/vm/initrd.img", mountPoint: "/eve/artifacts/initrd", readOnly: true },
        { path: "/var/lib/eve/volumes/vm/data.qcow2", mountPoint: "/eve/artifacts/disk0", readOnly: false },
      ],
    });
    expect(tc.spec.process.args).toEqual(["/eve/loader"]);
    expect(tc.spec.process.env).toEqual(
      expect.arrayContaining([
        "PATH=/usr/bin:/bin",
        `EVE_TASK_UUID=${UUID}`,
        "EVE_TASK_MEMORY_MIB=128",
        "EVE_TASK_VCPUS=2",
        "EVE_TASK_ARCH=x86_64",
        "EVE_TASK_ARTIFACTS=kernel,initrd,disk0",
        "EVE_TASK_ARTIFACT_FORMATS=disk0=qcow2",
        "EVE_TASK_CMDLINE=console=ttyS0 quiet",
        "EVE_TASK_QMP_SOCKET=/run/eve-vm/qmp.sock",
      ]),
    );
    // The node's facts are the executor's to add.
    expect(tc.spec.process.env?.some((e) => e.startsWith("EVE_TASK_ACCEL="))).toBe(false);
    expect(tc.spec.mounts).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          destination: "/eve/artifacts/disk0",
          source: "/var/lib/eve/volumes/vm/data.qcow2",
        }),
      ]),
    );
    expect(tc.spec.linux.resources.memory.limit).toBe((128 + tax) * MiB);
    expect(tc.spec.linux.resources.cpu).toMatchObject({ period: 100000, quota: 300000 });
    expect(tc.spec.hostname).toBe(UUID);
    expect(tc.spec.annotations).toMatchObject({
      [TOOLS_ANNOTATION]: `${TOOLS_REF}@${DIGEST}`,
      [VM_VCPUS_ANNOTATION]: "2",
      [VM_ACCEL_ANNOTATION]: "auto",
    });
  });

  it("takes the app's own tax, and passes the app's arch to the loader", () => {
    const tc = ready(
      buildTaskConfig(
        vmConfig({ resources: { memoryMiB: 256, vcpus: 1, vmmOverheadMiB: 64 }, arch: "aarch64" }),
        { ...ctx, toolsSeed: toolsSeed() },
      ),
    );
    expect(tc.anchorTaxMiB).toBe(64);
    expect(tc.runtime).toMatchObject({ taxFromApp: true });
    expect(tc.spec.process.env).toContain("EVE_TASK_ARCH=aarch64");
    expect(tc.spec.linux.resources.memory.limit).toBe(320 * MiB);
  });

  it("waits for the runtime: no config, no seed yet, a pull in progress", () => {
    const none = buildTaskConfig(vmConfig(), { ...ctx, toolsConfigured: false });
    expect(none).toMatchObject({
      status: "PENDING",
      taskConfig: { waitingFor: "seed", message: noToolsConfigMessage("default") },
    });
    expect(noToolsConfigMessage("default")).toMatch(/no HypervisorToolsConfig\.default is published/);
    const notYet = buildTaskConfig(vmConfig({}, { hypervisorTools: "fast" }), {
      ...ctx,
      toolsConfigured: true,
    });
    expect(notYet).toMatchObject({
      status: "PENDING",
      taskConfig: {
        waitingFor: "seed",
        message: expect.stringContaining('seed runtime "fast"') as unknown,
      },
    });
    const pulling = toolsSeed({
      state: "PULLING",
      digest: null,
      platform: null,
      rootfsPath: null,
      process: null,
      progress: { doneBytes: 1, totalBytes: 2 },
    });
    expect(buildTaskConfig(vmConfig(), { ...ctx, toolsSeed: pulling })).toMatchObject({
      status: "PENDING",
      taskConfig: { waitingFor: "pull" },
    });
  });

  it("passes on a failed pull as the fetcher's error", () => {
    const failed = toolsSeed({
      state: "FAILED",
      digest: null,
      platform: null,
      rootfsPath: null,
      process: null,
      error: { message: "manifest unknown", time: "2026-01-01T00:00:00.000Z" },
    });
    const outcome = buildTaskConfig(vmConfig(), { ...ctx, toolsSeed: failed });
    expect(outcome).toMatchObject({
      status: "FAILED",
      reason: "seed",
      taskConfig: {
        error: {
          source: "hypervisor-seed-fetcher",
          message: `runtime "default" (${TOOLS_REF}): manifest unknown`,
        },
      },
    });
  });
});

describe("buildTaskConfig: apps with a runtime section", () => {
  const jvmSeed = () =>
    toolsSeed(
      { stopSignal: "SIGTERM", ref: "oci:/x/jvm:1" },
      {
        [RUNTIME_LABELS.runtime]: "1",
        [RUNTIME_LABELS.stop]: "signal",
      },
    );

  it("runs the loader with the app's args after it, its env under the contract's, no tax", () => {
    const tc = ready(buildTaskConfig(runtimeApp(), { ...ctx, toolsSeed: jvmSeed() }));
    expect(tc).toMatchObject({
      virtualization: "NOHYPER",
      rootfs: { kind: "tools", seedKey: "local.jvm" },
      anchorTaxMiB: 0,
      runtime: { name: "jvm", stop: { method: "signal", signal: "SIGTERM" }, devices: [], vcpus: 1 },
      volumes: [
        { path: "/var/lib/eve/volumes/jars/app.jar", mountPoint: "/eve/artifacts/app.jar", readOnly: true },
      ],
    });
    expect(tc.spec.process.args).toEqual(["/eve/loader", "--port", "8080"]);
    expect(tc.spec.process.env).toEqual(
      expect.arrayContaining([
        "EVE_JVM_OPTIONS=-Dx=1",
        "EVE_TASK_ARTIFACTS=app.jar",
        "EVE_TASK_ARTIFACT_FORMATS=",
      ]),
    );
    // Not stopped by QMP: no socket; no kernel: no command line.
    expect(tc.spec.process.env?.some((e) => /^EVE_TASK_(QMP_SOCKET|CMDLINE)=/.test(e))).toBe(false);
    expect(tc.spec.linux.resources.memory.limit).toBe(256 * MiB);
    expect(tc.spec.linux.resources.cpu).toMatchObject({ quota: 200000 });
  });

  it("is the same build for a VM written in full as a runtime, and the short form", () => {
    const long = runtimeApp(
      {
        tools: "default",
        artifacts: [
          { name: "kernel", path: "/var/lib/eve/volumes/vm/vmlinuz" },
          { name: "initrd", path: "/var/lib/eve/volumes/vm/initrd.img" },
          { name: "disk0", path: "/var/lib/eve/volumes/vm/data.qcow2", readOnly: false, format: "qcow2" },
        ],
        cmdline: "console=ttyS0 quiet",
      },
      {
        virtualization: "HVM",
        resources: { memoryMiB: 128, vcpus: 2 },
        process: undefined,
        version: "2",
        displayName: "guest",
      },
    );
    const a = ready(buildTaskConfig(long, { ...ctx, toolsSeed: toolsSeed() }));
    const b = ready(buildTaskConfig(vmConfig(), { ...ctx, toolsSeed: toolsSeed() }));
    expect(a).toEqual(b);
  });

  it("refuses an image that is not a runtime, a label the node cannot use, no loader", () => {
    const build = (labels: Record<string, string>, over: Partial<HypervisorSeed> = {}) =>
      buildTaskConfig(runtimeApp(), { ...ctx, toolsSeed: toolsSeed(over, labels) });
    expect(failedWith(build({}))).toBe(
      `runtime "jvm" (${TOOLS_REF}) cannot run tasks: it has no label org.lfedge.eve-tasks.runtime, so it is not a runtime image`,
    );
    expect(failedWith(build({ [RUNTIME_LABELS.runtime]: "2" }))).toMatch(/speaks runtime contract "1"/);
    expect(failedWith(build({ [RUNTIME_LABELS.runtime]: "1", [RUNTIME_LABELS.stop]: "ssh" }))).toMatch(
      /label org\.lfedge\.eve-tasks\.stop is "ssh": the stop methods a node knows are "signal" and "qmp"/,
    );
    expect(
      failedWith(build({ [RUNTIME_LABELS.runtime]: "1", [RUNTIME_LABELS.devices]: '["kvm","mem"]' })),
    ).toMatch(/names device "mem": a runtime may be given only kvm and tun/);
    expect(failedWith(build({ [RUNTIME_LABELS.runtime]: "1", [RUNTIME_LABELS.tax]: "{baseMiB:1}" }))).toMatch(
      /label org\.lfedge\.eve-tasks\.tax is not JSON/,
    );
    expect(
      failedWith(build({ [RUNTIME_LABELS.runtime]: "1", [RUNTIME_LABELS.tax]: '{"baseMiB":-1}' })),
    ).toMatch(/tax: baseMiB: baseMiB must not be negative/);
    expect(failedWith(build({ [RUNTIME_LABELS.runtime]: "1" }, { stopSignal: "SIG KILL!" }))).toMatch(
      /its StopSignal "SIG KILL!" is not a signal/,
    );
    const emulators = {
      [RUNTIME_LABELS.runtime]: "1",
      [RUNTIME_LABELS.emulators]: '{"aarch64":"/usr/bin/qemu-aarch64-static"}',
    };
    expect(failedWith(build(emulators, { process: { args: [], env: {}, cwd: "/", user: "" } }))).toMatch(
      /its image defines no loader \(Entrypoint\/Cmd\); it provides emulators/,
    );
    // A seed written before seeds kept labels.
    expect(failedWith(build({}, { labels: null }))).toMatch(/publish its HypervisorToolsConfig again/);
  });

  it("refuses an app setting the contract's variables itself", () => {
    const app = runtimeApp({}, { process: { env: { EVE_TASK_ACCEL: "kvm", OK: "1" } } });
    expect(failedWith(buildTaskConfig(app, { ...ctx, toolsSeed: toolsSeed() }))).toBe(
      "process.env: EVE_TASK_ACCEL: variables starting with EVE_TASK_ are the runtime contract's, set by the node",
    );
  });
});
