import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { ProcfsParseError } from "./errors.js";

/** The fields of `/proc/<pid>/stat` the project uses (see proc(5)). */
export interface ProcStat {
  pid: number;
  /** The executable's name, without the parentheses (may contain spaces and ')'). */
  comm: string;
  /** R, S, D, Z, T, ... */
  state: string;
  ppid: number;
  /** User-mode CPU time, in clock ticks. */
  utimeTicks: number;
  /** Kernel-mode CPU time, in clock ticks. */
  stimeTicks: number;
  numThreads: number;
  /** Field 22: when the process started, in clock ticks after boot. A PID alone is reused; PID + this is not. */
  startTimeTicks: number;
  /** Resident set size, in pages. */
  rssPages: number;
}

/**
 * Parses the text of `/proc/<pid>/stat`. The comm field is in parentheses and may itself
 * contain spaces and parentheses, so the fields after it are found from the last ')'.
 */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) throw new ProcfsParseError("/proc/<pid>/stat", "not a stat line", text);
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  // rest[0] is field 3 (state); field n is rest[n - 3].
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const field = (n: number): number => {
    const v = rest[n - 3];
    if (v === undefined) throw new ProcfsParseError(`/proc/${pid}/stat`, `no field ${n}`, text);
    return Number(v);
  };
  return {
    pid,
    comm,
    state: rest[0] ?? "?",
    ppid: field(4),
    utimeTicks: field(14),
    stimeTicks: field(15),
    numThreads: field(20),
    startTimeTicks: field(22),
    rssPages: field(24),
  };
}

/**
 * Reads `/proc/<pid>/stat`, or returns undefined when the process does not exist.
 * `procRoot` lets tests point at a fixture tree.
 */
export async function readProcStat(pid: number, procRoot = "/proc"): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`${procRoot}/${pid}/stat`, "utf8"));
  } catch (err) {
    return unlessGone(err);
  }
}

/** Undefined for the errors of a process that does not exist (any more); rethrows the rest. */
function unlessGone(err: unknown): undefined {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT" || code === "ESRCH") return undefined;
  throw err;
}

/**
 * {@link readProcStat} without the thread pool: `/proc/<pid>/stat` is made by the kernel from
 * memory when read (no disk, no wait), so a synchronous read costs microseconds, where the
 * asynchronous one costs four thread-pool round trips (open, fstat, read, close). For a read on
 * a latency-critical path, such as the executor's between Tasks.Create and Tasks.Start.
 */
export function readProcStatSync(pid: number, procRoot = "/proc"): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`${procRoot}/${pid}/stat`, "utf8"));
  } catch (err) {
    return unlessGone(err);
  }
}
