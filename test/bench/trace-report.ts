// Turns the workers' trace records (BENCH_TRACE=1, see trace-hooks.ts) into a per-step profile of
// the publish-to-running path: for each traced app, every call made for it between its publish
// and the bench seeing RUNNING, as an offset from the publish and a duration; medians over apps.
import type { TraceRecord } from "./trace-hooks.js";
import { median } from "./stats.js";

/** One measured app: its uuid, when it was published and when RUNNING was seen (epoch ms). */
export interface TracedApp {
  uuid: string;
  t0: number;
  tRunning: number;
}

interface Step {
  label: string;
  starts: number[];
  durations: number[];
  /** Calls still open when RUNNING was seen (e.g. Tasks.Wait). */
  open: number;
}

/** A table (text) of the median step offsets and durations, sorted by offset. */
export function traceReport(records: readonly TraceRecord[], apps: readonly TracedApp[]): string {
  const byKey = new Map<string, TraceRecord[]>();
  for (const r of records) {
    if (r.k === undefined) continue;
    let list = byKey.get(r.k);
    if (!list) byKey.set(r.k, (list = []));
    list.push(r);
  }
  // Unkeyed calls (fdatasync) belong to the keyed call of the same worker they ran inside.
  const unkeyed = records.filter((r) => r.k === undefined);
  const steps = new Map<string, Step>();
  for (const app of apps) {
    const mine = (byKey.get(app.uuid) ?? []).filter((r) => r.s >= app.t0 - 1 && r.s <= app.tRunning);
    const inside = unkeyed.filter((u) =>
      mine.some((r) => r.w === u.w && r.op === "outbox.emit" && u.s >= r.s && u.e <= r.e),
    );
    const all = [...mine, ...inside.map((u) => ({ ...u, op: `  ${u.op} (in outbox.emit)` }))].sort(
      (a, b) => a.s - b.s,
    );
    const count = new Map<string, number>();
    for (const r of all) {
      const base = `${r.w} ${r.op}`;
      const n = (count.get(base) ?? 0) + 1;
      count.set(base, n);
      const label = n === 1 ? base : `${base} #${n}`;
      let step = steps.get(label);
      if (!step) steps.set(label, (step = { label, starts: [], durations: [], open: 0 }));
      step.starts.push(r.s - app.t0);
      if (r.e <= app.tRunning) step.durations.push(r.e - r.s);
      else step.open++;
    }
  }
  const rows = [...steps.values()]
    .filter((s) => s.starts.length >= apps.length / 2)
    .sort((a, b) => median(a.starts) - median(b.starts))
    .map((s) => [
      s.label,
      String(s.starts.length),
      median(s.starts).toFixed(1),
      s.durations.length ? median(s.durations).toFixed(1) : "open",
    ]);
  const table = [["step (worker call)", "apps", "start ms", "took ms"], ...rows];
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  const line = (row: readonly string[]): string =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  const runningMs = median(apps.map((a) => a.tRunning - a.t0)).toFixed(1);
  return [
    `profile of ${apps.length} publish-to-running apps (medians; start = ms after publish; RUNNING seen at ${runningMs} ms):`,
    line(table[0]!),
    ...table.slice(1).map(line),
  ].join("\n");
}
