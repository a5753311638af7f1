/**
 * The node facts of a runtime task (a task whose root is a runtime image's seed and whose anchor
 * its loader execs; a VM is one) and of an emulated native task. The executor knows no runtime:
 * only what the runtime image's labels say, read again from the seed on this node (the
 * TaskConfig's copy is checked against them, never trusted): the stop method, the devices it may
 * be given (each must be allowed by the node's policy; `/dev/kvm` only under KVM), the anchor
 * tax, and the emulators of the `emulators` image. It sets `EVE_TASK_ACCEL` (the accelerator is a
 * node fact) and, for a runtime stopped by QMP, binds `<EVE_RUN_DIR>/vm/<uuid>` where the loader
 * is told its QMP socket is.
 */
import { access, constants, readFile, realpath, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DEFAULT_PATH, QMP_DIR_IN_TASK, QMP_SOCKET_NAME } from "@eve-tasks/oci-spec";
import { readRuntimeLabels, runtimeTaxMiB } from "@eve-tasks/schemas";
import type { Arch, OciSpec, ReadyTaskConfig, RuntimeImageFacts, RuntimeStop } from "@eve-tasks/schemas";
import { binfmtEntry, binfmtKnows } from "./binfmt.js";
import type { BinfmtEntry } from "./binfmt.js";
import { NodeFactError } from "./errors.js";
import { isWithin } from "./host-paths.js";
import { PolicyError, grantDevices } from "./policy.js";
import type { NodePolicy } from "./policy.js";

/** The accelerator a runtime task runs with on this node (`EVE_TASK_ACCEL`). */
export type VmAccel = "kvm" | "tcg";

/** An accelerator and why it was chosen. */
export interface AccelChoice {
  accel: VmAccel;
  /** For events and logs, e.g. "auto: the KVM probe guest did not come up within 10000 ms". */
  why: string;
  /**
   * KVM chosen for `auto` on the probe's word alone: the boot watchdog checks that the guest
   * shows a sign of life under it (see boot-watchdog.ts). Unset for `kvm` asked explicitly (by
   * the app or EVE_ACCEL) and for TCG.
   */
  watchBoot?: true;
}

/** Decides `auto` (and checks `kvm`) on this node; see `AccelChooser`. */
export interface AccelDecider {
  /**
   * The accelerator for a task asking for `requested`, whose runtime seed is `toolsRoot` (where a
   * probe's qemu comes from) and whose qemu is `qemu` (a path inside it).
   */
  decide(requested: "auto" | "kvm" | "tcg", probe: { toolsRoot: string; qemu: string }): Promise<AccelChoice>;
  /**
   * KVM proved unusable after the probe said yes (a guest under it showed no sign of life): from
   * now on, and for the rest of this node's boot, `auto` gets TCG. `reason` says why.
   */
  distrust?(reason: string): Promise<void>;
}

/** The host directory bound at {@link QMP_DIR_IN_TASK} in a QMP runtime's task: `<runDir>/vm/<uuid>`. */
export function vmRunDir(runDir: string, uuid: string): string {
  return join(runDir, "vm", uuid);
}

/** The QMP socket of a runtime task, as the host sees it. */
export function qmpSocketPath(runDir: string, uuid: string): string {
  return join(vmRunDir(runDir, uuid), QMP_SOCKET_NAME);
}

/** The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** This machine's architecture in `uname -m` spelling. */
export function nodeArch(): string {
  switch (process.arch) {
    case "x64":
      return "x86_64";
    case "arm64":
      return "aarch64";
    case "arm":
      return "armv7l";
    default:
      return process.arch;
  }
}

/**
 * Where `program` is in the seed `root` when looked up along `pathVar` (as runc will), or
 * undefined. Symlinks inside the seed are followed by the host's rules, which is enough to tell a
 * present binary from a missing one.
 */
