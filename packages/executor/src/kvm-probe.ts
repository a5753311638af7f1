/**
 * The accelerator choice of a node. `tcg` and `kvm` are taken as asked (`kvm` only when the node
 * has `/dev/kvm`); `auto` follows `EVE_ACCEL`, and when that is `auto` too, KVM is used only if a
 * probe guest really runs under it: a one-sector guest that prints a marker on its serial port,
 * run once per node boot as a containerd task from the VM's own tools seed, with a deadline.
 * Nested KVM can open /dev/kvm, create a VM and then hang before the guest's first instruction,
 * so "/dev/kvm exists" proves nothing. Even a probe that came up can be a false yes for a real
 * guest: a VM given KVM on the probe's word is watched at boot (boot-watchdog.ts), and when it
 * shows no sign of life the executor {@link AccelChooser.distrust}s KVM for the rest of the boot.
 */
import { randomBytes } from "node:crypto";
import { readFile, mkdir, rm, writeFile, rename } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { fileUri } from "@eve-tasks/containerd";
import {
  buildSpec,
  withArgs,
  withBindMount,
  withCpus,
  withCwd,
  withHostname,
  withMemoryLimitBytes,
  withUser,
} from "@eve-tasks/oci-spec";

import { cgroupsPathFor } from "@eve-tasks/schemas";
import { KVM_PROBE_MARKER, kvmProbeDisk, probeQemuArgs } from "./kvm-probe-guest.js";
import type { AccelChoice, AccelDecider } from "./runtime-task.js";
import { EXECUTOR_DEFAULTS } from "./defaults.js";
import { NodeFactError } from "./errors.js";
import { deviceGrant } from "./policy.js";
import type { TaskRuntime } from "./runtime.js";

/** The label that marks a probe's container (the executor removes leftovers at start-up). */
export const PROBE_LABEL = "org.lfedge.eve-tasks.probe";

/** What a probe found. */
export interface KvmProbeResult {
  usable: boolean;
  /** Why (e.g. "the probe guest printed its marker in 312 ms"). */
  reason: string;
  elapsedMs: number;
}

/** Options of {@link AccelChooser}. */
export interface AccelChooserOptions {
  /** Where the probe guest runs (the executor's runtime). */
  runtime: TaskRuntime;
  dataDir: string;
  logger: Logger;
  /** EVE_ACCEL: what `auto` apps get on this node (default `auto`: probe). */
  nodeAccel?: "auto" | "kvm" | "tcg";
  /** How long the probe guest may take to print its marker (default `EXECUTOR_DEFAULTS.kvmProbeTimeoutMs`). */
  probeTimeoutMs?: number;
  /** The KVM device (tests). */
  kvmDevice?: string;
}

/**
 * The cache of the node's verdict (`<dataDir>/kvm-probe.json`), valid for one boot of the node:
 * a probe's for one tools seed; the boot watchdog's (`by: "boot-watchdog"`, always not usable)
 * for every seed, since a KVM that hangs a real guest hangs it whichever qemu runs it.
 */
export interface CachedProbe extends KvmProbeResult {
  bootId: string;
  toolsRoot: string;
  probedAt: string;
  /** Who gave the verdict; absent in a probe's (older files have none). */
  by?: "probe" | "boot-watchdog";
}

/** The file of the node's KVM verdict under the executor's data dir. */
export function kvmVerdictPath(dataDir: string): string {
  return join(dataDir, "kvm-probe.json");
}

/** Whether `cached` is the verdict for this boot and tools seed. */
export function verdictApplies(cached: CachedProbe, boot: string, toolsRoot: string): boolean {
  return cached.bootId === boot && (cached.by === "boot-watchdog" || cached.toolsRoot === toolsRoot);
}

async function writeVerdict(dataDir: string, entry: CachedProbe): Promise<void> {
  const file = kvmVerdictPath(dataDir);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(entry) + "\n");
  await rename(tmp, file);
}

async function bootId(): Promise<string> {
  return (await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => "unknown")).trim();
}

