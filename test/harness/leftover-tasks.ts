// What a failed test can leave when its containerd is gone before its tasks: shims still
// running their tasks. Ends them by PID, found by the exact containerd socket they serve.
import { readFile, readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { findShimDaemons, listeningSocketPaths, removeSocketFiles } from "@eve-tasks/executor";
import { CONTAINERD_NAMESPACE } from "@eve-tasks/schemas";

const CGROUP_ROOT = "/sys/fs/cgroup";

/** The PIDs whose parent is `pid` (from /proc/<child>/stat). */
async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) out.push(Number(name));
  }
  return out;
}

const kill = (pid: number): void => {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already.
  }
};

/**
 * Ends every shim of containerd socket `address` in the executor's namespace and what it runs:
 * its children first (a task's anchor, pid 1 of its PID namespace, takes the rest of the task
 * with it; the task logger), then the shim; then the sockets the shims listened on (a killed shim
 * cannot remove its own) and the tasks' empty cgroups. Returns the task ids.
 */
export async function endLeftoverTasks(address: string): Promise<string[]> {
  const shims = findShimDaemons(address, CONTAINERD_NAMESPACE);
  const sockets = shims.flatMap((shim) => listeningSocketPaths(shim.pid));
  for (const shim of shims) {
    for (const child of await childrenOf(shim.pid)) kill(child);
    kill(shim.pid);
  }
  if (shims.length === 0) return [];
  await new Promise((r) => setTimeout(r, 500));
  removeSocketFiles(sockets);
  const hierarchies = await readdir(CGROUP_ROOT).catch(() => [] as string[]);
  for (const shim of shims) {
    for (const h of ["", ...hierarchies]) {
      await rmdir(join(CGROUP_ROOT, h, CONTAINERD_NAMESPACE, shim.id)).catch(() => undefined);
    }
  }
  return shims.map((s) => s.id);
}
