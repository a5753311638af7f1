/**
 * The node's policy over TaskConfigs (DESIGN "Trust"): whatever wrote a TaskConfig, the executor
 * runs only what the spec-builder legitimately produces. The check is an allow-list built from
 * the same defaults the spec-builder builds from (`@eve-tasks/oci-spec`): every key of the spec
 * must be one the spec-builder writes, every security-relevant value must be the default or
 * within it, and everything node-local (mounts of host paths, devices, the cgroup, a network
 * namespace path) is the executor's own to add. Pure: no I/O.
 */
import {
  DEFAULT_CAPABILITIES,
  DEFAULT_MASKED_PATHS,
  DEFAULT_NAMESPACES,
  DEFAULT_READONLY_PATHS,
  ROOTFS_PATH,
  defaultMounts,
} from "@eve-tasks/oci-spec";
import { TASK_LABELS, cgroupsPathFor, jsonEqual } from "@eve-tasks/schemas";
import type { ReadyTaskConfig } from "@eve-tasks/schemas";
import { NodeFactError } from "./errors.js";
import { RLIMIT_TYPES } from "./host-limits.js";

/** An OCI device and the device-cgroup rule that lets a task use it. */
export interface NodeDevice {
  readonly path: string;
  readonly type: "c";
  readonly major: number;
  readonly minor: number;
  readonly fileMode: number;
  readonly uid: number;
  readonly gid: number;
}

/**
 * The devices a task can ever be given, by the names runtime images declare
 * (`org.lfedge.eve-tasks.devices`): `/dev/kvm` (10:232) and `/dev/net/tun` (10:200).
 */
export const NODE_DEVICES = {
  kvm: { path: "/dev/kvm", type: "c", major: 10, minor: 232, fileMode: 0o660, uid: 0, gid: 0 },
  tun: { path: "/dev/net/tun", type: "c", major: 10, minor: 200, fileMode: 0o666, uid: 0, gid: 0 },
} as const satisfies Record<string, NodeDevice>;

/** A device name of {@link NODE_DEVICES}. */
export type DeviceName = keyof typeof NODE_DEVICES;

/** Whether `name` is a device of {@link NODE_DEVICES}. */
export function isDeviceName(name: string): name is DeviceName {
  return Object.prototype.hasOwnProperty.call(NODE_DEVICES, name);
}

/** What this node allows beyond the spec-builder's defaults. */
export interface NodePolicy {
  /** `EVE_ALLOW_HOST_ROOT`: a task may have the host's `/` (read-only) as its root. */
  readonly allowHostRoot: boolean;
  /** `EVE_ALLOW_DEVICES`: the devices of {@link NODE_DEVICES} tasks may be given. */
  readonly devices: readonly DeviceName[];
}

/** One reason a TaskConfig is refused: the field (`spec.process.capabilities.bounding`) and why. */
export interface PolicyViolation {
  readonly field: string;
  readonly message: string;
}

/** How many violations a refusal's message spells out (the rest are counted). */
const MESSAGE_VIOLATIONS = 5;

/**
 * A TaskConfig asks for something this node's policy does not allow. A {@link NodeFactError},
 * so the executor refuses it like any node fact: FAILED with this message, nothing created, and
 * a task running on an earlier config keeps running.
 */
export class PolicyError extends NodeFactError {
  override name = "PolicyError";
  constructor(
    readonly violations: readonly PolicyViolation[],
    uuid?: string,
  ) {
    const shown = violations.slice(0, MESSAGE_VIOLATIONS).map((v) => `${v.field}: ${v.message}`);
    const more = violations.length - shown.length;
    super(`refused by this node's policy: ${shown.join("; ")}${more > 0 ? `; and ${more} more` : ""}`, uuid);
  }
}

/**
 * The network namespace the executor itself makes for app `uuid` (`/run/netns/eve-<uuid>`,
 * DESIGN "Networks"): the only namespace a task may join instead of getting a new one.
 */
export function ownNetnsPath(uuid: string): string {
  return `/run/netns/eve-${uuid}`;
}

