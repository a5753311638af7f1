// The node's policy over TaskConfigs: what the real spec-builder builds passes untouched, and
// each way an attacker who can write the spec-builder bucket could reach the host is refused,
// naming the field.
import { describe, expect, it } from "vitest";
import {
  PolicyError,
  enforcePolicy,
  grantDevices,
  ownNetnsPath,
  policyViolations,
} from "@eve-tasks/executor";
import type { NodePolicy } from "@eve-tasks/executor";
import {
  AppInstanceConfigSchema,
  HypervisorSeedSchema,
  ImageSeedSchema,
  specSha256,
} from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, OciSpec, ReadyTaskConfig } from "@eve-tasks/schemas";
import { buildTaskConfig } from "../../../services/spec-builder/src/build-task-config.js";
import type { BuildContext } from "../../../services/spec-builder/src/outcome.js";

const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
const ctx: BuildContext = { key: UUID, revision: 7, time: new Date("2024-05-01T12:00:00.000Z") };
const POLICY: NodePolicy = { allowHostRoot: true, devices: ["kvm", "tun"] };
const DIGEST = `sha256:${"a".repeat(64)}`;

/** What the spec-builder publishes for `app` (READY), with the seeds it needs. */
function built(over: Partial<AppInstanceConfigInput> = {}): ReadyTaskConfig {
  const app = AppInstanceConfigSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    version: "1",
    displayName: "t",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { volume: { path: "/var/lib/eve/volumes/t/rootfs", readOnly: true } },
    volumes: [
      { path: "/var/lib/eve/volumes/t/data", mountPoint: "/data", readOnly: false },
      // A volume where a default mount is: it replaces it.
      { path: "/var/lib/eve/volumes/t/shm", mountPoint: "/dev/shm", readOnly: false },
    ],
    process: { args: ["/bin/sh"], user: "1000:1000" },
    ...over,
  });
  const seed = {
    schemaVersion: 1,
    state: "READY",
    ref: "registry.example:5000/app:1",
    digest: DIGEST,
    indexDigest: null,
    platform: "linux/amd64",
    rootfsPath: "/var/lib/eve-tasks/seeds/x/rootfs",
    process: { args: ["/eve/loader"], env: { PATH: "/usr/bin:/bin" }, cwd: "/", user: "" },
    // The built-in runtime "default"'s labels (a VM is the short form of a runtime task).
    labels: {
      "org.lfedge.eve-tasks.runtime": "1",
      "org.lfedge.eve-tasks.stop": "qmp",
      "org.lfedge.eve-tasks.tax": '{"baseMiB":370,"perVcpuMiB":3,"perGuestMiB":0.025}',
      "org.lfedge.eve-tasks.devices": '["kvm","tun"]',
    },
    stopSignal: null,
    progress: null,
    error: null,
  };
  const outcome = buildTaskConfig(app, {
    ...ctx,
    imageSeed: ImageSeedSchema.parse(seed),
    toolsSeed: HypervisorSeedSchema.parse(seed),
  });
  if (outcome.status !== "READY") throw new Error(`expected READY, got ${JSON.stringify(outcome)}`);
  return outcome.taskConfig;
}

/** A built spec as an attacker edits it: every part the spec-builder writes is there. */
type Full<T> = T extends (infer U)[]
  ? Full<U>[]
  : T extends object
    ? { -readonly [K in keyof T]-?: Full<NonNullable<T[K]>> }
    : T;
type Spec = Full<OciSpec>;

/** `config` with its spec changed by `attack` (a deep copy; specSha256 recomputed). */
function attacked(attack: (spec: Spec) => void, config = built()): ReadyTaskConfig {
  const spec = structuredClone(config.spec) as Spec;
  attack(spec);
  return { ...config, spec, specSha256: specSha256(spec) };
}

const fields = (c: ReadyTaskConfig, policy = POLICY) => policyViolations(c, policy).map((v) => v.field);

