// A minimal root filesystem for test tasks, built from the host's own binaries: no image, no
// registry, no network. A static busybox is used when present (apt-get install busybox-static);
// otherwise dash and a few coreutils are copied with the shared libraries ldd lists.
import { execFile } from "node:child_process";
import { copyFile, chmod, mkdir, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { findExecutable } from "@eve-tasks/embedded";

const execFileAsync = promisify(execFile);

/** Commands a test rootfs provides in /bin (sh is dash or busybox). */
export const ROOTFS_COMMANDS: readonly string[] = [
  "sh",
  "sleep",
  "cat",
  "echo",
  "true",
  "false",
  "ls",
  "env",
  "touch",
  "mkdir",
  "rm",
  "id",
];

/** What {@link makeRootfs} built. */
export interface TestRootfs {
  /** The rootfs directory (use as an OCI root.path, or `ctr run --rootfs`). */
  path: string;
  /** "busybox" when a static busybox provides the commands, "host" when host binaries were copied. */
  source: "busybox" | "host";
  /** Commands available in /bin. */
  commands: readonly string[];
}

/**
 * Builds a minimal rootfs in `dir` (created): /bin with {@link ROOTFS_COMMANDS}, the libraries
 * they need, and empty /proc, /dev, /sys, /tmp, /etc, /run mount points.
 */
export async function makeRootfs(dir: string): Promise<TestRootfs> {
  for (const sub of ["bin", "proc", "dev", "sys", "tmp", "etc", "run"]) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  await chmod(join(dir, "tmp"), 0o1777);

  const busybox = findExecutable("busybox");
  if (busybox !== undefined && (await isStatic(busybox))) {
    await copyFile(busybox, join(dir, "bin", "busybox"));
    for (const command of ROOTFS_COMMANDS) await symlink("busybox", join(dir, "bin", command));
    return { path: dir, source: "busybox", commands: ROOTFS_COMMANDS };
  }

  const libs = new Set<string>();
  const commands: string[] = [];
  for (const command of ROOTFS_COMMANDS) {
    const path = findExecutable(command);
    if (path === undefined) continue;
    await copyFile(path, join(dir, "bin", command));
    for (const lib of await sharedLibraries(path)) libs.add(lib);
    commands.push(command);
  }
  for (const lib of libs) {
    const target = join(dir, lib);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(lib, target); // follows symlinks: copies the library itself under the linked name
  }
  return { path: dir, source: "host", commands };
}

async function isStatic(binary: string): Promise<boolean> {
  return (await sharedLibraries(binary)).length === 0;
}

/** Absolute paths of the shared libraries (and the dynamic loader) a binary needs, from ldd. */
async function sharedLibraries(binary: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync("ldd", [binary]));
  } catch {
    return []; // "not a dynamic executable" exits non-zero
  }
  const libs: string[] = [];
  for (const line of stdout.split("\n")) {
    const match = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)/.exec(line);
    if (match?.[1] !== undefined) libs.push(match[1]);
  }
  return libs;
}
