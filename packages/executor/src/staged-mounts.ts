/**
 * Mounting exactly the host paths that were checked. A path checked by its string and mounted
 * later by the same string can be swapped in between (a directory replaced by a symlink to `/`),
 * and the runtime would mount what the path names by then. So the executor opens each checked
 * path (`O_PATH|O_NOFOLLOW`), verifies that the opened file is still the checked path, and
 * bind-mounts that open file (`/proc/self/fd/N`) onto a staging path under the task's directory
 * (`<taskDir>/mounts/<name>`, in a `0700` directory only root can reach). The spec and the
 * rootfs mounts name the staging paths; runc and the shim mount those during Tasks.Create, after
 * which the staging mounts are detached: they exist only while a task is being created.
 *
 * Propagation: the staging dir is a private tmpfs of its own, and every staged tree is made
 * private at once, so a staged mount never appears in another mount namespace (the host's `/` is
 * shared under systemd), the task's copies share no peer group with it, and detaching it takes
 * nothing from the task or from the host (an unmount of a shared copy would propagate to its
 * peers: the host's own submounts of a volume).
 *
 * Where it must be called (see the package README):
 * - {@link withStagedMounts} around every Tasks.Create;
 * - {@link sweepStagedMounts} at executor start-up, before any reconcile (a crash between
 *   staging and Tasks.Create leaves them);
 * - `removeTaskDir` (task-dirs.ts) instead of a recursive delete of a task directory.
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import {
  mkdir,
  open,
  readFile,
  readdir,
  readlink,
  realpath,
  rmdir,
  unlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { parseMountinfo } from "@eve-tasks/procfs";
import { NodeFactError } from "./errors.js";
import { isWithin } from "./host-paths.js";

/** `O_PATH` (Linux): an fd that names a file without opening it for I/O. */
const O_PATH = 0o10000000;

/** A checked host path and where it is staged for Tasks.Create. */
export interface StagedMount {
  /** For messages: `root volume`, `volume /data`. */
  readonly what: string;
  /** The host path as it was resolved and checked (realpath, under EVE_VOLUME_ROOTS). */
  readonly source: string;
  /** The staging path the spec (or the rootfs mount) names: `<taskDir>/mounts/<name>`. */
  readonly target: string;
  /** Bind the mounts below `source` too (`rbind`); a root volume is bound alone. */
  readonly recursive: boolean;
  /** The source must be a directory (a root filesystem). */
  readonly directory: boolean;
}

/** The directory of a task's staging paths. */
export function stagingDir(taskDir: string): string {
  return join(taskDir, "mounts");
}

/** The staging path `name` (`root`, `volume-0`, …) of a task. */
export function stagingPath(taskDir: string, name: string): string {
  return join(stagingDir(taskDir), name);
}

