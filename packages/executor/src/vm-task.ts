/**
 * The node facts of a VM task: the qemu of its tools seed, the accelerator, the QMP socket under
 * `EVE_RUN_DIR`, and `/dev/kvm` only when KVM is used.
 */
import { access, constants, stat } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_PATH, QMP_DIR_IN_TASK, QMP_SOCKET_NAME } from "@eve-tasks/oci-spec";
import type { OciSpec, ReadyTaskConfig } from "@eve-tasks/schemas";
import { NodeFactError } from "./errors.js";
import { grantDevices } from "./policy.js";
import type { NodePolicy } from "./policy.js";

/** The accelerator a VM runs with on this node. */
export type VmAccel = "kvm" | "tcg";

/** An accelerator and why it was chosen. */
export interface AccelChoice {
  accel: VmAccel;
  /** For events and logs, e.g. "auto: the KVM probe guest did not come up within 10000 ms". */
  why: string;
}

/** Decides `auto` (and checks `kvm`) on this node; see `AccelChooser`. */
export interface AccelDecider {
  /**
   * The accelerator for a VM asking for `requested`, whose tools seed is `toolsRoot` (where a
   * probe's qemu comes from) and whose qemu is `qemu` (a path inside it).
   */
  decide(requested: "auto" | "kvm" | "tcg", probe: { toolsRoot: string; qemu: string }): Promise<AccelChoice>;
}

/** The host directory bound at {@link QMP_DIR_IN_TASK} in a VM's task: `<runDir>/vm/<uuid>`. */
export function vmRunDir(runDir: string, uuid: string): string {
  return join(runDir, "vm", uuid);
}

/** The QMP socket of a VM's qemu, as the host sees it. */
export function qmpSocketPath(runDir: string, uuid: string): string {
  return join(vmRunDir(runDir, uuid), QMP_SOCKET_NAME);
}

/** The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * Where `program` is in the tools seed `root` when looked up along the spec's PATH (as runc
 * will), or undefined. Symlinks inside the seed are followed by the host's rules, which is
 * enough to tell a present binary from a missing one.
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
 * Applies a VM's node facts to its prepared spec: checks that the tools seed has the spec's qemu
 * (a clear error naming the image and PATH otherwise), adds `-accel <accel>`, binds the QMP
 * directory `<runDir>/vm/<uuid>` (returned, to be created) at {@link QMP_DIR_IN_TASK}, and for
 * KVM adds `/dev/kvm` with a device-cgroup rule allowing it, if the node's `policy` allows the
 * device (else `auto` is TCG and `kvm` is refused). It assigns the spec's `process`,
 * `mounts` and `linux` anew and never edits the objects they held (shared with the TaskConfig).
 *
 * @throws NodeFactError for a tools image without qemu or a socket path over the kernel's limit;
 *   PolicyError for `kvm` on a node that does not allow `/dev/kvm`.
 */
export async function applyVmFacts(
  config: ReadyTaskConfig,
  spec: OciSpec,
  toolsRoot: string,
  runDir: string,
  decider: AccelDecider,
  policy: NodePolicy,
): Promise<AccelChoice & { qmpDir: string }> {
  const vm = config.vm;
  if (!vm) throw new NodeFactError("a VM's TaskConfig has no vm settings", config.uuid);
  const uuid = config.uuid;
  const searched = pathOf(spec);
  const qemu = await findInSeed(toolsRoot, vm.qemu, searched);
  if (qemu === undefined) {
    const image = spec.annotations?.["org.lfedge.eve-tasks.tools"] ?? config.rootfs.kind;
    throw new NodeFactError(
      `the hypervisor tools image ${image} has no ${vm.qemu} in its PATH (${searched}): ` +
        `it cannot run this VM; name a tools image with qemu in vm.hypervisorTools`,
      uuid,
    );
  }
  const qmpDir = vmRunDir(runDir, uuid);
  const socket = qmpSocketPath(runDir, uuid);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
    throw new NodeFactError(
      `the QMP socket ${socket} is ${Buffer.byteLength(socket)} bytes, over the kernel's ` +
        `${MAX_SOCKET_PATH_BYTES}-byte limit for unix sockets: set EVE_RUN_DIR to a shorter path`,
      uuid,
    );
  }
  const kvmAllowed = policy.devices.includes("kvm");
  const { accel, why } =
    vm.accel === "auto" && !kvmAllowed
      ? { accel: "tcg" as const, why: "auto: this node does not allow /dev/kvm (EVE_ALLOW_DEVICES)" }
      : await decider.decide(vm.accel, { toolsRoot, qemu });
  spec.process = { ...spec.process, args: [...spec.process.args, "-accel", accel] };
  spec.mounts = [
    ...(spec.mounts ?? []).filter((m) => m.destination !== QMP_DIR_IN_TASK),
    {
      destination: QMP_DIR_IN_TASK,
      type: "bind",
      source: qmpDir,
      options: ["bind", "rw", "nosuid", "nodev", "noexec"],
    },
  ];
  if (accel === "kvm") {
    const grant = grantDevices(["kvm"], policy, "vm.accel", uuid);
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
  return { accel, why, qmpDir };
}
