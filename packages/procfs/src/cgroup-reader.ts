/** Reads one cgroup's usage files, v1 or v2, through handles kept open. */
import { posix } from "node:path";
import type { CgroupDirs } from "./cgroup-layout.js";
import { countLines, flatKeyValue, parseCgroupUint, parseV1Limit, parseV2Max } from "./cgroup-files.js";
import { ProcfsParseError } from "./errors.js";
import { PositionalFile } from "./positional-file.js";

/** Names of the values a sample holds; the same names as TaskMetrics' metric fields. */
export const SAMPLE_FIELDS = [
  "cpuNs",
  "rssBytes",
  "memoryUsageBytes",
  "memoryPeakBytes",
  "memoryLimitBytes",
  "oomKills",
  "threads",
] as const;
/** A value a sample holds. */
export type SampleField = (typeof SAMPLE_FIELDS)[number];
/** The values a cgroup gives (rssBytes is the anchor's). */
export type CgroupField = Exclude<SampleField, "rssBytes">;

/** What one read of a cgroup found. */
export interface CgroupReading {
  /** Each value read: a number, or null for "no limit"; a field that was not read is absent. */
  values: Partial<Record<CgroupField, number | null>>;
  /** Files that exist but could not be parsed (their field is absent from `values`). */
  problems: string[];
}

/** Parses a file's text; undefined means the value is not in it (e.g. an older kernel's file). */
type Parse = (text: string, file: string) => number | null | undefined;

interface Source {
  field: CgroupField;
  file: PositionalFile;
  parse: Parse;
  /** Read only when no earlier source gave the field (e.g. counting threads without pids.current). */
  fallback?: boolean;
}

const key =
  (name: string, scale = 1): Parse =>
  (text, file) => {
    const v = flatKeyValue(text, file, name);
    return v === undefined ? undefined : v * scale;
  };

/** Which file gives which value, per layout. `dir` undefined: that v1 controller is not mounted. */
function sourcesFor(dirs: CgroupDirs, fields?: readonly CgroupField[]): Source[] {
  const out: Source[] = [];
  const add = (field: CgroupField, dir: string | undefined, name: string, parse: Parse, fallback = false) => {
    if (dir !== undefined && (fields === undefined || fields.includes(field)))
      out.push({ field, file: new PositionalFile(posix.join(dir, name)), parse, fallback });
  };
  if (dirs.version === 2) {
    add("memoryUsageBytes", dirs.memory, "memory.current", parseCgroupUint);
    add("memoryPeakBytes", dirs.memory, "memory.peak", parseCgroupUint); // Linux 5.19 and later
    add("memoryLimitBytes", dirs.memory, "memory.max", parseV2Max);
    add("oomKills", dirs.memory, "memory.events", key("oom_kill"));
    add("cpuNs", dirs.cpu, "cpu.stat", key("usage_usec", 1000));
    add("threads", dirs.pids, "pids.current", parseCgroupUint);
    add("threads", dirs.threads, "cgroup.threads", countLines, true);
  } else {
    add("memoryUsageBytes", dirs.memory, "memory.usage_in_bytes", parseCgroupUint);
    add("memoryPeakBytes", dirs.memory, "memory.max_usage_in_bytes", parseCgroupUint);
    add("memoryLimitBytes", dirs.memory, "memory.limit_in_bytes", parseV1Limit);
    add("oomKills", dirs.memory, "memory.oom_control", key("oom_kill")); // Linux 4.13 and later
    add("cpuNs", dirs.cpu, "cpuacct.usage", parseCgroupUint);
    add("threads", dirs.pids, "pids.current", parseCgroupUint);
    add("threads", dirs.threads, "tasks", countLines, true);
  }
  return out;
}

/**
 * One cgroup's usage, read again and again. A file that does not exist (controller not
 * enabled, older kernel, cgroup removed) leaves its value out: not measured, never 0. When a
 * cgroup is removed and made again under the same path (a task restarted), the files are opened
 * again.
 */
export class CgroupReader {
  readonly dirs: CgroupDirs;
  readonly #sources: Source[];

  /** `fields`: only these values are read (and only their files opened); default every one. */
  constructor(dirs: CgroupDirs, fields?: readonly CgroupField[]) {
    this.dirs = dirs;
    this.#sources = sourcesFor(dirs, fields);
  }

  /** Reads every file once. */
  read(): CgroupReading {
    const values: Partial<Record<CgroupField, number | null>> = {};
    const problems: string[] = [];
    for (const s of this.#sources) {
      if (s.fallback && values[s.field] !== undefined) continue;
      const text = s.file.read();
      if (text === undefined) continue;
      try {
        const v = s.parse(text, s.file.path);
        if (v !== undefined) values[s.field] = v;
      } catch (err) {
        if (!(err instanceof ProcfsParseError)) throw err;
        problems.push(err.message);
      }
    }
    return { values, problems };
  }

  /** Releases every handle. Idempotent. */
  close(): void {
    for (const s of this.#sources) s.file.close();
  }
}
