// A VM's node facts, applied by prepareTask to a TaskConfig as the spec-builder builds it: the
// tools seed's qemu found along the spec's PATH, `-accel`, the QMP dir under EVE_RUN_DIR, the
// kernel and initrd bind-mounted after the realpath check, /dev/kvm only with KVM, the tax.
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeFactError, PolicyError, parseLimits, prepareTask, stagingPath } from "@eve-tasks/executor";
import type { AccelDecider, NodeFacts } from "@eve-tasks/executor";
import {
  QMP_DIR_IN_TASK,
  buildSpec,
  qemuArgs,
  toTaskSpec,
  withArgs,
  withCpus,
  withMemoryLimitBytes,
} from "@eve-tasks/oci-spec";
import { specSha256 } from "@eve-tasks/schemas";
import type { ReadyTaskConfig } from "@eve-tasks/schemas";
import { deepFreeze } from "./deep-freeze.js";

const UUID = "0b0e0000-0000-4000-8000-000000000001";
const MiB = 2 ** 20;

/** Decides as told and records what it was asked. */
function fixedAccel(accel: "kvm" | "tcg"): AccelDecider & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    decide: (requested, probe) => {
      asked.push(`${requested} ${probe.qemu}`);
      return Promise.resolve({ accel, why: `test: ${accel}` });
    },
  };
}