/** Why some keys the spec-builder never writes are refused, for the message. */
const REASONS: Readonly<Record<string, string>> = {
  "spec.hooks": "hooks run on the host as root: never allowed",
  "spec.process.apparmorProfile": "the AppArmor profile is the node's to choose",
  "spec.process.selinuxLabel": "the SELinux label is the node's to choose",
  "spec.process.oomScoreAdj": "would change how the host's OOM killer treats the task",
  "spec.process.scheduler": "a scheduling policy (realtime) would compete with the host",
  "spec.process.ioPriority": "an I/O priority would compete with the host",
  "spec.process.execCPUAffinity": "CPU placement is the node's to choose",
  "spec.linux.devices": "devices are added by the node only (/dev/kvm for a VM under KVM)",
  "spec.linux.sysctl": "sysctls are not allowed",
  "spec.linux.seccomp": "a seccomp profile (with its notify socket on the host) is not allowed",
  "spec.linux.rootfsPropagation": "the task's mounts would propagate to or from the host",
  "spec.linux.uidMappings": "there is no user namespace",
  "spec.linux.gidMappings": "there is no user namespace",
  "spec.linux.mountLabel": "the SELinux mount label is the node's to choose",
  "spec.linux.intelRdt": "cache and memory bandwidth allocation is the node's to choose",
  "spec.linux.personality": "not allowed",
  "spec.linux.timeOffsets": "there is no time namespace",
  "spec.linux.resources.pids": "not allowed",
  "spec.linux.resources.blockIO": "not allowed",
  "spec.linux.resources.hugepageLimits": "not allowed",
  "spec.linux.resources.network": "not allowed",
  "spec.linux.resources.rdma": "not allowed",
  "spec.linux.resources.unified": "cgroup files are the node's to write",
};

/** Collects violations while walking a TaskConfig. */
class Findings {
  readonly list: PolicyViolation[] = [];
  add(field: string, message: string): void {
    this.list.push({ field, message });
  }
  /** Every key of `value` not in `allowed` is a violation (with a known reason, if any). */
  onlyKeys(value: unknown, field: string, allowed: readonly string[]): value is Record<string, unknown> {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.add(field, "must be an object");
      return false;
    }
    for (const key of Object.keys(value)) {
      if (allowed.includes(key)) continue;
      const at = `${field}.${key}`;
      this.add(at, REASONS[at] ?? "not allowed: the spec-builder never sets it");
    }
    return true;
  }
}

const list = (xs: readonly string[]): string => xs.join(", ");

/**
 * Every way `config` goes beyond this node's policy, in the order of the spec's fields; empty
 * when it is within it. See {@link enforcePolicy}.
 */
export function policyViolations(config: ReadyTaskConfig, policy: NodePolicy): PolicyViolation[] {
  const f = new Findings();
  if (config.rootfs.kind === "host" && !policy.allowHostRoot) {
    f.add(
      "rootfs",
      "the host's root filesystem as a task's root is not allowed on this node (EVE_ALLOW_HOST_ROOT is off)",
    );
  }
  const mountPoints = new Set<string>();
  config.volumes.forEach((v, i) => {
    if (/^\/+$/.test(v.mountPoint)) {
      f.add(`volumes[${i}].mountPoint`, "must not be /: the root filesystem is given by rootfs");
    }
    if (mountPoints.has(v.mountPoint)) f.add(`volumes[${i}].mountPoint`, `${v.mountPoint} is mounted twice`);
    mountPoints.add(v.mountPoint);
  });
  checkSpec(f, config.spec, config.uuid, mountPoints);
  return f.list;
}

/**
 * Refuses `config` unless it is within this node's policy: capabilities within the default set
 * in all five sets, `noNewPrivileges`, the default namespaces with no path (except the app's own
 * network namespace, {@link ownNetnsPath}), no devices, the default device rule, exactly the
 * default mounts plus bind mounts at the TaskConfig's volume mount points (their sources and
 * options are the executor's), the default masked and read-only paths (more are fine), no hooks,
 * sysctls, seccomp, AppArmor/SELinux settings, OOM score, user-namespace mappings, rootfs
 * propagation or other key the spec-builder never writes, only `org.lfedge.eve-tasks.*`
 * annotations, and the host's root only where `allowHostRoot`.
 *
 * @throws PolicyError naming each field that is outside the policy.
 */
export function enforcePolicy(config: ReadyTaskConfig, policy: NodePolicy): void {
  const violations = policyViolations(config, policy);
  if (violations.length > 0) throw new PolicyError(violations, config.uuid);
}