/** Decides each VM's accelerator; probes KVM at most once per node boot (cached on disk). */
export class AccelChooser implements AccelDecider {
  readonly #o: AccelChooserOptions;
  #probing: Promise<KvmProbeResult> | undefined;

  constructor(options: AccelChooserOptions) {
    this.#o = options;
  }

  get #device(): string {
    return this.#o.kvmDevice ?? "/dev/kvm";
  }

  async decide(
    requested: "auto" | "kvm" | "tcg",
    tools: { toolsRoot: string; qemu: string },
  ): Promise<AccelChoice> {
    const wanted = requested === "auto" ? (this.#o.nodeAccel ?? "auto") : requested;
    const by =
      requested === "auto" ? (wanted === "auto" ? "auto" : `EVE_ACCEL=${wanted}`) : `vm.accel=${wanted}`;
    if (wanted === "tcg") return { accel: "tcg", why: `${by}: TCG (emulation)` };
    if (!existsSync(this.#device)) {
      if (wanted === "kvm") {
        throw new NodeFactError(
          `${by} asks for KVM, but this node has no ${this.#device}: use "auto" or "tcg"`,
        );
      }
      return { accel: "tcg", why: `auto: no ${this.#device} on this node, TCG (emulation)` };
    }
    if (wanted === "kvm") return { accel: "kvm", why: `${by}: KVM` };
    this.#probing ??= this.#probeOnce(tools).catch((err: unknown) => {
      this.#probing = undefined;
      throw err;
    });
    const result = await this.#probing;
    return result.usable
      ? { accel: "kvm", why: `auto: KVM (${result.reason})`, watchBoot: true }
      : { accel: "tcg", why: `auto: TCG, KVM is not usable here (${result.reason})` };
  }

  /**
   * The node's verdict becomes "KVM is not usable" (`reason`) for the rest of this boot, in
   * memory and in `kvm-probe.json`: `auto` gets TCG from now on, also after an executor restart.
   */
  async distrust(reason: string): Promise<void> {
    const result: KvmProbeResult = { usable: false, reason, elapsedMs: 0 };
    this.#probing = Promise.resolve(result);
    const entry: CachedProbe = {
      ...result,
      bootId: await bootId(),
      toolsRoot: "",
      probedAt: new Date().toISOString(),
      by: "boot-watchdog",
    };
    await writeVerdict(this.#o.dataDir, entry);
    this.#o.logger.warn({ event: "kvm-verdict", ...entry }, `KVM is not usable on this node: ${reason}`);
  }

  async #probeOnce(tools: { toolsRoot: string; qemu: string }): Promise<KvmProbeResult> {
    const cacheFile = kvmVerdictPath(this.#o.dataDir);
    const boot = await bootId();
    try {
      const cached = JSON.parse(await readFile(cacheFile, "utf8")) as CachedProbe;
      if (verdictApplies(cached, boot, tools.toolsRoot)) {
        this.#o.logger.info(
          { event: "kvm-probe", cached: true, ...cached },
          `KVM probe (cached): ${cached.reason}`,
        );
        return cached;
      }
    } catch {
      // no verdict yet for this boot
    }
    const result = await probeKvm({
      runtime: this.#o.runtime,
      dataDir: this.#o.dataDir,
      toolsRoot: tools.toolsRoot,
      qemu: tools.qemu,
      timeoutMs: this.#o.probeTimeoutMs ?? EXECUTOR_DEFAULTS.kvmProbeTimeoutMs,
    });
    this.#o.logger.info({ event: "kvm-probe", ...result }, `KVM probe: ${result.reason}`);
    await writeVerdict(this.#o.dataDir, {
      ...result,
      bootId: boot,
      toolsRoot: tools.toolsRoot,
      probedAt: new Date().toISOString(),
      by: "probe",
    });
    return result;
  }
}

/** Options of {@link probeKvm}. */
export interface ProbeKvmOptions {
  runtime: TaskRuntime;
  dataDir: string;
  /** The tools seed (read-only lower dir of the probe's overlay root). */
  toolsRoot: string;
  /** qemu's path inside the seed. */
  qemu: string;
  timeoutMs: number;
  /**
   * The accelerator the probe guest runs under: `kvm` (what is being probed) or `tcg` (a
   * reference run that checks the probe itself: it comes up wherever qemu works).
   */
  accel?: "kvm" | "tcg";
}

