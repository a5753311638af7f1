/**
 * Before starting: refuse to run next to a live launcher of the same data dir, and stop what a
 * launcher that died without cleaning up left running (only processes whose PID *and* start time
 * match its launcher.json, so a reused PID is never touched).
 */
import { stopProcess } from "@eve-tasks/embedded";
import type { Logger } from "@eve-tasks/runtime";
import { LauncherError } from "./errors.js";
import { isSameProcessAlive } from "./proc.js";
import type { ProcessRef } from "./proc.js";
import { readStateFile } from "./state-file.js";

/** Checks the previous launcher.json; stops leftovers; throws {@link LauncherError} if a launcher still runs. */
export async function takeOver(
  stateFile: string,
  logger: Logger,
  note: (line: string) => void,
  graceMs = 10_000,
): Promise<void> {
  const prev = await readStateFile(stateFile);
  if (prev === undefined || prev.launcher.phase === "stopped") return;
  if (prev.launcher.pid !== process.pid && isSameProcessAlive(prev.launcher)) {
    throw new LauncherError(
      `another launcher (pid ${prev.launcher.pid}) is running with data dir ${prev.dataDir}; stop it first (kill -INT ${prev.launcher.pid})`,
      { context: { stateFile, pid: prev.launcher.pid } },
    );
  }
  // Workers first, then containerd, then nats-server: the order a clean stop uses.
  const leftovers: { what: string; ref: ProcessRef }[] = [
    ...Object.values(prev.workers).flatMap((w) =>
      w.pid === null
        ? []
        : [{ what: `worker ${w.name}`, ref: { pid: w.pid, startTicks: w.startTicks ?? undefined } }],
    ),
    ...(prev.containerd.process ? [{ what: "containerd", ref: prev.containerd.process }] : []),
    ...(prev.nats.process ? [{ what: "nats-server", ref: prev.nats.process }] : []),
  ];
  for (const { what, ref } of leftovers) {
    if (!isSameProcessAlive(ref)) continue;
    note(
      `stopping ${what} (pid ${ref.pid}) left running by launcher pid ${prev.launcher.pid}, which did not shut down`,
    );
    logger.warn({ what, pid: ref.pid, previousLauncher: prev.launcher.pid }, "stopping leftover process");
    await stopProcess(ref.pid, { graceMs });
  }
}
