// The accelerator choice of a node, with real parts: the built-in tools image unpacked as the
// seed fetcher does, the shared harness containerd, and the probe guest under qemu. The probe
// under TCG (the reference) must come up; under KVM here it comes up or times out, and either
// way nothing of it is left behind.
import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ContainerdClient } from "@eve-tasks/containerd";
import { AccelChooser, NodeFactError, containerdRuntime, probeKvm } from "@eve-tasks/executor";
import type { TaskRuntime } from "@eve-tasks/executor";
import { SeedStore } from "@eve-tasks/registry";
import { buildToolsImage } from "@eve-tasks/tools-image";
import { tempDir } from "./harness/index.js";

const TOOLS_CACHE = process.env.EVE_TEST_TOOLS_CACHE ?? "/var/cache/eve-tasks/tools-image";
const QEMU = "/usr/bin/qemu-system-x86_64";

describe("choosing a VM's accelerator", () => {
  let containerd: ContainerdClient;
  let runtime: TaskRuntime;
  let toolsRoot: string;
  let dataDir: string;

  beforeAll(async () => {
    const dir = await tempDir("kvm-");
    dataDir = join(dir, "data");
    const image = await buildToolsImage({ outDir: TOOLS_CACHE });
    const seed = await new SeedStore({ dataDir, durable: false, ociLayoutRoots: [TOOLS_CACHE] }).ensure(
      image.ref,
    );
    toolsRoot = seed.rootfsPath;
    containerd = new ContainerdClient({
      address: inject("containerdAddress"),
      namespace: "eve-test-kvm-probe",
    });
    runtime = containerdRuntime(containerd);
  }, 120_000);

  afterAll(async () => {
    for (const c of await containerd.containers.list())
      await containerd.containers.delete(c.id).catch(() => undefined);
    containerd?.close();
  });

  const leftovers = async () => ({
    containers: (await containerd.containers.list()).map((c) => c.id),
    dirs: await readdir(join(dataDir, "kvm-probe")).catch(() => []),
  });

  it("the probe guest comes up under TCG as a containerd task, and goes", async () => {
    const r = await probeKvm({ runtime, dataDir, toolsRoot, qemu: QEMU, timeoutMs: 20_000, accel: "tcg" });
    expect(r).toMatchObject({ usable: true });
    expect(r.reason).toMatch(/^the probe guest came up under TCG in \d+ ms$/);
    expect(await leftovers()).toEqual({ containers: [], dirs: [] });
  }, 60_000);

  it.runIf(existsSync("/dev/kvm"))(
    "probes KVM with a deadline: a hanging KVM gives up in time",
    async () => {
      const started = Date.now();
      const r = await probeKvm({ runtime, dataDir, toolsRoot, qemu: QEMU, timeoutMs: 3000 });
      // Nested KVM on these machines hangs: the deadline decides. Where KVM works, the guest is up.
      if (r.usable) expect(r.reason).toMatch(/came up under KVM/);
      else expect(r.reason).toMatch(/did not come up under KVM within 3000 ms|qemu exited/);
      expect(Date.now() - started).toBeLessThan(3000 + 10_000);
      expect(await leftovers()).toEqual({ containers: [], dirs: [] });
    },
    60_000,
  );

  it("takes tcg and kvm as asked, and refuses kvm on a node without the device", async () => {
    const chooser = new AccelChooser({
      runtime,
      dataDir,
      logger: pino({ level: "silent" }),
      kvmDevice: "/dev/no-kvm-here",
    });
    const tools = { toolsRoot, qemu: QEMU };
    expect(await chooser.decide("tcg", tools)).toEqual({
      accel: "tcg",
      why: "vm.accel=tcg: TCG (emulation)",
    });
    expect(await chooser.decide("auto", tools)).toEqual({
      accel: "tcg",
      why: "auto: no /dev/no-kvm-here on this node, TCG (emulation)",
    });
    const err = await chooser.decide("kvm", tools).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeFactError);
    expect((err as Error).message).toBe(
      'vm.accel=kvm asks for KVM, but this node has no /dev/no-kvm-here: use "auto" or "tcg"',
    );
    const byNode = new AccelChooser({
      runtime,
      dataDir,
      logger: pino({ level: "silent" }),
      nodeAccel: "tcg",
    });
    expect(await byNode.decide("auto", tools)).toEqual({
      accel: "tcg",
      why: "EVE_ACCEL=tcg: TCG (emulation)",
    });
  });

  it.runIf(existsSync("/dev/kvm"))(
    "auto probes once per node boot and keeps the verdict",
    async () => {
      const chooser = new AccelChooser({
        runtime,
        dataDir,
        logger: pino({ level: "silent" }),
        probeTimeoutMs: 3000,
      });
      const first = await chooser.decide("auto", { toolsRoot, qemu: QEMU });
      expect(first.why).toMatch(/^auto: (KVM|TCG, KVM is not usable here) \(/);
      const cached = JSON.parse(await readFile(join(dataDir, "kvm-probe.json"), "utf8")) as {
        bootId: string;
        usable: boolean;
      };
      expect(cached.bootId).toBe((await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim());
      expect(cached.usable).toBe(first.accel === "kvm");
      // Another executor process on this boot reads the verdict instead of probing again.
      const again = new AccelChooser({
        runtime,
        dataDir,
        logger: pino({ level: "silent" }),
        probeTimeoutMs: 3000,
      });
      const t = Date.now();
      expect(await again.decide("auto", { toolsRoot, qemu: QEMU })).toEqual(first);
      expect(Date.now() - t).toBeLessThan(1000);
    },
    60_000,
  );
});
