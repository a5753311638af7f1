/**
 * Mounting exactly the host paths that were checked. A path checked by its string and mounted
 * later by the same string can be swapped in between (a directory replaced by a symlink to `/`),
 * and the runtime would mount what the path names by then. So the executor opens each checked
 * path (`O_PATH|O_NOFOLLOW`), verifies that the opened file is still the checked path, and has
 * that open file mounted: a root volume by the shim, which mounts Tasks.Create's rootfs in this
 * mount namespace, straight from `/proc/<executor pid>/fd/N`; a volume by runc, which mounts in
 * the task's new mount namespace where the kernel binds only that namespace's mounts, so the
 * open file is first bind-mounted onto a staging path under the task's directory
 * (`<taskDir>/mounts/<name>`, in a `0700` tmpfs only root can reach) that the spec names. The
 * staging mounts are detached once Tasks.Create has returned: they exist only while a task is
 * being created.
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
  rm,
  rmdir,
  unlink,
  writeFile,
} from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Mount } from "@eve-tasks/containerd";
import { parseMountinfo } from "@eve-tasks/procfs";
import { NodeFactError } from "./errors.js";
import { isWithin } from "./host-paths.js";

/** `O_PATH` (Linux): an fd that names a file without opening it for I/O. */
const O_PATH = 0o10000000;

/** A checked host path and where it is staged for Tasks.Create. */
export type StagedMount = {
  /** For messages: `root volume`, `volume /data`. */
  readonly what: string;
  /** The host path as it was resolved and checked (realpath, under EVE_VOLUME_ROOTS). */
  readonly source: string;
  /** Bind the mounts below `source` too (`rbind`); a root volume is bound alone. */
  readonly recursive: boolean;
  /** The source must be a directory (a root filesystem). */
  readonly directory: boolean;
} & (
  | {
      /**
       * Mounted by runc, in the task's own mount namespace, from the staging path `target`
       * (`<taskDir>/mounts/<name>`) the spec names (a volume).
       */
      readonly via: "staging";
      readonly target: string;
    }
  | {
      /**
       * Mounted by the shim, in this mount namespace, straight from the open file: the rootfs
       * mounts of Tasks.Create whose source is `source` get `/proc/<executor pid>/fd/<N>` (a
       * root volume). The kernel binds only mounts of the caller's own namespace, so this works
       * for the shim and not for runc.
       */
      readonly via: "shim";
    }
);

/** The directory of a task's staging paths. */
export function stagingDir(taskDir: string): string {
  return join(taskDir, "mounts");
}

/** The staging path `name` (`root`, `volume-0`, …) of a task. */
export function stagingPath(taskDir: string, name: string): string {
  return join(stagingDir(taskDir), name);
}

