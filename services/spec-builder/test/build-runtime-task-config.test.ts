// VMs (virtualization HVM): the tools seed is the root, qemu is the anchor with the guest's
// memory, vCPUs, kernel, initrd, command line and disks; the limit is guest RAM plus the tax.
import { describe, expect, it } from "vitest";
import {
  AppInstanceConfigSchema,
  HypervisorSeedSchema,
  TOOLS_ANNOTATION,
  TaskConfigSchema,
  VM_ACCEL_ANNOTATION,
  VM_VCPUS_ANNOTATION,
  estimateAnchorTaxMiB,
} from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, HypervisorSeed, ReadyTaskConfig } from "@eve-tasks/schemas";
import { assertValidOciSpec } from "../../../test/oci-schema.js";
import { buildTaskConfig } from "../src/build-task-config.js";
import { noToolsConfigMessage } from "../src/build-vm-task-config.js";
import type { BuildContext, BuildOutcome } from "../src/outcome.js";

const UUID = "0b0e0000-0000-4000-8000-00000000000a";
const ctx: BuildContext = { key: UUID, revision: 4, time: new Date("2026-01-01T00:00:00Z") };
const MiB = 2 ** 20;
const DIGEST = `sha256:${"ab".repeat(32)}`;
const TOOLS_REF = "oci:/var/lib/eve-tasks/tools-images/qemu:qemu-7.2";
const ROOTFS = "/var/lib/eve-tasks/seeds/tools/rootfs";

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

function toolsSeed(over: Partial<HypervisorSeed> = {}): HypervisorSeed {
  return HypervisorSeedSchema.parse({
    schemaVersion: 1,
    state: "READY",
    ref: TOOLS_REF,
    digest: DIGEST,
    indexDigest: null,
    platform: "linux/amd64",
    rootfsPath: ROOTFS,
    process: { args: ["/usr/bin/qemu-system-x86_64"], env: { PATH: "/usr/bin:/bin" }, cwd: "/", user: "" },
    progress: null,
    error: null,
    ...over,
  });
}

function ready(outcome: BuildOutcome): ReadyTaskConfig {
  if (outcome.status !== "READY") throw new Error(`expected READY, got ${JSON.stringify(outcome)}`);
  expect(TaskConfigSchema.parse(outcome.taskConfig)).toEqual(outcome.taskConfig);
  assertValidOciSpec(outcome.taskConfig.spec);
  return outcome.taskConfig;
}

describe("buildTaskConfig: VMs", () => {
  it("runs qemu from the tools seed with the guest's resources, files and disks", () => {
    const tc = ready(buildTaskConfig(vmConfig(), { ...ctx, toolsSeed: toolsSeed() }));
    const tax = estimateAnchorTaxMiB({ memoryMiB: 128, vcpus: 2 });
    expect(tax).toBe(380);
    expect(tc).toMatchObject({
      virtualization: "HVM",
      rootfs: { kind: "tools", seedKey: "local.default", rootfsPath: ROOTFS },
      memoryMiB: 128,
      anchorTaxMiB: tax,
      vm: { accel: "auto", anchorTaxFromApp: false, qemu: "qemu-system-x86_64", vcpus: 2 },
      volumes: [
        { path: "/var/lib/eve/volumes/vm/vmlinuz", mountPoint: "/eve/vm/kernel", readOnly: true },
        { path: "/var/lib/eve/volumes/vm/initrd.img", mountPoint: "/eve/vm/initrd", readOnly: true },
        { path: "/var/lib/eve/volumes/vm/data.qcow2", mountPoint: "/eve/vm/disk0", readOnly: false },
      ],
    });
    expect(tc.spec.process.args).toEqual([
      "qemu-system-x86_64",
      "-name",
      `guest=${UUID},debug-threads=on`,
      "-m",
      "128",
      "-smp",
      "2",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-serial",
      "stdio",
      "-qmp",
      "unix:/run/eve-vm/qmp.sock,server=on,wait=off",
      "-kernel",
      "/eve/vm/kernel",
      "-initrd",
      "/eve/vm/initrd",
      "-append",
      "console=ttyS0 quiet",
      "-drive",
      "file=/eve/vm/disk0,format=qcow2,if=virtio,readonly=off",
    ]);
    expect(tc.spec.process.env).toContain("PATH=/usr/bin:/bin");
    expect(tc.spec.linux.resources.memory.limit).toBe((128 + tax) * MiB);
    expect(tc.spec.linux.resources.cpu).toMatchObject({ period: 100000, quota: 300000 });
    expect(tc.spec.hostname).toBe(UUID);
    expect(tc.spec.annotations).toMatchObject({
      [TOOLS_ANNOTATION]: `${TOOLS_REF}@${DIGEST}`,
      [VM_VCPUS_ANNOTATION]: "2",
      [VM_ACCEL_ANNOTATION]: "auto",
    });
  });

  it("takes the app's own tax, and the emulator of the app's architecture", () => {
    const tc = ready(
      buildTaskConfig(
        vmConfig({ resources: { memoryMiB: 256, vcpus: 1, vmmOverheadMiB: 64 }, arch: "aarch64" }),
        {
          ...ctx,
          toolsSeed: toolsSeed(),
        },
      ),
    );
    expect(tc.anchorTaxMiB).toBe(64);
    expect(tc.vm).toMatchObject({ anchorTaxFromApp: true, qemu: "qemu-system-aarch64" });
    expect(tc.spec.linux.resources.memory.limit).toBe(320 * MiB);
  });

  it("waits for the tools: no config, no seed yet, a pull in progress", () => {
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
        message: expect.stringContaining('seed hypervisor tools "fast"') as unknown,
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

  it("passes on a failed tools pull as the fetcher's error", () => {
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
          message: `hypervisor tools "default" (${TOOLS_REF}): manifest unknown`,
        },
      },
    });
  });
});
