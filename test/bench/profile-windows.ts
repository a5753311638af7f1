// Cuts a worker's V8 CPU profile to the windows of its trace: for each traced app, from its first
// `<from>` record to the next `<to>` record (e.g. `socket.data` → `containers.create`: what the
// executor does between receiving a TaskConfig and calling containerd), and prints where the
// time in those windows went, per window on average (self time and time with callees).
//
//   BENCH_TRACE=1 BENCH_KEEP=1 BENCH_CPU_PROF=/tmp/prof BENCH_CPU_PROF_INTERVAL_US=100 \
//     BENCH_SCENARIOS=a npm run bench
//   node --import tsx test/bench/profile-windows.ts <kept dir>/logs/task-executor.trace.jsonl \
//     /tmp/prof socket.data containers.create
//
// The first `BENCH_WINDOW_SKIP` (3) windows are left out: the warm-up apps, whose first calls
// compile code. Needs the `.clock.json` that trace-hooks.ts writes next to each trace.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { median } from "./stats.js";
import type { TraceClock, TraceRecord } from "./trace-hooks.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [traceFile, profileDir, fromOp, toOp] = process.argv.slice(2);
if (!traceFile || !profileDir || !fromOp || !toOp) {
  console.error("usage: profile-windows.ts <worker.trace.jsonl> <profile dir> <from op> <to op>");
  process.exit(2);
}
const skip = Number(process.env.BENCH_WINDOW_SKIP ?? 3);

const records = (await readFile(traceFile, "utf8"))
  .split("\n")
  .filter((l) => l.trim() !== "")
  .map((l) => JSON.parse(l) as TraceRecord);
const clock = JSON.parse(await readFile(`${traceFile}.clock.json`, "utf8")) as TraceClock;
const profileName = (await readdir(profileDir)).find((f) =>
  new RegExp(`^CPU\\.[0-9.]+\\.${clock.pid}\\.0\\.[0-9]+\\.cpuprofile$`).test(f),
);
if (!profileName) throw new Error(`no CPU profile of PID ${clock.pid} (main thread) in ${profileDir}`);
const profile = JSON.parse(await readFile(join(profileDir, profileName), "utf8")) as CpuProfile;

/** An epoch-ms time of the trace on the profile's clock (µs). */
const toProfileUs = (epochMs: number): number => (epochMs - clock.epochMs) * 1000 + clock.monotonicUs;

const byApp = new Map<string, TraceRecord[]>();
for (const r of records) {
  if (r.k === undefined) continue;
  const list = byApp.get(r.k) ?? [];
  list.push(r);
  byApp.set(r.k, list);
}
const windows: [number, number][] = [];
for (const list of byApp.values()) {
  list.sort((a, b) => a.s - b.s);
  const from = list.find((r) => r.op === fromOp);
  const to = from && list.find((r) => r.op === toOp && r.s >= from.s);
  // Only this process's: a worker restarted during the run appended to the same trace.
  const [a, b] = from && to ? [toProfileUs(from.s), toProfileUs(to.s)] : [NaN, NaN];
  if (a >= profile.startTime && b <= profile.endTime) windows.push([a, b]);
}
windows.sort((a, b) => a[0] - b[0]);
const kept = windows.slice(skip);
if (kept.length === 0) throw new Error(`no ${fromOp} → ${toOp} windows after the first ${skip}`);

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const name = (n: ProfileNode): string => {
  const f = n.callFrame;
  const where = f.url ? f.url.split("/").slice(-2).join("/") : "";
  return `${f.functionName || "(anonymous)"} ${where}:${f.lineNumber}`;
};

const selfUs = new Map<string, number>();
const totalUs = new Map<string, number>();
const add = (m: Map<string, number>, k: string, v: number): void => void m.set(k, (m.get(k) ?? 0) + v);
let sampledUs = 0;
let t = profile.startTime;
let w = 0;
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i] ?? 0;
  const dt = profile.timeDeltas[i + 1] ?? 0;
  while (w < kept.length && kept[w]![1] < t) w++;
  if (w === kept.length) break;
  if (t < kept[w]![0]) continue;
  sampledUs += dt;
  const leaf = profile.samples[i];
  if (leaf === undefined) continue;
  add(selfUs, name(nodes.get(leaf)!), dt);
  const seen = new Set<string>();
  for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
    const n = name(nodes.get(id)!);
    if (!seen.has(n)) add(totalUs, n, dt);
    seen.add(n);
  }
}

const medianSpanMs = median(kept.map(([a, b]) => (b - a) / 1000));
const perWindow = (us: number): string => `${(us / kept.length).toFixed(0).padStart(7)} µs`;
const top = (m: Map<string, number>, n: number): string =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `  ${perWindow(v)}  ${k}`)
    .join("\n");
console.log(
  `${kept.length} windows ${fromOp} → ${toOp} (first ${skip} left out): median ` +
    `${medianSpanMs.toFixed(2)} ms, sampled ${(sampledUs / kept.length / 1000).toFixed(2)} ms per window\n` +
    `self time, per window:\n${top(selfUs, 20)}\nwith callees, per window:\n${top(totalUs, 30)}`,
);
