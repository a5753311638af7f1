// The boot watchdog end to end, with real parts: a private nats-server and containerd, the built
// spec-builder, hypervisor-seed-fetcher and task-executor as processes, qemu from the built-in
// runtime image and the VM tests' guest (Debian's kernel and a busybox initramfs). The node's
// cached KVM verdict is made to say "usable", as the one-sector probe said on nested KVM (the
// false yes of issue 16); a VM under `auto` then gets KVM, shows no sign of life, and the
// watchdog restarts it under TCG, where it reaches its marker.
//
// With /dev/kvm (a nested KVM that hangs real guests), the first run is real qemu under real
// KVM. Without it, no VM can run under KVM here: a runtime image made by this test from the
// built-in one stands in for the hang, its loader starting qemu with the guest frozen (`-S`,
// silent, qemu alive) whenever it is given EVE_TASK_ACCEL=kvm, and the executor takes a file of
// the test's for the KVM device (EVE_KVM_DEVICE). Everything after the loader is the same.
import { existsSync, readFileSync } from "node:fs";
import { copyFile, link, mkdir, readFile, realpath, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Subscription } from "@eve-tasks/bus";
import { specFromAny } from "@eve-tasks/containerd";
import type { CachedProbe } from "@eve-tasks/executor";
import { HypervisorSeedSchema, HypervisorToolsConfigSchema } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, Seed, TaskStatus } from "@eve-tasks/schemas";
import { RUNTIME_CACHE, defaultToolsImage } from "./harness/runtimes.js";
import { startNode, uuidMaker, waitFor } from "./harness/index.js";
import type { TestNode } from "./harness/index.js";
import { OciLayout, tarOf } from "./harness/registry-images.js";
import type { Descriptor } from "./harness/registry-images.js";
import { ensureVmGuest } from "./harness/vm-guest.js";
import type { VmGuest } from "./harness/vm-guest.js";

const newUuid = uuidMaker("b007d0c5");
const REAL_KVM = existsSync("/dev/kvm");
const DEADLINE_MS = 15_000;
const NODE = "local";

/** The stand-in's loader: under kvm, the built-in loader with the guest frozen and silent. */
const STAND_IN_LOADER = `#!/eve/bin/sh
# Stands in for a nested KVM that hangs a real guest, on a machine without /dev/kvm: given
# EVE_TASK_ACCEL=kvm it starts qemu with its guest frozen (-S: qemu alive, the guest silent);
# given tcg, it is the built-in loader as it is.
if [ "$EVE_TASK_ACCEL" = kvm ]; then
  EVE_TASK_ACCEL=tcg
  set -- "$@" -S
fi
exec /eve/loader "$@"
`;

/**
 * An image made of the built-in `default` runtime's layers and config, plus a layer with the
 * stand-in loader as its Entrypoint; returns its `oci:` ref.
 */
