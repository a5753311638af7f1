// `npm run bench`: benchmarks of the real workers against bare containerd, each scenario against a
// baseline measured in the same run. One JSON line per scenario on stdout; progress and a summary
// table on stderr. Self-contained: its own nats-server, containerd, workers and rootfs in a temp
// dir, all stopped and removed at the end (containers first). Needs root, like the e2e tests.
//
// Knobs (environment): BENCH_SCENARIOS=a,b,exit,proc-monitor,density,throughput,pull  BENCH_N=300
// BENCH_WARMUP=3  BENCH_APPS=20,40,100 (one burst scenario per size)
// BENCH_ROUNDS=5  BENCH_SETTLE_MS=50  BENCH_LOG_LEVEL=warn  BENCH_KEEP=1 (keep the temp dir)
// BENCH_STRICT=1 (exit 1 when a target is missed)  BENCH_TRACE=1 (profile the workers' calls in
// scenario (a): see trace-hooks.ts; it perturbs what it measures a little).
// Scenario exit (anchor SIGKILL → status): BENCH_EXIT_N=50. Scenario resync (executor restart
// with running tasks): BENCH_RESYNC_TASKS=200 BENCH_RESYNC_ROUNDS=3.
// Scenario proc-monitor (not run unless named): BENCH_PM_TASKS=200 BENCH_PM_SECONDS=30
// BENCH_PM_INTERVAL_MS=1000 BENCH_PM_NODE_ARGS="--max-semi-space-size=1" (node flags of the proc-monitor).
// Scenario vm (VM app → guest marker vs qemu started directly): BENCH_VM_ROUNDS=3 BENCH_VM_MIB=128.
// Scenario jar (not run unless named; JAR app on the jvm runtime → first line vs `java -jar` in the
// same cgroup limits): BENCH_JAR_ROUNDS=5 BENCH_JAR_MIB=256.
// Scenario emulators (not run unless named; idle busybox as arm64 under qemu-aarch64 vs native,
// memory): BENCH_EMU_ROUNDS=3 BENCH_EMU_SETTLE_MS=5000.
// Scenario tax (measured anchor tax vs EVE's estimate): BENCH_TAX_SIZES=96,128,256 (Debian's kernel does not boot in 64 MiB)
// BENCH_TAX_SETTLE_MS=3000.
// Scenario fleet (not run unless named; its own hub and devices, see fleet.ts):
// BENCH_FLEET_SIZES=5,10,20 BENCH_FLEET_ROUNDS=3 BENCH_FLEET_IDLE_S=20.
// Scenario density (idle tasks under the real launcher): BENCH_DENSITY_TASKS=500
// BENCH_DENSITY_SECONDS=60 BENCH_DENSITY_SETTLE_S=20.
// Scenario throughput (spec-builder configs/s, 1 vs 2 replicas): BENCH_SB_CONFIGS=3000 BENCH_SB_ROUNDS=3.
import { workerNodeOptions } from "@eve-tasks/launcher";
import { burst } from "./burst.js";
import { density } from "./density.js";
import { specBuilderThroughput } from "./spec-builder-throughput.js";
import { executorResync } from "./executor-resync.js";
import { exitToStatus } from "./exit-to-status.js";
import { fleetBench } from "./fleet.js";
import { log, startBenchEnv } from "./env.js";
import { networkCost } from "./network-cost.js";
import type { BenchEnv } from "./env.js";
import { procMonitorLoad } from "./proc-monitor.js";
import { publishToRunning } from "./publish-to-running.js";
import { pullBench } from "./pull.js";
import { vmBoot, vmTax } from "./vm.js";
import { emulatorsMemory, jarFirstLine } from "./runtimes.js";
import type { EmulatorsResult } from "./runtimes.js";
import type { ScenarioResult } from "./result.js";
import { nowMs } from "./stats.js";
import { traceReport } from "./trace-report.js";
import type { TracedApp } from "./trace-report.js";

