// Scenario (exit): an anchor killed with SIGKILL → a TaskStatus subscriber sees the exit
// (taskId 0, signal SIGKILL), median and p95 over N kills; target median ≤ 20 ms. The baseline
// is the rawest notice a client can have: containerd's Tasks.Wait returning for a bare task
// killed the same way, in the same run.
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileUri } from "@eve-tasks/containerd";
import { TASK_LABELS } from "@eve-tasks/schemas";
import { BASELINE_NAMESPACE, log } from "./env.js";
import type { BenchEnv } from "./env.js";
import { equivalentSpec } from "./publish-to-running.js";
import { median, nowMs, percentile, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";

const TARGET_MEDIAN_MS = 20;

export interface ExitToStatusOptions {
  n: number;
  warmup: number;
  settleMs: number;
}

export async function exitToStatus(env: BenchEnv, o: ExitToStatusOptions): Promise<ScenarioResult> {
  // containerd's own notices, as any client of its socket gets them (both namespaces): when the
  // exit and the deletion of each task became visible, to split our time between containerd
  // (the exit's notice, the shim's delete) and the executor and NATS around them.
  const seenAt = new Map<string, number>();
  const watching = new AbortController();
  const watch = (async () => {
    const sub = env.baseline.events.subscribe({
      filters: ['topic=="/tasks/exit"', 'topic=="/tasks/delete"'],
      allNamespaces: true,
      signal: watching.signal,
    });
    for await (const e of sub) {
      const at = nowMs();
      if (e.topic === "/tasks/exit" || e.topic === "/tasks/delete")
        seenAt.set(`${e.topic} ${e.payload.containerId}`, at);
    }
  })().catch((err: unknown) => log(`(exit) containerd event watch ended: ${String(err)}`));
  const since = (t0: number, topic: string, id: string): number => {
    const at = seenAt.get(`${topic} ${id}`);
    seenAt.delete(`${topic} ${id}`);
    return at === undefined ? Number.NaN : at - t0;
  };
  /** Ours, per kill: the exit's notice, its task's deletion, the status, each from the kill. */
  const oursSplit = { exitEvent: [] as number[], deleteEvent: [] as number[] };
  /** Baseline, per kill: Tasks.Delete called → its `/tasks/delete` event. */
  const baseDeleteEventMs: number[] = [];

  const ours = async (): Promise<number> => {
    const uuid = randomUUID();
    await env.configs.publish(uuid, env.app(uuid));
    await env.seen.when(uuid, "RUNNING", 60_000);
    const pid = env.seen.status(uuid, "RUNNING")!.taskId;
    // Let the executor finish its side of the start (events, Tasks.Wait in place).
    await sleep(o.settleMs);
    const t0 = nowMs();
    process.kill(pid, "SIGKILL");
    // A task that was not stopped on request and exited non-zero is BROKEN.
    const t1 = await env.seen.when(uuid, "exit", 30_000);
    oursSplit.exitEvent.push(since(t0, "/tasks/exit", uuid));
    oursSplit.deleteEvent.push(since(t0, "/tasks/delete", uuid));
    const s = env.seen.status(uuid, "exit")!;
    if (s.signal !== "SIGKILL" || s.lastTaskId !== pid) {
      throw new Error(`${uuid}: unexpected exit status ${JSON.stringify(s)}`);
    }
    await env.configs.unpublish(uuid);
    await env.seen.when(uuid, "deleted", 60_000);
    env.seen.forget(uuid);
    return t1 - t0;
  };

  const baseline = async (): Promise<number> => {
    const id = randomUUID();
    const c = env.baseline;
    const logDir = join(env.baselineLogDir, id);
    await mkdir(logDir, { recursive: true });
    const logUri = fileUri(join(logDir, "console.log"));
    await c.containers.create({
      id,
      labels: { [TASK_LABELS.uuid]: id },
      spec: equivalentSpec(id, BASELINE_NAMESPACE),
    });
    const { pid } = await c.tasks.create({
      containerId: id,
      rootfs: [{ type: "bind", source: env.rootfs, options: ["rbind", "rw"] }],
      stdout: logUri,
      stderr: logUri,
    });
    // Settled now, awaited after the kill: a wait that fails meanwhile (containerd overloaded) is
    // that round's error, not an unhandled rejection that ends the bench before its teardown.
    const exited = c.tasks.wait(id).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    await c.tasks.start(id);
    await sleep(o.settleMs);
    const t0 = nowMs();
    process.kill(pid, "SIGKILL");
    const waitError = await exited;
    const t1 = nowMs();
    if (waitError) throw waitError;
    seenAt.delete(`/tasks/exit ${id}`);
    const d0 = nowMs();
    await c.tasks.delete(id);
    deleteMs.push(nowMs() - d0);
    baseDeleteEventMs.push(since(d0, "/tasks/delete", id));
    await c.containers.delete(id);
    return t1 - t0;
  };
  // Tasks.Delete of the killed bare task (not timed in the baseline): what the executor's own
  // Tasks.Delete, which comes before the exit status, costs at the least.
  const deleteMs: number[] = [];

  log(`(exit) kill → status: ${o.warmup} warm-up + ${o.n} kills of each, alternating`);
  const oursMs: number[] = [];
  const baseMs: number[] = [];
  try {
    for (let i = 0; i < o.warmup; i++) {
      await ours();
      await baseline();
    }
    for (const xs of [oursSplit.exitEvent, oursSplit.deleteEvent, baseDeleteEventMs, deleteMs]) xs.length = 0;
    for (let i = 0; i < o.n; i++) {
      await env.assertWorkersAlive();
      if (i % 2 === 0) {
        oursMs.push(await ours());
        baseMs.push(await baseline());
      } else {
        baseMs.push(await baseline());
        oursMs.push(await ours());
      }
    }
  } finally {
    watching.abort();
    await watch;
  }
  const med = median(oursMs);
  const known = (xs: number[]) => xs.filter((x) => !Number.isNaN(x));
  const exitEventMs = median(known(oursSplit.exitEvent));
  const deleteEventMs = median(known(oursSplit.deleteEvent));
  const breakdownMedianMs = {
    // kill → containerd's /tasks/exit (what the executor reacts to)
    exitEvent: r1(exitEventMs),
    // → /tasks/delete: the executor's Tasks.Delete and the shim's `runc delete`
    exitToDeleteEvent: r1(deleteEventMs - exitEventMs),
    // → the status seen: the executor's Tasks.Get, the status's KV put, NATS delivery
    deleteEventToStatus: r1(med - deleteEventMs),
    // the same shim work for the bare task: Tasks.Delete called → its /tasks/delete
    baselineTasksDeleteToEvent: r1(median(known(baseDeleteEventMs))),
    // kills whose delete event the bench had seen by the time it saw the status
    deleteEventsSeen: known(oursSplit.deleteEvent).length,
  };
  const baseMed = median(baseMs);
  const deleteMedianMs = r1(median(deleteMs));
  const result: ScenarioResult = {
    scenario: "exit: anchor SIGKILL → TaskStatus seen",
    n: o.n,
    medianMs: r1(med),
    p95Ms: r1(percentile(oursMs, 95)),
    baselineMedianMs: r1(baseMed),
    baselineP95Ms: r1(percentile(baseMs, 95)),
    ratio: r3(med / baseMed),
    target: `median ≤ ${TARGET_MEDIAN_MS} ms`,
    met: med <= TARGET_MEDIAN_MS,
    baseline: "containerd Tasks.Wait returning for a bare task killed the same way",
    maxMs: r1(Math.max(...oursMs)),
    baselineTasksDeleteMedianMs: deleteMedianMs,
    breakdownMedianMs,
  };
  log(
    `(exit) ours median ${result.medianMs} ms p95 ${result.p95Ms} ms; Tasks.Wait median ${result.baselineMedianMs} ms; a bare Tasks.Delete after it ${deleteMedianMs} ms; split ${JSON.stringify(breakdownMedianMs)}`,
  );
  return result;
}
