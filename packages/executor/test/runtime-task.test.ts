// A runtime task's node facts, applied by prepareTask to a TaskConfig as the spec-builder builds
// it: what the runtime image's labels say is read again from the seed on the node (stop, devices,
// tax), devices pass the node's policy, EVE_TASK_ACCEL is the node's, the QMP dir is bound under
// EVE_RUN_DIR for a runtime stopped by QMP, artifacts are staged after the realpath check. And an
// emulated native task: its emulator from the emulators seed, the tax in its memory limit.
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  NodeFactError,
  PolicyError,
  binfmtLauncher,
  binfmtRegistration,
  parseLimits,
  prepareTask,
  stagingPath,
} from "@eve-tasks/executor";
import type { AccelDecider, NodeFacts } from "@eve-tasks/executor";
import {
  QMP_DIR_IN_TASK,
  buildSpec,
  toTaskSpec,
  withArgs,
  withBindMount,
  withCpus,
  withEnv,
  withMemoryLimitBytes,
} from "@eve-tasks/oci-spec";
import { specSha256 } from "@eve-tasks/schemas";
import type { ReadyTaskConfig } from "@eve-tasks/schemas";
import { deepFreeze } from "./deep-freeze.js";

const UUID = "0b0e0000-0000-4000-8000-000000000001";
const MiB = 2 ** 20;
const QEMU_TAX = { baseMiB: 370, perVcpuMiB: 3, perGuestMiB: 0.025 };

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

/** A seed dir as the hypervisor-seed-fetcher leaves it: `rootfs/` and `seed.json` with labels. */
async function makeSeed(
  seeds: string,
  name: string,
  labels: Record<string, string> | null,
  files: Record<string, string> = {},
  stopSignal: string | null = null,
): Promise<string> {
  const root = join(seeds, name, "rootfs");
  await mkdir(root, { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), text);
    await chmod(join(root, path), 0o755);
  }
  const record = { ref: `oci:/x:${name}`, ...(labels ? { labels, stopSignal } : {}) };
  await writeFile(join(seeds, name, "seed.json"), JSON.stringify(record));
  return root;
}

