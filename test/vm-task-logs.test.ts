// A VM's serial console is its task log, rotated like any task's: a real guest (Debian's kernel,
// its whole boot log on the serial port) under TCG, with the real spec-builder,
// hypervisor-seed-fetcher and task-executor. The log keeps EVE_LOG_FILES files, none over
// EVE_LOG_MAX_BYTES, and read oldest first they are one stretch of the console: the kernel's
// timestamps never go back and no line comes twice; the oldest lines rotated away.
import { existsSync } from "node:fs";
import { copyFile, mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { AppInstanceConfigSchema, HypervisorToolsConfigSchema, TaskStatusSchema } from "@eve-tasks/schemas";
import { buildToolsImage } from "@eve-tasks/tools-image";
import {
  BUILT,
  deferCleanup,
  harnessEnv,
  spawnReplicas,
  statusWaiter,
  tempDir,
  uuidMaker,
  waitFor,
  withPrivateNats,
} from "./harness/index.js";
import { ensureVmGuest } from "./harness/vm-guest.js";
import type { VmGuest } from "./harness/vm-guest.js";

const echo = process.env.EVE_TEST_ECHO === "1";
const newUuid = uuidMaker("0b0e1095");
const TOOLS_CACHE = process.env.EVE_TEST_TOOLS_CACHE ?? "/var/cache/eve-tasks/tools-image";
const MAX_BYTES = 4096;
const FILES = 3;

describe("a VM's serial console, rotated", () => {
  let bus: Bus;
  let configs: Publication<typeof AppInstanceConfigSchema>;
  let statuses: Subscription<typeof TaskStatusSchema>;
  let guest: VmGuest;
  let volumes: string;

  beforeAll(async () => {
    const dir = await tempDir("vmlog-");
    volumes = join(dir, "volumes");
    const [nats, tools, vmGuest] = await Promise.all([
      withPrivateNats(),
      buildToolsImage({ outDir: TOOLS_CACHE }),
      ensureVmGuest(),
    ]);
    guest = vmGuest;
    await mkdir(join(volumes, "guest"), { recursive: true });
    await copyFile(guest.kernelPath, join(volumes, "guest", "vmlinuz"));
    await copyFile(guest.initrdPath, join(volumes, "guest", "initrd.img"));
    bus = await connectBus({ servers: nats.url, name: "vm-task-logs-test" });
    await ensureBuckets(bus);
    await new Publication(bus, {
      agent: "controller",
      type: "HypervisorToolsConfig",
      schema: HypervisorToolsConfigSchema,
    }).publish("default", { schemaVersion: 1, image: tools.ref });
    const env = {
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: harnessEnv().containerdAddress,
      EVE_DATA_DIR: join(dir, "data"),
      EVE_RUN_DIR: join(dir, "run"),
      EVE_VOLUME_ROOTS: volumes,
      // The tools layout is the shared cache (oci: refs must be under these roots).
      EVE_OCI_LAYOUT_ROOTS: TOOLS_CACHE,
      EVE_NODE_MEMORY_MIB: "4096",
      EVE_ACCEL: "tcg",
      EVE_LOG_MAX_BYTES: String(MAX_BYTES),
      EVE_LOG_FILES: String(FILES),
      LOG_LEVEL: "debug",
    };
    const workers = [
      spawnReplicas({ entry: BUILT.specBuilder, name: "spec-builder", env, echo }),
      spawnReplicas({ entry: BUILT.seedFetcher, name: "seed-fetcher", env, echo }),
      spawnReplicas({ entry: BUILT.taskExecutor, name: "task-executor", env, echo }),
    ];
    await workers[2]!.waitForLine((l) => l.json?.event === "resynced", 60_000);
    configs = new Publication(bus, {
      agent: "controller",
      type: "AppInstanceConfig",
      schema: AppInstanceConfigSchema,
    });
    statuses = await subscribe(bus, {
      agent: "task-executor",
      type: "TaskStatus",
      schema: TaskStatusSchema,
      onCreate: () => undefined,
    });
    deferCleanup(async () => {
      const all = await configs.getAll();
      for (const uuid of all.keys()) await configs.unpublish(uuid);
      await waitFor(() => [...all.keys()].every((u) => statuses.get(u) === undefined), {
        timeoutMs: 60_000,
        message: "VM apps left after deleting their configs",
      });
      for (const w of workers.reverse()) await w.stopAll();
      await statuses.close();
      await bus.close();
    });
  }, 180_000);

  it("keeps the console's tail in EVE_LOG_FILES files under the cap, in order, none lost or twice", async () => {
    const uuid = newUuid();
    // The guest's whole boot log, not a quiet one: far more than the files hold.
    const cmdline = guest.cmdline.replace(/\s*\bquiet\b/, "") + " printk.time=1";
    await configs.publish(uuid, {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "vm-logs",
      virtualization: "HVM",
      resources: { memoryMiB: 128, vcpus: 1 },
      vm: {
        kernel: join(volumes, "guest", "vmlinuz"),
        initrd: join(volumes, "guest", "initrd.img"),
        cmdline,
        accel: "tcg",
      },
      stopTimeoutMs: 4000,
    });
    const s = await statusWaiter(statuses).until(uuid, (x) => x.state === "RUNNING", "never RUNNING", 90_000);
    await waitFor(async () => (await readFile(s.logPath, "utf8").catch(() => "")).includes(guest.marker), {
      timeoutMs: 120_000,
      message: "the guest never came up",
    });
    const files = [];
    for (let i = FILES - 1; i >= 0; i--) {
      const path = i === 0 ? s.logPath : `${s.logPath}.${i}`;
      files.push({ path, text: await readFile(path, "utf8") });
      expect((await stat(path)).size).toBeLessThanOrEqual(MAX_BYTES);
    }
    expect(existsSync(`${s.logPath}.${FILES}`)).toBe(false);
    const tail = files.map((f) => f.text).join("");
    // The first kernel line went with the oldest file.
    expect(tail).not.toMatch(/Linux version/);
    const stamped = tail
      .split(/\r?\n/)
      .map((line) => /^\[\s*(\d+\.\d+)\] /.exec(line))
      .filter((m): m is RegExpExecArray => m !== null);
    expect(stamped.length).toBeGreaterThan(20);
    const times = stamped.map((m) => Number(m[1]));
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1]!);
    const lines = stamped.map((m) => m.input);
    expect(new Set(lines).size).toBe(lines.length);
  });
});
