import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  NodeFactError,
  PolicyError,
  clampRlimits,
  parseLimits,
  prepareTask,
  resolveUnderRoots,
  stagingPath,
  taskLogUri,
} from "@eve-tasks/executor";
import type { NodeFacts } from "@eve-tasks/executor";
import {
  buildSpec,
  defaultMounts,
  toTaskSpec,
  withArgs,
  withBindMount,
  withCpus,
  withMemoryLimitBytes,
} from "@eve-tasks/oci-spec";
import { specSha256 } from "@eve-tasks/schemas";
import type { OciSpec, ReadyTaskConfig } from "@eve-tasks/schemas";
import { deepFreeze } from "./deep-freeze.js";

const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";

/** A spec as the spec-builder builds it, with an rlimit over what the test's host grants. */
function spec(): OciSpec {
  const s = toTaskSpec(
    buildSpec(
      withArgs(["/bin/sh"]),
      withMemoryLimitBytes(64 * 2 ** 20),
      withCpus(1),
      withBindMount({ source: "/placeholder", destination: "/data" }),
    ),
  );
  return {
    ...s,
    process: { ...s.process, rlimits: [{ type: "RLIMIT_NOFILE", hard: 1 << 20, soft: 1 << 20 }] },
  };
}

describe("prepareTask: node facts applied to a TaskConfig", () => {
  let dir: string;
  let facts: NodeFacts;
  let config: (over?: Partial<ReadyTaskConfig>) => ReadyTaskConfig;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "eve-prepare-"));
    const roots = join(dir, "volumes");
    await mkdir(join(roots, "app", "rootfs"), { recursive: true });
    await mkdir(join(roots, "app", "data"), { recursive: true });
    await mkdir(join(dir, "outside"), { recursive: true });
    await symlink(join(dir, "outside"), join(roots, "escape"));
    await symlink(join(roots, "app", "data"), join(roots, "data-link"));
    await writeFile(join(roots, "a-file"), "x");
    facts = {
      node: "local",
      dataDir: join(dir, "data"),
      runDir: join(dir, "run"),
      volumeRoots: [roots],
      memoryMiB: 1024,
      memoryReserveMiB: 128,
      hardLimits: parseLimits(
        "Limit Soft Hard Units\nMax open files            1024                 4096                 files\n",
      ),
      policy: { allowHostRoot: true, devices: ["kvm", "tun"] },
      taskLog: { loggerPath: "/usr/libexec/eve-task-logger", maxBytes: 2 ** 20, files: 3 },
    };
    config = (over = {}) => {
      // The spec-builder's spec has a bind mount per volume, and no other.
      const points = new Set((over.volumes ?? [{ mountPoint: "/data" }]).map((v) => v.mountPoint));
      const plain = spec();
      const s = over.spec ?? {
        ...plain,
        mounts: plain.mounts?.filter((m) => m.type !== "bind" || points.has(m.destination)),
      };
      return {
        schemaVersion: 1,
        status: "READY",
        uuid: UUID,
        configRevision: 7,
        node: "local",
        version: "1",
        displayName: "t",
        activate: true,
        restartCounter: 0,
        virtualization: "NOHYPER",
        spec: s,
        specSha256: specSha256(s),
        rootfs: { kind: "volume", path: join(roots, "app", "rootfs"), readOnly: false },
        volumes: [{ path: join(roots, "data-link"), mountPoint: "/data", readOnly: true }],
        memoryMiB: 64,
        anchorTaxMiB: 0,
        restartPolicy: {
          mode: "never",
          maxRestarts: 5,
          windowMs: 600000,
          backoffMs: 1000,
          maxBackoffMs: 60000,
        },
        stopTimeoutMs: 10000,
        ...over,
      };
    };
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stages resolved paths and sets cgroupsPath, memory limit and rlimits the host allows", async () => {
    const p = await prepareTask(config(), facts);
    const taskDir = join(dir, "data", "tasks", UUID);
    // What gets mounted is what was checked: the resolved paths (the volume was given through a
    // symlink); the root by the shim, a volume from a staging path under the task's dir.
    expect(p.staged).toEqual([
      {
        what: "root volume",
        source: join(dir, "volumes", "app", "rootfs"),
        via: "shim",
        recursive: false,
        directory: true,
      },
      {
        what: "volume /data",
        source: join(dir, "volumes", "app", "data"),
        via: "staging",
        target: stagingPath(taskDir, "volume-0"),
        recursive: true,
        directory: false,
      },
    ]);
    // The root volume alone (no submounts), like the host root.
    expect(p.rootfs).toEqual([
      { type: "bind", source: join(dir, "volumes", "app", "rootfs"), options: ["bind", "rw"] },
    ]);
    expect(p.spec.root).toEqual({ path: "rootfs", readonly: false });
    // Read-only, nosuid and nodev all the way down.
    expect(p.spec.mounts).toEqual([
      ...defaultMounts(),
      {
        destination: "/data",
        type: "bind",
        source: stagingPath(taskDir, "volume-0"),
        options: ["rbind", "ro", "rro", "nosuid", "nodev", "rnosuid", "rnodev"],
      },
    ]);
    const log = taskLogUri(facts.taskLog, p.logPath);
    expect(p.io).toEqual({ stdout: log, stderr: log });
    expect(p.spec.linux.cgroupsPath).toBe(`/eve-user-apps/${UUID}`);
    expect(p.spec.linux.resources.memory.limit).toBe(64 * 2 ** 20);
    expect(p.memoryLimitBytes).toBe(64 * 2 ** 20);
    expect(p.spec.process.rlimits).toEqual([{ type: "RLIMIT_NOFILE", hard: 4096, soft: 4096 }]);
    expect(p.logPath).toBe(join(dir, "data", "tasks", UUID, "console.log"));
  });

  it("never modifies the TaskConfig it prepares (the executor keeps it as the app's desired state)", async () => {
    const c = deepFreeze(config());
    const before = JSON.stringify(c);
    // A frozen object throws on any write in strict mode (ES modules are strict).
    const p = await prepareTask(c, facts);
    expect(JSON.stringify(c)).toBe(before);
    expect(p.spec.linux.cgroupsPath).toBe(`/eve-user-apps/${UUID}`);
    expect(c.spec.linux.cgroupsPath).toBeUndefined();
  });

  it("mounts the host root read-only, without the host's submounts, where the node allows it", async () => {
    const host = config({ rootfs: { kind: "host", readOnly: true }, volumes: [] });
    const p = await prepareTask(host, facts);
    expect(p.rootfs).toEqual([{ type: "bind", source: "/", options: ["bind", "ro"] }]);
    expect(p.staged).toEqual([]);
    const off = { ...facts, policy: { ...facts.policy, allowHostRoot: false } };
    const err = await prepareTask(host, off).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as Error).message).toBe(
      "refused by this node's policy: rootfs: the host's root filesystem as a task's root is not allowed " +
        "on this node (EVE_ALLOW_HOST_ROOT is off)",
    );
  });

  it("enforces the node's policy before it looks at any host path", async () => {
    const s = spec();
    const bad = {
      ...s,
      process: { ...s.process, capabilities: { bounding: ["CAP_SYS_ADMIN"] } },
      hooks: { prestart: [{ path: "/bin/sh" }] },
    };
    const err = await prepareTask(
      config({
        spec: bad,
        specSha256: specSha256(bad),
        rootfs: { kind: "volume", path: "/nope", readOnly: false },
      }),
      facts,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as Error).message).toBe(
      "refused by this node's policy: spec.hooks: hooks run on the host as root: never allowed; " +
        "spec.process.capabilities.bounding: CAP_SYS_ADMIN is not in the default set " +
        "(CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID, " +
        "CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE)",
    );
  });

  it.each([
    [
      "a root that does not exist",
      { kind: "volume", path: "/nope/rootfs", readOnly: false },
      /root volume \/nope\/rootfs does not exist on this node/,
    ],
    [
      "a root outside the volume roots",
      { kind: "volume", path: "/tmp", readOnly: false },
      /root volume \/tmp is outside EVE_VOLUME_ROOTS; allowed: /,
    ],
    ["a root that is a file", { kind: "volume", path: "FILE", readOnly: false }, /is not a directory/],
  ] as const)("refuses %s", async (_name, rootfs, message) => {
    const r = rootfs.path === "FILE" ? { ...rootfs, path: join(dir, "volumes", "a-file") } : rootfs;
    const err = await prepareTask(config({ rootfs: r }), facts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeFactError);
    expect((err as Error).message).toMatch(message);
  });

  it("refuses a volume whose symlink leads outside the roots, naming where it leads", async () => {
    const link = join(dir, "volumes", "escape");
    const err = await prepareTask(
      config({ volumes: [{ path: link, mountPoint: "/data", readOnly: false }] }),
      facts,
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      `volume /data ${link} is outside EVE_VOLUME_ROOTS (it resolves to ${join(dir, "outside")}); allowed: ${join(dir, "volumes")}`,
    );
  });

  it("refuses more memory than the node has after its reserve", async () => {
    const err = await prepareTask(config({ memoryMiB: 1000 }), facts).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      "needs 1000 MiB of memory but node local has 896 MiB after the 128 MiB reserve",
    );
  });

  it("mounts an image root as an overlay over the seed, with upper and work dirs under the task dir", async () => {
    const seedRoot = join(dir, "data", "seeds", "abc123", "rootfs");
    await mkdir(seedRoot, { recursive: true });
    // The seeds dir reached through a symlink: the lower dir is the resolved path.
    await symlink(join(dir, "data", "seeds"), join(dir, "seeds-link"));
    const taskDir = join(dir, "data", "tasks", UUID);
    const overlays = new Set<string | undefined>();
    for (const rootfsPath of [seedRoot, join(dir, "seeds-link", "abc123", "rootfs")]) {
      const p = await prepareTask(
        config({ rootfs: { kind: "image", seedKey: "local.abc", rootfsPath }, volumes: [] }),
        facts,
      );
      // The upper and work dirs belong to the seed: <taskDir>/overlay/<key of the seed>/.
      const overlay = p.overlayDir ?? "";
      expect(overlay).toMatch(new RegExp(`^${join(taskDir, "overlay")}/[0-9a-f]{16}$`));
      overlays.add(overlay);
      expect(p.rootfs).toEqual([
        {
          type: "overlay",
          source: "overlay",
          options: [
            `lowerdir=${seedRoot}`,
            `upperdir=${join(overlay, "upper")}`,
            `workdir=${join(overlay, "work")}`,
          ],
        },
      ]);
      expect(p.taskDir).toBe(taskDir);
      expect(p.dirs).toEqual([join(overlay, "upper"), join(overlay, "work")]);
      expect(p.spec.root).toEqual({ path: "rootfs", readonly: false });
    }
    // The same seed (by either path) gets the same upper dir; another seed a fresh one.
    expect(overlays.size).toBe(1);
    const other = join(dir, "data", "seeds", "def456", "rootfs");
    await mkdir(other, { recursive: true });
    const q = await prepareTask(
      config({ rootfs: { kind: "image", seedKey: "local.def", rootfsPath: other }, volumes: [] }),
      facts,
    );
    expect(q.overlayDir).toMatch(new RegExp(`^${join(taskDir, "overlay")}/[0-9a-f]{16}$`));
    expect(overlays.has(q.overlayDir)).toBe(false);
    // A tools root (a VM's) is mounted the same way: see vm-task.test.ts.
    // A volume root needs no extra dirs.
    expect((await prepareTask(config(), facts)).dirs).toEqual([]);
    expect((await prepareTask(config(), facts)).overlayDir).toBeUndefined();
  });

  it("refuses a seed root outside <dataDir>/seeds or not on this node", async () => {
    const image = (rootfsPath: string) =>
      config({ rootfs: { kind: "image", seedKey: "local.abc", rootfsPath }, volumes: [] });
    const seeds = join(dir, "data", "seeds");
    await mkdir(join(seeds, "abc123", "rootfs"), { recursive: true });
    await symlink(join(dir, "outside"), join(seeds, "escape"));
    const errOf = (rootfsPath: string) => prepareTask(image(rootfsPath), facts).catch((e: unknown) => e);

    const outside = await errOf(join(dir, "volumes", "app", "rootfs"));
    expect(outside).toBeInstanceOf(NodeFactError);
    expect((outside as Error).message).toBe(
      `the seed's root ${join(dir, "volumes", "app", "rootfs")} is outside ${seeds}: only the node's seeds can be a task's root`,
    );
    const escape = await errOf(join(seeds, "escape"));
    expect((escape as Error).message).toBe(
      `the seed's root ${join(seeds, "escape")} is outside ${seeds} (it resolves to ${join(dir, "outside")}): only the node's seeds can be a task's root`,
    );
    expect(((await errOf(seeds)) as Error).message).toMatch(/is outside/);
    const missing = await errOf(join(seeds, "0000", "rootfs"));
    expect(missing).toBeInstanceOf(NodeFactError);
    expect((missing as Error).message).toMatch(
      new RegExp(`^the seed's root ${join(seeds, "0000", "rootfs")} is not on this node: ENOENT`),
    );
  });
});

