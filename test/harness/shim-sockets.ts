// containerd 1.6 puts every runc shim's socket in /run/containerd/s, whatever its own state dir,
// and a shim that is killed cannot remove its own: the file stays, listened on by no one. The
// test run notes which sockets it found there at its start and, at its end, removes the ones that
// appeared since and that no process listens on, saying so (a test then killed a shim without
// removing its socket).
import { lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { removeSocketFiles, unixSockets } from "@eve-tasks/executor";

const SHIM_SOCKET_DIR = "/run/containerd/s";

/** The socket files in containerd's shim socket directory now. */
export function shimSocketFiles(): Set<string> {
  const out = new Set<string>();
  let names: string[];
  try {
    names = readdirSync(SHIM_SOCKET_DIR);
  } catch {
    return out;
  }
  for (const name of names) {
    const path = join(SHIM_SOCKET_DIR, name);
    try {
      if (lstatSync(path).isSocket()) out.add(path);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/**
 * Removes the shim sockets that were not there in `before` and that no process has bound any
 * more; returns them.
 */
export function removeStaleShimSockets(before: ReadonlySet<string>): string[] {
  const bound = new Set(unixSockets().flatMap((s) => (s.path === undefined ? [] : [s.path])));
  const stale = [...shimSocketFiles()].filter((p) => !before.has(p) && !bound.has(p));
  removeSocketFiles(stale);
  return stale;
}
