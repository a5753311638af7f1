// VM scenarios. "vm": a VM app published → the guest's marker line in the task log, against the
// same qemu command line started directly (the host's qemu, same kernel, initrd, memory, vCPUs
// and TCG) → the same marker on its stdout, alternating, in the same run. "tax": guests of 64,
// 128 and 256 MiB run until booted; the proc-monitor's measured tax (the task cgroup's peak
// memory above guest RAM) against EVE's estimate for the same guest.
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Publication, subscribe } from "@eve-tasks/bus";
import { estimateAnchorTaxMiB, taskLogPath, messageTable } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, TaskMetrics } from "@eve-tasks/schemas";
import { buildToolsImage } from "@eve-tasks/tools-image";
import { VM_GUEST_CMDLINE, ensureVmGuest } from "../harness/vm-guest.js";
import type { VmGuest } from "../harness/vm-guest.js";
import { log } from "./env.js";
import type { BenchEnv } from "./env.js";
import { medianRatio } from "./result.js";
import type { ScenarioResult } from "./result.js";
import { seenInFile, spawnToMarker } from "./marker.js";
import { nowMs, r1, r3 } from "./stats.js";

const MiB = 2 ** 20;
const CMDLINE = VM_GUEST_CMDLINE;
const TOOLS_CACHE = process.env.EVE_TEST_TOOLS_CACHE ?? "/var/cache/eve-tasks/tools-image";
const BOOT_TIMEOUT_MS = 120_000;

/** The guest and the tools image, ready for VM apps on the bench's node. */
interface VmSetup {
  guest: VmGuest;
  kernel: string;
  initrd: string;
  app(uuid: string, memoryMiB: number): AppInstanceConfigInput;
}

let setup: Promise<VmSetup> | undefined;

/** Builds (or reuses) the tools image and the guest, and registers the tools as `default`. */
function vmSetup(env: BenchEnv): Promise<VmSetup> {
  return (setup ??= (async () => {
    const [tools, guest] = await Promise.all([buildToolsImage({ outDir: TOOLS_CACHE }), ensureVmGuest()]);
    const dir = join(env.volumes, "vm-guest");
    await mkdir(dir, { recursive: true });
    const kernel = join(dir, "vmlinuz");
    const initrd = join(dir, "initrd.img");
    await copyFile(guest.kernelPath, kernel);
    await copyFile(guest.initrdPath, initrd);
    const toolsConfigs = new Publication(env.bus, messageTable("HypervisorToolsConfig"));
    await toolsConfigs.publish("default", { schemaVersion: 1, image: tools.ref });
    log(`vm: tools image ${tools.ref}; guest kernel ${guest.kernelPath}`);
    return {
      guest,
      kernel,
      initrd,
      app: (uuid, memoryMiB) => ({
        schemaVersion: 1,
        uuid,
        version: "1",
        displayName: `bench-vm-${uuid.slice(0, 6)}`,
        virtualization: "HVM",
        resources: { memoryMiB, vcpus: 1 },
        vm: { kernel, initrd, cmdline: CMDLINE, accel: "tcg" },
        stopTimeoutMs: 1000,
      }),
    };
  })());
}

/** One VM app: publish → marker in its log; returns the ms, then deletes the app. */
async function throughTasks(
  env: BenchEnv,
  s: VmSetup,
  memoryMiB: number,
  onBooted?: (uuid: string) => Promise<void>,
) {
  const uuid = crypto.randomUUID();
  const logFile = taskLogPath(join(env.dir, "data"), uuid);
  const t0 = nowMs();
  await env.configs.publish(uuid, s.app(uuid, memoryMiB));
  const t1 = await seenInFile(logFile, s.guest.marker, BOOT_TIMEOUT_MS, 10);
  await onBooted?.(uuid);
  await env.configs.unpublish(uuid);
  await env.seen.when(uuid, "deleted", 60_000);
  return t1 - t0;
}