describe("the node policy", () => {
  it("lets through everything the spec-builder builds: volume, host and image roots, VMs", () => {
    expect(policyViolations(built(), POLICY)).toEqual([]);
    expect(policyViolations(built({ root: { host: { readOnly: true } }, volumes: [] }), POLICY)).toEqual([]);
    expect(
      policyViolations(built({ root: { image: { ref: "registry.example:5000/app:1" } } }), POLICY),
    ).toEqual([]);
    const vm = built({
      virtualization: "HVM",
      root: undefined,
      process: undefined,
      resources: { memoryMiB: 128, vcpus: 2 },
      vm: {
        kernel: "/var/lib/eve/volumes/vm/vmlinuz",
        initrd: "/var/lib/eve/volumes/vm/initrd",
        cmdline: "console=ttyS0",
        disks: [{ path: "/var/lib/eve/volumes/vm/disk.qcow2", format: "qcow2", readOnly: false }],
      },
      volumes: [],
    });
    expect(vm.virtualization).toBe("HVM");
    expect(policyViolations(vm, POLICY)).toEqual([]);
    expect(() => enforcePolicy(built(), POLICY)).not.toThrow();
  });

  it.each<[string, (s: Spec) => void, string[]]>([
    [
      "a capability outside the default set",
      (s) => s.process.capabilities.bounding.push("CAP_SYS_ADMIN"),
      ["spec.process.capabilities.bounding"],
    ],
    [
      "capabilities in every set, ambient and inheritable too",
      (s) => {
        for (const set of ["effective", "permitted", "inheritable", "ambient"]) {
          s.process.capabilities[set] = ["CAP_SYS_MODULE", "CAP_CHOWN"];
        }
      },
      [
        "spec.process.capabilities.effective",
        "spec.process.capabilities.inheritable",
        "spec.process.capabilities.permitted",
        "spec.process.capabilities.ambient",
      ],
    ],
    ["noNewPrivileges off", (s) => (s.process.noNewPrivileges = false), ["spec.process.noNewPrivileges"]],
    [
      "noNewPrivileges absent",
      (s) => Reflect.deleteProperty(s.process, "noNewPrivileges"),
      ["spec.process.noNewPrivileges"],
    ],
    [
      "an AppArmor profile",
      (s) => (s.process.apparmorProfile = "unconfined"),
      ["spec.process.apparmorProfile"],
    ],
    [
      "an SELinux label",
      (s) => (s.process.selinuxLabel = "system_u:system_r:spc_t:s0"),
      ["spec.process.selinuxLabel"],
    ],
    ["an OOM score", (s) => (s.process.oomScoreAdj = -1000), ["spec.process.oomScoreAdj"]],
    [
      "a realtime scheduler",
      (s) => (s.process.scheduler = { policy: "SCHED_FIFO", priority: 99 }),
      ["spec.process.scheduler"],
    ],
    ["a terminal", (s) => (s.process.terminal = true), ["spec.process.terminal"]],
    [
      "an unknown rlimit",
      (s) => s.process.rlimits.push({ type: "RLIMIT_BOGUS", hard: 1, soft: 1 }),
      ["spec.process.rlimits[1].type"],
    ],
    [
      "a missing namespace (the host's network)",
      (s) => (s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== "network")),
      ["spec.linux.namespaces"],
    ],
    ["no namespaces at all", (s) => Reflect.deleteProperty(s.linux, "namespaces"), ["spec.linux.namespaces"]],
    [
      "the host's network namespace by path",
      (s) => (s.linux.namespaces.find((n) => n.type === "network")!.path = "/proc/1/ns/net"),
      ["spec.linux.namespaces[4].path"],
    ],
    [
      "another app's network namespace",
      (s) => (s.linux.namespaces[4]!.path = ownNetnsPath("0b0e0000-0000-4000-8000-000000000001")),
      ["spec.linux.namespaces[4].path"],
    ],
    [
      "a pid namespace by path",
      (s) => (s.linux.namespaces[0]!.path = "/proc/1/ns/pid"),
      ["spec.linux.namespaces[0].path"],
    ],
    [
      "a user namespace with mappings",
      (s) => {
        s.linux.namespaces.push({ type: "user" } as Spec["linux"]["namespaces"][number]);
        s.linux.uidMappings = [{ containerID: 0, hostID: 0, size: 1 }];
      },
      ["spec.linux.uidMappings", "spec.linux.namespaces[5]"],
    ],
    [
      "a device",
      (s) => (s.linux.devices = [{ path: "/dev/sda", type: "b", major: 8, minor: 0 }]),
      ["spec.linux.devices"],
    ],
    [
      "a device rule allowing everything",
      (s) => (s.linux.resources.devices = [{ allow: true, access: "rwm" }]),
      ["spec.linux.resources.devices"],
    ],
    [
      "a bind mount of the host's /",
      (s) => s.mounts.push({ destination: "/host", type: "bind", source: "/", options: ["rbind", "rw"] }),
      ["spec.mounts[7] (/host)"],
    ],
    [
      "a volume's mount that is not a bind",
      (s) => (s.mounts.find((m) => m.destination === "/data")!.type = "proc"),
      ["spec.mounts[6] (/data)"],
    ],
    [
      "/sys read-write",
      (s) => (s.mounts.find((m) => m.destination === "/sys")!.options = ["rw"]),
      ["spec.mounts[5] (/sys)"],
    ],
    ["/proc without nosuid", (s) => (s.mounts[0]!.options = ["rw"]), ["spec.mounts[0] (/proc)"]],
    [
      "rshared propagation on a default mount",
      (s) => s.mounts[1]!.options.push("rshared"),
      ["spec.mounts[1] (/dev)"],
    ],
    ["rootfs propagation", (s) => (s.linux.rootfsPropagation = "shared"), ["spec.linux.rootfsPropagation"]],
    ["a missing default mount", (s) => s.mounts.splice(0, 1), ["spec.mounts"]],
    ["a sysctl", (s) => (s.linux.sysctl = { "kernel.core_pattern": "|/tmp/x" }), ["spec.linux.sysctl"]],
    [
      "a seccomp profile",
      (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", listenerPath: "/x" }),
      ["spec.linux.seccomp"],
    ],
    [
      "a prestart hook (runs on the host)",
      (s) => (s.hooks = { prestart: [{ path: "/bin/sh" }] }),
      ["spec.hooks"],
    ],
    ["a createRuntime hook", (s) => (s.hooks = { createRuntime: [{ path: "/bin/sh" }] }), ["spec.hooks"]],
    ["a root path of /", (s) => (s.root.path = "/"), ["spec.root.path"]],
    ["the host's cgroup", (s) => (s.linux.cgroupsPath = "/"), ["spec.linux.cgroupsPath"]],
    ["masked paths removed", (s) => (s.linux.maskedPaths = ["/proc/kcore"]), ["spec.linux.maskedPaths"]],
    [
      "read-only paths removed",
      (s) => Reflect.deleteProperty(s.linux, "readonlyPaths"),
      ["spec.linux.readonlyPaths"],
    ],
    [
      "an annotation a shim acts on",
      (s) => (s.annotations["io.containerd.runc.v2.group"] = "x"),
      ["spec.annotations.io.containerd.runc.v2.group"],
    ],
    [
      "another app's uuid annotation",
      (s) => (s.annotations["org.lfedge.eve-tasks.uuid"] = "x"),
      ["spec.annotations.org.lfedge.eve-tasks.uuid"],
    ],
    [
      "swap beyond the memory limit",
      (s) => (s.linux.resources.memory.swap = -1),
      ["spec.linux.resources.memory.swap"],
    ],
    ["a cpuset", (s) => (s.linux.resources.cpu.cpus = "0"), ["spec.linux.resources.cpu.cpus"]],
    [
      "cgroup files",
      (s) => (s.linux.resources.unified = { "memory.max": "max" }),
      ["spec.linux.resources.unified"],
    ],
    ["an unknown top-level key", (s) => (s.vm = { hypervisor: { path: "/bin/sh" } }), ["spec.vm"]],
  ])("refuses %s", (_name, attack, expected) => {
    const config = attacked(attack);
    expect(fields(config)).toEqual(expected);
    expect(() => enforcePolicy(config, POLICY)).toThrow(PolicyError);
  });

  it("allows the app's own network namespace, the executor's to make (DESIGN Networks)", () => {
    const own = attacked((s) => (s.linux.namespaces[4]!.path = ownNetnsPath(UUID)));
    expect(own.spec.linux.namespaces?.[4]).toEqual({ type: "network", path: `/run/netns/eve-${UUID}` });
    expect(policyViolations(own, POLICY)).toEqual([]);
  });

  it("allows more masked and read-only paths, fewer capabilities, and the default cgroup path", () => {
    const tighter = attacked((s) => {
      s.linux.maskedPaths.push("/proc/cpuinfo");
      s.linux.readonlyPaths.push("/proc/meminfo");
      s.process.capabilities.bounding = ["CAP_KILL"];
      s.linux.cgroupsPath = `/eve-user-apps/${UUID}`;
    });
    expect(policyViolations(tighter, POLICY)).toEqual([]);
  });

  it("refuses the host root unless the node allows it, and volumes at / or twice", () => {
    const host = built({ root: { host: { readOnly: true } }, volumes: [] });
    expect(fields(host, { ...POLICY, allowHostRoot: false })).toEqual(["rootfs"]);
    const twice = built();
    const volumes = [...twice.volumes, { ...twice.volumes[0]!, path: "/var/lib/eve/volumes/t/other" }];
    expect(fields({ ...twice, volumes })).toEqual(["volumes[2].mountPoint"]);
    const root = { ...twice, volumes: [{ path: "/var/lib/eve/volumes/t", mountPoint: "/", readOnly: true }] };
    expect(fields(root)).toContain("volumes[0].mountPoint");
  });

  it("says every field in one message, at most five, and counts the rest", () => {
    const many = attacked((s) => {
      s.hooks = {};
      s.linux.sysctl = {};
      s.linux.seccomp = {};
      s.linux.devices = [];
      s.process.oomScoreAdj = 1;
      s.process.apparmorProfile = "x";
      s.process.noNewPrivileges = false;
    });
    const err = (() => {
      try {
        enforcePolicy(many, POLICY);
      } catch (e) {
        return e as PolicyError;
      }
      throw new Error("not refused");
    })();
    expect(err.violations).toHaveLength(7);
    expect(err.uuid).toBe(UUID);
    expect(err.message).toMatch(/^refused by this node's policy: spec\.hooks: hooks run on the host as root/);
    expect(err.message).toMatch(/; and 2 more$/);
  });

  it("grants only devices the node allows", () => {
    expect(grantDevices(["kvm"], POLICY, "vm.accel")).toEqual({
      devices: [{ path: "/dev/kvm", type: "c", major: 10, minor: 232, fileMode: 0o660, uid: 0, gid: 0 }],
      rules: [{ allow: true, type: "c", major: 10, minor: 232, access: "rwm" }],
    });
    expect(() => grantDevices(["tun"], { ...POLICY, devices: ["kvm"] }, "runtime.devices")).toThrow(
      "refused by this node's policy: runtime.devices: /dev/net/tun is not allowed on this node (EVE_ALLOW_DEVICES: kvm)",
    );
    expect(() => grantDevices(["sda"], POLICY, "runtime.devices")).toThrow(
      /unknown device sda \(known: kvm, tun\)/,
    );
  });
});
