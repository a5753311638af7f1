// VM tasks end to end, with real parts: a private nats-server and containerd, the built
// spec-builder, hypervisor-seed-fetcher, task-executor and proc-monitor as processes, the
// built-in tools image built from the host's Debian qemu, and a real guest (Debian's kernel and
// a busybox initramfs made by the test harness) under TCG. A VM app becomes a task whose anchor
// is qemu; its limit is guest RAM plus the tax; its serial console is the task log; a stop goes
// through QMP.
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { specFromAny } from "@eve-tasks/containerd";
import type { ContainerdClient } from "@eve-tasks/containerd";
import { CgroupReader, cgroupDirsFor, detectCgroupLayout } from "@eve-tasks/procfs";
import { cgroupsPathFor, estimateAnchorTaxMiB, messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, TaskEvent, TaskStatus, TaskMetricsSchema } from "@eve-tasks/schemas";
import { RUNTIME_CACHE, defaultToolsImage } from "./harness/runtimes.js";
import {
  BUILT,
  deferCleanup,
  runNode,
  startNode,
  statusWaiter,
  uuidMaker,
  waitFor,
} from "./harness/index.js";
import type { PrivateNats, TestNode } from "./harness/index.js";
import { OciLayout, busyboxEntries } from "./harness/registry-images.js";
import { ensureVmGuest } from "./harness/vm-guest.js";
import type { VmGuest } from "./harness/vm-guest.js";

const MiB = 2 ** 20;
const newUuid = uuidMaker("0b0e7a5c");