/** Runs `command` with `fd` as its fd 3; rejects with its stderr when it fails. */
function run(command: string, args: readonly string[], fd?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: fd === undefined ? ["ignore", "ignore", "pipe"] : ["ignore", "ignore", "pipe", fd],
    });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(" ")}: ${stderr.trim() || `exit code ${String(code)}`}`));
    });
  });
}

/** Options of the tmpfs a task's staging paths live in: tiny, root only, nothing to run. */
const STAGING_TMPFS = "size=64k,nr_inodes=1024,mode=0700,nosuid,nodev,noexec";

/**
 * Mounts a task's staging dir: a private tmpfs of its own, unless it is mounted already. Being
 * a mount, it exists only in this mount namespace: should containerd's shims run in another one,
 * the staging paths do not exist there and Tasks.Create fails, where a plain directory would
 * have been mounted empty into the task.
 */
async function prepareStagingDir(taskDir: string, uuid?: string): Promise<string> {
  const dir = stagingDir(taskDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const real = await realpath(dir);
  if ((await mountsBelow(real)).includes(real)) return dir;
  const args = [
    "-t",
    "tmpfs",
    "-o",
    STAGING_TMPFS,
    "--make-private",
    "--no-canonicalize",
    "eve-staging",
    real,
  ];
  await run("mount", args).catch((err: unknown) => {
    throw new NodeFactError(`cannot prepare the staging dir ${dir}: ${(err as Error).message}`, uuid, {
      cause: err,
    });
  });
  return dir;
}

/**
 * Stages one checked path into its (prepared) staging dir: opens it without following a final
 * symlink, checks that what was
 * opened is a directory or regular file whose path is still `m.source` (the kernel's own path of
 * the open file, so a swap anywhere along the path shows), and bind-mounts the open file at
 * `m.target` (created, `0700` or `0600`). Whatever happens to the path afterwards, the mount is
 * of what was checked.
 *
 * @throws NodeFactError when the path changed since its check or cannot be mounted.
 */
async function stageMount(m: StagedMount, uuid?: string): Promise<void> {
  let fh;
  try {
    fh = await open(m.source, O_PATH | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new NodeFactError(`${m.what} ${m.source} cannot be opened to mount it: ${code}`, uuid, {
      cause: err,
    });
  }
  try {
    const [st, now] = await Promise.all([fh.stat(), readlink(`/proc/self/fd/${fh.fd}`)]);
    if (now !== m.source) {
      throw new NodeFactError(
        `${m.what} ${m.source} changed between its check and its mount (it is now ${now}): not mounted`,
        uuid,
      );
    }
    if (!st.isDirectory() && (m.directory || !st.isFile())) {
      throw new NodeFactError(
        `${m.what} ${m.source} changed between its check and its mount (it is no longer a ` +
          `${m.directory ? "directory" : "directory or regular file"}): not mounted`,
        uuid,
      );
    }
    if (st.isDirectory()) await mkdir(m.target, { mode: 0o700 });
    else await writeFile(m.target, "", { mode: 0o600, flag: "wx" });
    // --no-canonicalize: mount(8) must hand the magic link to the kernel as it is, not the path
    // it resolves to (which would be a path string again).
    await run(
      "mount",
      [
        m.recursive ? "--rbind" : "--bind",
        m.recursive ? "--make-rprivate" : "--make-private",
        "--no-canonicalize",
        "/proc/self/fd/3",
        m.target,
      ],
      fh.fd,
    ).catch((err: unknown) => {
      throw new NodeFactError(`cannot stage ${m.what} ${m.source}: ${(err as Error).message}`, uuid, {
        cause: err,
      });
    });
  } finally {
    await fh.close();
  }
}

/** Mount points at or below `dir` (resolved), deepest first. */
export async function mountsBelow(dir: string): Promise<string[]> {
  const info = parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"));
  const points = info.map((m) => m.mountPoint).filter((p) => isWithin(dir, p));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** `dir` as the kernel names it (mountinfo has resolved paths), or undefined when it is missing. */
export async function resolved(dir: string): Promise<string | undefined> {
  return realpath(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
}

/**
 * Detaches every mount at or below `dir` (lazily: a busy mount goes once unused).
 *
 * @returns the mount points it detached.
 * @throws NodeFactError naming what could not be detached.
 */
export async function detachAll(dir: string): Promise<string[]> {
  const points = await mountsBelow(dir);
  for (const point of points) {
    await run("umount", ["--lazy", "--no-canonicalize", point]).catch(() => undefined);
  }
  const left = await mountsBelow(dir);
  if (left.length > 0) {
    throw new NodeFactError(`cannot detach the mounts ${left.join(", ")}`);
  }
  return points;
}

/**
 * Detaches a task's staging mounts and removes the staging paths (never recursively: a path
 * still mounted stays, and the call fails). Idempotent.
 */
export async function unstageMounts(taskDir: string): Promise<void> {
  const dir = await resolved(stagingDir(taskDir));
  if (dir === undefined) return;
  await detachAll(dir);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    await (entry.isDirectory() ? rmdir(path) : unlink(path));
  }
  await rmdir(dir);
}

/**
 * Stages `staged` (see {@link stageMount}), runs `create` (Tasks.Create), and detaches the
 * staging mounts again: by then runc and the shim have made the task's own mounts from them.
 * A failed `create` is rethrown after a best-effort clean-up; a clean-up that fails after a
 * successful `create` throws (the caller rolls the new task back).
 */
export async function withStagedMounts<T>(
  p: { readonly taskDir: string; readonly staged: readonly StagedMount[] },
  create: () => Promise<T>,
  uuid?: string,
): Promise<T> {
  if (p.staged.length === 0) return create();
  let result: T;
  try {
    await unstageMounts(p.taskDir); // what a crash may have left
    await prepareStagingDir(p.taskDir, uuid);
    for (const m of p.staged) await stageMount(m, uuid);
    result = await create();
  } catch (err) {
    await unstageMounts(p.taskDir).catch(() => undefined);
    throw err;
  }
  await unstageMounts(p.taskDir);
  return result;
}

/**
 * Detaches the staging mounts of every task under `<dataDir>/tasks` (left by an executor that
 * died while creating a task). Call at start-up, before any task is created.
 *
 * @returns the mount points it detached.
 */
export async function sweepStagedMounts(dataDir: string): Promise<string[]> {
  const tasks = await resolved(join(dataDir, "tasks"));
  if (tasks === undefined) return [];
  const staged = (await mountsBelow(tasks)).filter((p) => {
    const parts = p.slice(tasks.length + 1).split("/");
    return parts.length >= 2 && parts[1] === "mounts";
  });
  const dirs = new Set(staged.map((p) => join(tasks, p.slice(tasks.length + 1).split("/")[0]!)));
  const detached: string[] = [];
  for (const taskDir of dirs) {
    detached.push(...(await detachAll(stagingDir(taskDir))));
    await unstageMounts(taskDir);
  }
  return detached;
}