/** The same command line with the host's qemu and the host paths: spawn → marker on stdout. */
async function direct(s: VmSetup, memoryMiB: number): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "eve-bench-qemu-"));
  // The command line the `default` runtime's loader execs for this guest (its loader.sh).
  const args = [
    "-name",
    "guest=bench,debug-threads=on",
    "-m",
    String(memoryMiB),
    "-smp",
    "1",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-qmp",
    `unix:${join(dir, "qmp.sock")},server=on,wait=off`,
    "-kernel",
    s.kernel,
    "-initrd",
    s.initrd,
    "-append",
    CMDLINE,
  ];
  try {
    return await spawnToMarker({
      what: "direct qemu",
      command: "/usr/bin/qemu-system-x86_64",
      args: [...args, "-accel", "tcg"],
      marker: s.guest.marker,
      timeoutMs: BOOT_TIMEOUT_MS,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Scenario "vm": boot to marker through the tasks subsystem vs qemu started directly. */
export async function vmBoot(
  env: BenchEnv,
  o: { rounds: number; memoryMiB: number },
): Promise<ScenarioResult> {
  const s = await vmSetup(env);
  log(`vm: warm-up (tools seed, one boot each way)`);
  await throughTasks(env, s, o.memoryMiB);
  await direct(s, o.memoryMiB);
  const ours: number[] = [];
  const base: number[] = [];
  for (let i = 0; i < o.rounds; i++) {
    base.push(await direct(s, o.memoryMiB));
    ours.push(await throughTasks(env, s, o.memoryMiB));
    log(`vm: round ${i + 1}/${o.rounds}: tasks ${r1(ours.at(-1)!)} ms, direct ${r1(base.at(-1)!)} ms`);
    await env.assertWorkersAlive();
  }
  return {
    scenario: "vm",
    n: o.rounds,
    ...medianRatio(ours, base, 1.1),
    baseline: `the same qemu command line (host qemu, TCG, ${o.memoryMiB} MiB) started directly, to the same marker on stdout`,
    guestMiB: o.memoryMiB,
  };
}

/** One guest size's tax. */
export interface TaxRow {
  guestMiB: number;
  /** The cgroup's peak memory above guest RAM, as the proc-monitor measured it. */
  measuredMiB: number;
  /** The task cgroup's peak memory. */
  peakMiB: number;
  /** EVE's estimate, which the task reserved. */
  estimateMiB: number;
  /** estimate / measured. */
  overReserve: number;
}

/** Scenario "tax": measured tax for each guest size vs EVE's estimate. Prints one JSON line. */
export async function vmTax(
  env: BenchEnv,
  o: { sizesMiB: readonly number[]; settleMs: number },
): Promise<TaxRow[]> {
  const s = await vmSetup(env);
  const latest = new Map<string, TaskMetrics>();
  const metrics = await subscribe(env.bus, {
    ...messageTable("TaskMetrics"),
    onCreate: (k, v) => void latest.set(k, v),
    onModify: (k, v) => void latest.set(k, v),
  });
  const rows: TaxRow[] = [];
  try {
    for (const guestMiB of o.sizesMiB) {
      await throughTasks(env, s, guestMiB, async (uuid) => {
        // Booted: let it settle, then take the proc-monitor's last sample.
        await sleep(o.settleMs);
        const deadline = nowMs() + 10_000;
        let m = latest.get(uuid);
        while ((m?.anchorTaxPeakBytes ?? null) === null && nowMs() < deadline) {
          await sleep(100);
          m = latest.get(uuid);
        }
        if (!m || m.anchorTaxPeakBytes === null || m.memoryPeakBytes === null) {
          throw new Error(`tax: no measured tax for the ${guestMiB} MiB guest: ${JSON.stringify(m)}`);
        }
        const estimateMiB = estimateAnchorTaxMiB({ memoryMiB: guestMiB, vcpus: 1 });
        const measuredMiB = m.anchorTaxPeakBytes / MiB;
        rows.push({
          guestMiB,
          measuredMiB: r1(measuredMiB),
          peakMiB: r1(m.memoryPeakBytes / MiB),
          estimateMiB,
          overReserve: r3(estimateMiB / measuredMiB),
        });
        log(
          `tax: ${guestMiB} MiB guest: measured ${r1(measuredMiB)} MiB above guest RAM, EVE's estimate ${estimateMiB} MiB`,
        );
      });
    }
  } finally {
    await metrics.close();
  }
  return rows;
}