describe("VM tasks", () => {
  let nats: PrivateNats;
  let bus: Bus;
  let containerd: ContainerdClient;
  let configs: TestNode["configs"];
  let statuses: TestNode["statuses"];
  let metrics: Subscription<typeof TaskMetricsSchema>;
  let guest: VmGuest;
  let volumes: string;
  let events: readonly TaskEvent[] = [];

  beforeAll(async () => {
    const [tools, vmGuest] = await Promise.all([defaultToolsImage(), ensureVmGuest()]);
    guest = vmGuest;
    const node = await startNode({
      name: "vm",
      env: (dirs) => ({
        // The tools layouts: the shared cache and this test's own (oci: refs must be under these).
        EVE_OCI_LAYOUT_ROOTS: `${RUNTIME_CACHE}:${dirs.dir}`,
        EVE_NODE_MEMORY_MIB: "4096",
        // Nested KVM here opens /dev/kvm and then hangs: the probe must give up and choose TCG.
        EVE_KVM_PROBE_TIMEOUT_MS: "4000",
        EVE_METRICS_INTERVAL_MS: "500",
      }),
      readyTimeoutMs: 60_000,
      prepare: async (n) => {
        // The guest's files under the node's volume roots (copies: a symlink out of them is refused).
        await mkdir(join(n.volumes, "guest"), { recursive: true });
        await copyFile(guest.kernelPath, join(n.volumes, "guest", "vmlinuz"));
        await copyFile(guest.initrdPath, join(n.volumes, "guest", "initrd.img"));
        // A "tools image" with a busybox and no qemu in it.
        const layout = new OciLayout(join(n.dir, "no-qemu"));
        await layout.tag(
          await layout.image({ layers: [{ entries: await busyboxEntries() }], config: {} }),
          "tools",
        );
        const toolsConfigs = new Publication(n.bus, messageTable("HypervisorToolsConfig"));
        await toolsConfigs.publish("default", { schemaVersion: 1, image: tools.ref });
        await toolsConfigs.publish("noqemu", { schemaVersion: 1, image: `oci:${layout.dir}:tools` });
      },
    });
    ({ nats, bus, containerd, configs, statuses, volumes, events } = node);
    metrics = await subscribe(bus, { ...messageTable("TaskMetrics"), onCreate: () => undefined });
    // Registered after the node: closed before it stops.
    deferCleanup(() => metrics.close());
  }, 150_000);

  function vmApp(
    uuid: string,
    over: Partial<AppInstanceConfigInput> = {},
    vm: object = {},
  ): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `vm-${uuid.slice(-6)}`,
      activate: true,
      virtualization: "HVM",
      resources: { memoryMiB: 128, vcpus: 1 },
      vm: {
        kernel: join(volumes, "guest", "vmlinuz"),
        initrd: join(volumes, "guest", "initrd.img"),
        cmdline: guest.cmdline,
        ...vm,
      },
      stopTimeoutMs: 4000,
      ...over,
    } as AppInstanceConfigInput;
  }

  const until = (uuid: string, pred: (s: TaskStatus) => boolean, what: string, timeoutMs = 60_000) =>
    statusWaiter(statuses).until(uuid, pred, what, timeoutMs);
  const eventsOf = (uuid: string) => events.filter((e) => e.uuid === uuid);
  const logOf = (s: TaskStatus) => readFile(s.logPath, "utf8").catch(() => "");
  // The executor's exit event (the proc-monitor's "anchor gone" one may come first).
  const isExecutorExit = (e: TaskEvent) => e.type === "exited" && e.fields.source !== "proc-monitor";

  it("runs a guest with qemu as the anchor, limited to guest RAM plus the tax, its console in the log", async () => {
    const uuid = newUuid();
    // Booted alongside: a guest that ignores the power button, stopped by QMP quit below.
    const deaf = newUuid();
    await Promise.all([
      configs.publish(uuid, vmApp(uuid)),
      configs.publish(
        deaf,
        vmApp(
          deaf,
          { stopTimeoutMs: 2000 },
          { cmdline: `${guest.cmdline} eve_ignore_powerdown`, accel: "tcg" },
        ),
      ),
    ]);
    const s = await until(uuid, (x) => x.state === "RUNNING", "never RUNNING", 90_000);

    // The anchor is qemu, from the tools seed, and containerd says the same PID. RUNNING is seen
    // when the loader starts; its exec of qemu follows a moment later, same PID.
    const exe = await waitFor(
      () => {
        const e = readlinkSync(`/proc/${s.taskId}/exe`);
        return /\/qemu-system-x86_64$/.test(e) ? e : undefined;
      },
      { timeoutMs: 10_000, message: "the loader never exec'd qemu" },
    );
    expect(exe).toMatch(/\/qemu-system-x86_64$/);
    expect((await containerd.tasks.get(uuid)).pid).toBe(s.taskId);

    const taxMiB = estimateAnchorTaxMiB({ memoryMiB: 128, vcpus: 1 });
    expect(s.anchorTaxBytes).toBe(taxMiB * MiB);
    expect(s.memoryLimitBytes).toBe((128 + taxMiB) * MiB);
    const reader = new CgroupReader(cgroupDirsFor(detectCgroupLayout(), cgroupsPathFor(uuid)), [
      "memoryLimitBytes",
    ]);
    try {
      expect(reader.read().values.memoryLimitBytes).toBe((128 + taxMiB) * MiB);
    } finally {
      reader.close();
    }

    // The accelerator: auto ran the KVM probe (or found no /dev/kvm) and said what it chose.
    const created = await waitFor(() => eventsOf(uuid).find((e) => e.type === "created"), {
      timeoutMs: 10_000,
      message: "no created event",
    });
    expect(created.message).toMatch(/; auto: /);
    // With /dev/kvm the probe guest decided; without, there was nothing to probe.
    expect(created.message).toMatch(existsSync("/dev/kvm") ? /probe guest/ : /no \/dev\/kvm on this node/);
    const accel = created.fields.accel;
    const args = readFileSync(`/proc/${s.taskId}/cmdline`, "utf8").split("\0");
    expect(args.slice(args.indexOf("-accel"), args.indexOf("-accel") + 2)).toEqual(["-accel", accel]);
    expect(existsSync(`/proc/${s.taskId}/root/dev/kvm`)).toBe(accel === "kvm");

    // The guest booted: its marker came out of the serial console into the task log.
    await waitFor(async () => (await logOf(s)).includes(guest.marker), {
      timeoutMs: 90_000,
      message: `the guest's marker ${guest.marker} never reached ${s.logPath}`,
    }).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; log: ${(await logOf(s)).slice(-2000)}`, { cause: err });
    });

    // The proc-monitor measures the tax: the cgroup's peak above guest RAM.
    const m = await waitFor(
      () => {
        const x = metrics.get(uuid);
        return x && x.taskId === s.taskId && x.anchorTaxPeakBytes !== null ? x : undefined;
      },
      { timeoutMs: 15_000, message: "no measured tax in TaskMetrics" },
    );
    expect(m.anchorTaxBytes).toBe(taxMiB * MiB);
    expect(m.anchorTaxPeakBytes).toBeGreaterThan(0);
    // At least the peak above the whole guest RAM; at most the peak itself.
    expect(m.anchorTaxPeakBytes).toBeGreaterThanOrEqual(Math.max(0, (m.memoryPeakBytes ?? 0) - 128 * MiB));
    expect(m.anchorTaxPeakBytes).toBeLessThanOrEqual(m.memoryPeakBytes ?? 0);
    const tax = await runNode(BUILT.cli, ["tax", "--json"], { env: { NATS_URL: nats.url } });
    expect(tax.code, tax.stderr).toBe(0);
    const rows = JSON.parse(tax.stdout) as {
      key: string;
      record: { guestMiB: number; peakAboveGuestBytes: number };
    }[];
    const row = rows.find((r) => r.record.guestMiB === 128);
    expect(row?.record.peakAboveGuestBytes).toBeGreaterThan(0);

    // A stop goes through QMP, and the event names the step that ended it: this guest powers
    // off on the ACPI power button.
    expect(guest.powerdown).toBe(true);
    await configs.publish(uuid, vmApp(uuid, { activate: false }));
    const halted = await until(uuid, (x) => x.state === "HALTED", "never HALTED", 30_000);
    expect(halted).toMatchObject({ taskId: 0, lastTaskId: s.taskId, exitCode: 0, signal: null });
    const exited = await waitFor(() => eventsOf(uuid).find(isExecutorExit), {
      timeoutMs: 10_000,
      message: "no exited event",
    });
    expect(exited.fields).toMatchObject({ stoppedBy: "system_powerdown", requested: true, exitCode: 0 });
    expect(exited.message).toMatch(/ended: exit code 0 after QMP system_powerdown$/);
    const stopping = eventsOf(uuid).filter((e) => e.type === "stopping");
    expect(stopping.map((e) => e.message)).toEqual([
      "stopping: activate is false (QMP system_powerdown, quit after 4000 ms, SIGKILL 5000 ms later)",
    ]);
    expect(await logOf(s)).toContain(guest.powerdownMarker);
    await expect(containerd.tasks.get(uuid)).rejects.toThrow();

    // The guest that ignores the button: system_powerdown, its deadline, then quit ends qemu.
    const d = await until(deaf, (x) => x.state === "RUNNING", "never RUNNING", 90_000);
    await waitFor(async () => (await logOf(d)).includes(guest.marker), {
      timeoutMs: 90_000,
      message: "the second guest never came up",
    });
    expect(await logOf(d)).toContain("system_powerdown will be ignored");
    await configs.publish(
      deaf,
      vmApp(
        deaf,
        { activate: false, stopTimeoutMs: 2000 },
        { cmdline: `${guest.cmdline} eve_ignore_powerdown`, accel: "tcg" },
      ),
    );
    await until(deaf, (x) => x.state === "HALTED", "never HALTED", 30_000);
    const deafExit = await waitFor(() => eventsOf(deaf).find(isExecutorExit), {
      timeoutMs: 10_000,
      message: "no exited event",
    });
    expect(deafExit.fields).toMatchObject({ stoppedBy: "quit", exitCode: 0 });
    expect(
      eventsOf(deaf)
        .filter((e) => e.type === "stopping")
        .map((e) => e.message)[1],
    ).toBe("no exit 2000 ms after system_powerdown: sent QMP quit");
    expect(await logOf(d)).not.toContain(guest.powerdownMarker);
  }, 180_000);

  it("refuses VM configs it cannot run, each with a clear error in its status", async () => {
    const noQemu = newUuid();
    const outside = newUuid();
    const noBoot = newUuid();
    const unnamed = newUuid();
    await Promise.all([
      configs.publish(noQemu, vmApp(noQemu, {}, { hypervisorTools: "noqemu" })),
      configs.publish(outside, vmApp(outside, {}, { kernel: "/etc/hostname" })),
      bus
        .bucket("controller")
        .then((kv) =>
          kv.put(
            `AppInstanceConfig.${noBoot}`,
            JSON.stringify({ ...vmApp(noBoot), vm: { cmdline: "console=ttyS0" } }),
          ),
        ),
      configs.publish(unnamed, vmApp(unnamed, {}, { hypervisorTools: "nosuch" })),
    ]);
    const failed = (uuid: string) => until(uuid, (x) => x.state === "FAILED", "never FAILED", 60_000);
    // An image without the runtime label is no runtime: nothing can say how to run or stop it.
    const a = await failed(noQemu);
    expect(a.error).toMatchObject({ source: "spec-builder" });
    expect(a.error?.message).toMatch(
      /^runtime "noqemu" \(oci:.*:tools\) cannot run tasks: it has no label org\.lfedge\.eve-tasks\.runtime, so it is not a runtime image$/,
    );
    const b = await failed(outside);
    expect(b.error?.message).toMatch(
      /^volume \/eve\/artifacts\/kernel \/etc\/hostname is outside EVE_VOLUME_ROOTS/,
    );
    const c = await failed(noBoot);
    expect(c.error).toMatchObject({ source: "spec-builder" });
    expect(c.error?.message).toMatch(/a VM needs vm\.kernel or at least one disk in vm\.disks to boot/);
    const d = await until(unnamed, (x) => x.state === "PENDING", "never PENDING", 30_000);
    expect(d.waitingFor).toBe("seed");
    // Nothing of them runs.
    for (const uuid of [noQemu, outside, noBoot, unnamed]) {
      await expect(containerd.tasks.get(uuid)).rejects.toThrow();
    }
  }, 120_000);

  it("reserves the app's own tax when it sets one", async () => {
    const uuid = newUuid();
    await configs.publish(
      uuid,
      vmApp(uuid, { activate: false, resources: { memoryMiB: 64, vcpus: 1, vmmOverheadMiB: 96 } }),
    );
    const s = await until(uuid, (x) => x.state === "INSTALLED", "never INSTALLED", 60_000);
    expect(s.memoryLimitBytes).toBe(160 * MiB);
    expect(s.anchorTaxBytes).toBe(96 * MiB);
    const stored = (await containerd.containers.get(uuid)).spec;
    const spec = (stored ? specFromAny(stored) : {}) as {
      linux?: { resources: { memory: { limit: number } } };
    };
    expect(spec.linux?.resources.memory.limit).toBe(160 * MiB);
  }, 90_000);
});
