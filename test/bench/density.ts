// Scenario "density": N idle tasks (default 500) on one node run by the real launcher (`npm
// start`'s process, pointed at the bench's nats-server and containerd through NATS_URL and
// CONTAINERD_ADDRESS) with all four workers at their defaults (metrics every 5 s). Measured from
// /proc over a window (default 60 s) once everything has settled: the CPU of the launcher and its
// workers together, against 2.5 % of one core, and their summed RSS, against 400 MB; each
// process's share is reported. nats-server, containerd and the shims are reported for scale, not
// counted. The bench's own spec-builder and task-executor are stopped meanwhile (one executor
// per node) and started again afterwards.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { randomUUID } from "node:crypto";
import { spawnLogged } from "@eve-tasks/embedded";
import type { ManagedProcess } from "@eve-tasks/embedded";
import { readProcStat, readProcStatus } from "@eve-tasks/procfs";
import type { BenchEnv } from "./env.js";
import { REPO, log } from "./env.js";
import { load1 } from "./cpu.js";
import { mapLimit, median, nowMs, percentile, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";

const TICKS_PER_SECOND = 100; // USER_HZ
const MB = 1e6;
/** Targets: CPU ms per wall second of launcher + workers (2.5 % of one core), and their RSS. */
const CPU_TARGET_MS_PER_S = 25;
const RSS_TARGET_BYTES = 400 * MB;
const WORKERS = ["spec-builder", "task-executor", "proc-monitor", "hypervisor-seed-fetcher"] as const;

export interface DensityOptions {
  tasks: number;
  /** Length of the measured window. */
  measureMs: number;
  /** Slices the window is cut in (median and p95 of CPU per second). */
  sliceMs: number;
  /** After every task is RUNNING and the tools image is ready: time to settle before measuring. */
  settleMs: number;
}

/** The launcher's worker children by name (from their command lines). */
async function workerPids(launcherPid: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const st = await readProcStat(Number(d)).catch(() => undefined);
    if (st?.ppid !== launcherPid) continue;
    const cmd = await readFile(`/proc/${d}/cmdline`, "utf8").catch(() => "");
    const name = WORKERS.find((w) => cmd.includes(`/services/${w}/dist/main.js`));
    if (name !== undefined) out[name] = Number(d);
  }
  return out;
}

async function cpuMs(pid: number): Promise<number> {
  const s = await readProcStat(pid);
  if (!s) throw new Error(`PID ${pid} is gone`);
  return ((s.utimeTicks + s.stimeTicks) * 1000) / TICKS_PER_SECOND;
}

async function rss(pid: number): Promise<number> {
  return (await readProcStatus(pid))?.vmRssBytes ?? NaN;
}

/**
 * Proportional set size: resident memory with each page shared by n processes counted 1/n. The
 * five Node processes map the same node binary, which RSS counts in each of them; the sum of PSS
 * is what they take from the machine together.
 */
async function pss(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, "utf8").catch(() => "");
  const kb = /^Pss:\s+(\d+) kB$/m.exec(text)?.[1];
  return kb === undefined ? NaN : Number(kb) * 1024;
}