function checkSpec(
  f: Findings,
  spec: Record<string, unknown>,
  uuid: string,
  volumePoints: ReadonlySet<string>,
): void {
  f.onlyKeys(spec, "spec", ["ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations"]);
  checkProcess(f, spec.process);
  if (f.onlyKeys(spec.root, "spec.root", ["path", "readonly"]) && spec.root.path !== ROOTFS_PATH) {
    f.add("spec.root.path", `must be "${ROOTFS_PATH}" (the root filesystem comes through Tasks.Create)`);
  }
  checkMounts(f, spec.mounts, volumePoints);
  checkLinux(f, spec.linux, uuid);
  const annotations = (spec.annotations ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith("org.lfedge.eve-tasks.")) {
      f.add(
        `spec.annotations.${key}`,
        "only org.lfedge.eve-tasks.* annotations are allowed (runtimes and shims act on others)",
      );
    }
  }
  const own = annotations[TASK_LABELS.uuid];
  if (own !== undefined && own !== uuid) {
    f.add(`spec.annotations.${TASK_LABELS.uuid}`, `must be the app's uuid ${uuid}`);
  }
}

const CAPABILITY_SETS = ["bounding", "effective", "inheritable", "permitted", "ambient"] as const;

function checkProcess(f: Findings, proc: unknown): void {
  const allowed = ["args", "env", "cwd", "user", "capabilities", "rlimits", "noNewPrivileges", "terminal"];
  if (!f.onlyKeys(proc, "spec.process", allowed)) return;
  if (proc.noNewPrivileges !== true) {
    f.add(
      "spec.process.noNewPrivileges",
      "must be true: without it a setuid file in the task's root could raise a process's privileges",
    );
  }
  if (proc.terminal !== undefined && proc.terminal !== false) {
    f.add("spec.process.terminal", "must be false: a task's output goes to its log");
  }
  f.onlyKeys(proc.user, "spec.process.user", ["uid", "gid", "additionalGids", "umask"]);
  if (proc.capabilities !== undefined) {
    const caps = proc.capabilities;
    if (f.onlyKeys(caps, "spec.process.capabilities", CAPABILITY_SETS)) {
      for (const set of CAPABILITY_SETS) {
        const extra = ((caps[set] ?? []) as string[]).filter((c) => !DEFAULT_CAPABILITIES.includes(c));
        if (extra.length > 0) {
          f.add(
            `spec.process.capabilities.${set}`,
            `${list(extra)} ${extra.length === 1 ? "is" : "are"} not in the default set (${list(DEFAULT_CAPABILITIES)})`,
          );
        }
      }
    }
  }
  const seen = new Set<string>();
  ((proc.rlimits ?? []) as unknown[]).forEach((r, i) => {
    if (!f.onlyKeys(r, `spec.process.rlimits[${i}]`, ["type", "hard", "soft"])) return;
    const type = r.type as string;
    if (!RLIMIT_TYPES.has(type)) f.add(`spec.process.rlimits[${i}].type`, `${type} is not a Linux rlimit`);
    if (seen.has(type)) f.add(`spec.process.rlimits[${i}].type`, `${type} is set twice`);
    seen.add(type);
  });
}

function checkMounts(f: Findings, mounts: unknown, volumePoints: ReadonlySet<string>): void {
  const defaults = new Map(defaultMounts().map((m) => [m.destination, m]));
  const seen = new Set<string>();
  ((mounts ?? []) as unknown[]).forEach((m, i) => {
    const field = `spec.mounts[${i}]`;
    if (!f.onlyKeys(m, field, ["destination", "type", "source", "options"])) return;
    const destination = m.destination as string;
    const at = `${field} (${destination})`;
    if (seen.has(destination)) return f.add(at, "mounted twice");
    seen.add(destination);
    if (volumePoints.has(destination)) {
      // The executor rebuilds it: its source is the checked volume, its options the node's.
      if (m.type !== "bind") f.add(at, "a volume's mount must be of type bind");
      return;
    }
    const standard = defaults.get(destination);
    if (standard === undefined) {
      return f.add(
        at,
        "only the default mounts and the TaskConfig's volumes may be mounted: host paths are the node's to add",
      );
    }
    if (!jsonEqual(m, standard)) {
      f.add(
        at,
        `must be the default ${standard.type} mount with options ${list(standard.options ?? [])}` +
          ` (source ${standard.source})`,
      );
    }
  });
  for (const destination of defaults.keys()) {
    if (!seen.has(destination) && !volumePoints.has(destination)) {
      f.add("spec.mounts", `the default mount ${destination} is missing`);
    }
  }
}

