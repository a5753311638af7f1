/** The words and columns of the status display (pure, so it can be tested without a terminal). */
import type { WorkerSnapshot } from "./worker-supervisor.js";

/** A heartbeat older than this is shown as stale. */
export const STALE_HEARTBEAT_MS = 20_000;

/** `1h02m`, `3m07s`, `12s`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

/** What the heartbeat column says: `2s ago`, `20s ago (stale)`, or `-` when there is none. */
export function formatHeartbeat(ageMs: number | undefined): string {
  if (ageMs === undefined) return "-";
  return `${formatDuration(ageMs)} ago${ageMs > STALE_HEARTBEAT_MS ? " (stale)" : ""}`;
}

const cols = [26, 9, 16, 10, 9] as const;

/** The header line of the worker table. */
export const workerHeader = (): string =>
  ["worker", "pid", "state", "restarts", "uptime"].map((h, i) => h.padEnd(cols[i] ?? 0)).join("") +
  "heartbeat";

/** One worker's status line. `heartbeatAgeMs` is that of the current PID's liveness file, if any. */
export function formatWorkerLine(w: WorkerSnapshot, heartbeatAgeMs: number | undefined, now: number): string {
  const state =
    w.state === "backing-off" && w.nextStartAt !== null
      ? `backing-off ${formatDuration(w.nextStartAt - now + 999)}`
      : w.state;
  const uptime = w.state === "running" && w.startedAt !== null ? formatDuration(now - w.startedAt) : "-";
  const hb = w.pid === null ? "-" : formatHeartbeat(heartbeatAgeMs);
  return (
    [w.name, w.pid === null ? "-" : String(w.pid), state, String(w.restarts), uptime]
      .map((v, i) => v.padEnd((cols[i] ?? 0) - 1) + " ")
      .join("") + hb
  );
}
