/** Process identity: a PID alone is reused, a PID with its start time (field 22 of /proc/<pid>/stat) is not. */
import { readFileSync } from "node:fs";
import { isProcessAlive } from "@eve-tasks/embedded";

/** Start time of a process in clock ticks since boot, or undefined when it does not exist. */
export function readStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces and parentheses) start at field 3.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[22 - 3]);
    return Number.isFinite(ticks) ? ticks : undefined;
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
