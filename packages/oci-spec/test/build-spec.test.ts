import { describe, expect, it } from "vitest";
import { specSha256 } from "@eve-tasks/schemas";
import {
  CPU_PERIOD_US,
  DEFAULT_CAPABILITIES,
  DEFAULT_PATH,
  IncompleteSpecError,
  SpecOptionError,
  buildSpec,
  composeOpts,
  defaultSpec,
  toTaskSpec,
  withAnnotations,
  withArgs,
  withBindMount,
  withCpus,
  withCwd,
  withEnv,
  withHostname,
  withMemoryLimitBytes,
  withReadonlyRoot,
  withUser,
} from "@eve-tasks/oci-spec";
import type { RuntimeSpec, SpecOpt } from "@eve-tasks/oci-spec";
import { assertValidOciSpec } from "../../../test/oci-schema.js";

const MiB = 2 ** 20;

/** Every spec a test builds goes through here, so each one is checked against the official schema. */
function build(...opts: SpecOpt[]): RuntimeSpec {
  const spec = buildSpec(...opts);
  assertValidOciSpec(spec);
  return spec;
}

describe("defaultSpec", () => {
  it("is a sane Linux default that validates against the OCI schema", () => {
    const spec = build();
    expect(spec.ociVersion).toBe("1.0.2");
    expect(spec.process).toMatchObject({
      terminal: false,
      user: { uid: 0, gid: 0 },
      cwd: "/",
      env: [`PATH=${DEFAULT_PATH}`],
      noNewPrivileges: true,
      rlimits: [{ type: "RLIMIT_NOFILE", soft: 1024, hard: 1024 }],
    });
    expect(spec.process.capabilities.bounding).toEqual([...DEFAULT_CAPABILITIES]);
    expect(spec.process.capabilities.effective).toEqual([...DEFAULT_CAPABILITIES]);
    expect(spec.process.capabilities.permitted).toEqual([...DEFAULT_CAPABILITIES]);
    expect(spec.process.capabilities.ambient).toBeUndefined();
    expect(spec.root).toEqual({ path: "rootfs", readonly: false });
    expect(spec.mounts.map((m) => m.destination)).toEqual([
      "/proc",
      "/dev",
      "/dev/pts",
      "/dev/shm",
      "/dev/mqueue",
      "/sys",
    ]);
    expect(spec.mounts.find((m) => m.destination === "/sys")?.options).toContain("ro");
    expect(spec.linux.namespaces.map((n) => n.type)).toEqual(["pid", "ipc", "uts", "mount", "network"]);
    expect(spec.linux.resources.devices).toEqual([{ allow: false, access: "rwm" }]);
    expect(spec.linux.maskedPaths).toContain("/proc/kcore");
    expect(spec.linux.readonlyPaths).toContain("/proc/sys");
    expect(spec.linux.cgroupsPath).toBeUndefined();
    expect(spec.hostname).toBeUndefined();
  });

  it("returns a fresh object each time: options never leak into the defaults", () => {
    const a = buildSpec(withEnv({ A: "1" }), withBindMount({ source: "/a", destination: "/a" }));
    a.process.capabilities.bounding?.push("CAP_SYS_ADMIN");
    a.linux.namespaces.pop();
    const b = defaultSpec();
    expect(b.process.env).toEqual([`PATH=${DEFAULT_PATH}`]);
    expect(b.mounts).toHaveLength(6);
    expect(b.process.capabilities.bounding).not.toContain("CAP_SYS_ADMIN");
    expect(b.linux.namespaces).toHaveLength(5);
    expect(specSha256(buildSpec())).toBe(specSha256(defaultSpec()));
  });
});

