import { readFile } from "node:fs/promises";
import { ProcfsParseError } from "./errors.js";

/** The fields of `/proc/<pid>/status` the project uses (see proc(5)). */
export interface ProcStatus {
  /** The executable's name (`Name:`), as the kernel escapes it. */
  name: string;
  /** One letter: R, S, D, Z, T, t, X, I (`State:` without its description). */
  state: string;
  /** Thread group id (`Tgid:`): the process's PID. */
  tgid: number;
  pid: number;
  ppid: number;
  /** Threads of the process (`Threads:`). */
  threads: number;
  /** Resident set (`VmRSS:`), in bytes; null for a process without memory (kernel thread, zombie). */
  vmRssBytes: number | null;
  /** Peak resident set (`VmHWM:`), in bytes; null like vmRssBytes. */
  vmHwmBytes: number | null;
  /** Virtual size (`VmSize:`), in bytes; null like vmRssBytes. */
  vmSizeBytes: number | null;
}

const KIB = 1024;

/**
 * Parses the text of `/proc/<pid>/status` (`Key:\tvalue` lines; sizes in kB, which are KiB).
 * Fields a process has no value for (a kernel thread's or a zombie's Vm* lines) are null.
 */
export function parseProcStatus(text: string, file = "/proc/<pid>/status"): ProcStatus {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const int = (key: string): number => {
    const v = fields.get(key);
    const n = v === undefined ? NaN : Number(v);
    if (!Number.isSafeInteger(n)) throw new ProcfsParseError(file, `no integer ${key}`, text);
    return n;
  };
  const kib = (key: string): number | null => {
    const v = fields.get(key);
    if (v === undefined) return null;
    const m = /^(\d+)\s*kB$/.exec(v);
    if (!m) throw new ProcfsParseError(file, `${key} is not "<n> kB"`, text);
    return Number(m[1]) * KIB;
  };
  const state = fields.get("State")?.charAt(0);
  if (fields.get("Name") === undefined || !state) {
    throw new ProcfsParseError(file, "no Name or State", text);
  }
  return {
    name: fields.get("Name")!,
    state,
    tgid: int("Tgid"),
    pid: int("Pid"),
    ppid: int("PPid"),
    threads: int("Threads"),
    vmRssBytes: kib("VmRSS"),
    vmHwmBytes: kib("VmHWM"),
    vmSizeBytes: kib("VmSize"),
  };
}

/**
 * Reads `/proc/<pid>/status`, or returns undefined when the process does not exist.
 * `procRoot` lets tests point at a fixture tree.
 */
export async function readProcStatus(pid: number, procRoot = "/proc"): Promise<ProcStatus | undefined> {
  const file = `${procRoot}/${pid}/status`;
  try {
    return parseProcStatus(await readFile(file, "utf8"), file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") return undefined;
    throw err;
  }
}
