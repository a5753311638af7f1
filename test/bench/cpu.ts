// CPU accounting from /proc: where the CPU time of a burst goes (workers, nats-server, containerd,
// shims and their runc children, ctr clients) and how busy the whole machine was meanwhile (other
// users of the machine show up as the difference).
import { readFile, readdir } from "node:fs/promises";
import { loadavg } from "node:os";

const TICKS_PER_SECOND = 100; // USER_HZ; getconf CLK_TCK is 100 on Linux.

/** utime, stime, cutime, cstime of a process in ms; undefined when it is gone. */
async function procCpuMs(pid: number | "self"): Promise<{ self: number; children: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the comm: state(3) ppid … utime(14) stime(15) cutime(16) cstime(17), 0-based from field 3.
    const n = (i: number): number => Number(f[i - 3]);
    return {
      self: ((n(14) + n(15)) * 1000) / TICKS_PER_SECOND,
      children: ((n(16) + n(17)) * 1000) / TICKS_PER_SECOND,
    };
  } catch {
    return undefined;
  }
}

/** Busy and total CPU time of the machine (all CPUs) in ms, from /proc/stat. */
async function machineMs(): Promise<{ busy: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: ((total - idle) * 1000) / TICKS_PER_SECOND, total: (total * 1000) / TICKS_PER_SECOND };
}

/** PIDs of the shims of the containerd listening on `address` (they outlive their parent). */
async function shimPids(address: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const cmd = await readFile(`/proc/${d}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("containerd-shim") && cmd.split("\0").includes(address)) out.push(Number(d));
  }
  return out;
}

/** A snapshot of CPU time by component (ms). */
export interface CpuSnapshot {
  byName: Record<string, number>;
  machineBusy: number;
  machineTotal: number;
}

/** The processes to account, by name; shims are found by the containerd address. */
export interface CpuTargets {
  pids: Record<string, number>;
  containerdAddress: string;
}

export async function cpuSnapshot(t: CpuTargets): Promise<CpuSnapshot> {
  const byName: Record<string, number> = {};
  for (const [name, pid] of Object.entries(t.pids)) {
    const c = await procCpuMs(pid);
    // containerd's children: the short-lived `containerd-shim-runc-v2 start` it waits for.
    byName[name] = (c?.self ?? 0) + (name === "containerd" ? (c?.children ?? 0) : 0);
  }
  let shims = 0;
  for (const pid of await shimPids(t.containerdAddress)) {
    const c = await procCpuMs(pid);
    shims += (c?.self ?? 0) + (c?.children ?? 0); // children: runc and runc init, once reaped
  }
  byName.shims = shims;
  const self = await procCpuMs("self");
  byName.bench = self?.self ?? 0;
  byName["ctr clients"] = self?.children ?? 0;
  const m = await machineMs();
  return { byName, machineBusy: m.busy, machineTotal: m.total };
}

/**
 * CPU ms used between two snapshots by component, "accounted" (their sum), "machine" (everything,
 * all CPUs) and "other" (machine minus accounted: other users of the machine, kernel threads). Shims are
 * counted at `after` only (they are new in each round: take `after` before removing the tasks).
 */
export function cpuDelta(before: CpuSnapshot, after: CpuSnapshot): Record<string, number> {
  const out: Record<string, number> = {};
  let ours = 0;
  for (const [name, v] of Object.entries(after.byName)) {
    const d = name === "shims" ? v : v - (before.byName[name] ?? 0);
    out[name] = Math.round(d);
    ours += d;
  }
  out.accounted = Math.round(ours);
  out.machine = Math.round(after.machineBusy - before.machineBusy);
  out.other = Math.round(out.machine - ours);
  return out;
}

/** How busy the whole machine was between two snapshots, in percent of all CPUs. */
export function machineBusyPercent(before: CpuSnapshot, after: CpuSnapshot): number {
  const total = after.machineTotal - before.machineTotal;
  return total > 0 ? Math.round(((after.machineBusy - before.machineBusy) / total) * 1000) / 10 : NaN;
}

/** The 1-minute load average. */
export function load1(): number {
  return Math.round(loadavg()[0]! * 100) / 100;
}
