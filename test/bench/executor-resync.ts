// Scenario (resync): the task-executor restarted while N tasks run: time from the new process's
// start until it has reconciled every app (its "resynced" log line), and how many tasks were
// restarted by it (must be 0: same anchor PID and start ticks, no new task). The baseline is
// the rawest resync a client can do: listing containerd's containers and tasks once.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { readProcStat } from "@eve-tasks/procfs";
import { log } from "./env.js";
import type { BenchEnv } from "./env.js";
import { mapLimit, nowMs, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";

export interface ExecutorResyncOptions {
  tasks: number;
  rounds: number;
}

/** Resolves with the time the executor's log first has `event: "resynced"` after `offset` bytes. */
async function resyncedAt(logFile: string, offset: number, timeoutMs: number): Promise<number> {
  const deadline = nowMs() + timeoutMs;
  while (nowMs() < deadline) {
    const text = (await readFile(logFile, "utf8").catch(() => "")).slice(offset);
    if (text.includes('"event":"resynced"')) return nowMs();
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`no resynced line in ${logFile} within ${timeoutMs} ms`);
}

export async function executorResync(env: BenchEnv, o: ExecutorResyncOptions): Promise<ScenarioResult> {
  log(`(resync) starting ${o.tasks} tasks`);
  const uuids = Array.from({ length: o.tasks }, () => randomUUID());
  await mapLimit(uuids, 16, async (u) => {
    await env.configs.publish(u, env.app(u));
    await env.seen.when(u, "RUNNING", 180_000);
  });
  const before = new Map<string, { pid: number; ticks: number | null }>();
  for (const u of uuids) {
    const pid = env.seen.status(u, "RUNNING")!.taskId;
    before.set(u, { pid, ticks: (await readProcStat(pid))?.startTimeTicks ?? null });
  }
  const oursMs: number[] = [];
  const baseMs: number[] = [];
  let restarted = 0;
  for (let round = 0; round < o.rounds; round++) {
    const logFile = env.workerLogFile("task-executor");
    const size = (await readFile(logFile)).byteLength;
    await env.restartWorker("task-executor", { LOG_LEVEL: "info" });
    // restartWorker resolves once the new process is spawned; time from there.
    const t0 = nowMs();
    const t1 = await resyncedAt(logFile, size, 300_000);
    oursMs.push(t1 - t0);
    const b0 = nowMs();
    await env.eve.containers.list();
    await env.eve.tasks.list();
    baseMs.push(nowMs() - b0);
    const tasks = new Map((await env.eve.tasks.list()).map((t) => [t.id, t]));
    for (const u of uuids) {
      const was = before.get(u)!;
      const now = tasks.get(u);
      const ticks = now ? ((await readProcStat(now.pid))?.startTimeTicks ?? null) : null;
      if (!now || now.pid !== was.pid || ticks !== was.ticks) restarted++;
    }
    log(
      `(resync) round ${round + 1}: resynced ${o.tasks} tasks in ${r1(t1 - t0)} ms; restarted so far ${restarted}`,
    );
  }
  log(`(resync) deleting ${o.tasks} apps`);
  await mapLimit(uuids, 16, async (u) => {
    await env.configs.unpublish(u);
    await env.seen.when(u, "deleted", 180_000);
    env.seen.forget(u);
  });
  const med = [...oursMs].sort((a, b) => a - b)[Math.floor(oursMs.length / 2)]!;
  const baseMed = [...baseMs].sort((a, b) => a - b)[Math.floor(baseMs.length / 2)]!;
  return {
    scenario: `resync: executor restart with ${o.tasks} running tasks`,
    n: o.rounds,
    medianMs: r1(med),
    p95Ms: r1(Math.max(...oursMs)),
    baselineMedianMs: r1(baseMed),
    baselineP95Ms: r1(Math.max(...baseMs)),
    ratio: r3(med / baseMed),
    target: "0 tasks restarted",
    met: restarted === 0,
    baseline: "one Containers.List + Tasks.List",
    tasksRestarted: restarted,
    note: "time from the new executor process's spawn (includes Node start-up) to its resynced log line",
  };
}