/** PIDs of the shims of the containerd at `address`. */
async function shimPids(address: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const cmd = await readFile(`/proc/${d}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("containerd-shim") && cmd.split("\0").includes(address)) out.push(Number(d));
  }
  return out;
}

async function untilLogLine(
  file: string,
  re: RegExp,
  timeoutMs: number,
  proc: ManagedProcess,
): Promise<string> {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    const text = await readFile(file, "utf8").catch(() => "");
    const line = text.split("\n").find((l) => re.test(l));
    if (line !== undefined) return line;
    if (proc.hasExited()) throw new Error(`the launcher exited; see ${file}`);
    if (nowMs() > deadline)
      throw new Error(`no line matching ${String(re)} in ${file} within ${timeoutMs} ms`);
    await sleep(500);
  }
}

export async function density(env: BenchEnv, o: DensityOptions): Promise<ScenarioResult> {
  const loadAtStart = load1();
  log(`(density) ${o.tasks} idle tasks under the launcher; measuring ${o.measureMs / 1000} s`);
  await env.stopWorker("spec-builder");
  await env.stopWorker("task-executor");
  // The workers' environment at the launcher's defaults: only where things are, and room for
  // N tasks of 64 MiB in memory admission (the tasks themselves use ~1 MB each).
  const launcherEnv: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(env.childEnv).filter(
      ([k]) => !["EVE_METRICS_INTERVAL_MS", "EVE_ACCEL", "LOG_LEVEL", "EVE_NODE_MEMORY_MIB"].includes(k),
    ),
  );
  launcherEnv.EVE_NODE_MEMORY_MIB = String(Math.max(16_384, o.tasks * 64 + 4096));
  const launcherLog = join(env.dir, "logs", "launcher.out");
  const launcher = await spawnLogged({
    command: process.execPath,
    args: [join(REPO, "packages/launcher/dist/main.js")],
    logFile: launcherLog,
    env: launcherEnv,
    cwd: REPO,
  });
  log(`launcher PID ${launcher.pid}, output ${launcherLog}`);
  const uuids = Array.from({ length: o.tasks }, () => randomUUID());
  try {
    // The workers are up and the runtime images are built or found (start-up work): the
    // launcher provides them in turn, `jvm` last.
    await untilLogLine(launcherLog, /runtime jvm: ((built|cached) image|.*will not run)/, 600_000, launcher);
    let pids: Record<string, number> = {};
    for (let i = 0; i < 120 && Object.keys(pids).length < WORKERS.length; i++) {
      pids = await workerPids(launcher.pid);
      await sleep(500);
    }
    if (Object.keys(pids).length < WORKERS.length) {
      throw new Error(`launcher's workers: found only ${Object.keys(pids).join(", ")}`);
    }
    const t0 = nowMs();
    await mapLimit(uuids, 50, (u) => env.configs.publish(u, env.app(u)));
    await Promise.all(uuids.map((u) => env.seen.when(u, "RUNNING", 900_000)));
    log(
      `(density) ${o.tasks} tasks RUNNING in ${((nowMs() - t0) / 1000).toFixed(1)} s; settling ${o.settleMs / 1000} s`,
    );
    await sleep(o.settleMs);
    const now = await workerPids(launcher.pid);
    for (const w of WORKERS) {
      if (now[w] !== pids[w]) throw new Error(`${w} restarted during the run (PID ${pids[w]} → ${now[w]})`);
    }

    const all: Record<string, number> = { launcher: launcher.pid, ...pids };
    const others: Record<string, number> = { "nats-server": env.nats.pid, containerd: env.containerd.pid };
    const shims = await shimPids(env.containerd.address);
    const snap = async (): Promise<{ t: number; ms: Record<string, number>; shimsMs: number }> => {
      const ms: Record<string, number> = {};
      for (const [name, pid] of Object.entries({ ...all, ...others })) ms[name] = await cpuMs(pid);
      let shimsMs = 0;
      for (const pid of shims) shimsMs += await cpuMs(pid).catch(() => 0);
      return { t: nowMs(), ms, shimsMs };
    };
    const start = await snap();
    let prev = start;
    const slices: number[] = [];
    const rssTotals: number[] = [];
    const pssTotals: number[] = [];
    const rssBy: Record<string, number[]> = Object.fromEntries(Object.keys(all).map((k) => [k, []]));
    const pssBy: Record<string, number[]> = Object.fromEntries(Object.keys(all).map((k) => [k, []]));
    while (prev.t - start.t < o.measureMs) {
      await sleep(o.sliceMs);
      const cur = await snap();
      const used = Object.keys(all).reduce((sum, k) => sum + (cur.ms[k]! - prev.ms[k]!), 0);
      slices.push((used / (cur.t - prev.t)) * 1000);
      let total = 0;
      let totalPss = 0;
      for (const [name, pid] of Object.entries(all)) {
        const b = await rss(pid);
        rssBy[name]!.push(b);
        total += b;
        const p = await pss(pid);
        pssBy[name]!.push(p);
        totalPss += p;
      }
      rssTotals.push(total);
      pssTotals.push(totalPss);
      prev = cur;
    }
    const wallS = (prev.t - start.t) / 1000;
    const perS = (k: string): number => (prev.ms[k]! - start.ms[k]!) / wallS;
    const cpuMsPerS = Object.keys(all).reduce((sum, k) => sum + perS(k), 0);
    const maxRss = Math.max(...rssTotals);
    const ratio = cpuMsPerS / CPU_TARGET_MS_PER_S;
    const rssRatio = maxRss / RSS_TARGET_BYTES;
    const share = Object.fromEntries(
      Object.keys(all).map((k) => [
        k,
        {
          cpuPercentOfCore: r3(perS(k) / 10),
          rssMB: r1(Math.max(...rssBy[k]!) / MB),
          // Each slice's RSS: a worker still handing back what it grew while the tasks started
          // shows as a falling series.
          rssMBSlices: rssBy[k]!.map((b) => r1(b / MB)),
          pssMB: r1(Math.max(...pssBy[k]!) / MB),
        },
      ]),
    );
    const result: ScenarioResult = {
      scenario: `density-${o.tasks}`,
      n: o.tasks,
      // CPU ms per wall second of the launcher and its workers (10 = 1 % of one core).
      medianMs: r1(median(slices)),
      p95Ms: r1(percentile(slices, 95)),
      baselineMedianMs: CPU_TARGET_MS_PER_S,
      baselineP95Ms: CPU_TARGET_MS_PER_S,
      ratio: r3(ratio),
      target: "cpu<=2.5% of a core, rss<=400MB",
      met: ratio <= 1 && rssRatio <= 1,
      baseline: "the targets: 25 ms CPU per wall second (2.5 % of one core) and 400 MB RSS",
      wallS: r1(wallS),
      cpuPercentOfCore: r3(cpuMsPerS / 10),
      cpuMsPerSecondSlices: slices.map(r1),
      rssMB: r1(maxRss / MB),
      rssRatio: r3(rssRatio),
      // For scale, not the target: the same processes with their shared pages counted once.
      pssMB: r1(Math.max(...pssTotals) / MB),
      perProcess: share,
      forScaleCpuPercentOfCore: {
        ...Object.fromEntries(Object.keys(others).map((k) => [k, r3(perS(k) / 10)])),
        [`${shims.length} shims`]: r3((prev.shimsMs - start.shimsMs) / wallS / 10),
      },
      load1: [loadAtStart, load1()],
    };
    log(
      `(density) launcher + workers: ${result.cpuPercentOfCore as number} % of a core, ${result.rssMB as number} MB RSS (PSS ${result.pssMB as number} MB); ` +
        JSON.stringify(share),
    );
    return result;
  } finally {
    const t = nowMs();
    await mapLimit(uuids, 50, (u) => env.configs.unpublish(u));
    // Not a failure of the row (already measured), but said: what is left the safety net removes.
    const left = await env.seen.notDeleted(uuids, 600_000);
    if (left.length > 0)
      log(`(density) ${left.length} app(s) not removed by the executor: ${left.join(", ")}`);
    for (const u of uuids) env.seen.forget(u);
    log(
      `(density) removed ${o.tasks - left.length} of ${o.tasks} apps in ${((nowMs() - t) / 1000).toFixed(1)} s (not timed)`,
    );
    await launcher.stop({ signal: "SIGINT", graceMs: 120_000 });
    await env.startWorker("spec-builder");
    await env.startWorker("task-executor");
  }
}
