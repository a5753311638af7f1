/** Options for the container's process: what it runs, where, as whom, with which environment. */
import { checkAbsolutePath, MAX_ID } from "./checks.js";
import { SpecOptionError } from "./errors.js";
import type { SpecOpt } from "./build.js";

/**
 * Sets the program and its arguments (containerd's `oci.WithProcessArgs`). `args[0]` is the
 * program: an absolute path, or a name looked up in the process's `PATH` by the runtime.
 *
 * @throws {SpecOptionError} when `args` is empty or holds a non-string or a NUL byte.
 */
export function withArgs(args: readonly string[]): SpecOpt {
  if (args.length === 0) {
    throw new SpecOptionError("withArgs", args, "needs at least the program to run");
  }
  args.forEach((arg: unknown, i) => {
    if (typeof arg !== "string") {
      throw new SpecOptionError("withArgs", args, `argument ${i} must be a string; got ${typeof arg}`);
    }
    if (arg.includes("\0")) throw new SpecOptionError("withArgs", args, `argument ${i} contains a NUL byte`);
  });
  if (args[0] === "")
    throw new SpecOptionError("withArgs", args, "the program (argument 0) must not be empty");
  const copy = [...args];
  return (spec) => {
    spec.process.args = [...copy];
  };
}

/**
 * Merges environment variables over the spec's (containerd's `oci.WithEnv`): a variable already
 * set is replaced in place, a new one is appended. The default `PATH` stays unless `env` sets
 * `PATH` itself.
 *
 * @throws {SpecOptionError} for a name that is empty or holds `=` or NUL, or a value holding NUL.
 */
export function withEnv(env: Readonly<Record<string, string>>): SpecOpt {
  const entries = Object.entries(env);
  for (const [name, value] of entries) {
    if (name === "" || name.includes("=") || name.includes("\0")) {
      throw new SpecOptionError(
        "withEnv",
        name,
        `environment variable name ${JSON.stringify(name)} must be non-empty and contain neither '=' nor NUL`,
      );
    }
    if (typeof value !== "string" || value.includes("\0")) {
      throw new SpecOptionError("withEnv", value, `the value of ${name} must be a string without NUL bytes`);
    }
  }
  return (spec) => {
    const env = [...spec.process.env];
    for (const [name, value] of entries) {
      const entry = `${name}=${value}`;
      const at = env.findIndex((e) => e.slice(0, e.indexOf("=")) === name);
      if (at >= 0) env[at] = entry;
      else env.push(entry);
    }
    spec.process.env = env;
  };
}

/**
 * Sets the working directory inside the container (containerd's `oci.WithProcessCwd`).
 *
 * @throws {SpecOptionError} unless `cwd` is an absolute path.
 */
export function withCwd(cwd: string): SpecOpt {
  checkAbsolutePath("withCwd", "the working directory", cwd);
  return (spec) => {
    spec.process.cwd = cwd;
  };
}

/** A numeric user: `uid` and `gid` from 0 to 4294967295. */
export interface NumericUser {
  uid: number;
  gid: number;
}

/**
 * Parses `uid` or `uid:gid` (decimal). A missing group is 0, as containerd does when the rootfs
 * has no passwd entry for the uid.
 *
 * @throws {SpecOptionError} for names (`nobody`, `1000:staff`): resolving a name needs the root
 *   filesystem's /etc/passwd and /etc/group, which a node-independent spec builder never reads.
 */
export function parseNumericUser(user: string): NumericUser {
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (m === null) {
    const named = /^[^:\s]+(?::[^:\s]+)?$/.test(user);
    throw new SpecOptionError(
      "withUser",
      user,
      named
        ? `user ${JSON.stringify(user)} uses a name; names can only be resolved from the root filesystem's ` +
            `/etc/passwd and /etc/group, which the spec is built without: give numeric IDs such as "65534:65534"`
        : `user ${JSON.stringify(user)} must be "uid" or "uid:gid" in decimal, such as "1000:1000"`,
    );
  }
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? 0 : Number(m[2]);
  for (const [what, id] of [
    ["uid", uid],
    ["gid", gid],
  ] as const) {
    if (id > MAX_ID) {
      throw new SpecOptionError("withUser", user, `${what} ${id} is out of range: must be 0 to ${MAX_ID}`);
    }
  }
  return { uid, gid };
}

/**
 * Sets the user and group the process runs as, from `"uid"`, `"uid:gid"` or a {@link NumericUser}
 * (containerd's `oci.WithUserID` / `oci.WithUIDGID`). Supplementary groups are cleared.
 *
 * @throws {SpecOptionError} for user or group names (see {@link parseNumericUser}) and IDs out of
 *   the uint32 range.
 */
export function withUser(user: string | NumericUser): SpecOpt {
  let ids: NumericUser;
  if (typeof user === "string") {
    ids = parseNumericUser(user);
  } else {
    for (const id of [user.uid, user.gid]) {
      if (!Number.isSafeInteger(id) || id < 0 || id > MAX_ID) {
        throw new SpecOptionError("withUser", user, `IDs must be whole numbers from 0 to ${MAX_ID}`);
      }
    }
    ids = { uid: user.uid, gid: user.gid };
  }
  return (spec) => {
    spec.process.user = { ...spec.process.user, uid: ids.uid, gid: ids.gid };
    delete spec.process.user.additionalGids;
  };
}
