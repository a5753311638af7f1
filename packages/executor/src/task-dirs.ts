/**
 * A task's directory on the host, `<EVE_DATA_DIR>/tasks/<uuid>`: its log, its overlay upper and
 * work dirs, its staging mounts. A task running as root (there is no user namespace) can create
 * setuid-root files and device nodes in its upper dir and volumes; unprivileged host users must
 * not reach them. So, as containerd does for its bundles, `tasks/` is `0711` (traversable, not
 * listable) and each task's directory `0700` (root only).
 */
import { chmod, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { NodeFactError } from "./errors.js";
import { detachAll, resolved, unstageMounts } from "./staged-mounts.js";

/** Mode of `<EVE_DATA_DIR>/tasks`. */
export const TASKS_DIR_MODE = 0o711;
/** Mode of each task's directory. */
export const TASK_DIR_MODE = 0o700;

/** Creates `<dataDir>/tasks` (`0711`), tightening the mode of one that exists. */
export async function ensureTasksDir(dataDir: string): Promise<string> {
  const dir = join(dataDir, "tasks");
  await mkdir(dir, { recursive: true, mode: TASKS_DIR_MODE });
  await chmod(dir, TASKS_DIR_MODE);
  return dir;
}

/**
 * Creates a task's directory (`0700`, tightening one made before) and the directories it needs
 * inside (an overlay's upper and work dirs, a VM's QMP dir elsewhere).
 */
export async function makeTaskDirs(p: {
  readonly taskDir: string;
  readonly dirs: readonly string[];
}): Promise<void> {
  await mkdir(p.taskDir, { recursive: true, mode: TASK_DIR_MODE });
  await chmod(p.taskDir, TASK_DIR_MODE);
  await Promise.all(p.dirs.map((d) => mkdir(d, { recursive: true })));
}

/**
 * Removes a task's directory. A recursive delete would walk into whatever is mounted below it (a
 * staging mount left by a crash is a user's volume): every mount below it is detached first, and
 * nothing is deleted while one remains.
 *
 * @throws NodeFactError naming what is still mounted.
 */
export async function removeTaskDir(taskDir: string): Promise<void> {
  await unstageMounts(taskDir).catch(() => undefined);
  const dir = await resolved(taskDir);
  if (dir === undefined) return;
  const left = await detachAll(dir).catch((err: unknown) => err as Error);
  if (left instanceof Error) {
    throw new NodeFactError(`not removing ${taskDir}: ${left.message}`, undefined, { cause: left });
  }
  await rm(dir, { recursive: true, force: true });
}