async function standInImage(defaultRef: string, dir: string): Promise<string> {
  const m = /^oci:(.+):([^:]+)$/.exec(defaultRef);
  if (!m) throw new Error(`not an oci: ref: ${defaultRef}`);
  const [, srcDir, tag] = m as unknown as [string, string, string];
  const blob = (digest: string) => join(srcDir, "blobs", "sha256", digest.slice("sha256:".length));
  const index = JSON.parse(await readFile(join(srcDir, "index.json"), "utf8")) as { manifests: Descriptor[] };
  const entry = index.manifests.find((d) => d.annotations?.["org.opencontainers.image.ref.name"] === tag);
  if (!entry) throw new Error(`no tag ${tag} in ${srcDir}`);
  const manifest = JSON.parse(await readFile(blob(entry.digest), "utf8")) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  const config = JSON.parse(await readFile(blob(manifest.config.digest), "utf8")) as {
    config: Record<string, unknown>;
    rootfs: { diff_ids: string[] };
  };
  const layout = new OciLayout(dir);
  const blobs = join(dir, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  for (const l of manifest.layers) {
    const to = join(blobs, l.digest.slice("sha256:".length));
    if (!existsSync(to)) await link(blob(l.digest), to).catch(() => copyFile(blob(l.digest), to));
  }
  const raw = await tarOf([
    { name: "eve/", type: "directory" },
    { name: "eve/stand-in-loader", content: STAND_IN_LOADER, mode: 0o755 },
  ]);
  const gz = gzipSync(raw);
  const extra: Descriptor = {
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    digest: await layout.blob(gz),
    size: gz.length,
  };
  const { createHash } = await import("node:crypto");
  const diffId = `sha256:${createHash("sha256").update(raw).digest("hex")}`;
  const layers = [
    ...manifest.layers.map((descriptor, i) => ({ descriptor, diffId: config.rootfs.diff_ids[i] as string })),
    { descriptor: extra, diffId },
  ];
  const made = await layout.imageOfLayers(layers, {
    ...config.config,
    Entrypoint: ["/eve/stand-in-loader"],
    Cmd: [],
  });
  await layout.tag(made, "1");
  return `oci:${dir}:1`;
}

describe(`the boot watchdog (${REAL_KVM ? "real qemu under this node's KVM" : "no /dev/kvm here: a loader that freezes the guest stands in for KVM's hang"})`, () => {
  let node: TestNode;
  let seeds: Subscription<typeof HypervisorSeedSchema>;
  let guest: VmGuest;
  const tools = REAL_KVM ? "default" : "kvm-stand-in";

  beforeAll(async () => {
    const [defaultImage, vmGuest] = await Promise.all([defaultToolsImage(), ensureVmGuest()]);
    guest = vmGuest;
    const kvmDevice = (dir: string) => join(dir, "kvm-stand-in");
    node = await startNode({
      name: "boot-watchdog",
      workers: ["spec-builder", "hypervisor-seed-fetcher", "task-executor"],
      env: ({ dir }) => ({
        EVE_NODE: NODE,
        EVE_OCI_LAYOUT_ROOTS: `${RUNTIME_CACHE}:${dir}`,
        EVE_NODE_MEMORY_MIB: "4096",
        EVE_VM_BOOT_DEADLINE_MS: String(DEADLINE_MS),
        ...(REAL_KVM ? {} : { EVE_KVM_DEVICE: kvmDevice(dir) }),
      }),
      prepare: async ({ dir, volumes, bus }) => {
        const toolsRef = REAL_KVM
          ? defaultImage.ref
          : await standInImage(defaultImage.ref, join(dir, "stand-in"));
        if (!REAL_KVM) await writeFile(kvmDevice(dir), "");
        await mkdir(join(volumes, "guest"), { recursive: true });
        await copyFile(guest.kernelPath, join(volumes, "guest", "vmlinuz"));
        await copyFile(guest.initrdPath, join(volumes, "guest", "initrd.img"));
        seeds = await subscribe(bus, {
          agent: "hypervisor-seed-fetcher",
          type: "HypervisorSeed",
          schema: HypervisorSeedSchema,
          onCreate: () => undefined,
        });
        await new Publication(bus, {
          agent: "controller",
          type: "HypervisorToolsConfig",
          schema: HypervisorToolsConfigSchema,
        }).publish(tools, { schemaVersion: 1, image: toolsRef });
      },
    });
  }, 150_000);

  // A VM's stop may take longer than a hook's default: the node stops here, with time for it.
  afterAll(async () => {
    await seeds?.close();
    await node?.stop();
  }, 90_000);

  const eventsOf = (uuid: string) => node.eventsOf(uuid);
  /** The environment containerd's container for `uuid` gives its anchor (the loader). */
  const envOf = async (uuid: string) => {
    const c = await node.containerd.containers.get(uuid);
    if (!c.spec) throw new Error(`container ${uuid} has no spec`);
    return (specFromAny(c.spec) as { process: { env?: string[] } }).process.env ?? [];
  };
  const until = (uuid: string, pred: (s: TaskStatus) => boolean, what: string, timeoutMs = 60_000) =>
    node.until(uuid, pred, what, timeoutMs);

  it("restarts a VM that shows no sign of life under KVM (auto) under TCG, and the node's verdict says so", async (ctx) => {
    // The tools seed, then the probe's false yes for it, written as the probe writes its verdict.
    const seed = await waitFor(
      () => {
        const s: Seed | undefined = seeds.get(`${NODE}.${tools}`);
        return s?.state === "READY" ? s : undefined;
      },
      { timeoutMs: 120_000, message: `the seed of ${tools} never READY` },
    );
    const verdictFile = join(node.dataDir, "kvm-probe.json");
    const yes: CachedProbe = {
      usable: true,
      reason: "the probe guest came up under KVM in 4800 ms",
      elapsedMs: 4800,
      bootId: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
      toolsRoot: await realpath(seed.rootfsPath),
      probedAt: new Date().toISOString(),
      by: "probe",
    };
    await writeFile(verdictFile, JSON.stringify(yes) + "\n");

    const uuid = newUuid();
    const app: AppInstanceConfigInput = {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "boot-watchdog",
      activate: true,
      virtualization: "HVM",
      resources: { memoryMiB: 128, vcpus: 1 },
      vm: {
        kernel: join(node.volumes, "guest", "vmlinuz"),
        initrd: join(node.volumes, "guest", "initrd.img"),
        cmdline: guest.cmdline,
        hypervisorTools: tools,
        accel: "auto",
      },
      stopTimeoutMs: 30_000,
    };
    await node.configs.publish(uuid, app);

    // First run: KVM, on the verdict's word, given to the loader.
    const first = await until(uuid, (s) => s.state === "RUNNING", "never RUNNING", 90_000);
    expect(await envOf(uuid)).toContain("EVE_TASK_ACCEL=kvm");
    const created = await waitFor(() => eventsOf(uuid).find((e) => e.type === "created"), {
      message: "no created event",
    });
    expect(created.fields.accel).toBe("kvm");
    expect(created.message).toContain("auto: KVM (the probe guest came up under KVM in 4800 ms)");
    if (REAL_KVM) {
      const args = readFileSync(`/proc/${first.taskId}/cmdline`, "utf8").split("\0");
      expect(args.slice(args.indexOf("-accel"), args.indexOf("-accel") + 2)).toEqual(["-accel", "kvm"]);
    }

    // The watchdog: no sign of life by the deadline, the event names the deadline and why.
    const fallbackOrUp = await waitFor(
      async () =>
        eventsOf(uuid).find((e) => e.type === "accel-fallback") ??
        (REAL_KVM && (await readFile(first.logPath, "utf8").catch(() => "")).includes(guest.marker)
          ? ("up" as const)
          : undefined),
      {
        timeoutMs: DEADLINE_MS + 30_000,
        message: `no accel-fallback event within ${DEADLINE_MS} ms and a margin`,
      },
    );
    // A KVM that runs real guests leaves nothing to fall back from.
    if (fallbackOrUp === "up")
      return ctx.skip("KVM runs the guest on this machine: no hang to fall back from");
    const fallback = fallbackOrUp;
    expect(fallback.message).toBe(
      `a VM under KVM (auto) showed no sign of life within ${DEADLINE_MS} ms: nothing from its guest on the ` +
        'serial console: restarting it under TCG; this node\'s KVM verdict is now "not usable" (every VM ' +
        "under auto gets TCG until the node reboots)",
    );
    expect(fallback.fields).toMatchObject({ anchorPid: first.taskId, deadlineMs: DEADLINE_MS, to: "tcg" });
    const firstStartedAt = Date.parse(first.startedAt ?? "");
    expect(Date.parse(fallback.time) - firstStartedAt).toBeGreaterThanOrEqual(DEADLINE_MS - 1000);

    // The one stop, requested (QMP quit at once: a guest with no sign of life ignores the power
    // button), then a new task under TCG.
    const second = await until(
      uuid,
      (s) => s.state === "RUNNING" && s.taskId !== 0 && s.taskId !== first.taskId,
      "never RUNNING again",
      60_000,
    );
    const exited = eventsOf(uuid).find((e) => e.type === "exited" && e.fields.anchorPid === first.taskId);
    // qemu with a hung vCPU under real KVM may not manage its quit: SIGKILL ends it then.
    expect(exited?.fields).toMatchObject({ requested: true });
    expect(REAL_KVM ? ["quit", "SIGKILL"] : ["quit"]).toContain(exited?.fields.stoppedBy);
    expect(second.restarts).toBe(0);
    expect(eventsOf(uuid).filter((e) => e.type === "restarting" || e.type === "not-restarting")).toEqual([]);
    // Events travel apart from the status (through the outbox): the new task's may come after it.
    const recreated = await waitFor(
      () => {
        const created = eventsOf(uuid).filter((e) => e.type === "created");
        return created.length >= 2 ? created : undefined;
      },
      { timeoutMs: 10_000, message: "no created event for the new task" },
    );
    expect(recreated).toHaveLength(2);
    expect(recreated[1]?.fields.accel).toBe("tcg");
    expect(recreated[1]?.message).toContain(
      `auto: TCG, KVM is not usable here (a VM under KVM (auto) showed no sign of life within ${DEADLINE_MS} ms`,
    );
    expect(await envOf(uuid)).toContain("EVE_TASK_ACCEL=tcg");
    const args = readFileSync(`/proc/${second.taskId}/cmdline`, "utf8").split("\0");
    expect(args.slice(args.indexOf("-accel"), args.indexOf("-accel") + 2)).toEqual(["-accel", "tcg"]);

    // The guest comes up under TCG.
    await waitFor(async () => (await readFile(second.logPath, "utf8")).includes(guest.marker), {
      timeoutMs: 90_000,
      message: `the guest's marker ${guest.marker} never reached ${second.logPath}`,
    });

    // The node's verdict: KVM is not usable, with the reason, for this boot.
    const verdict = JSON.parse(await readFile(verdictFile, "utf8")) as CachedProbe;
    expect(verdict).toMatchObject({
      usable: false,
      by: "boot-watchdog",
      bootId: yes.bootId,
      reason: `a VM under KVM (auto) showed no sign of life within ${DEADLINE_MS} ms: nothing from its guest on the serial console`,
    });
  }, 240_000);
});