describe("host paths and limits", () => {
  it("accepts a root itself and paths below it only", async () => {
    const roots = [await import("node:fs/promises").then((f) => f.realpath(tmpdir()))];
    await expect(resolveUnderRoots(tmpdir(), roots, "x")).resolves.toBe(roots[0]);
    await expect(resolveUnderRoots("relative/path", roots, "root volume")).rejects.toThrow(
      "root volume relative/path is not an absolute path",
    );
  });

  it("parses /proc limits and clamps soft to hard", () => {
    const host = parseLimits(
      "Limit                     Soft Limit           Hard Limit           Units\n" +
        "Max open files            1024                 1048576              files\n" +
        "Max processes             unlimited            unlimited            processes\n",
    );
    expect(host.get("RLIMIT_NOFILE")).toBe(1048576);
    expect(host.get("RLIMIT_NPROC")).toBe(Infinity);
    expect(clampRlimits([{ type: "RLIMIT_NOFILE", hard: 2 ** 21, soft: 2 ** 21 }], host)).toEqual([
      { type: "RLIMIT_NOFILE", hard: 1048576, soft: 1048576 },
    ]);
    expect(clampRlimits([{ type: "RLIMIT_NPROC", hard: 100, soft: 50 }], host)).toEqual([
      { type: "RLIMIT_NPROC", hard: 100, soft: 50 },
    ]);
  });
});