export async function findInSeed(
  root: string,
  program: string,
  pathVar: string,
): Promise<string | undefined> {
  for (const dir of pathVar.split(":")) {
    if (!dir.startsWith("/")) continue;
    const candidate = join(dir, program);
    try {
      const s = await stat(join(root, candidate));
      if (s.isFile()) {
        await access(join(root, candidate), constants.X_OK);
        return candidate;
      }
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The spec's PATH (the default when it has none). */
function pathOf(spec: OciSpec): string {
  const entry = (spec.process.env ?? []).find((e) => e.startsWith("PATH="));
  return entry === undefined ? DEFAULT_PATH : entry.slice("PATH=".length);
}

/**
 * What the seed whose root is `seedRoot` (resolved, inside the seeds dir) says of its image:
 * the labels and StopSignal its hypervisor-seed-fetcher recorded in `seed.json` beside the root.
 *
 * @throws NodeFactError when the record is missing or unreadable, or the labels are not those
 *   of a runtime image this node can use.
 */
export async function readSeedRuntime(
  seedRoot: string,
  what: string,
  uuid: string,
): Promise<RuntimeImageFacts> {
  let record: { labels?: unknown; stopSignal?: unknown };
  const file = join(dirname(seedRoot), "seed.json");
  try {
    record = JSON.parse(await readFile(file, "utf8")) as typeof record;
  } catch (err) {
    throw new NodeFactError(
      `${what}: its seed's record ${file} cannot be read: ${(err as Error).message}`,
      uuid,
      {
        cause: err,
      },
    );
  }
  if (typeof record.labels !== "object" || record.labels === null) {
    throw new NodeFactError(
      `${what}: its seed was made before labels were kept: publish its HypervisorToolsConfig again`,
      uuid,
    );
  }
  const r = readRuntimeLabels(
    record.labels as Record<string, string>,
    typeof record.stopSignal === "string" ? record.stopSignal : null,
  );
  if (!r.ok) throw new NodeFactError(`${what} cannot run tasks: ${r.message}`, uuid);
  return r.facts;
}

const sameStop = (a: RuntimeStop, b: RuntimeStop): boolean =>
  a.method === b.method && (a.method !== "signal" || (b.method === "signal" && a.signal === b.signal));

const stopText = (s: RuntimeStop): string => (s.method === "qmp" ? "qmp" : `signal ${s.signal}`);

/** What {@link applyRuntimeFacts} decided. */
export interface RuntimeFacts extends AccelChoice {
  /** The stop of the runtime's anchor, from its seed's labels. */
  stop: RuntimeStop;
  /** The anchor tax in MiB. */
  taxMiB: number;
  /** The QMP dir to create (a runtime stopped by QMP). */
  qmpDir?: string;
  /** The devices given to the task. */
  devices: string[];
}

/**
 * Applies a runtime task's node facts to its prepared spec (see the module's comment). It assigns
 * the spec's `process`, `mounts` and `linux` anew and never edits the objects they held (shared
 * with the TaskConfig).
 *
 * @throws NodeFactError for a seed that is not a usable runtime image or a socket path over the
 *   kernel's limit; PolicyError for a TaskConfig whose stop or devices are not its image's, or a
 *   device the node does not allow.
 */
export async function applyRuntimeFacts(
  config: ReadyTaskConfig,
  spec: OciSpec,
  seedRoot: string,
  o: {
    runDir: string;
    policy: NodePolicy;
    vmmOverheadMiB?: number | undefined;
    accel?: AccelDecider | undefined;
  },
): Promise<RuntimeFacts> {
  const runtime = config.runtime;
  const uuid = config.uuid;
  if (!runtime) throw new NodeFactError("a runtime task's TaskConfig has no runtime settings", uuid);
  const image = spec.annotations?.["org.lfedge.eve-tasks.tools"];
  const what = `runtime ${JSON.stringify(runtime.name)}${image ? ` (${image})` : ""}`;
  const facts = await readSeedRuntime(seedRoot, what, uuid);

  const violations: { field: string; message: string }[] = [];
  if (!sameStop(runtime.stop, facts.stop)) {
    violations.push({
      field: "runtime.stop",
      message: `${stopText(runtime.stop)} is not the stop its image declares (${stopText(facts.stop)})`,
    });
  }
  const undeclared = runtime.devices.filter((d) => !facts.devices.includes(d));
  if (undeclared.length > 0) {
    violations.push({
      field: "runtime.devices",
      message: `${undeclared.join(", ")} ${undeclared.length === 1 ? "is" : "are"} not declared by its image (${facts.devices.join(", ") || "none"})`,
    });
  }
  if (violations.length > 0) throw new PolicyError(violations, uuid);

  // The devices other than /dev/kvm: each the image declares must be allowed here.
  const declaredKvm = facts.devices.includes("kvm");
  const others = facts.devices.filter((d) => d !== "kvm");
  const field = `runtime.devices (declared by ${what})`;
  grantDevices(others, o.policy, field, uuid);

  // The accelerator: KVM needs the image to declare kvm and the node to allow it.
  const requested = runtime.accel;
  let choice: AccelChoice;
  if (!declaredKvm) {
    if (requested === "kvm") {
      throw new PolicyError(
        [{ field: "runtime.accel", message: `kvm asked, but ${what} does not declare the device kvm` }],
        uuid,
      );
    }
    choice = { accel: "tcg", why: `${what} does not use /dev/kvm` };
  } else if (requested === "auto" && !o.policy.devices.includes("kvm")) {
    choice = { accel: "tcg", why: "auto: this node does not allow /dev/kvm (EVE_ALLOW_DEVICES)" };
  } else {
    if (requested === "kvm") grantDevices(["kvm"], o.policy, "runtime.accel", uuid);
    if (!o.accel)
      throw new NodeFactError(`${what} declares kvm, but this executor has no accelerator choice`, uuid);
    const searched = pathOf(spec);
    const program = `qemu-system-${nodeArch()}`;
    const qemu = await findInSeed(seedRoot, program, searched);
    if (qemu === undefined && requested === "auto") {
      choice = { accel: "tcg", why: `auto: ${what} has no ${program} to probe KVM with (PATH ${searched})` };
    } else {
      choice = await o.accel.decide(requested, { toolsRoot: seedRoot, qemu: qemu ?? program });
    }
  }
  const devices = [...others, ...(choice.accel === "kvm" ? ["kvm"] : [])];
  const grant = grantDevices(devices, o.policy, field, uuid);

  const taxMiB = runtime.taxFromApp
    ? config.anchorTaxMiB
    : facts.taxDeclared && o.vmmOverheadMiB !== undefined
      ? o.vmmOverheadMiB
      : runtimeTaxMiB(facts.tax, { memoryMiB: config.memoryMiB, vcpus: runtime.vcpus });

  const env = (spec.process.env ?? []).filter((e) => !e.startsWith("EVE_TASK_ACCEL="));
  spec.process = { ...spec.process, env: [...env, `EVE_TASK_ACCEL=${choice.accel}`] };

  let qmpDir: string | undefined;
  if (facts.stop.method === "qmp") {
    qmpDir = vmRunDir(o.runDir, uuid);
    const socket = qmpSocketPath(o.runDir, uuid);
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      throw new NodeFactError(
        `the QMP socket ${socket} is ${Buffer.byteLength(socket)} bytes, over the kernel's ` +
          `${MAX_SOCKET_PATH_BYTES}-byte limit for unix sockets: set EVE_RUN_DIR to a shorter path`,
        uuid,
      );
    }
    spec.mounts = [
      ...(spec.mounts ?? []).filter((m) => m.destination !== QMP_DIR_IN_TASK),
      {
        destination: QMP_DIR_IN_TASK,
        type: "bind",
        source: qmpDir,
        options: ["bind", "rw", "nosuid", "nodev", "noexec"],
      },
    ];
  }
  if (grant.devices.length > 0) {
    const linux = spec.linux as OciSpec["linux"] & {
      devices?: unknown[];
      resources: { devices?: unknown[] };
    };
    // Replaced, not edited: the spec shares its other parts with the TaskConfig's. The policy
    // let no devices of the TaskConfig through: these are the node's alone.
    spec.linux = {
      ...linux,
      devices: grant.devices,
      resources: { ...linux.resources, devices: [...(linux.resources.devices ?? []), ...grant.rules] },
    };
  }
  return { ...choice, stop: facts.stop, taxMiB, ...(qmpDir !== undefined ? { qmpDir } : {}), devices };
}

/** What an emulated native task needs: the binfmt_misc entry of its emulator, and the tax. */
export interface EmulationFacts {
  arch: Arch;
  binfmt: BinfmtEntry;
  taxMiB: number;
}

/**
 * The emulation of a native app whose `arch` is not the node's: the emulator for `arch` from the
 * node's `emulators` seed (its label `org.lfedge.eve-tasks.emulators` read from the seed on this
 * node), as a host path inside that seed, and the tax the image declares. Undefined when the app
 * runs natively. `emulatorsRoot` is the seed's root, resolved and checked by the caller.
 *
 * @throws NodeFactError "no emulator for <arch> on this node" when there is none.
 */
export async function emulationFacts(
  config: ReadyTaskConfig,
  emulatorsRoot: string | undefined,
  o: { nodeArch: string },
): Promise<EmulationFacts | undefined> {
  const e = config.emulation;
  if (!e || e.arch === o.nodeArch) return undefined;
  const uuid = config.uuid;
  const none = `no emulator for ${e.arch} on this node`;
  if (emulatorsRoot === undefined) {
    throw new NodeFactError(
      `${none} (node ${o.nodeArch}): the runtime "emulators" has no READY seed (publish HypervisorToolsConfig.emulators)`,
      uuid,
    );
  }
  const facts = await readSeedRuntime(emulatorsRoot, 'runtime "emulators"', uuid);
  const inImage = facts.emulators[e.arch];
  if (inImage === undefined || !binfmtKnows(e.arch)) {
    const has = Object.keys(facts.emulators).join(", ") || "none";
    throw new NodeFactError(`${none} (node ${o.nodeArch}; the emulators image has ${has})`, uuid);
  }
  let interpreter: string;
  try {
    interpreter = await realpath(join(emulatorsRoot, inImage));
  } catch (err) {
    throw new NodeFactError(`${none}: the emulators image lacks ${inImage}`, uuid, { cause: err });
  }
  if (!isWithin(emulatorsRoot, interpreter) || !(await stat(interpreter)).isFile()) {
    throw new NodeFactError(`${none}: ${inImage} is not a file inside the emulators image`, uuid);
  }
  const cpu = config.spec.linux.resources.cpu as { quota?: number; period?: number } | undefined;
  const vcpus = cpu?.quota && cpu.period ? Math.max(1, Math.ceil(cpu.quota / cpu.period)) : 1;
  return {
    arch: e.arch,
    binfmt: binfmtEntry(e.arch, interpreter),
    taxMiB: runtimeTaxMiB(facts.tax, { memoryMiB: config.memoryMiB, vcpus }),
  };
}
