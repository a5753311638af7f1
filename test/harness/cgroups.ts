// The parent cgroup of a containerd namespace (`/<ns>`, made by runc for `/<ns>/<id>` tasks)
// outlives the tasks: whoever made tasks in a namespace of its own removes it after them.
import { readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";

const CGROUP_ROOT = "/sys/fs/cgroup";

/**
 * Removes the cgroup `/<name>` from every hierarchy (cgroup v1: memory, cpu, pids, …; v2: the
 * one), where it exists and is empty: rmdir refuses a cgroup that still has children or tasks,
 * and that is left alone. `name` is one path component.
 */
export async function removeEmptyCgroup(name: string): Promise<void> {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "." || name === "..") {
    throw new Error(`removeEmptyCgroup: ${JSON.stringify(name)} is not a plain cgroup name`);
  }
  const entries = await readdir(CGROUP_ROOT, { withFileTypes: true }).catch(() => []);
  const hierarchies = [
    CGROUP_ROOT,
    ...entries.filter((e) => e.isDirectory()).map((e) => join(CGROUP_ROOT, e.name)),
  ];
  for (const h of hierarchies) await rmdir(join(h, name)).catch(() => undefined);
}
