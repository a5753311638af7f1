import { ProcfsParseError } from "./errors.js";

/** One line of `/proc/<pid>/mountinfo` (see proc(5)), the fields the project uses. */
export interface MountInfo {
  /** Root of the mount within its filesystem (`/` for a whole cgroup hierarchy). */
  root: string;
  /** Where it is mounted. */
  mountPoint: string;
  /** `cgroup`, `cgroup2`, `tmpfs`, ... */
  fsType: string;
  source: string;
  /** Per-superblock options; for a v1 cgroup mount they name its controllers (`rw,memory`). */
  superOptions: string[];
}

/** mountinfo escapes space, tab, newline and backslash as octal (`\040`). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses the text of `/proc/<pid>/mountinfo`. */
export function parseMountinfo(text: string, file = "/proc/self/mountinfo"): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const f = line.split(" ");
    // id parent major:minor root mountPoint options [optional fields...] - fsType source superOptions
    const dash = f.indexOf("-", 6);
    if (dash < 0 || f.length < dash + 4) throw new ProcfsParseError(file, "not a mountinfo line", line);
    out.push({
      root: unescape(f[3]!),
      mountPoint: unescape(f[4]!),
      fsType: f[dash + 1]!,
      source: unescape(f[dash + 2]!),
      superOptions: f[dash + 3]!.split(","),
    });
  }
  return out;
}