function intEnv(name: string, def: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${raw}`);
  return n;
}

function intListEnv(name: string, def: readonly number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return [...def];
  const xs = raw.split(",").map((x) => Number(x.trim()));
  if (xs.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${name}: integers >= 1, got ${raw}`);
  return xs;
}

const DEFAULT_SCENARIOS = "a,b,exit,proc-monitor,density,throughput,pull";

const opts = {
  scenarios: new Set((process.env.BENCH_SCENARIOS ?? DEFAULT_SCENARIOS).split(",").map((s) => s.trim())),
  // (a)'s samples spread with Tasks.Create (45–90 ms here): at 60 a side one run's ratio could
  // be ±0.05 off from sampling alone, at 600 ±0.02 (its bootstrap interval says so each run).
  n: intEnv("BENCH_N", 300),
  warmup: intEnv("BENCH_WARMUP", 3, 0),
  apps: intListEnv("BENCH_APPS", [20, 40, 100]),
  rounds: intEnv("BENCH_ROUNDS", 5),
  settleMs: intEnv("BENCH_SETTLE_MS", 50, 0),
  logLevel: process.env.BENCH_LOG_LEVEL ?? "warn",
  keep: process.env.BENCH_KEEP === "1",
  strict: process.env.BENCH_STRICT === "1",
  trace: process.env.BENCH_TRACE === "1",
  exitN: intEnv("BENCH_EXIT_N", 50),
  resyncTasks: intEnv("BENCH_RESYNC_TASKS", 200),
  resyncRounds: intEnv("BENCH_RESYNC_ROUNDS", 3),
  pmTasks: intEnv("BENCH_PM_TASKS", 200),
  pmSeconds: intEnv("BENCH_PM_SECONDS", 30),
  pmIntervalMs: intEnv("BENCH_PM_INTERVAL_MS", 1000, 100),
};

