// Scenario (b): N apps published at once until all are RUNNING, against N parallel `ctr run -d`
// on the same containerd (another namespace), same rootfs directory, memory limit, CPU quota,
// cgroup layout and log file. Ours is timed from the first KV put to the last RUNNING a plain
// NATS subscriber (a core subscription to the status subjects, JSON.parse only) sees. Rounds
// alternate which side goes first; cleanup between, not timed.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileUri } from "@eve-tasks/containerd";
import { findExecutable } from "@eve-tasks/embedded";
import { CTR_NAMESPACE, TASK_ARGS, TASK_MEMORY_MIB, log, removeAll } from "./env.js";
import type { BenchEnv } from "./env.js";
import { cpuDelta, cpuSnapshot, load1, machineBusyPercent } from "./cpu.js";
import { median, medians, nowMs, percentile, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";

const MiB = 2 ** 20;
const TARGET = 0.9;

export interface BurstOptions {
  apps: number;
  rounds: number;
  settleMs: number;
}

interface Round {
  wallMs: number;
  /** CPU ms by component during the round (see cpu.ts). */
  cpuMs: Record<string, number>;
  /** Whole machine, percent of all CPUs. */
  machineBusyPct: number;
  /** Per app: start of the burst → its RUNNING (ours) or its `ctr run -d` exit (baseline). */
  perAppMs: number[];
  /** Ours only: start → every publish acked, → every TaskConfig seen (traced runs), → first RUNNING. */
  allPublishedMs?: number;
  allTaskConfigsMs?: number;
  firstRunningMs?: number;
}

export async function burst(env: BenchEnv, o: BurstOptions): Promise<ScenarioResult> {
  const ctr = findExecutable("ctr");
  if (ctr === undefined) throw new Error("ctr not found (it comes with containerd)");
  const timeoutMs = 180_000;
  const cpuTargets = { pids: env.pids, containerdAddress: env.containerd.address };
  const loadAtStart = load1();

  const ours = async (): Promise<Round> => {
    await env.assertWorkersAlive();
    const uuids = Array.from({ length: o.apps }, () => randomUUID());
    const configs = uuids.map((u) => env.app(u));
    const cpu0 = await cpuSnapshot(cpuTargets);
    const t0 = nowMs();
    await Promise.all(uuids.map((u, i) => env.configs.publish(u, configs[i]!)));
    const tPublished = nowMs();
    const running = await Promise.all(uuids.map((u) => env.seen.when(u, "plain:RUNNING", timeoutMs)));
    const tcs = uuids.map((u) => env.seen.time(u, "taskconfig") ?? NaN);
    const cpu1 = await cpuSnapshot(cpuTargets);
    const round: Round = {
      wallMs: Math.max(...running) - t0,
      cpuMs: cpuDelta(cpu0, cpu1),
      machineBusyPct: machineBusyPercent(cpu0, cpu1),
      perAppMs: running.map((t) => t - t0),
      allPublishedMs: tPublished - t0,
      allTaskConfigsMs: env.traced ? Math.max(...tcs) - t0 : undefined,
      firstRunningMs: Math.min(...running) - t0,
    };
    // Not timed: delete them all and wait until the executor has removed every one.
    const tDelete = nowMs();
    await Promise.all(uuids.map((u) => env.configs.unpublish(u)));
    await Promise.all(uuids.map((u) => env.seen.when(u, "deleted", timeoutMs)));
    for (const u of uuids) env.seen.forget(u);
    const left = await env.eve.containers.list();
    if (left.length > 0) throw new Error(`${left.length} container(s) left in the executor's namespace`);
    log(`    ours: removed ${o.apps} apps in ${Math.round(nowMs() - tDelete)} ms (not timed)`);
    return round;
  };

  const ctrRun = (id: string, logPath: string): Promise<number> =>
    new Promise((ok, fail) => {
      const args = [
        "--address",
        env.containerd.address,
        "--namespace",
        CTR_NAMESPACE,
        "run",
        "--detach",
        "--rootfs",
        "--memory-limit",
        String(TASK_MEMORY_MIB * MiB),
        "--cpus",
        "1",
        "--cgroup",
        `/${CTR_NAMESPACE}/${id}`,
        "--log-uri",
        fileUri(logPath),
        env.rootfs,
        id,
        ...TASK_ARGS,
      ];
      execFile(ctr, args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (err, _stdout, stderr) => {
        if (err) fail(new Error(`ctr run ${id}: ${stderr.trim() || err.message}`));
        else ok(nowMs());
      });
    });

  const baseline = async (): Promise<Round> => {
    const ids = Array.from({ length: o.apps }, () => randomUUID());
    const logs = ids.map((id) => join(env.baselineLogDir, id, "console.log"));
    await Promise.all(ids.map((id) => mkdir(join(env.baselineLogDir, id), { recursive: true })));
    const cpu0 = await cpuSnapshot(cpuTargets);
    const t0 = nowMs();
    const done = await Promise.all(ids.map((id, i) => ctrRun(id, logs[i]!)));
    const cpu1 = await cpuSnapshot(cpuTargets);
    const round: Round = {
      wallMs: Math.max(...done) - t0,
      cpuMs: cpuDelta(cpu0, cpu1),
      machineBusyPct: machineBusyPercent(cpu0, cpu1),
      perAppMs: done.map((t) => t - t0),
    };
    const tasks = await env.ctrClient.tasks.list();
    const runningCount = tasks.filter((t) => t.status === "RUNNING").length;
    if (runningCount !== o.apps) throw new Error(`ctr baseline: ${runningCount}/${o.apps} tasks RUNNING`);
    const tDelete = nowMs();
    await removeAll(env.ctrClient);
    log(`    baseline: removed ${o.apps} tasks in ${Math.round(nowMs() - tDelete)} ms (not timed)`);
    return round;
  };

  log(`(b) burst: ${o.apps} apps at once vs ${o.apps} parallel \`ctr run -d\`, ${o.rounds} round(s) each`);
  // Warm-up, not timed: one ctr run (binary, namespace, first cgroup parent).
  await ctrRun(randomUUID(), join(env.baselineLogDir, "warmup.log"));
  await removeAll(env.ctrClient);

  const oursRounds: Round[] = [];
  const baseRounds: Round[] = [];
  for (let r = 0; r < o.rounds; r++) {
    const order = r % 2 === 0 ? (["ours", "baseline"] as const) : (["baseline", "ours"] as const);
    for (const side of order) {
      await sleep(o.settleMs);
      if (side === "ours") {
        const x = await ours();
        oursRounds.push(x);
        log(
          `  round ${r + 1} ours: ${x.wallMs.toFixed(0)} ms (all published ${x.allPublishedMs!.toFixed(0)}` +
            (env.traced ? `, all TaskConfigs ${x.allTaskConfigsMs!.toFixed(0)}` : "") +
            `, first RUNNING ${x.firstRunningMs!.toFixed(0)}); CPU ms ${JSON.stringify(x.cpuMs)}`,
        );
      } else {
        const x = await baseline();
        baseRounds.push(x);
        log(`  round ${r + 1} baseline: ${x.wallMs.toFixed(0)} ms; CPU ms ${JSON.stringify(x.cpuMs)}`);
      }
    }
  }

  const oursWall = oursRounds.map((x) => x.wallMs);
  const baseWall = baseRounds.map((x) => x.wallMs);
  const ratio = median(oursWall) / median(baseWall);
  const ourPerApp = oursRounds.flatMap((x) => x.perAppMs);
  const basePerApp = baseRounds.flatMap((x) => x.perAppMs);
  return {
    scenario: `burst-${o.apps}`,
    n: o.apps,
    rounds: o.rounds,
    medianMs: r1(median(oursWall)),
    p95Ms: r1(percentile(oursWall, 95)),
    baselineMedianMs: r1(median(baseWall)),
    baselineP95Ms: r1(percentile(baseWall, 95)),
    ratio: r3(ratio),
    target: `<=${TARGET}`,
    met: ratio <= TARGET,
    baseline: `${o.apps} parallel \`ctr run -d --rootfs\` in namespace ${CTR_NAMESPACE}`,
    // Each round's ours / the baseline's of the same round: the spread of the ratio.
    ratioPerRound: oursWall.map((w, i) => r3(w / baseWall[i]!)),
    wallMs: oursWall.map(r1),
    baselineWallMs: baseWall.map(r1),
    perApp: {
      medianMs: r1(median(ourPerApp)),
      p95Ms: r1(percentile(ourPerApp, 95)),
      baselineMedianMs: r1(median(basePerApp)),
      baselineP95Ms: r1(percentile(basePerApp, 95)),
    },
    breakdownMedianMs: {
      allPublished: r1(median(oursRounds.map((x) => x.allPublishedMs!))),
      ...(env.traced ? { allTaskConfigs: r1(median(oursRounds.map((x) => x.allTaskConfigsMs!))) } : {}),
      firstRunning: r1(median(oursRounds.map((x) => x.firstRunningMs!))),
    },
    // On a CPU-bound burst, wall time follows the machine's total load, other users included:
    // the CPU our processes and the baseline's used is the comparison that load does not skew.
    accountedCpuRatio: r3(
      median(oursRounds.map((x) => x.cpuMs.accounted ?? NaN)) /
        median(baseRounds.map((x) => x.cpuMs.accounted ?? NaN)),
    ),
    cpuMedianMs: {
      ours: medianByKey(oursRounds.map((x) => x.cpuMs)),
      baseline: medianByKey(baseRounds.map((x) => x.cpuMs)),
    },
    machineBusyPct: {
      ours: oursRounds.map((x) => x.machineBusyPct),
      baseline: baseRounds.map((x) => x.machineBusyPct),
    },
    load1: { start: loadAtStart, end: load1() },
  };
}

/** Per key, the median over rounds. */
function medianByKey(rounds: readonly Record<string, number>[]): Record<string, number> {
  const keys = [...new Set(rounds.flatMap((r) => Object.keys(r)))];
  return medians(Object.fromEntries(keys.map((k) => [k, rounds.map((r) => r[k] ?? 0)])));
}
