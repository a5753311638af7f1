import { realpath, stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { NodeFactError } from "./errors.js";

/** True when `path` is `root` or lies below it (both already resolved). */
export function isWithin(root: string, path: string): boolean {
  if (root === "/") return true;
  return path === root || path.startsWith(root.endsWith("/") ? root : `${root}/`);
}

/**
 * Resolves a host path the way the kernel will when it is mounted (symlinks included,
 * with realpath) and checks that the result lies under one of `roots` (already
 * resolved). Returns the resolved path, which is what gets mounted.
 *
 * @param what names the path in the message, e.g. `root volume` or `volume /data`.
 * @throws NodeFactError with a message for the user.
 */
export async function resolveUnderRoots(
  path: string,
  roots: readonly string[],
  what: string,
  expect: "directory" | "any" = "any",
): Promise<string> {
  if (!isAbsolute(path)) throw new NodeFactError(`${what} ${path} is not an absolute path`);
  let resolved: string;
  // stat follows symlinks as realpath does: both at once, so the check costs one thread-pool
  // round trip instead of two (a path swapped in between fails the start, never escapes: what is
  // mounted is `resolved`, checked below).
  const kind =
    expect === "directory"
      ? stat(path).then(
          (s) => s.isDirectory(),
          () => undefined,
        )
      : undefined;
  try {
    resolved = await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new NodeFactError(`${what} ${path} does not exist on this node`, undefined, { cause: err });
    }
    throw new NodeFactError(
      `${what} ${path} cannot be resolved: ${code ?? (err as Error).message}`,
      undefined,
      {
        cause: err,
      },
    );
  }
  if (!roots.some((root) => isWithin(root, resolved))) {
    const via = resolved === path ? "" : ` (it resolves to ${resolved})`;
    throw new NodeFactError(
      `${what} ${path} is outside EVE_VOLUME_ROOTS${via}; allowed: ${roots.join(":") || "(none)"}`,
    );
  }
  if (expect === "directory" && (await kind) !== true) {
    throw new NodeFactError(`${what} ${path} is not a directory`);
  }
  return resolved;
}
