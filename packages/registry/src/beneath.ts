/**
 * Opening paths below a directory without following any symlink, race-free. Node has no
 * `openat(2)`, but opening `/proc/self/fd/<dirfd>/<name>` resolves the magic link to exactly the
 * directory `dirfd` holds and then looks `name` up in it: with `O_NOFOLLOW` that is `openat(dirfd,
 * name, O_NOFOLLOW)`. Walking a path one component at a time this way never leaves the directory
 * the walk started from, whatever the tree's symlinks say or however they change meanwhile.
 */
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import type { BigIntStats } from "node:fs";

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Flags of a directory opened for a walk (or for fchmod/fchown/futimes). */
export const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;

/** Whether `name` is one plain path component (no `/`, NUL, `.` or `..`). */
export function isPlainName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

/** The path that opens `name` inside the directory open as `dirFd`. */
export function beneath(dirFd: number, name: string): string {
  if (!isPlainName(name)) throw new RangeError(`not a plain path component: ${JSON.stringify(name)}`);
  return `/proc/self/fd/${dirFd}/${name}`;
}

/** Opens directory `name` inside `dirFd` (a symlink there is ELOOP, a non-directory ENOTDIR). */
export function openDirAt(dirFd: number, name: string): number {
  return openSync(beneath(dirFd, name), DIR_FLAGS);
}

/**
 * Opens the regular file at `parts` below the directory open as `dirFd`, for reading, never
 * following a symlink and never blocking on a FIFO; throws ELOOP for a symlink, ENOTDIR for a
 * non-directory in the way, and `EINVAL` (code) for something that is no regular file.
 * Returns the fd and its stat.
 */
export function openFileBeneath(dirFd: number, parts: readonly string[]): { fd: number; st: BigIntStats } {
  if (parts.length === 0) throw new RangeError("no file name");
  let cur = dirFd;
  try {
    for (const part of parts.slice(0, -1)) {
      const next = openDirAt(cur, part);
      if (cur !== dirFd) closeSync(cur);
      cur = next;
    }
    const fd = openSync(beneath(cur, parts[parts.length - 1] as string), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    const st = fstatSync(fd, { bigint: true });
    if (!st.isFile()) {
      closeSync(fd);
      throw Object.assign(new Error(`${parts.join("/")} is not a regular file`), { code: "EINVAL" });
    }
    return { fd, st };
  } finally {
    if (cur !== dirFd) closeSync(cur);
  }
}
