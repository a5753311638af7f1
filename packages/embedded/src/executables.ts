import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join } from "node:path";

/** Directories searched after PATH: Debian puts nats-server and runc in /usr/sbin, often missing from PATH. */
export const SBIN_DIRS: readonly string[] = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
];

/**
 * Finds an executable: a path containing "/" is checked as is; a bare name is looked up on
 * PATH and then in the sbin directories. Returns the absolute path, or undefined.
 */
export function findExecutable(
  name: string,
  pathEnv: string | undefined = process.env.PATH,
): string | undefined {
  if (name.includes("/")) return isExecutableFile(name) ? name : undefined;
  const dirs = [...(pathEnv ?? "").split(delimiter).filter((d) => isAbsolute(d)), ...SBIN_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** PATH with the sbin directories appended (deduplicated), for children that look up helpers (containerd → runc). */
export function pathWithSbin(pathEnv: string | undefined = process.env.PATH): string {
  const dirs = (pathEnv ?? "").split(delimiter).filter((d) => d !== "");
  for (const dir of SBIN_DIRS) if (!dirs.includes(dir)) dirs.push(dir);
  return dirs.join(delimiter);
}
