// Scenario "proc-monitor": the proc-monitor's own cost with N running tasks (default 200) sampled
// every second. Its CPU seconds per wall second (utime + stime of its process, from /proc, over at
// least 30 s of steady state) and its RSS, against fixed targets: ≤ 1 % of one core, ≤ 80 MB.
// There is no baseline process to race: the "baseline" columns hold the targets.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { subscribe } from "@eve-tasks/bus";
import { spawnLogged } from "@eve-tasks/embedded";
import { readProcStat, readProcStatus } from "@eve-tasks/procfs";
import { messageTable } from "@eve-tasks/schemas";
import type { BenchEnv } from "./env.js";
import { REPO, log } from "./env.js";
import { load1 } from "./cpu.js";
import { median, nowMs, percentile, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";

const TICKS_PER_SECOND = 100; // USER_HZ
const MB = 1e6;
/** Targets: CPU ms per wall second (1 % of one core) and RSS bytes (80 MB). */
const CPU_TARGET_MS_PER_S = 10;
const RSS_TARGET_BYTES = 80 * MB;

export interface ProcMonitorBenchOptions {
  /** Running tasks to sample. */
  tasks: number;
  /** EVE_METRICS_INTERVAL_MS of the proc-monitor. */
  intervalMs: number;
  /** Length of the measured window. */
  measureMs: number;
  /** Length of each slice the window is cut in (for median and p95). */
  sliceMs: number;
  /** The workers' LOG_LEVEL. */
  logLevel: string;
  /** Extra node arguments for the proc-monitor (e.g. `--max-semi-space-size=1`). */
  nodeArgs: readonly string[];
}

async function cpuTicks(pid: number): Promise<number> {
  const s = await readProcStat(pid);
  if (!s) throw new Error(`proc-monitor (PID ${pid}) is gone`);
  return s.utimeTicks + s.stimeTicks;
}

async function rssBytes(pid: number): Promise<number> {
  const s = await readProcStatus(pid);
  if (!s?.vmRssBytes) throw new Error(`proc-monitor (PID ${pid}) is gone`);
  return s.vmRssBytes;
}

export async function procMonitorLoad(env: BenchEnv, o: ProcMonitorBenchOptions): Promise<ScenarioResult> {
  const loadAtStart = load1();
  // The proc-monitor is started here (env.ts starts the other workers), with their environment.
  const monitor = await spawnLogged({
    command: process.execPath,
    args: [...o.nodeArgs, join(REPO, "services/proc-monitor/dist/main.js")],
    logFile: join(env.dir, "logs", "proc-monitor.log"),
    env: {
      PATH: process.env.PATH,
      GLIBC_TUNABLES: env.childEnv.GLIBC_TUNABLES,
      NATS_URL: env.nats.url,
      EVE_DATA_DIR: join(env.dir, "data"),
      EVE_RUN_DIR: join(env.dir, "run"),
      EVE_METRICS_INTERVAL_MS: String(o.intervalMs),
      LOG_LEVEL: o.logLevel,
    },
    cwd: REPO,
  });
  log(`proc-monitor PID ${monitor.pid}, log ${monitor.logFile}`);
  const lastSampledAt = new Map<string, string>();
  let updates = 0;
  const metrics = await subscribe(env.bus, {
    ...messageTable("TaskMetrics"),
    onCreate: (k, v) => void lastSampledAt.set(k, v.sampledAt),
    onModify: (k, v) => {
      updates++;
      lastSampledAt.set(k, v.sampledAt);
    },
  });
  const uuids = Array.from({ length: o.tasks }, () => randomUUID());
  try {
    const t0 = nowMs();
    await Promise.all(uuids.map((u) => env.configs.publish(u, env.app(u))));
    await Promise.all(uuids.map((u) => env.seen.when(u, "RUNNING", 300_000)));
    log(`${o.tasks} tasks RUNNING in ${((nowMs() - t0) / 1000).toFixed(1)} s`);
    // Every task sampled at least once, then a few intervals to settle.
    const deadline = nowMs() + 30_000;
    while (uuids.some((u) => !lastSampledAt.has(u))) {
      if (nowMs() > deadline) throw new Error("not every task has TaskMetrics 30 s after RUNNING");
      await sleep(200);
    }
    await sleep(5 * o.intervalMs);
    if (monitor.hasExited()) throw new Error(`proc-monitor exited; see ${monitor.logFile}`);

    log(`measuring the proc-monitor for ${o.measureMs / 1000} s`);
    const slices: number[] = [];
    const rss: number[] = [];
    const updates0 = updates;
    const start = { t: nowMs(), ticks: await cpuTicks(monitor.pid) };
    let prev = start;
    while (prev.t - start.t < o.measureMs) {
      await sleep(o.sliceMs);
      const now = { t: nowMs(), ticks: await cpuTicks(monitor.pid) };
      slices.push((((now.ticks - prev.ticks) * 1000) / TICKS_PER_SECOND / (now.t - prev.t)) * 1000);
      rss.push(await rssBytes(monitor.pid));
      prev = now;
    }
    const wallS = (prev.t - start.t) / 1000;
    const cpuMsPerS = ((prev.ticks - start.ticks) * 1000) / TICKS_PER_SECOND / wallS;
    const publishedPerS = (updates - updates0) / wallS;
    const fresh = uuids.filter((u) => Date.now() - Date.parse(lastSampledAt.get(u) ?? "") < 3 * o.intervalMs);
    const maxRss = Math.max(...rss);
    // For scale: the RSS of the other workers (Node, nats.js, zod, pino loaded too).
    const workersRssMB: Record<string, number> = {};
    for (const name of ["spec-builder", "task-executor"]) {
      const pid = env.pids[name];
      const st = pid === undefined ? undefined : await readProcStatus(pid);
      if (st?.vmRssBytes) workersRssMB[name] = r1(st.vmRssBytes / MB);
    }
    const ratio = cpuMsPerS / CPU_TARGET_MS_PER_S;
    const rssRatio = maxRss / RSS_TARGET_BYTES;
    return {
      scenario: `proc-monitor-${o.tasks}`,
      n: o.tasks,
      // "ms" here: CPU ms the proc-monitor used per wall second (10 = 1 % of a core).
      medianMs: r1(median(slices)),
      p95Ms: r1(percentile(slices, 95)),
      baselineMedianMs: CPU_TARGET_MS_PER_S,
      baselineP95Ms: CPU_TARGET_MS_PER_S,
      ratio: r3(ratio),
      target: `cpu<=1% of a core, rss<=80MB`,
      met: ratio <= 1 && rssRatio <= 1,
      baseline: "the targets: 10 ms CPU per wall second (1 % of one core) and 80 MB RSS",
      intervalMs: o.intervalMs,
      nodeArgs: o.nodeArgs,
      wallS: r1(wallS),
      cpuPercentOfCore: r3(cpuMsPerS / 10),
      cpuMsPerSecondSlices: slices.map(r1),
      rssMB: r1(maxRss / MB),
      rssMBLast: r1(rss[rss.length - 1]! / MB),
      rssRatio: r3(rssRatio),
      metricsPublishedPerS: r1(publishedPerS),
      otherWorkersRssMB: workersRssMB,
      tasksWithFreshMetrics: fresh.length,
      load1: [loadAtStart, load1()],
    };
  } finally {
    await metrics.close();
    await Promise.all(uuids.map((u) => env.configs.unpublish(u)));
    // Not a failure of the row (already measured), but said: what is left the safety net removes.
    const left = await env.seen.notDeleted(uuids, 120_000);
    if (left.length > 0)
      log(`(proc-monitor) ${left.length} app(s) not removed by the executor: ${left.join(", ")}`);
    await monitor.stop({ graceMs: 10_000 });
  }
}