/**
 * Runs the probe guest under KVM as a containerd task (namespace of the runtime, container
 * `eve-kvm-probe-<random>`, labelled {@link PROBE_LABEL}) and waits for its marker on the
 * serial console. Always removes what it made: the task, the container and its directory.
 */
export async function probeKvm(o: ProbeKvmOptions): Promise<KvmProbeResult> {
  const id = `eve-kvm-probe-${randomBytes(4).toString("hex")}`;
  const dir = join(o.dataDir, "kvm-probe", id);
  const diskDir = join(dir, "disk");
  const upper = join(dir, "upper");
  const work = join(dir, "work");
  const logPath = join(dir, "console.log");
  await Promise.all([diskDir, upper, work].map((d) => mkdir(d, { recursive: true })));
  await writeFile(join(diskDir, "probe.img"), kvmProbeDisk());
  const spec = buildSpec(
    withArgs([o.qemu, ...probeQemuArgs({ accel: o.accel ?? "kvm", diskPath: "/eve/probe/probe.img" })]),
    withCwd("/"),
    withUser("0:0"),
    withHostname(id),
    withMemoryLimitBytes(256 * 2 ** 20),
    withCpus(1),
    withBindMount({ source: diskDir, destination: "/eve/probe", readOnly: true }),
  );
  spec.root = { ...spec.root, path: "rootfs" };
  const linux = spec.linux as typeof spec.linux & { cgroupsPath?: string; devices?: object[] };
  linux.cgroupsPath = cgroupsPathFor(id);
  if ((o.accel ?? "kvm") === "kvm") {
    const grant = deviceGrant(["kvm"]);
    linux.devices = grant.devices;
    (linux.resources as { devices: object[] }).devices.push(...grant.rules);
  }

  const { runtime } = o;
  const started = Date.now();
  let created = false;
  try {
    await runtime.createContainer({ id, spec, labels: { [PROBE_LABEL]: "kvm" } });
    const log = fileUri(logPath);
    await runtime.createTask({
      id,
      rootfs: [
        {
          type: "overlay",
          source: "overlay",
          options: [`lowerdir=${o.toolsRoot}`, `upperdir=${upper}`, `workdir=${work}`],
        },
      ],
      stdout: log,
      stderr: log,
    });
    created = true;
    let exited = false;
    const exit = runtime.waitTask(id).then(
      (s) => {
        exited = true;
        return s;
      },
      () => undefined,
    );
    await runtime.startTask(id);
    const deadline = started + o.timeoutMs;
    for (;;) {
      const text = await readFile(logPath, "utf8").catch(() => "");
      if (text.includes(KVM_PROBE_MARKER)) {
        const ms = Date.now() - started;
        const under = (o.accel ?? "kvm").toUpperCase();
        return { usable: true, reason: `the probe guest came up under ${under} in ${ms} ms`, elapsedMs: ms };
      }
      if (exited) {
        const status = await exit;
        const last = text.trim().split("\n").slice(-1)[0] ?? "";
        return {
          usable: false,
          reason: `qemu exited (status ${status?.exitStatus ?? "?"}) before the probe guest came up${last ? `: ${last}` : ""}`,
          elapsedMs: Date.now() - started,
        };
      }
      if (Date.now() >= deadline) {
        return {
          usable: false,
          reason: `the probe guest did not come up under ${(o.accel ?? "kvm").toUpperCase()} within ${o.timeoutMs} ms`,
          elapsedMs: Date.now() - started,
        };
      }
      await sleep(50);
    }
  } finally {
    if (created) {
      await runtime.killTask(id, "SIGKILL", { all: true }).catch(() => undefined);
      await Promise.race([
        runtime.waitTask(id).catch(() => undefined),
        sleep(EXECUTOR_DEFAULTS.killTimeoutMs),
      ]);
      await runtime.deleteTask(id);
    }
    await runtime.deleteContainer(id).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
