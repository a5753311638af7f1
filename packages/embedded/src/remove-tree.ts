import { readFile, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { EmbeddedError } from "./errors.js";

const execFileAsync = promisify(execFile);

/** Mount points at or below `dir`, deepest first, from /proc/self/mountinfo. */
export async function mountsBelow(dir: string): Promise<string[]> {
  const root = resolve(dir);
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const points = info
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    // mountinfo escapes space, tab, newline and backslash as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === root || p.startsWith(`${root}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Removes a directory tree that tasks may have left mounts in (a task's rootfs is mounted in
 * its bundle; a shim that died leaves it there). A recursive delete would otherwise walk
 * into whatever is mounted, which may be the host's own root: every mount below `dir` is
 * detached first (lazily, deepest first), and if one cannot be, nothing is deleted.
 */
export async function removeTreeSafely(dir: string): Promise<void> {
  for (const point of await mountsBelow(dir)) {
    await execFileAsync("umount", ["--lazy", point]).catch(() => undefined);
  }
  const left = await mountsBelow(dir);
  if (left.length > 0) {
    throw new EmbeddedError(`not removing ${dir}: mounts remain below it: ${left.join(", ")}`, {
      context: { dir, mounts: left },
    });
  }
  await rm(dir, { recursive: true, force: true });
}