describe("process options", () => {
  it("withArgs sets the program and arguments, copying them", () => {
    const args = ["/bin/sh", "-c", "echo hi"];
    const spec = build(withArgs(args));
    args.push("changed");
    expect(spec.process.args).toEqual(["/bin/sh", "-c", "echo hi"]);
  });

  it("withArgs refuses an empty list or an empty program", () => {
    expect(() => withArgs([])).toThrow(SpecOptionError);
    expect(() => withArgs([])).toThrow("withArgs: needs at least the program to run");
    expect(() => withArgs([""])).toThrow("the program (argument 0) must not be empty");
    expect(() => withArgs(["/bin/sh", "a\0b"])).toThrow("argument 1 contains a NUL byte");
  });

  it("withEnv merges over the defaults, keeping PATH unless overridden", () => {
    const spec = build(withEnv({ GREETING: "hi", EMPTY: "" }), withEnv({ GREETING: "hello", X: "a=b" }));
    expect(spec.process.env).toEqual([`PATH=${DEFAULT_PATH}`, "GREETING=hello", "EMPTY=", "X=a=b"]);
    const own = build(withEnv({ PATH: "/opt/bin" }));
    expect(own.process.env).toEqual(["PATH=/opt/bin"]);
  });

  it("withEnv refuses bad names and values", () => {
    expect(() => withEnv({ "A=B": "x" })).toThrow(/must be non-empty and contain neither '=' nor NUL/);
    expect(() => withEnv({ "": "x" })).toThrow(SpecOptionError);
    expect(() => withEnv({ A: "x\0" })).toThrow("the value of A must be a string without NUL bytes");
  });

  it("withCwd sets an absolute working directory", () => {
    expect(build(withCwd("/srv/app")).process.cwd).toBe("/srv/app");
    expect(() => withCwd("srv")).toThrow("withCwd: the working directory must be an absolute path");
  });

  it("withUser takes numeric uid[:gid]; a missing group is 0", () => {
    expect(build(withUser("1000:1001")).process.user).toEqual({ uid: 1000, gid: 1001 });
    expect(build(withUser("65534")).process.user).toEqual({ uid: 65534, gid: 0 });
    expect(build(withUser({ uid: 5, gid: 6 })).process.user).toEqual({ uid: 5, gid: 6 });
    expect(build(withUser("4294967295:0")).process.user.uid).toBe(4294967295);
  });

  it("withUser refuses names, saying they need the rootfs", () => {
    for (const name of ["nobody", "nobody:nogroup", "1000:staff", "root:0"]) {
      const err = (() => {
        try {
          withUser(name);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(SpecOptionError);
      expect((err as SpecOptionError).option).toBe("withUser");
      expect((err as Error).message).toContain(`user "${name}" uses a name`);
      expect((err as Error).message).toContain("/etc/passwd");
      expect((err as Error).message).toContain('"65534:65534"');
    }
    expect(() => withUser("4294967296")).toThrow("uid 4294967296 is out of range");
    expect(() => withUser("1 000")).toThrow('must be "uid" or "uid:gid" in decimal');
    expect(() => withUser({ uid: -1, gid: 0 })).toThrow(SpecOptionError);
  });
});

describe("resource options", () => {
  it("withMemoryLimitBytes sets linux.resources.memory.limit", () => {
    expect(build(withMemoryLimitBytes(64 * MiB)).linux.resources.memory).toEqual({ limit: 64 * MiB });
    expect(() => withMemoryLimitBytes(0)).toThrow(SpecOptionError);
    expect(() => withMemoryLimitBytes(1.5)).toThrow("must be a whole number of at least 1");
  });

  it("withCpus sets period 100000 and quota 100000 × vcpus", () => {
    expect(build(withCpus(1)).linux.resources.cpu).toEqual({ period: 100_000, quota: 100_000 });
    expect(build(withCpus(3)).linux.resources.cpu).toEqual({ period: CPU_PERIOD_US, quota: 300_000 });
    expect(build(withCpus(0.5)).linux.resources.cpu).toEqual({ period: CPU_PERIOD_US, quota: 50_000 });
    expect(() => withCpus(0)).toThrow("withCpus: vcpus must be a number of at least 0.01");
    expect(() => withCpus(Number.NaN)).toThrow(SpecOptionError);
  });
});

describe("filesystem options", () => {
  it("withReadonlyRoot makes the root read-only, or read-write again", () => {
    expect(build(withReadonlyRoot()).root).toEqual({ path: "rootfs", readonly: true });
    expect(build(withReadonlyRoot(), withReadonlyRoot(false)).root.readonly).toBe(false);
  });

  it("withBindMount appends an rbind mount with ro or rw", () => {
    const spec = build(
      withBindMount({ source: "/var/lib/eve/volumes/a/data", destination: "/data" }),
      withBindMount({ source: "/var/lib/eve/volumes/a/conf", destination: "/etc/app", readOnly: true }),
    );
    expect(spec.mounts.slice(6)).toEqual([
      { destination: "/data", type: "bind", source: "/var/lib/eve/volumes/a/data", options: ["rbind", "rw"] },
      {
        destination: "/etc/app",
        type: "bind",
        source: "/var/lib/eve/volumes/a/conf",
        options: ["rbind", "ro"],
      },
    ]);
  });

  it("withBindMount replaces a mount at the same destination in place", () => {
    const spec = build(
      withBindMount({ source: "/a", destination: "/data" }),
      withBindMount({ source: "/big-shm", destination: "/dev/shm" }),
      withBindMount({ source: "/b", destination: "/data", readOnly: true }),
    );
    expect(spec.mounts.map((m) => m.destination)).toEqual([
      "/proc",
      "/dev",
      "/dev/pts",
      "/dev/shm",
      "/dev/mqueue",
      "/sys",
      "/data",
    ]);
    expect(spec.mounts[3]).toMatchObject({ type: "bind", source: "/big-shm" });
    expect(spec.mounts[6]).toMatchObject({ source: "/b", options: ["rbind", "ro"] });
  });

  it("withBindMount refuses relative paths and '/'", () => {
    expect(() => withBindMount({ source: "data", destination: "/data" })).toThrow(
      "withBindMount: the source must be an absolute path",
    );
    expect(() => withBindMount({ source: "/data", destination: "data" })).toThrow(
      "the destination must be an absolute path",
    );
    expect(() => withBindMount({ source: "/data", destination: "/" })).toThrow("must not be '/'");
  });
});

describe("identity options", () => {
  it("withHostname sets the hostname", () => {
    const uuid = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
    expect(build(withHostname(uuid)).hostname).toBe(uuid);
    expect(() => withHostname("")).toThrow(SpecOptionError);
    expect(() => withHostname("a".repeat(65))).toThrow("1 to 64 characters");
    expect(() => withHostname("a b")).toThrow(SpecOptionError);
  });

  it("withAnnotations merges annotations", () => {
    const spec = build(withAnnotations({ a: "1", b: "2" }), withAnnotations({ b: "3" }));
    expect(spec.annotations).toEqual({ a: "1", b: "3" });
    expect(() => withAnnotations({ "": "x" })).toThrow("annotation keys must not be empty");
  });
});

describe("composition", () => {
  it("applies options in order; composeOpts groups them", () => {
    const limits = composeOpts(withMemoryLimitBytes(32 * MiB), withCpus(2));
    const spec = build(withArgs(["/bin/true"]), limits, withMemoryLimitBytes(48 * MiB));
    expect(spec.linux.resources).toMatchObject({
      memory: { limit: 48 * MiB },
      cpu: { period: 100_000, quota: 200_000 },
    });
  });

  it("a full task spec validates and passes toTaskSpec", () => {
    const spec = build(
      withArgs(["/bin/sh", "-c", "sleep 1"]),
      withEnv({ GREETING: "hi" }),
      withCwd("/tmp"),
      withUser("1000:1000"),
      withHostname("6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10"),
      withMemoryLimitBytes(64 * MiB),
      withCpus(1),
      withReadonlyRoot(),
      withBindMount({ source: "/var/lib/eve/volumes/a", destination: "/data" }),
      withAnnotations({ "org.lfedge.eve-tasks.uuid": "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10" }),
    );
    const taskSpec = toTaskSpec(spec);
    expect(taskSpec).toEqual(spec);
    expect(specSha256(taskSpec)).toBe(specSha256(spec));
  });

  it("toTaskSpec names what a task spec lacks", () => {
    const err = (() => {
      try {
        toTaskSpec(buildSpec(withCpus(1)));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(IncompleteSpecError);
    expect((err as Error).message).toContain("process.args: must hold at least the program to run");
    expect((err as Error).message).toContain("linux.resources.memory: is required");
  });
});
