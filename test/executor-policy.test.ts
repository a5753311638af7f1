// From the attacker's side: someone who can write the spec-builder bucket writes TaskConfigs that
// would reach the host (a prestart hook, a bind of a host directory, the host's namespaces, more
// capabilities, devices...). The real task-executor, on a node with EVE_ALLOW_HOST_ROOT=false,
// must refuse each with FAILED naming the field, create nothing in containerd, and never stop a
// task that runs on an earlier good config.
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { AppInstanceConfigInput, ReadyTaskConfig } from "@eve-tasks/schemas";
import { makeRootfs, tempDir, uuidMaker } from "./harness/index.js";
import { startExecutorNode, withSpec } from "./executor-node.js";
import type { ExecutorNode } from "./executor-node.js";

const newUuid = uuidMaker("e0110000");

/** Loosely typed views of spec parts an attacker edits. */
type Caps = Record<string, string[]>;
type Ns = { type: string; path?: string }[];
type Mounts = { destination: string; type?: string; source?: string; options?: string[] }[];

describe("the node policy, against TaskConfigs written by an attacker", () => {
  let node: ExecutorNode;
  let rootfs: string;
  let data: string;
  /** A host directory outside every volume root: what the attacks try to reach. */
  let host: string;

  beforeAll(async () => {
    const dir = await tempDir("policy-");
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "app", "rootfs");
    data = join(volumes, "app", "data");
    host = join(dir, "host");
    await mkdir(data, { recursive: true });
    await mkdir(host, { recursive: true });
    await makeRootfs(rootfs);
    await mkdir(join(rootfs, "host"));
    node = await startExecutorNode(dir, { EVE_ALLOW_HOST_ROOT: "false" });
  }, 90_000);

  /** An app as a user would publish it: a busybox root, a data volume, a shell that waits. */
  function app(uuid: string, over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "attacked",
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: false } },
      volumes: [{ path: data, mountPoint: "/data", readOnly: false }],
      process: {
        args: ["/bin/sh", "-c", `trap 'exit 0' TERM; touch /host/escaped-${uuid}; sleep 3600 & wait`],
      },
      stopTimeoutMs: 2000,
      ...over,
    } as AppInstanceConfigInput;
  }

  const hostSide = (uuid: string) => join(host, `escaped-${uuid}`);

  it.each<[string, (uuid: string, good: ReadyTaskConfig) => ReadyTaskConfig, string]>([
    [
      "a prestart hook, which would run on the host as root",
      (uuid, good) =>
        withSpec(good, (s) => {
          s.hooks = { prestart: [{ path: "/bin/sh", args: ["sh", "-c", `touch ${hostSide(uuid)}`] }] };
        }),
      "spec.hooks: hooks run on the host as root: never allowed",
    ],
    [
      "a createRuntime hook",
      (uuid, good) =>
        withSpec(good, (s) => {
          s.hooks = { createRuntime: [{ path: "/bin/sh", args: ["sh", "-c", `touch ${hostSide(uuid)}`] }] };
        }),
      "spec.hooks: hooks run on the host as root",
    ],
    [
      "a read-write bind of a host directory",
      (_uuid, good) =>
        withSpec(good, (s) => {
          (s.mounts as Mounts).push({
            destination: "/host",
            type: "bind",
            source: host,
            options: ["rbind", "rw"],
          });
        }),
      "spec.mounts[7] (/host): only the default mounts and the TaskConfig's volumes may be mounted",
    ],
    [
      "a volume's mount pointed at a host directory",
      (_uuid, good) =>
        withSpec(good, (s) => {
          const m = (s.mounts as Mounts).find((x) => x.destination === "/data")!;
          m.type = "tmpfs";
        }),
      "spec.mounts[6] (/data): a volume's mount must be of type bind",
    ],
    [
      "CAP_SYS_ADMIN",
      (_uuid, good) =>
        withSpec(good, (s) => {
          for (const set of ["bounding", "effective", "permitted"]) {
            (s.process.capabilities as Caps)[set]!.push("CAP_SYS_ADMIN");
          }
        }),
      "spec.process.capabilities.bounding: CAP_SYS_ADMIN is not in the default set",
    ],
    [
      "ambient capabilities",
      (_uuid, good) =>
        withSpec(good, (s) => {
          (s.process.capabilities as Caps).ambient = ["CAP_SYS_PTRACE"];
        }),
      "spec.process.capabilities.ambient: CAP_SYS_PTRACE is not in the default set",
    ],
    [
      "the host's network namespace (a namespace left out)",
      (_uuid, good) =>
        withSpec(good, (s) => {
          s.linux.namespaces = s.linux.namespaces!.filter((n) => n.type !== "network");
        }),
      "spec.linux.namespaces: network is missing: the task would share the host's",
    ],
    [
      "the host's IPC namespace by path",
      (_uuid, good) =>
        withSpec(good, (s) => {
          (s.linux.namespaces as Ns).find((n) => n.type === "ipc")!.path = "/proc/1/ns/ipc";
        }),
      'spec.linux.namespaces[1].path: joins the existing ipc namespace "/proc/1/ns/ipc"',
    ],
    [
      "a host block device",
      (_uuid, good) =>
        withSpec(good, (s) => {
          s.linux = {
            ...s.linux,
            devices: [{ path: "/dev/hostdisk", type: "b", major: 8, minor: 0 }],
            resources: { ...s.linux.resources, devices: [{ allow: true, access: "rwm" }] },
          };
        }),
      "spec.linux.devices: devices are added by the node only",
    ],
    [
      "noNewPrivileges off",
      (_uuid, good) => withSpec(good, (s) => void (s.process.noNewPrivileges = false)),
      "spec.process.noNewPrivileges: must be true",
    ],
    [
      "an unconfined AppArmor profile and a negative OOM score",
      (_uuid, good) =>
        withSpec(good, (s) => {
          s.process.apparmorProfile = "unconfined";
          s.process.oomScoreAdj = -1000;
        }),
      "spec.process.apparmorProfile: the AppArmor profile is the node's to choose; spec.process.oomScoreAdj",
    ],
    [
      "a sysctl and a seccomp notify socket",
      (_uuid, good) =>
        withSpec(good, (s) => {
          s.linux = {
            ...s.linux,
            sysctl: { "net.ipv4.ip_forward": "1" },
            seccomp: { defaultAction: "SCMP_ACT_ALLOW" },
          };
        }),
      "spec.linux.sysctl: sysctls are not allowed; spec.linux.seccomp",
    ],
    [
      "shared rootfs propagation",
      (_uuid, good) => withSpec(good, (s) => void (s.linux = { ...s.linux, rootfsPropagation: "rshared" })),
      "spec.linux.rootfsPropagation: the task's mounts would propagate to or from the host",
    ],
    [
      "/proc/kcore unmasked and /proc/sys writable",
      (_uuid, good) =>
        withSpec(good, (s) => void (s.linux = { ...s.linux, maskedPaths: [], readonlyPaths: [] })),
      "spec.linux.maskedPaths: must keep /proc/acpi",
    ],
    [
      "a cgroup of its own choosing",
      (_uuid, good) => withSpec(good, (s) => void (s.linux = { ...s.linux, cgroupsPath: "/eve-attacker" })),
      "spec.linux.cgroupsPath: is the node's to set",
    ],
    [
      "the host's / as its root, on a node that does not allow it",
      (uuid, good) => ({
        ...good,
        rootfs: { kind: "host", readOnly: true },
        configRevision: good.configRevision + 1,
      }),
      "rootfs: the host's root filesystem as a task's root is not allowed on this node (EVE_ALLOW_HOST_ROOT is off)",
    ],
  ])("refuses %s: FAILED naming the field, nothing created", async (_name, attack, message) => {
    const uuid = newUuid();
    const good = node.build(app(uuid), 1);
    await node.put(attack(uuid, good));
    const s = await node.settled(uuid);
    expect(s.state).toBe("FAILED");
    expect(s.taskId).toBe(0);
    expect(s.error?.source).toBe("task-executor");
    expect(s.error?.message).toContain(message);
    expect(s.error?.message).toMatch(/^refused by this node's policy: /);
    expect(await node.hasContainer(uuid)).toBe(false);
    expect(existsSync(hostSide(uuid))).toBe(false);
  });

  it("keeps a task running on its good config when an attacker's revision comes, and takes a good one after", async () => {
    const uuid = newUuid();
    const good = node.build(
      app(uuid, { process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo up; sleep 3600 & wait"] } }),
      1,
    );
    await node.put(good);
    const running = await node.settled(uuid);
    expect(running.state).toBe("RUNNING");
    const pid = running.taskId;
    const bad = withSpec(good, (s) => {
      s.hooks = { prestart: [{ path: "/bin/sh", args: ["sh", "-c", `touch ${hostSide(uuid)}`] }] };
    });
    await node.put(bad);
    const refused = await node.until(uuid, (s) => s.error !== null, "no error for the bad revision");
    expect(refused.state).toBe("RUNNING");
    expect(refused.taskId).toBe(pid);
    expect(refused.error?.configRevision).toBe(bad.configRevision);
    expect(refused.error?.message).toMatch(/^refused by this node's policy: spec\.hooks/);
    expect((await node.containerd.tasks.get(uuid)).pid).toBe(pid);
    expect(existsSync(hostSide(uuid))).toBe(false);
    // A later good revision (a changed spec) replaces the task and clears the error.
    const better = withSpec(good, (s) => void (s.hostname = "better"), bad.configRevision + 1);
    await node.put(better);
    const replaced = await node.until(
      uuid,
      (s) => s.state === "RUNNING" && s.configRevision === better.configRevision,
      "never RUNNING on the good revision",
    );
    expect(replaced.error).toBeNull();
    expect(replaced.taskId).not.toBe(pid);
  });

  it("runs what the spec-builder builds, output going to the task's log", async () => {
    const uuid = newUuid();
    const good = node.build(
      app(uuid, {
        process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo policy-ok; sleep 3600 & wait"] },
      }),
      1,
    );
    await node.put(good);
    const s = await node.settled(uuid);
    expect(s.state).toBe("RUNNING");
    await expect
      .poll(() => readFile(s.logPath, "utf8").catch(() => ""), { timeout: 10_000 })
      .toContain("policy-ok");
  });
});
