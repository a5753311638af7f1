/** Process identity: a PID alone is reused, a PID with its start time (field 22 of /proc/<pid>/stat) is not. */
import { readFileSync } from "node:fs";
import { isProcessAlive } from "@eve-tasks/embedded";
import { parseProcStat } from "@eve-tasks/procfs";

/** Start time of a process in clock ticks since boot, or undefined when it does not exist. */
export function readStartTicks(pid: number): number | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8")).startTimeTicks;
  } catch {
    return undefined;
  }
}

/** A process as recorded in launcher.json. */
export interface ProcessRef {
  readonly pid: number;
  readonly startTicks?: number;
}

/** True when `ref` still names the same live process (same PID, same start time, not a zombie). */
export function isSameProcessAlive(ref: ProcessRef): boolean {
  if (!isProcessAlive(ref.pid)) return false;
  return ref.startTicks === undefined || readStartTicks(ref.pid) === ref.startTicks;
}