/** Runs `command` with `fds` as its fds 3, 4, …; rejects with its stderr when it fails. */
function run(command: string, args: readonly string[], fds: readonly number[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe", ...fds] });
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

/** A path as a field of fstab(5): space, tab, newline and backslash in octal. */
function fstabField(path: string): string {
  return path.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}

/**
 * Opens a checked path without following a final symlink and checks that what was opened is a
 * directory (or, unless `m.directory`, a regular file) whose path is still `m.source`: the
 * kernel's own path of the open file, so a swap anywhere along the path shows.
 *
 * @throws NodeFactError when the path changed since its check.
 */
async function openChecked(m: StagedMount, uuid?: string): Promise<{ fh: FileHandle; directory: boolean }> {
  let fh: FileHandle;
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
    return { fh, directory: st.isDirectory() };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * Mounts a task's staging dir, a private tmpfs, and in it binds each open file (`/proc/self/fd/N`)
 * at its staging path, each tree private at once: one `mount -a` of an fstab written for the
 * purpose (`--no-canonicalize`: the magic links go to the kernel as they are, never resolved to a
 * path string again). A file cannot be bound onto a directory, so with files among the sources
 * the tmpfs is mounted first and the file targets created in it.
 *
 * Being a mount, the staging dir exists only in this mount namespace: should containerd's shims
 * run in another one, the staging paths do not exist there and Tasks.Create fails, where a plain
 * directory would have been mounted empty into the task.
 */
async function mountStaged(
  taskDir: string,
  staged: readonly (StagedMount & { via: "staging" })[],
  opened: readonly { fh: FileHandle; directory: boolean }[],
  uuid?: string,
): Promise<void> {
  const dir = stagingDir(taskDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const real = await realpath(dir);
  const fail = (err: unknown) => {
    throw new NodeFactError(
      `cannot stage ${staged.map((m) => `${m.what} ${m.source}`).join(", ")}: ${(err as Error).message}`,
      uuid,
      {
        cause: err,
      },
    );
  };
  const lines: string[] = [];
  const files = opened.some((o) => !o.directory);
  if (files) {
    await run("mount", [
      "-t",
      "tmpfs",
      "-o",
      STAGING_TMPFS,
      "--make-private",
      "--no-canonicalize",
      "eve-staging",
      real,
    ]).catch(fail);
    for (const [i, m] of staged.entries()) {
      const target = join(real, basename(m.target));
      if (opened[i]!.directory) await mkdir(target, { mode: 0o700 });
      else await writeFile(target, "", { mode: 0o600, flag: "wx" });
    }
  } else {
    lines.push(`eve-staging ${fstabField(real)} tmpfs ${STAGING_TMPFS},private 0 0`);
  }
  for (const [i, m] of staged.entries()) {
    const options = [
      m.recursive ? "rbind,rprivate" : "bind,private",
      ...(files ? [] : ["X-mount.mkdir=0700"]),
    ];
    lines.push(
      `/proc/self/fd/${3 + i} ${fstabField(join(real, basename(m.target)))} none ${options.join(",")} 0 0`,
    );
  }
  const fstab = join(taskDir, "staging.fstab");
  await writeFile(fstab, `${lines.join("\n")}\n`, { mode: 0o600 });
  try {
    await run(
      "mount",
      ["-a", "--no-canonicalize", "-T", fstab],
      opened.map((o) => o.fh.fd),
    ).catch(fail);
  } finally {
    await rm(fstab, { force: true });
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

/** Detaches a task's staging mounts and removes the staging paths. */
async function detachStaging(taskDir: string): Promise<void> {
  const dir = await resolved(stagingDir(taskDir));
  if (dir === undefined) return;
  const points = await mountsBelow(dir);
  // The staging tmpfs holds every staged tree: one lazy unmount detaches them all.
  if (points.includes(dir)) await run("umount", ["--lazy", "--no-canonicalize", dir]).catch(() => undefined);
  await detachAll(dir); // what is left: nothing, unless the staging dir was not a mount
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    await (entry.isDirectory() ? rmdir(path) : unlink(path));
  }
  await rmdir(dir);
}

/** Detaches running in the background after a Tasks.Create, by task dir. */
const detaching = new Map<string, Promise<void>>();

/**
 * Detaches a task's staging mounts and removes the staging paths (never recursively: a path
 * still mounted stays, and the call fails), after any detach of them still running in the
 * background. Idempotent.
 */
export async function unstageMounts(taskDir: string): Promise<void> {
  await detaching.get(taskDir);
  await detachStaging(taskDir);
}

/** Options of {@link withStagedMounts}. */
export interface StagingOptions {
  /** The app, for the errors' context. */
  uuid?: string;
  /**
   * Told when the staging mounts could not be detached after a successful Tasks.Create (they
   * are private, under a `0700` dir; the next start, `removeTaskDir` and the start-up sweep try
   * again).
   */
  onDetachError?: (err: Error) => void;
}

/**
 * Opens and checks every path of `staged`, binds those `via: "staging"` from their open files
 * into the staging tmpfs (see {@link mountStaged}), and runs `create` (Tasks.Create) with the
 * rootfs mounts to give it: `p.rootfs`, where a `via: "shim"` path is named by its open file. By
 * the time `create` returns, runc and the shim have made the task's own mounts, and the staging
 * mounts are detached in the background (the task does not wait for it; a later staging,
 * unstaging or removal of the same task dir does). A failed `create` is rethrown after the
 * staging mounts are detached.
 */
export async function withStagedMounts<T>(
  p: { readonly taskDir: string; readonly staged: readonly StagedMount[]; readonly rootfs: readonly Mount[] },
  create: (rootfs: Mount[]) => Promise<T>,
  options: StagingOptions = {},
): Promise<T> {
  if (p.staged.length === 0) return create([...p.rootfs]);
  let result: T;
  const opened: { fh: FileHandle; directory: boolean }[] = [];
  const staging = p.staged.some((m) => m.via === "staging");
  try {
    if (staging) await unstageMounts(p.taskDir); // what a crash may have left
    for (const m of p.staged) opened.push(await openChecked(m, options.uuid));
    const viaStaging = p.staged.flatMap((m, i) => (m.via === "staging" ? [{ m, o: opened[i]! }] : []));
    if (viaStaging.length > 0) {
      await mountStaged(
        p.taskDir,
        viaStaging.map((x) => x.m),
        viaStaging.map((x) => x.o),
        options.uuid,
      );
    }
    const rootfs = p.rootfs.map((mount) => {
      const i = p.staged.findIndex((m) => m.via === "shim" && m.source === mount.source);
      return i < 0 ? mount : { ...mount, source: `/proc/${process.pid}/fd/${opened[i]!.fh.fd}` };
    });
    result = await create(rootfs);
  } catch (err) {
    if (staging) await unstageMounts(p.taskDir).catch(() => undefined);
    throw err;
  } finally {
    await Promise.all(opened.map((o) => o.fh.close()));
  }
  if (!staging) return result;
  const detached: Promise<void> = detachStaging(p.taskDir)
    .catch((err: unknown) => options.onDetachError?.(err as Error))
    .finally(() => {
      if (detaching.get(p.taskDir) === detached) detaching.delete(p.taskDir);
    });
  detaching.set(p.taskDir, detached);
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
