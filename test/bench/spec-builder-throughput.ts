// Scenario "throughput": the spec-builder's configs per second, 1 replica vs 2, with no executor.
// Each round: N app configs are put while no spec-builder runs (they wait in the shared durable
// consumer), then R replicas start, and a plain NATS subscriber to the TaskConfig subjects times
// the first to the last TaskConfig written: (N − 1) / that time is the rate, without the
// replicas' start-up or the bench's publishing in it. Targets: ≥ 5000 configs/s per replica and
// 2 replicas ≥ 1.8 × 1. CPU of the replicas, nats-server and the bench over the window says what
// bounds it. The bench's own spec-builder and task-executor are stopped meanwhile.
import { randomUUID } from "node:crypto";
import { readProcStat } from "@eve-tasks/procfs";
import type { ManagedProcess } from "@eve-tasks/embedded";
import type { BenchEnv } from "./env.js";
import { log } from "./env.js";
import { load1 } from "./cpu.js";
import { mapLimit, median, nowMs, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";

const TICKS_PER_SECOND = 100; // USER_HZ
const TARGET_PER_REPLICA = 5000;
const TARGET_SCALING = 1.8;

export interface ThroughputOptions {
  /** Configs per round. */
  configs: number;
  /** Rounds per replica count (alternating which count goes first). */
  rounds: number;
}

interface Round {
  replicas: number;
  perS: number;
  windowMs: number;
  /** The bench's puts of the N configs, acked, per second (before any replica ran). */
  publishPerS: number;
  /** CPU % of one core over the window, per process. */
  cpuPercent: Record<string, number>;
}

async function cpuMs(pid: number): Promise<number> {
  const s = await readProcStat(pid === 0 ? process.pid : pid);
  return s ? ((s.utimeTicks + s.stimeTicks) * 1000) / TICKS_PER_SECOND : NaN;
}

export async function specBuilderThroughput(env: BenchEnv, o: ThroughputOptions): Promise<ScenarioResult> {
  const loadAtStart = load1();
  log(`(throughput) spec-builder: ${o.configs} configs, 1 vs 2 replicas, ${o.rounds} round(s) each`);
  await env.stopWorker("spec-builder");
  await env.stopWorker("task-executor");

  const prefix = "$KV.spec-builder.TaskConfig.";
  let expect = new Set<string>();
  let written = new Set<string>();
  let deleted = new Set<string>();
  let first = NaN;
  let last = NaN;
  let onAll: (() => void) | undefined;
  const sub = env.bus.nc.subscribe(`${prefix}>`, {
    callback: (err, msg) => {
      if (err) return;
      const key = msg.subject.slice(prefix.length);
      if (!expect.has(key)) return;
      const op = msg.headers?.get("KV-Operation");
      if (op === "DEL" || op === "PURGE") {
        deleted.add(key);
        if (deleted.size === expect.size) onAll?.();
        return;
      }
      const t = nowMs();
      if (written.has(key)) return;
      written.add(key);
      if (written.size === 1) first = t;
      last = t;
      if (written.size === expect.size) onAll?.();
    },
  });
  const until = (done: () => boolean, timeoutMs: number, what: string): Promise<void> =>
    done()
      ? Promise.resolve()
      : new Promise((ok, fail) => {
          const timer = setTimeout(
            () => fail(new Error(`(throughput) ${what} not done in ${timeoutMs} ms`)),
            timeoutMs,
          );
          onAll = () => {
            if (!done()) return;
            clearTimeout(timer);
            onAll = undefined;
            ok();
          };
        });

  const round = async (replicas: number): Promise<Round> => {
    const uuids = Array.from({ length: o.configs }, () => randomUUID());
    expect = new Set(uuids);
    written = new Set();
    deleted = new Set();
    first = NaN;
    const tp = nowMs();
    await mapLimit(uuids, 256, (u) => env.configs.publish(u, env.app(u)));
    const publishPerS = (o.configs / (nowMs() - tp)) * 1000;
    const procs: ManagedProcess[] = [];
    try {
      for (let i = 0; i < replicas; i++)
        procs.push(await env.spawnExtra("spec-builder", `spec-builder-replica-${i + 1}`));
      // CPU over the window: from the first TaskConfig (sampled as soon as it is seen) to the last.
      const pidsOf = (): Record<string, number> => ({
        ...Object.fromEntries(procs.map((p, i) => [`replica ${i + 1}`, p.pid])),
        "nats-server": env.nats.pid,
        bench: 0,
      });
      const snap = async (): Promise<Record<string, number>> => {
        const out: Record<string, number> = {};
        for (const [k, pid] of Object.entries(pidsOf())) out[k] = await cpuMs(pid);
        return out;
      };
      while (written.size === 0) await new Promise((r) => setTimeout(r, 1));
      const cpu0 = await snap();
      const t0 = nowMs();
      await until(() => written.size === expect.size, 300_000, `${o.configs} TaskConfigs`);
      const cpu1 = await snap();
      const wall = nowMs() - t0;
      const windowMs = last - first;
      const cpuPercent = Object.fromEntries(
        Object.keys(cpu1).map((k) => [k, r1(((cpu1[k]! - cpu0[k]!) / wall) * 100)]),
      );
      // Not timed: delete them, the replicas delete their TaskConfigs.
      await mapLimit(uuids, 256, (u) => env.configs.unpublish(u));
      await until(() => deleted.size === expect.size, 300_000, `${o.configs} TaskConfig deletions`);
      return { replicas, perS: ((o.configs - 1) / windowMs) * 1000, windowMs, publishPerS, cpuPercent };
    } finally {
      await Promise.all(procs.map((p) => p.stop({ graceMs: 15_000 })));
    }
  };

  const rounds: Round[] = [];
  try {
    await round(1); // warm-up: the durable consumer, caches; not counted
    for (let r = 0; r < o.rounds; r++) {
      for (const replicas of r % 2 === 0 ? [1, 2] : [2, 1]) {
        const x = await round(replicas);
        rounds.push(x);
        log(
          `  round ${r + 1}, ${replicas} replica(s): ${Math.round(x.perS)} configs/s ` +
            `(${Math.round(x.windowMs)} ms; bench put ${Math.round(x.publishPerS)}/s); CPU % ${JSON.stringify(x.cpuPercent)}`,
        );
      }
    }
  } finally {
    sub.unsubscribe();
    await env.startWorker("spec-builder");
    await env.startWorker("task-executor");
  }
  const one = rounds.filter((x) => x.replicas === 1).map((x) => x.perS);
  const two = rounds.filter((x) => x.replicas === 2).map((x) => x.perS);
  const scaling = median(two) / median(one);
  const perReplica = median(one);
  const cpuBy = (n: number): Record<string, number> => {
    const rs = rounds.filter((x) => x.replicas === n);
    const keys = Object.keys(rs[0]!.cpuPercent);
    return Object.fromEntries(keys.map((k) => [k, r1(median(rs.map((x) => x.cpuPercent[k]!)))]));
  };
  return {
    scenario: "spec-builder throughput",
    n: o.configs,
    rounds: o.rounds,
    // Here "ms" columns hold configs/s: ours = 1 replica, baseline = 2 replicas.
    medianMs: r1(perReplica),
    p95Ms: r1(Math.min(...one)),
    baselineMedianMs: r1(median(two)),
    baselineP95Ms: r1(Math.min(...two)),
    ratio: r3(scaling),
    target: `>=${TARGET_PER_REPLICA}/s per replica, 2 replicas >=${TARGET_SCALING}x`,
    met: perReplica >= TARGET_PER_REPLICA && scaling >= TARGET_SCALING,
    baseline: "the same with 2 replicas (ratio = 2 replicas / 1)",
    oneReplicaPerS: one.map(r1),
    twoReplicasPerS: two.map(r1),
    benchPutPerS: r1(median(rounds.map((x) => x.publishPerS))),
    cpuPercentMedian: { oneReplica: cpuBy(1), twoReplicas: cpuBy(2) },
    load1: [loadAtStart, load1()],
  };
}
