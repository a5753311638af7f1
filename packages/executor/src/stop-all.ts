import { isNotFound } from "@eve-tasks/containerd";
import type { ContainerdClient } from "@eve-tasks/containerd";
import { EXECUTOR_LABELS } from "./labels.js";
import { within } from "./within.js";

/** What {@link stopAllTasks} did to one task. */
export interface StoppedTask {
  id: string;
  pid: number;
  /** How it ended: by SIGTERM within the grace period, or by SIGKILL after it. */
  by: "SIGTERM" | "SIGKILL";
  exitStatus: number | undefined;
}

/**
 * Stops every task in the client's namespace, all at once: SIGTERM to all of a task's
 * processes, `graceMs`, then SIGKILL; then deletes the task. Containers stay, marked as
 * stopped on request, so the executor starts them again when it next runs (as after a
 * reboot). Used by the launcher's Ctrl-C unless --keep-tasks is given.
 */
export async function stopAllTasks(client: ContainerdClient, graceMs = 10_000): Promise<StoppedTask[]> {
  const tasks = await client.tasks.list();
  return Promise.all(
    tasks.map(async (t): Promise<StoppedTask> => {
      const id = t.containerId;
      let by: StoppedTask["by"] = "SIGTERM";
      const ignoreGone = (err: unknown) => {
        if (!isNotFound(err)) throw err;
      };
      if (t.status === "RUNNING" || t.status === "PAUSED" || t.status === "CREATED") {
        const exited = client.tasks.wait(id).then(
          () => true,
          () => true,
        );
        await client.tasks.kill(id, "SIGTERM", { all: true }).catch(ignoreGone);
        if (!(await within(exited, graceMs))) {
          by = "SIGKILL";
          await client.tasks.kill(id, "SIGKILL", { all: true }).catch(ignoreGone);
          await within(exited, 10_000);
        }
      }
      let exitStatus: number | undefined;
      try {
        exitStatus = (await client.tasks.delete(id)).exitStatus;
      } catch (err) {
        ignoreGone(err);
      }
      await client.containers
        .update(
          { id, labels: { [EXECUTOR_LABELS.ended]: "stopped" } },
          { fieldPaths: [`labels.${EXECUTOR_LABELS.ended}`] },
        )
        .catch(() => undefined);
      return { id, pid: t.pid, by, exitStatus };
    }),
  );
}