describe("prepareTask for a VM", () => {
  let dir: string;
  let facts: NodeFacts;
  let seedRoot: string;
  let emptySeed: string;
  let kernel: string;
  let config: (over?: Partial<ReadyTaskConfig>) => ReadyTaskConfig;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "eve-vm-prepare-"));
    const roots = join(dir, "volumes");
    await mkdir(join(roots, "vm"), { recursive: true });
    kernel = join(roots, "vm", "vmlinuz");
    await writeFile(kernel, "not really a kernel");
    await writeFile(join(roots, "vm", "initrd.img"), "not really an initrd");
    seedRoot = join(dir, "data", "seeds", "tools", "rootfs");
    await mkdir(join(seedRoot, "usr", "bin"), { recursive: true });
    await writeFile(join(seedRoot, "usr", "bin", "qemu-system-x86_64"), "#!/bin/sh\n");
    await chmod(join(seedRoot, "usr", "bin", "qemu-system-x86_64"), 0o755);
    emptySeed = join(dir, "data", "seeds", "empty", "rootfs");
    await mkdir(join(emptySeed, "bin"), { recursive: true });
    facts = {
      node: "local",
      dataDir: join(dir, "data"),
      runDir: join(dir, "run"),
      volumeRoots: [roots],
      memoryMiB: 4096,
      memoryReserveMiB: 0,
      hardLimits: parseLimits("Limit Soft Hard Units\n"),
      policy: { allowHostRoot: false, devices: ["kvm", "tun"] },
      taskLog: { loggerPath: "/usr/libexec/eve-task-logger", maxBytes: 2 ** 20, files: 3 },
    };
    const spec = toTaskSpec(
      buildSpec(
        withArgs(
          qemuArgs("qemu-system-x86_64", {
            name: UUID,
            memoryMiB: 128,
            vcpus: 1,
            kernel: true,
            initrd: true,
            cmdline: "console=ttyS0",
            disks: [],
          }),
        ),
        withMemoryLimitBytes((128 + 377) * MiB),
        withCpus(2),
      ),
    );
    config = (over = {}) => ({
      schemaVersion: 1,
      status: "READY",
      uuid: UUID,
      configRevision: 3,
      node: "local",
      version: "1",
      displayName: "vm",
      activate: true,
      restartCounter: 0,
      virtualization: "HVM",
      spec,
      specSha256: specSha256(spec),
      rootfs: { kind: "tools", seedKey: "local.default", rootfsPath: seedRoot },
      volumes: [
        { path: kernel, mountPoint: "/eve/vm/kernel", readOnly: true },
        { path: join(roots, "vm", "initrd.img"), mountPoint: "/eve/vm/initrd", readOnly: true },
      ],
      memoryMiB: 128,
      anchorTaxMiB: 377,
      vm: { accel: "auto", anchorTaxFromApp: false, qemu: "qemu-system-x86_64", vcpus: 1 },
      restartPolicy: {
        mode: "never",
        maxRestarts: 5,
        windowMs: 600000,
        backoffMs: 1000,
        maxBackoffMs: 60000,
      },
      stopTimeoutMs: 10000,
      ...over,
    });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("overlays the tools seed, binds the guest's files and the QMP dir, and adds -accel", async () => {
    const accel = fixedAccel("tcg");
    const p = await prepareTask(config(), facts, accel);
    expect(accel.asked).toEqual(["auto /usr/bin/qemu-system-x86_64"]);
    expect(p.rootfs[0]?.options?.[0]).toBe(`lowerdir=${seedRoot}`);
    expect(p.spec.process.args.slice(-2)).toEqual(["-accel", "tcg"]);
    const qmpDir = join(dir, "run", "vm", UUID);
    expect(p.dirs).toContain(qmpDir);
    // The guest's files are staged from what was checked; the QMP dir is the executor's own.
    const taskDir = join(dir, "data", "tasks", UUID);
    expect(p.staged).toEqual([
      {
        what: "volume /eve/vm/kernel",
        source: kernel,
        via: "staging",
        target: stagingPath(taskDir, "volume-0"),
        recursive: true,
        directory: false,
      },
      expect.objectContaining({ what: "volume /eve/vm/initrd", target: stagingPath(taskDir, "volume-1") }),
    ]);
    expect(p.spec.mounts).toEqual(
      expect.arrayContaining([
        {
          destination: "/eve/vm/kernel",
          type: "bind",
          source: stagingPath(taskDir, "volume-0"),
          options: ["rbind", "ro", "rro", "nosuid", "nodev", "rnosuid", "rnodev"],
        },
        {
          destination: QMP_DIR_IN_TASK,
          type: "bind",
          source: qmpDir,
          options: ["bind", "rw", "nosuid", "nodev", "noexec"],
        },
      ]),
    );
    expect(p.vm).toEqual({ accel: "tcg", why: "test: tcg" });
    // TCG: no /dev/kvm in the task.
    expect(JSON.stringify(p.spec.linux)).not.toContain("/dev/kvm");
    expect(p.memoryLimitBytes).toBe((128 + 377) * MiB);
    expect(p.anchorTaxBytes).toBe(377 * MiB);
  });

  it("passes /dev/kvm, and allows it in the device cgroup, only when KVM is used", async () => {
    // Frozen: the TaskConfig's spec stays as it came (any write to it would throw).
    const c = deepFreeze(config());
    const p = await prepareTask(c, facts, fixedAccel("kvm"));
    expect(JSON.stringify(c.spec.linux)).not.toContain("/dev/kvm");
    expect(p.spec.process.args.slice(-2)).toEqual(["-accel", "kvm"]);
    const linux = p.spec.linux as { devices?: { path: string }[]; resources: { devices?: object[] } };
    expect(linux.devices?.map((d) => d.path)).toEqual(["/dev/kvm"]);
    expect(linux.resources.devices).toContainEqual({
      allow: true,
      type: "c",
      major: 10,
      minor: 232,
      access: "rwm",
    });
  });

  it("gives no /dev/kvm where the node does not allow it: auto is TCG, kvm is refused", async () => {
    const node = { ...facts, policy: { allowHostRoot: false, devices: [] } };
    const accel = fixedAccel("kvm");
    const auto = await prepareTask(config(), node, accel);
    expect(accel.asked).toEqual([]);
    expect(auto.vm).toEqual({
      accel: "tcg",
      why: "auto: this node does not allow /dev/kvm (EVE_ALLOW_DEVICES)",
    });
    expect(JSON.stringify(auto.spec.linux)).not.toContain("/dev/kvm");
    const kvm = config({
      vm: { accel: "kvm", anchorTaxFromApp: false, qemu: "qemu-system-x86_64", vcpus: 1 },
    });
    const err = await prepareTask(kvm, node, fixedAccel("kvm")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as Error).message).toBe(
      "refused by this node's policy: vm.accel: /dev/kvm is not allowed on this node (EVE_ALLOW_DEVICES: none)",
    );
  });

  it("refuses a VM spec that brings its own devices, mounts or device rules", async () => {
    const spec = structuredClone(config().spec);
    spec.linux = { ...spec.linux, devices: [{ path: "/dev/kvm", type: "c", major: 10, minor: 232 }] };
    spec.mounts = [...(spec.mounts ?? []), { destination: QMP_DIR_IN_TASK, type: "bind", source: "/" }];
    const err = await prepareTask(
      config({ spec, specSha256: specSha256(spec) }),
      facts,
      fixedAccel("kvm"),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).violations.map((v) => v.field)).toEqual([
      `spec.mounts[6] (${QMP_DIR_IN_TASK})`,
      "spec.linux.devices",
    ]);
  });

  it("takes the node's EVE_VMM_OVERHEAD_MIB unless the app set its own tax", async () => {
    const node = { ...facts, vmmOverheadMiB: 100 };
    const estimate = await prepareTask(config(), node, fixedAccel("tcg"));
    expect(estimate.anchorTaxBytes).toBe(100 * MiB);
    expect(estimate.memoryLimitBytes).toBe(228 * MiB);
    expect(estimate.spec.linux.resources.memory.limit).toBe(228 * MiB);
    const own = await prepareTask(
      config({
        anchorTaxMiB: 50,
        vm: { accel: "tcg", anchorTaxFromApp: true, qemu: "qemu-system-x86_64", vcpus: 1 },
      }),
      node,
      fixedAccel("tcg"),
    );
    expect(own.memoryLimitBytes).toBe(178 * MiB);
  });

  it("refuses a tools image without the qemu the spec runs, naming the image and PATH", async () => {
    const err = await prepareTask(
      config({ rootfs: { kind: "tools", seedKey: "local.empty", rootfsPath: emptySeed } }),
      facts,
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeFactError);
    expect((err as Error).message).toMatch(
      /^the hypervisor tools image .* has no qemu-system-x86_64 in its PATH \(\/usr\/local\/sbin:.*\): it cannot run this VM/,
    );
  });

  it("refuses a kernel outside EVE_VOLUME_ROOTS and a QMP socket path over the kernel's limit", async () => {
    const outside = await prepareTask(
      config({ volumes: [{ path: "/etc/hostname", mountPoint: "/eve/vm/kernel", readOnly: true }] }),
      facts,
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect((outside as Error).message).toMatch(
      /^volume \/eve\/vm\/kernel \/etc\/hostname is outside EVE_VOLUME_ROOTS/,
    );
    const long = await prepareTask(
      config(),
      { ...facts, runDir: join("/run", "x".repeat(80)) },
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect((long as Error).message).toMatch(
      /over the kernel's 107-byte limit for unix sockets: set EVE_RUN_DIR to a shorter path/,
    );
  });
});