describe("prepareTask for a runtime task", () => {
  let dir: string;
  let facts: NodeFacts;
  let vmSeed: string;
  let jvmSeed: string;
  let kernel: string;
  let jar: string;
  let vmConfig: (over?: Partial<ReadyTaskConfig>) => ReadyTaskConfig;
  let jvmConfig: (over?: Partial<ReadyTaskConfig>) => ReadyTaskConfig;
  let seeds: string;

  const restartPolicy = {
    mode: "never",
    maxRestarts: 5,
    windowMs: 600000,
    backoffMs: 1000,
    maxBackoffMs: 60000,
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "eve-runtime-prepare-"));
    const roots = join(dir, "volumes");
    await mkdir(join(roots, "vm"), { recursive: true });
    kernel = join(roots, "vm", "vmlinuz");
    await writeFile(kernel, "not really a kernel");
    jar = join(roots, "app.jar");
    await writeFile(jar, "PK not really a jar");
    seeds = join(dir, "data", "seeds");
    vmSeed = await makeSeed(
      seeds,
      "a".repeat(64),
      {
        "org.lfedge.eve-tasks.runtime": "1",
        "org.lfedge.eve-tasks.stop": "qmp",
        "org.lfedge.eve-tasks.tax": JSON.stringify(QEMU_TAX),
        "org.lfedge.eve-tasks.devices": '["kvm","tun"]',
      },
      { "usr/bin/qemu-system-x86_64": "#!/bin/sh\n", "eve/loader": "#!/bin/sh\n" },
    );
    jvmSeed = await makeSeed(
      seeds,
      "b".repeat(64),
      { "org.lfedge.eve-tasks.runtime": "1", "org.lfedge.eve-tasks.stop": "signal" },
      { "eve/loader": "#!/bin/sh\n" },
      "SIGINT",
    );
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
      arch: "x86_64",
    };
    const runtimeSpec = (artifacts: { name: string; path: string }[], qmp: boolean) =>
      toTaskSpec(
        buildSpec(
          withArgs(["/eve/loader"]),
          withEnv({
            EVE_TASK_UUID: UUID,
            EVE_TASK_MEMORY_MIB: "128",
            EVE_TASK_VCPUS: "1",
            ...(qmp ? { EVE_TASK_QMP_SOCKET: `${QMP_DIR_IN_TASK}/qmp.sock` } : {}),
          }),
          withMemoryLimitBytes((128 + 377) * MiB),
          withCpus(2),
          ...artifacts.map((a) =>
            withBindMount({ source: a.path, destination: `/eve/artifacts/${a.name}`, readOnly: true }),
          ),
        ),
      );
    const base = (
      spec: ReturnType<typeof runtimeSpec>,
      rootfsPath: string,
      key: string,
      over: Partial<ReadyTaskConfig>,
    ): ReadyTaskConfig => ({
      schemaVersion: 1,
      status: "READY",
      uuid: UUID,
      configRevision: 3,
      node: "local",
      version: "1",
      displayName: "rt",
      activate: true,
      restartCounter: 0,
      virtualization: "HVM",
      spec,
      specSha256: specSha256(spec),
      rootfs: { kind: "tools", seedKey: `local.${key}`, rootfsPath },
      volumes: [],
      memoryMiB: 128,
      anchorTaxMiB: 377,
      restartPolicy: restartPolicy as ReadyTaskConfig["restartPolicy"],
      stopTimeoutMs: 10000,
      interfaces: [],
      ...over,
    });
    const vmSpec = runtimeSpec([{ name: "kernel", path: kernel }], true);
    vmConfig = (over = {}) =>
      base(vmSpec, vmSeed, "default", {
        volumes: [{ path: kernel, mountPoint: "/eve/artifacts/kernel", readOnly: true }],
        runtime: {
          name: "default",
          accel: "auto",
          stop: { method: "qmp" },
          devices: ["kvm", "tun"],
          taxFromApp: false,
          vcpus: 1,
        },
        ...over,
      });
    const jvmSpec = runtimeSpec([{ name: "app.jar", path: jar }], false);
    jvmConfig = (over = {}) =>
      base(jvmSpec, jvmSeed, "jvm", {
        virtualization: "NOHYPER",
        anchorTaxMiB: 0,
        volumes: [{ path: jar, mountPoint: "/eve/artifacts/app.jar", readOnly: true }],
        runtime: {
          name: "jvm",
          accel: "auto",
          stop: { method: "signal", signal: "SIGINT" },
          devices: [],
          taxFromApp: false,
          vcpus: 1,
        },
        ...over,
      });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("overlays the runtime's seed, stages the artifacts, binds the QMP dir and sets EVE_TASK_ACCEL", async () => {
    const accel = fixedAccel("tcg");
    const p = await prepareTask(vmConfig(), facts, accel);
    expect(accel.asked).toEqual(["auto /usr/bin/qemu-system-x86_64"]);
    expect(p.rootfs[0]?.options?.[0]).toBe(`lowerdir=${vmSeed}`);
    expect(p.spec.process.env).toContain("EVE_TASK_ACCEL=tcg");
    expect(p.spec.process.args).toEqual(["/eve/loader"]);
    const qmpDir = join(dir, "run", "vm", UUID);
    expect(p.dirs).toContain(qmpDir);
    const taskDir = join(dir, "data", "tasks", UUID);
    expect(p.staged).toEqual([
      {
        what: "volume /eve/artifacts/kernel",
        source: kernel,
        via: "staging",
        target: stagingPath(taskDir, "volume-0"),
        recursive: true,
        directory: false,
      },
    ]);
    expect(p.spec.mounts).toEqual(
      expect.arrayContaining([
        {
          destination: "/eve/artifacts/kernel",
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
    expect(p.runtime).toMatchObject({ accel: "tcg", why: "test: tcg", stop: { method: "qmp" }, taxMiB: 377 });
    // TCG: no /dev/kvm; the tun the image declares and the node allows.
    const linux = p.spec.linux as { devices?: { path: string }[] };
    expect(linux.devices?.map((d) => d.path)).toEqual(["/dev/net/tun"]);
    expect(p.memoryLimitBytes).toBe((128 + 377) * MiB);
    expect(p.anchorTaxBytes).toBe(377 * MiB);
  });

  it("passes /dev/kvm, and allows it in the device cgroup, only when KVM is used", async () => {
    // Frozen: the TaskConfig's spec stays as it came (any write to it would throw).
    const c = deepFreeze(vmConfig());
    const p = await prepareTask(c, facts, fixedAccel("kvm"));
    expect(JSON.stringify(c.spec)).not.toContain("/dev/kvm");
    expect(JSON.stringify(c.spec)).not.toContain("EVE_TASK_ACCEL");
    expect(p.spec.process.env).toContain("EVE_TASK_ACCEL=kvm");
    const linux = p.spec.linux as { devices?: { path: string }[]; resources: { devices?: object[] } };
    expect(linux.devices?.map((d) => d.path)).toEqual(["/dev/net/tun", "/dev/kvm"]);
    expect(linux.resources.devices).toContainEqual({
      allow: true,
      type: "c",
      major: 10,
      minor: 232,
      access: "rwm",
    });
  });

  it("gives no device the node denies: auto is TCG without kvm; kvm asked, or tun declared, is refused", async () => {
    const noKvm = { ...facts, policy: { allowHostRoot: false, devices: ["tun" as const] } };
    const accel = fixedAccel("kvm");
    const auto = await prepareTask(vmConfig(), noKvm, accel);
    expect(accel.asked).toEqual([]);
    expect(auto.runtime).toMatchObject({
      accel: "tcg",
      why: "auto: this node does not allow /dev/kvm (EVE_ALLOW_DEVICES)",
    });
    expect(JSON.stringify(auto.spec.linux)).not.toContain("/dev/kvm");
    const kvm = vmConfig({ runtime: { ...vmConfig().runtime!, accel: "kvm" } });
    const err = await prepareTask(kvm, noKvm, fixedAccel("kvm")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as Error).message).toBe(
      "refused by this node's policy: runtime.accel: /dev/kvm is not allowed on this node (EVE_ALLOW_DEVICES: tun)",
    );
    const noTun = { ...facts, policy: { allowHostRoot: false, devices: ["kvm" as const] } };
    const tun = await prepareTask(vmConfig(), noTun, fixedAccel("tcg")).catch((e: unknown) => e);
    expect(tun).toBeInstanceOf(PolicyError);
    expect((tun as Error).message).toMatch(
      /^refused by this node's policy: runtime\.devices \(declared by runtime "default"\): \/dev\/net\/tun is not allowed on this node \(EVE_ALLOW_DEVICES: kvm\)$/,
    );
  });

  it("trusts the seed on the node, not the TaskConfig: another stop or device is refused", async () => {
    const c = vmConfig();
    const stop = await prepareTask(
      vmConfig({ runtime: { ...c.runtime!, stop: { method: "signal", signal: "SIGTERM" } } }),
      facts,
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect((stop as Error).message).toBe(
      "refused by this node's policy: runtime.stop: signal SIGTERM is not the stop its image declares (qmp)",
    );
    const devices = await prepareTask(
      jvmConfig({ runtime: { ...jvmConfig().runtime!, devices: ["kvm"] } }),
      facts,
      fixedAccel("kvm"),
    ).catch((e: unknown) => e);
    expect((devices as Error).message).toBe(
      "refused by this node's policy: runtime.devices: kvm is not declared by its image (none)",
    );
  });

  it("runs a runtime that declares no kvm under no accelerator, and refuses kvm for it", async () => {
    const accel = fixedAccel("kvm");
    const p = await prepareTask(jvmConfig(), facts, accel);
    expect(accel.asked).toEqual([]);
    expect(p.runtime).toMatchObject({
      accel: "tcg",
      stop: { method: "signal", signal: "SIGINT" },
      taxMiB: 0,
    });
    expect(p.spec.process.env).toContain("EVE_TASK_ACCEL=tcg");
    expect(p.dirs.some((d) => d.includes("/vm/"))).toBe(false);
    expect((p.spec.linux as { devices?: unknown }).devices).toBeUndefined();
    expect(p.memoryLimitBytes).toBe(128 * MiB);
    const kvm = await prepareTask(
      jvmConfig({ runtime: { ...jvmConfig().runtime!, accel: "kvm" } }),
      facts,
      accel,
    ).catch((e: unknown) => e);
    expect((kvm as Error).message).toBe(
      'refused by this node\'s policy: runtime.accel: kvm asked, but runtime "jvm" does not declare the device kvm',
    );
  });

  it("takes the image's tax, the node's EVE_VMM_OVERHEAD_MIB over a declared one, the app's over both", async () => {
    const node = { ...facts, vmmOverheadMiB: 100 };
    const estimate = await prepareTask(vmConfig(), node, fixedAccel("tcg"));
    expect(estimate.anchorTaxBytes).toBe(100 * MiB);
    expect(estimate.spec.linux.resources.memory.limit).toBe(228 * MiB);
    const own = await prepareTask(
      vmConfig({ anchorTaxMiB: 50, runtime: { ...vmConfig().runtime!, taxFromApp: true } }),
      node,
      fixedAccel("tcg"),
    );
    expect(own.memoryLimitBytes).toBe(178 * MiB);
    // An image that declares no tax has none, whatever the node's override.
    expect((await prepareTask(jvmConfig(), node, fixedAccel("tcg"))).anchorTaxBytes).toBe(0);
  });

  it("refuses a seed that is not a runtime image, or that kept no labels", async () => {
    const plain = await makeSeed(seeds, "c".repeat(64), {});
    const notRuntime = await prepareTask(
      jvmConfig({ rootfs: { kind: "tools", seedKey: "local.plain", rootfsPath: plain } }),
      facts,
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect(notRuntime).toBeInstanceOf(NodeFactError);
    expect((notRuntime as Error).message).toMatch(
      /^runtime "jvm" cannot run tasks: it has no label org\.lfedge\.eve-tasks\.runtime, so it is not a runtime image$/,
    );
    const old = await makeSeed(seeds, "d".repeat(64), null);
    const noLabels = await prepareTask(
      jvmConfig({ rootfs: { kind: "tools", seedKey: "local.old", rootfsPath: old } }),
      facts,
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect((noLabels as Error).message).toMatch(/its seed was made before labels were kept/);
  });

  it("refuses an artifact outside EVE_VOLUME_ROOTS and a QMP socket path over the kernel's limit", async () => {
    const outside = await prepareTask(
      vmConfig({ volumes: [{ path: "/etc/hostname", mountPoint: "/eve/artifacts/kernel", readOnly: true }] }),
      facts,
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect((outside as Error).message).toMatch(
      /^volume \/eve\/artifacts\/kernel \/etc\/hostname is outside EVE_VOLUME_ROOTS/,
    );
    const long = await prepareTask(
      vmConfig(),
      { ...facts, runDir: join("/run", "x".repeat(80)) },
      fixedAccel("tcg"),
    ).catch((e: unknown) => e);
    expect((long as Error).message).toMatch(
      /over the kernel's 107-byte limit for unix sockets: set EVE_RUN_DIR to a shorter path/,
    );
  });

  describe("an emulated native task", () => {
    let emulators: string;
    let native: (over?: Partial<ReadyTaskConfig>) => ReadyTaskConfig;

    beforeAll(async () => {
      emulators = await makeSeed(
        seeds,
        "e".repeat(64),
        {
          "org.lfedge.eve-tasks.runtime": "1",
          "org.lfedge.eve-tasks.tax": '{"baseMiB":32}',
          "org.lfedge.eve-tasks.emulators": '{"aarch64":"/usr/bin/qemu-aarch64-static"}',
        },
        { "usr/bin/qemu-aarch64-static": "not really qemu" },
      );
      const root = join(dir, "volumes", "arm-root");
      await mkdir(root, { recursive: true });
      const spec = toTaskSpec(buildSpec(withArgs(["/bin/sh"]), withMemoryLimitBytes(64 * MiB), withCpus(1)));
      native = (over = {}) => ({
        schemaVersion: 1,
        status: "READY",
        uuid: UUID,
        configRevision: 3,
        node: "local",
        version: "1",
        displayName: "arm",
        activate: true,
        restartCounter: 0,
        virtualization: "NOHYPER",
        spec,
        specSha256: specSha256(spec),
        rootfs: { kind: "volume", path: root, readOnly: false },
        volumes: [],
        memoryMiB: 64,
        anchorTaxMiB: 0,
        emulation: { arch: "aarch64", emulators: { seedKey: "local.emulators", rootfsPath: emulators } },
        restartPolicy: restartPolicy as ReadyTaskConfig["restartPolicy"],
        stopTimeoutMs: 10000,
        interfaces: [],
        ...over,
      });
    });

    it("gets the emulators seed's emulator for its arch and the emulation tax in its limit", async () => {
      const p = await prepareTask(native(), facts);
      const interpreter = join(emulators, "usr/bin/qemu-aarch64-static");
      expect(p.emulation).toEqual({
        arch: "aarch64",
        binfmt: { name: p.emulation?.binfmt.name, arch: "aarch64", interpreter },
        taxMiB: 32,
      });
      expect(p.emulation?.binfmt.name).toMatch(/^eve-tasks-aarch64-[0-9a-f]{8}$/);
      const launcher = binfmtLauncher(p.emulation!.binfmt, "/data/binfmt");
      // Started by a name ending in -binfmt-P, qemu-user expects the argv[0] that flag P passes.
      expect(launcher).toBe(`/data/binfmt/${p.emulation!.binfmt.name}-binfmt-P`);
      expect(binfmtRegistration(p.emulation!.binfmt, launcher)).toBe(
        `:${p.emulation!.binfmt.name}:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00` +
          ":\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff" +
          `:${launcher}:FP`,
      );
      expect(p.memoryLimitBytes).toBe(96 * MiB);
      expect(p.anchorTaxBytes).toBe(32 * MiB);
    });

    it("runs natively when its arch is the node's", async () => {
      const p = await prepareTask(native({ emulation: { arch: "x86_64", emulators: null } }), facts);
      expect(p.emulation).toBeUndefined();
      expect(p.memoryLimitBytes).toBe(64 * MiB);
    });

    it("fails with no emulator for its arch on this node", async () => {
      const none = await prepareTask(
        native({
          emulation: { arch: "riscv64", emulators: { seedKey: "local.emulators", rootfsPath: emulators } },
        }),
        facts,
      ).catch((e: unknown) => e);
      expect((none as Error).message).toBe(
        "no emulator for riscv64 on this node (node x86_64; the emulators image has aarch64)",
      );
      const unseeded = await prepareTask(
        native({ emulation: { arch: "aarch64", emulators: null } }),
        facts,
      ).catch((e: unknown) => e);
      expect((unseeded as Error).message).toMatch(
        /^no emulator for aarch64 on this node \(node x86_64\): the runtime "emulators" has no READY seed/,
      );
    });
  });
});
