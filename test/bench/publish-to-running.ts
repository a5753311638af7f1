// Scenario (a): one app published → a TaskStatus subscriber sees RUNNING, against the bare
// containerd calls the executor makes for it (Containers.Create + Tasks.Create + Tasks.Start)
// through the same ContainerdClient with an equivalent spec. Sequential, alternating order.
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileUri, specFromAny } from "@eve-tasks/containerd";
import {
  buildSpec,
  withAnnotations,
  withArgs,
  withCpus,
  withCwd,
  withEnv,
  withHostname,
  withMemoryLimitBytes,
  withReadonlyRoot,
  withUser,
} from "@eve-tasks/oci-spec";
import type { RuntimeSpec } from "@eve-tasks/oci-spec";
import { CONTAINERD_NAMESPACE, TASK_LABELS } from "@eve-tasks/schemas";
import { BASELINE_NAMESPACE, TASK_ARGS, TASK_MEMORY_MIB, log, removeTask } from "./env.js";
import type { BenchEnv } from "./env.js";
import { cpuSnapshot, load1, machineBusyPercent } from "./cpu.js";
import { bootstrapRatioCi95, median, medians, nowMs, percentile, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";
import type { TracedApp } from "./trace-report.js";

const MiB = 2 ** 20;
const TARGET = 1.1;

export interface PublishToRunningOptions {
  n: number;
  warmup: number;
  /** Pause after each cleanup, so background teardown does not land in the next measurement. */
  settleMs: number;
}

/** One measurement of our path, epoch-ms differences. */
interface OursSample {
  uuid: string;
  t0: number;
  tRunning: number;
  totalMs: number;
  publishAckMs: number;
  /** Publish → BOOTING seen (spec-builder, executor: reconcile, Containers.Create, Tasks.Create). */
  toBootingMs: number;
  /** Publish → the bench sees the TaskConfig (spec-builder's share); NaN unless traced. */
  toTaskConfigMs: number;
  /** TaskConfig seen → BOOTING seen (the executor's share of toBootingMs); NaN unless traced. */
  taskConfigToBootingMs: number;
  /** BOOTING seen → RUNNING seen (executor: event, Tasks.Wait, Tasks.Start, publish). */
  bootingToRunningMs: number;
  /** The executor's own updatedAt of BOOTING → RUNNING (ms resolution, executor clock). */
  executorBootingToRunningMs: number;
}

interface BaselineSample {
  totalMs: number;
  containersCreateMs: number;
  tasksCreateMs: number;
  tasksStartMs: number;
}

/** The spec the executor gives an app of {@link BenchEnv.app}, for container `id` in `namespace`. */
export function equivalentSpec(id: string, namespace: string): RuntimeSpec {
  // The spec-builder's options for a native app (nativeSpecOpts), then the executor's node facts:
  // root.path "rootfs" (already the default), cgroupsPath, the memory limit, rlimits (1024: fine).
  const spec = buildSpec(
    withArgs(TASK_ARGS),
    withEnv({}),
    withCwd("/"),
    withUser("0:0"),
    withHostname(id),
    withMemoryLimitBytes(TASK_MEMORY_MIB * MiB),
    withCpus(1),
    withReadonlyRoot(false),
    withAnnotations({ [TASK_LABELS.uuid]: id }),
  );
  spec.root = { ...spec.root, path: "rootfs" };
  spec.linux = { ...spec.linux, cgroupsPath: `/${namespace}/${id}` };
  return spec;
}

/** Differences between two specs with ids and namespaces blanked: "" when equivalent. */
function specDiff(a: unknown, b: unknown, path = ""): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
    return [`${path || "(spec)"}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`];
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) =>
    specDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`),
  );
}

function normalize(spec: unknown, id: string, namespace: string): unknown {
  return JSON.parse(JSON.stringify(spec).replaceAll(id, "<id>").replaceAll(`/${namespace}/`, "/<ns>/"));
}

export async function publishToRunning(
  env: BenchEnv,
  o: PublishToRunningOptions,
): Promise<{ result: ScenarioResult; traced: TracedApp[] }> {
  const timeoutMs = 60_000;

  const ours = async (check = false): Promise<OursSample> => {
    const uuid = randomUUID();
    const t0 = nowMs();
    await env.configs.publish(uuid, env.app(uuid));
    const tAck = nowMs();
    const tRunning = await env.seen.when(uuid, "RUNNING", timeoutMs);
    const tConfig = env.seen.time(uuid, "taskconfig") ?? NaN;
    const tBooting = env.seen.time(uuid, "BOOTING") ?? NaN;
    const booting = env.seen.status(uuid, "BOOTING");
    const running = env.seen.status(uuid, "RUNNING");
    const sample: OursSample = {
      uuid,
      t0,
      tRunning,
      totalMs: tRunning - t0,
      publishAckMs: tAck - t0,
      toBootingMs: tBooting - t0,
      toTaskConfigMs: tConfig - t0,
      taskConfigToBootingMs: tBooting - tConfig,
      bootingToRunningMs: tRunning - tBooting,
      executorBootingToRunningMs:
        booting && running ? Date.parse(running.updatedAt) - Date.parse(booting.updatedAt) : NaN,
    };
    if (check) await compareSpecs(env, uuid);
    // Not timed: delete the app; the executor stops the task and deletes its container and status.
    await env.configs.unpublish(uuid);
    await env.seen.when(uuid, "deleted", timeoutMs);
    env.seen.forget(uuid);
    return sample;
  };

  const baseline = async (): Promise<BaselineSample> => {
    const id = randomUUID();
    const spec = equivalentSpec(id, BASELINE_NAMESPACE);
    const logDir = join(env.baselineLogDir, id);
    await mkdir(logDir, { recursive: true });
    const logUri = fileUri(join(logDir, "console.log"));
    const labels = { [TASK_LABELS.uuid]: id, [TASK_LABELS.version]: "1" };
    const c = env.baseline;
    const t0 = nowMs();
    await c.containers.create({ id, labels, spec });
    const t1 = nowMs();
    await c.tasks.create({
      containerId: id,
      rootfs: [{ type: "bind", source: env.rootfs, options: ["rbind", "rw"] }],
      stdout: logUri,
      stderr: logUri,
    });
    const t2 = nowMs();
    await c.tasks.start(id);
    const t3 = nowMs();
    // Not timed: stop as the executor does (SIGTERM to all; the trap exits 0), delete.
    await removeTask(c, id, "SIGTERM");
    await c.containers.delete(id);
    return { totalMs: t3 - t0, containersCreateMs: t1 - t0, tasksCreateMs: t2 - t1, tasksStartMs: t3 - t2 };
  };

  const loadAtStart = load1();
  log(`(a) publish-to-running: ${o.warmup} warm-up + ${o.n} measured runs of each, alternating`);
  for (let i = 0; i < o.warmup; i++) {
    await ours(i === 0);
    await baseline();
    await sleep(o.settleMs);
  }
  const cpuTargets = { pids: env.pids, containerdAddress: env.containerd.address };
  const cpu0 = await cpuSnapshot(cpuTargets);
  const oursSamples: OursSample[] = [];
  const baseSamples: BaselineSample[] = [];
  for (let i = 0; i < o.n; i++) {
    await env.assertWorkersAlive();
    // Alternate which goes first, so drift (and whatever the previous cleanup left) hits both.
    if (i % 2 === 0) {
      oursSamples.push(await ours());
      await sleep(o.settleMs);
      baseSamples.push(await baseline());
    } else {
      baseSamples.push(await baseline());
      await sleep(o.settleMs);
      oursSamples.push(await ours());
    }
    await sleep(o.settleMs);
    if ((i + 1) % 10 === 0 || i + 1 === o.n) {
      const om = median(oursSamples.map((s) => s.totalMs));
      const bm = median(baseSamples.map((s) => s.totalMs));
      log(`  ${i + 1}/${o.n}: median ours ${om.toFixed(1)} ms, baseline ${bm.toFixed(1)} ms`);
    }
  }

  const busyPct = machineBusyPercent(cpu0, await cpuSnapshot(cpuTargets));
  const ourTotals = oursSamples.map((s) => s.totalMs);
  const baseTotals = baseSamples.map((s) => s.totalMs);
  const ratio = median(ourTotals) / median(baseTotals);
  const ci95 = bootstrapRatioCi95(ourTotals, baseTotals);
  const pick = <T>(xs: readonly T[], k: keyof T): number[] => xs.map((x) => x[k] as number);
  const result: ScenarioResult = {
    scenario: "publish-to-running",
    n: o.n,
    medianMs: r1(median(ourTotals)),
    p95Ms: r1(percentile(ourTotals, 95)),
    baselineMedianMs: r1(median(baseTotals)),
    baselineP95Ms: r1(percentile(baseTotals, 95)),
    ratio: r3(ratio),
    ratioCi95: [r3(ci95[0]), r3(ci95[1])],
    target: `<=${TARGET}`,
    met: ratio <= TARGET,
    baseline: "ContainerdClient Containers.Create + Tasks.Create + Tasks.Start, equivalent spec",
    breakdownMedianMs: {
      ours: medians({
        publishAck: pick(oursSamples, "publishAckMs"),
        publishToBooting: pick(oursSamples, "toBootingMs"),
        ...(env.traced
          ? {
              publishToTaskConfig: pick(oursSamples, "toTaskConfigMs"),
              taskConfigToBooting: pick(oursSamples, "taskConfigToBootingMs"),
            }
          : {}),
        bootingToRunning: pick(oursSamples, "bootingToRunningMs"),
        executorBootingToRunning: pick(oursSamples, "executorBootingToRunningMs"),
      }),
      baseline: medians({
        containersCreate: pick(baseSamples, "containersCreateMs"),
        tasksCreate: pick(baseSamples, "tasksCreateMs"),
        tasksStart: pick(baseSamples, "tasksStartMs"),
      }),
    },
    load1: { start: loadAtStart, end: load1() },
    machineBusyPct: busyPct,
  };
  log(
    `  ratio ${r3(ratio)}; from sampling alone it could be ${r3(ci95[0])}–${r3(ci95[1])} ` +
      `(95% bootstrap interval)`,
  );
  return { result, traced: oursSamples.map(({ uuid, t0, tRunning }) => ({ uuid, t0, tRunning })) };
}

/** Checks once that the baseline's spec is the executor's, ids and namespace aside. */
async function compareSpecs(env: BenchEnv, uuid: string): Promise<void> {
  const c = await env.eve.containers.get(uuid);
  const theirs = normalize(specFromAny(c.spec!), uuid, CONTAINERD_NAMESPACE);
  const id = randomUUID();
  const mine = normalize(equivalentSpec(id, BASELINE_NAMESPACE), id, BASELINE_NAMESPACE);
  const diff = specDiff(theirs, mine);
  if (diff.length === 0) log("  baseline spec = the executor's spec (ids and namespace aside)");
  else log(`  baseline spec differs from the executor's (executor vs baseline):\n    ${diff.join("\n    ")}`);
}
