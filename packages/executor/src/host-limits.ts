import { readFile } from "node:fs/promises";

/** /proc/<pid>/limits row names and the OCI rlimit types they are. */
const LIMIT_NAMES: Record<string, string> = {
  "Max cpu time": "RLIMIT_CPU",
  "Max file size": "RLIMIT_FSIZE",
  "Max data size": "RLIMIT_DATA",
  "Max stack size": "RLIMIT_STACK",
  "Max core file size": "RLIMIT_CORE",
  "Max resident set": "RLIMIT_RSS",
  "Max processes": "RLIMIT_NPROC",
  "Max open files": "RLIMIT_NOFILE",
  "Max locked memory": "RLIMIT_MEMLOCK",
  "Max address space": "RLIMIT_AS",
  "Max file locks": "RLIMIT_LOCKS",
  "Max pending signals": "RLIMIT_SIGPENDING",
  "Max msgqueue size": "RLIMIT_MSGQUEUE",
  "Max nice priority": "RLIMIT_NICE",
  "Max realtime priority": "RLIMIT_RTPRIO",
  "Max realtime timeout": "RLIMIT_RTTIME",
};

/** Every OCI rlimit type Linux has (`RLIMIT_NOFILE`, …). */
export const RLIMIT_TYPES: ReadonlySet<string> = new Set(Object.values(LIMIT_NAMES));

/** Hard limits by OCI rlimit type; Infinity for "unlimited". */
export type HardLimits = ReadonlyMap<string, number>;

/** Parses the text of /proc/<pid>/limits into hard limits by OCI rlimit type. */
export function parseLimits(text: string): HardLimits {
  const out = new Map<string, number>();
  for (const line of text.split("\n").slice(1)) {
    const name = Object.keys(LIMIT_NAMES).find((n) => line.startsWith(n));
    if (!name) continue;
    const cols = line.slice(name.length).trim().split(/\s+/);
    const hard = cols[1];
    if (hard === undefined) continue;
    out.set(LIMIT_NAMES[name]!, hard === "unlimited" ? Infinity : Number(hard));
  }
  return out;
}

/** This process's hard limits: what runc, started below this node's containerd, can still grant. */
export async function readHardLimits(pid: number | "self" = "self"): Promise<HardLimits> {
  return parseLimits(await readFile(`/proc/${pid}/limits`, "utf8"));
}

/** An OCI rlimit. */
export interface Rlimit {
  type: string;
  hard: number;
  soft: number;
}

/**
 * Clamps each rlimit to the host's hard limit (raising one needs CAP_SYS_RESOURCE, which
 * the host may not have: runc would then fail with "error setting rlimits"), keeping
 * soft ≤ hard.
 */
export function clampRlimits<R extends Rlimit>(rlimits: readonly R[], host: HardLimits): R[] {
  return rlimits.map((r) => {
    const max = host.get(r.type) ?? Infinity;
    const hard = Math.min(r.hard, max);
    return { ...r, hard, soft: Math.min(r.soft, hard) };
  });
}
