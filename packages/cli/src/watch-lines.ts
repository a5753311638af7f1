/** What `eve-tasks watch` prints for each change: pure functions from old and new values to words. */
import type { AppInstanceConfig, TaskStatus } from "@eve-tasks/schemas";
import { canonicalJson } from "@eve-tasks/schemas";
import { describeStageError } from "./get-view.js";
import { sanitize } from "./table.js";

/** The kinds of watch events; `current` is the state at start, one per app. */
export type WatchEventType =
  | "current"
  | "config-created"
  | "config-changed"
  | "config-deleted"
  | "status-created"
  | "status-changed"
  | "status-deleted";

/** One watch event, as `--json` prints it (one object per line). */
export interface WatchEvent {
  time: string;
  event: WatchEventType;
  uuid: string;
  name: string | null;
  /** The changes in words, as the human line shows them. */
  changes: string[];
  /** KV revision of the config after the event (its configRevision), when known. */
  revision: number | null;
  config: AppInstanceConfig | null;
  status: TaskStatus | null;
}

/** `exit 137 (SIGKILL, OOM-killed)` for a status that holds an exit, else undefined. */
export function describeExit(s: TaskStatus): string | undefined {
  if (s.exitCode === null) return undefined;
  const notes = [s.signal, s.oomKilled ? "OOM-killed" : null].filter((x): x is string => !!x);
  return notes.length ? `exit ${s.exitCode} (${notes.join(", ")})` : `exit ${s.exitCode}`;
}

/** The words for a status seen for the first time (or at start): state, task, what it waits for, exit, error. */
export function describeStatus(s: TaskStatus): string[] {
  const parts: string[] = [s.state];
  if (s.taskId > 0) parts.push(`taskId ${s.taskId}`);
  if (s.state === "PENDING" && s.waitingFor) parts.push(`waiting for ${s.waitingFor}`);
  const exit = s.taskId === 0 ? describeExit(s) : undefined;
  if (exit) parts.push(exit);
  if (s.restarts > 0) parts.push(`restarts ${s.restarts}`);
  if (s.error) parts.push(`error: ${describeStageError(s.error)}`);
  return parts;
}

/**
 * The words for a status change: state and taskId transitions, a new exit, what a PENDING task
 * now waits for, restarts, the config revision, a new or cleared error. Empty when only
 * bookkeeping changed (e.g. `updatedAt`): watch prints no line then.
 */
export function statusChanges(old: TaskStatus, s: TaskStatus): string[] {
  const parts: string[] = [];
  if (old.state !== s.state) parts.push(`${old.state} → ${s.state}`);
  if (old.taskId !== s.taskId) parts.push(`taskId ${old.taskId} → ${s.taskId}`);
  if (s.state === "PENDING" && s.waitingFor && s.waitingFor !== old.waitingFor) {
    parts.push(`waiting for ${s.waitingFor}`);
  }
  if (s.finishedAt !== old.finishedAt || s.exitCode !== old.exitCode || s.signal !== old.signal) {
    const exit = describeExit(s);
    if (exit && s.finishedAt !== null) parts.push(exit);
  }
  if (s.restarts !== old.restarts) parts.push(`restarts ${old.restarts} → ${s.restarts}`);
  if (s.configRevision !== old.configRevision) parts.push(`config revision ${s.configRevision}`);
  if (s.error && (!old.error || canonicalJson(old.error) !== canonicalJson(s.error))) {
    parts.push(`error: ${describeStageError(s.error)}`);
  } else if (!s.error && old.error) {
    parts.push("error cleared");
  }
  return parts;
}

const CONFIG_FIELDS = ["activate", "restartCounter", "displayName"] as const;

/**
 * The words for a config change: activate, restartCounter and displayName transitions, and
 * `spec changed` when anything else changed.
 */
export function configChanges(old: AppInstanceConfig, c: AppInstanceConfig): string[] {
  const parts: string[] = [];
  for (const f of CONFIG_FIELDS) {
    if (old[f] !== c[f]) parts.push(`${f} ${JSON.stringify(old[f])} → ${JSON.stringify(c[f])}`);
  }
  const rest = (x: AppInstanceConfig): string => {
    const { activate: _a, restartCounter: _r, displayName: _d, ...others } = x;
    return canonicalJson(others);
  };
  if (rest(old) !== rest(c)) parts.push("spec changed");
  return parts;
}

/** `12:00:01` in local time. */
export function clockTime(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const LEAD: Partial<Record<WatchEventType, string>> = {
  "config-created": "config created",
  "config-changed": "config changed",
  "config-deleted": "config deleted",
  "status-deleted": "status removed",
};

/** The human line of a watch event: `12:00:01 hello 6f1c… RUNNING → HALTING, taskId 42 → 0`. */
export function formatWatchLine(e: WatchEvent): string {
  const time = clockTime(new Date(e.time));
  const lead = LEAD[e.event];
  const rev = e.event.startsWith("config-") && e.event !== "config-deleted" && e.revision !== null;
  const head = lead ? (rev ? `${lead} (revision ${e.revision})` : lead) : undefined;
  const words = [head, ...e.changes].filter((x): x is string => !!x);
  if (e.event === "current" && !e.status) words.push("no status yet");
  const text = head && e.changes.length ? `${head}: ${e.changes.join(", ")}` : words.join(", ");
  return sanitize(`${time} ${e.name ?? "-"} ${e.uuid} ${text}`) + "\n";
}
