/**
 * Things on the host that a task needs while it exists, outside containerd: its directories today,
 * its network namespace and links next. Each is a {@link TaskHostResource}; the executor calls
 * every one at the same points of a task's life, so a new kind of resource plugs in without
 * touching the lifecycle:
 *
 * 1. `setUp` before Tasks.Create (alongside Containers.Create): make what the prepared task names
 *    (the spec already refers to it: `prepareTask` decided the names and paths). A failure fails
 *    the start, which is rolled back: `tearDown("task-deleted")` follows.
 * 2. `beforeStart` (optional) between Tasks.Create and Tasks.Start: wait for what must hold before
 *    the task's own process runs but that Tasks.Create does not need (a network's filters), so it
 *    overlaps Tasks.Create. A failure fails the start: the created task is discarded unstarted.
 * 3. `started` once Tasks.Start has returned: drop what earlier tasks of the app left and the new
 *    one no longer needs.
 * 4. `tearDown` after Tasks.Delete (`task-deleted`: the task is gone, the container stays) and when
 *    the app is removed (`app-removed`: the config and the container are gone).
 * 5. `owners` at start-up: every app the resource holds something for. An app nobody wants (no
 *    config, no container) gets the same removal as a deleted app: `tearDown("app-removed")`.
 *
 * Every method is idempotent and takes absent things as done. Errors of `setUp` and `beforeStart`
 * fail the start; errors of the others are logged and do not stop a stop or a removal.
 */
import { readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { PreparedTask } from "./prepare-task.js";
import { makeTaskDirs, removeTaskDir } from "./task-dirs.js";
import { registerBinfmt } from "./binfmt.js";
import { vmRunDir } from "./runtime-task.js";

/** When a task's host resources are torn down. */
export type TearDownScope = "task-deleted" | "app-removed";

/** One kind of per-task thing on the host. */
export interface TaskHostResource {
  /** For logs: `task-dirs`, `netns`, … */
  readonly name: string;
  setUp(uuid: string, task: PreparedTask): Promise<void>;
  beforeStart?(uuid: string, task: PreparedTask): Promise<void>;
  started?(uuid: string, task: PreparedTask): Promise<void>;
  tearDown(uuid: string, scope: TearDownScope): Promise<void>;
  owners(): Promise<Iterable<string>>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/**
 * A task's directories: `<dataDir>/tasks/<uuid>` (its log, an overlay root's upper and work dirs)
 * and a VM's `<runDir>/vm/<uuid>` (its QMP socket). They outlive the task (the log and the upper
 * dir stay across restarts) and go with the app. An image or tools root's upper dir belongs to its
 * lower layer (`<taskDir>/overlay/<key of the lower>`): once a task on a new image runs, the upper
 * dirs of other images go.
 */
export function taskDirs(o: { dataDir: string; runDir: string }): TaskHostResource {
  const tasksDir = join(o.dataDir, "tasks");
  return {
    name: "task-dirs",
    async setUp(_uuid, task) {
      await makeTaskDirs(task);
    },
    async started(_uuid, task) {
      if (task.overlayDir === undefined) return;
      const parent = dirname(task.overlayDir);
      const keep = task.overlayDir.slice(parent.length + 1);
      for (const name of await entries(parent)) {
        if (name !== keep) await rm(join(parent, name), { recursive: true, force: true });
      }
    },
    async tearDown(uuid, scope) {
      if (scope !== "app-removed") return;
      // Never a plain recursive delete: a mount left below the task dir (a staged volume) is
      // detached first, and nothing is deleted while one remains.
      await removeTaskDir(join(tasksDir, uuid));
      await rm(vmRunDir(o.runDir, uuid), { recursive: true, force: true });
    },
    async owners() {
      const names = [...(await entries(tasksDir)), ...(await entries(join(o.runDir, "vm")))];
      return new Set(names.filter((n) => UUID.test(n)));
    },
  };
}

/**
 * The binfmt_misc entry of an emulated task's emulator (binfmt.ts), registered before
 * Tasks.Create (idempotent). The node never removes one: it is the machine's, later execs of any
 * task of that architecture need it, and it holds only an open file of a read-only seed; so
 * `tearDown` and `owners` have nothing to do. `register` is the registration itself (tests
 * give one that records what it was asked).
 */
export function binfmtEntries(o: {
  /** Where the entries' `-binfmt-P` links are made (the node's `<dataDir>/binfmt`). */
  linksDir: string;
  register?: typeof registerBinfmt;
  onRegistered?: (uuid: string, entry: { name: string; arch: string; interpreter: string }) => void;
}): TaskHostResource {
  const register = o.register ?? registerBinfmt;
  return {
    name: "binfmt",
    async setUp(uuid, task) {
      const e = task.emulation?.binfmt;
      if (e === undefined) return;
      if ((await register(e, { linksDir: o.linksDir })) === "registered") o.onRegistered?.(uuid, e);
    },
    tearDown: () => Promise.resolve(),
    owners: () => Promise.resolve([]),
  };
}