function summary(results: readonly ScenarioResult[]): string {
  const rows = [
    ["scenario", "n", "median ms", "p95 ms", "base median", "base p95", "ratio", "target", "met"],
    ...results.map((r) => [
      r.scenario,
      String(r.n),
      r.medianMs.toFixed(1),
      r.p95Ms.toFixed(1),
      r.baselineMedianMs.toFixed(1),
      r.baselineP95Ms.toFixed(1),
      r.ratio.toFixed(3),
      r.target,
      r.met ? "yes" : "NO",
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: readonly string[]): string =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

async function main(): Promise<number> {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    log("needs root (it starts its own containerd)");
    return 2;
  }
  for (const s of opts.scenarios) {
    const known = [
      "a",
      "b",
      "exit",
      "resync",
      "proc-monitor",
      "density",
      "throughput",
      "pull",
      "vm",
      "tax",
      "fleet",
      "net",
      "jar",
      "emulators",
    ];
    if (!known.includes(s)) throw new Error(`BENCH_SCENARIOS: unknown scenario ${s} (${known.join(", ")})`);
  }
  const started = nowMs();
  let env: BenchEnv | undefined;
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: cleaning up`);
    void (env?.teardown() ?? Promise.resolve())
      .catch((err: unknown) => log((err as Error).message))
      .finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const results: ScenarioResult[] = [];
  let traced: TracedApp[] = [];
  let taxRows: {
    guestMiB: number;
    measuredMiB: number;
    peakMiB: number;
    estimateMiB: number;
    overReserve: number;
  }[] = [];
  let emulators: EmulatorsResult | undefined;
  let failure: unknown;
  try {
    // Runtime tasks need the hypervisor-seed-fetcher (and the VM scenarios the proc-monitor).
    const vm = ["vm", "tax", "jar", "emulators"].some((s) => opts.scenarios.has(s));
    // The fleet scenario brings its own hub and devices; the others share one node.
    if ([...opts.scenarios].some((s) => s !== "fleet"))
      env = await startBenchEnv({ logLevel: opts.logLevel, keep: opts.keep, trace: opts.trace, vm });
    const needEnv = (): BenchEnv => {
      if (env === undefined) throw new Error("no bench environment");
      return env;
    };
    if (opts.scenarios.has("a")) {
      const a = await publishToRunning(needEnv(), {
        n: opts.n,
        warmup: opts.warmup,
        settleMs: opts.settleMs,
      });
      const r = a.result;
      traced = a.traced;
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("b")) {
      if (!opts.scenarios.has("a")) {
        // Scenario (a) warms the workers up; without it, one app through the whole path first.
        const uuid = crypto.randomUUID();
        const e = needEnv();
        await e.configs.publish(uuid, e.app(uuid));
        await e.seen.when(uuid, "RUNNING", 60_000);
        await e.configs.unpublish(uuid);
        await e.seen.when(uuid, "deleted", 60_000);
      }
      for (const apps of opts.apps) {
        const r = await burst(needEnv(), { apps, rounds: opts.rounds, settleMs: opts.settleMs });
        results.push(r);
        process.stdout.write(`${JSON.stringify(r)}\n`);
      }
    }
    if (opts.scenarios.has("net")) {
      results.push(
        ...(await networkCost(needEnv(), {
          n: intEnv("BENCH_NET_RUNS", 30),
          burst: intEnv("BENCH_NET_BURST", 50),
          settleMs: opts.settleMs,
        })),
      );
    }
    if (opts.scenarios.has("exit")) {
      const r = await exitToStatus(needEnv(), {
        n: opts.exitN,
        warmup: opts.warmup,
        settleMs: opts.settleMs,
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("resync")) {
      const r = await executorResync(needEnv(), { tasks: opts.resyncTasks, rounds: opts.resyncRounds });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("proc-monitor")) {
      const r = await procMonitorLoad(needEnv(), {
        tasks: opts.pmTasks,
        intervalMs: opts.pmIntervalMs,
        measureMs: opts.pmSeconds * 1000,
        sliceMs: 5000,
        logLevel: opts.logLevel,
        // As the launcher and the systemd unit run it, unless BENCH_PM_NODE_ARGS says otherwise.
        nodeArgs:
          process.env.BENCH_PM_NODE_ARGS === undefined
            ? workerNodeOptions("proc-monitor")
            : process.env.BENCH_PM_NODE_ARGS.split(" ").filter((a) => a !== ""),
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("density")) {
      const r = await density(needEnv(), {
        tasks: intEnv("BENCH_DENSITY_TASKS", 500),
        measureMs: intEnv("BENCH_DENSITY_SECONDS", 60) * 1000,
        sliceMs: 5000,
        settleMs: intEnv("BENCH_DENSITY_SETTLE_S", 20, 0) * 1000,
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("throughput")) {
      const r = await specBuilderThroughput(needEnv(), {
        configs: intEnv("BENCH_SB_CONFIGS", 3000),
        rounds: intEnv("BENCH_SB_ROUNDS", 3),
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("pull")) {
      const r = await pullBench({
        rounds: intEnv("BENCH_PULL_ROUNDS", 5),
        sizeMiB: intEnv("BENCH_PULL_MIB", 64),
        concurrency: process.env.BENCH_PULL_CONCURRENCY ? intEnv("BENCH_PULL_CONCURRENCY", 6) : undefined,
        keep: opts.keep,
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("vm")) {
      const r = await vmBoot(needEnv(), {
        rounds: intEnv("BENCH_VM_ROUNDS", 3),
        memoryMiB: intEnv("BENCH_VM_MIB", 128),
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("jar")) {
      const r = await jarFirstLine(needEnv(), {
        rounds: intEnv("BENCH_JAR_ROUNDS", 5),
        memoryMiB: intEnv("BENCH_JAR_MIB", 256),
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("emulators")) {
      emulators = await emulatorsMemory(needEnv(), {
        rounds: intEnv("BENCH_EMU_ROUNDS", 3),
        settleMs: intEnv("BENCH_EMU_SETTLE_MS", 5000, 0),
      });
      process.stdout.write(`${JSON.stringify(emulators)}\n`);
    }
    if (opts.scenarios.has("fleet")) {
      const r = await fleetBench({
        sizes: (process.env.BENCH_FLEET_SIZES ?? "5,10,20").split(",").map((x) => Number(x.trim())),
        rounds: intEnv("BENCH_FLEET_ROUNDS", 3),
        idleSeconds: intEnv("BENCH_FLEET_IDLE_S", 20),
        keep: opts.keep,
      });
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    }
    if (opts.scenarios.has("tax")) {
      const sizes = (process.env.BENCH_TAX_SIZES ?? "96,128,256").split(",").map((x) => Number(x.trim()));
      const rows = await vmTax(needEnv(), {
        sizesMiB: sizes,
        settleMs: intEnv("BENCH_TAX_SETTLE_MS", 3000, 0),
      });
      process.stdout.write(`${JSON.stringify({ scenario: "tax", rows })}\n`);
      taxRows = rows;
    }
  } catch (err) {
    failure = err;
  }
  if (interrupted) return 130;
  try {
    await env?.teardown();
  } catch (err) {
    failure ??= err;
  }
  if (results.length > 0) process.stderr.write(`\n${summary(results)}\n\n`);
  if (taxRows.length > 0) {
    process.stderr.write(
      "anchor tax: guest MiB, measured (cgroup memory beyond the guest RAM qemu holds) MiB (cgroup peak MiB), EVE's estimate MiB\n",
    );
    for (const t of taxRows) {
      process.stderr.write(
        `  ${t.guestMiB}: ${t.measuredMiB} (${t.peakMiB}) vs ${t.estimateMiB}: the estimate reserves ${t.overReserve}x what was used\n`,
      );
    }
  }
  if (emulators !== undefined) {
    const e = emulators;
    const side = (name: string, x: EmulatorsResult["arm64"]): string =>
      `  ${name.padEnd(28)} ${String(x.rssMiB).padStart(8)} ${String(x.pssMiB).padStart(8)} ${String(x.cgroupUsageMiB).padStart(12)} ${String(x.cgroupAnonMiB).padStart(11)} ${String(x.processes).padStart(9)}`;
    process.stderr.write(
      [
        `emulators: an idle busybox shell (${e.memoryMiB} MiB app), medians of ${e.rounds} rounds, ${e.settleMs} ms after start; load average ${e.loadAverage}`,
        `  publish → RUNNING (median): arm64 ${e.publishToRunningMedianMs.arm64} ms, native ${e.publishToRunningMedianMs.native} ms`,
        `  ${"task".padEnd(28)} ${"RSS MiB".padStart(8)} ${"PSS MiB".padStart(8)} ${"cgroup MiB".padStart(12)} ${"anon MiB".padStart(11)} ${"processes".padStart(9)}`,
        side("arm64 under qemu-aarch64", e.arm64),
        side("native x86_64", e.native),
        `  ${"difference".padEnd(28)} ${String(e.differenceMiB.rss).padStart(8)} ${String(e.differenceMiB.pss).padStart(8)} ${String(e.differenceMiB.cgroupUsage).padStart(12)} ${String(e.differenceMiB.cgroupAnon).padStart(11)}`,
        "",
        "",
      ].join("\n"),
    );
  }
  if (opts.trace && env && traced.length > 0) {
    process.stderr.write(`${traceReport(env.traces, traced)}\n\n`);
  }
  log(`total ${((nowMs() - started) / 1000).toFixed(1)} s`);
  if (failure !== undefined) {
    log(`FAILED: ${failure instanceof Error ? (failure.stack ?? failure.message) : JSON.stringify(failure)}`);
    return 1;
  }
  return opts.strict && results.some((r) => !r.met) ? 1 : 0;
}

process.exitCode = await main();
// Every process started above was stopped by its PID; a handle some import left open (seen when
// the fleet scenario runs alone, without the shared node) must not keep the run waiting.
setTimeout(() => process.exit(), 2000).unref();