function checkLinux(f: Findings, linux: unknown, uuid: string): void {
  const allowed = ["namespaces", "resources", "cgroupsPath", "maskedPaths", "readonlyPaths"];
  if (!f.onlyKeys(linux, "spec.linux", allowed)) return;
  if (linux.cgroupsPath !== undefined && linux.cgroupsPath !== cgroupsPathFor(uuid)) {
    f.add("spec.linux.cgroupsPath", `is the node's to set (${cgroupsPathFor(uuid)})`);
  }
  checkNamespaces(f, linux.namespaces, uuid);
  const resources = linux.resources;
  if (f.onlyKeys(resources, "spec.linux.resources", ["memory", "cpu", "devices"])) {
    f.onlyKeys(resources.memory, "spec.linux.resources.memory", ["limit"]);
    f.onlyKeys(resources.cpu, "spec.linux.resources.cpu", ["period", "quota"]);
    const denyAll = [{ allow: false, access: "rwm" }];
    if (!jsonEqual(resources.devices ?? null, denyAll)) {
      f.add(
        "spec.linux.resources.devices",
        'must deny every device ([{"allow":false,"access":"rwm"}]): the node allows the devices it adds',
      );
    }
  }
  for (const [key, defaults] of [
    ["maskedPaths", DEFAULT_MASKED_PATHS],
    ["readonlyPaths", DEFAULT_READONLY_PATHS],
  ] as const) {
    const paths = (linux[key] ?? []) as string[];
    const missing = defaults.filter((p) => !paths.includes(p));
    if (missing.length > 0) f.add(`spec.linux.${key}`, `must keep ${list(missing)}`);
  }
}

function checkNamespaces(f: Findings, namespaces: unknown, uuid: string): void {
  const seen = new Set<string>();
  ((namespaces ?? []) as unknown[]).forEach((n, i) => {
    const field = `spec.linux.namespaces[${i}]`;
    if (!f.onlyKeys(n, field, ["type", "path"])) return;
    const type = n.type as string;
    if (!(DEFAULT_NAMESPACES as readonly string[]).includes(type)) {
      return f.add(field, `a ${type} namespace is not allowed (allowed: ${list(DEFAULT_NAMESPACES)})`);
    }
    if (seen.has(type)) return f.add(field, `the ${type} namespace is given twice`);
    seen.add(type);
    if (n.path === undefined) return;
    const own = ownNetnsPath(uuid);
    if (type !== "network" || n.path !== own) {
      f.add(
        `${field}.path`,
        `joins the existing ${type} namespace ${JSON.stringify(n.path)}: a task gets new namespaces` +
          ` (the only one it may join is its own network namespace ${own})`,
      );
    }
  });
  const missing = DEFAULT_NAMESPACES.filter((t) => !seen.has(t));
  if (missing.length > 0) {
    f.add(
      "spec.linux.namespaces",
      `${list(missing)} ${missing.length === 1 ? "is" : "are"} missing: the task would share the host's`,
    );
  }
}

/** The OCI devices and device-cgroup rules that give a task the devices `names`. */
export interface DeviceGrant {
  devices: NodeDevice[];
  rules: { allow: true; type: "c"; major: number; minor: number; access: "rwm" }[];
}

/**
 * The devices `names` (declared by a runtime, or `kvm` for a VM under KVM) as spec entries, when
 * the node allows each.
 *
 * @throws PolicyError naming `field` for a device the node does not allow or does not know.
 */
export function grantDevices(
  names: readonly string[],
  policy: NodePolicy,
  field: string,
  uuid?: string,
): DeviceGrant {
  const allowed: DeviceName[] = [];
  const violations: PolicyViolation[] = [];
  for (const name of names) {
    if (!isDeviceName(name)) {
      violations.push({
        field,
        message: `unknown device ${name} (known: ${list(Object.keys(NODE_DEVICES))})`,
      });
      continue;
    }
    if (!policy.devices.includes(name)) {
      violations.push({
        field,
        message: `${NODE_DEVICES[name].path} is not allowed on this node (EVE_ALLOW_DEVICES: ${list(policy.devices) || "none"})`,
      });
      continue;
    }
    allowed.push(name);
  }
  if (violations.length > 0) throw new PolicyError(violations, uuid);
  return deviceGrant(allowed);
}

/**
 * The spec entries of the devices `names`, unchecked: for the node's own tasks (the KVM probe),
 * whose devices no TaskConfig asked for. Tasks of TaskConfigs go through {@link grantDevices}.
 */
export function deviceGrant(names: readonly DeviceName[]): DeviceGrant {
  const grant: DeviceGrant = { devices: [], rules: [] };
  for (const name of names) {
    const d = NODE_DEVICES[name];
    grant.devices.push({ ...d });
    grant.rules.push({ allow: true, type: d.type, major: d.major, minor: d.minor, access: "rwm" });
  }
  return grant;
}
