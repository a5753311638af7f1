/** `--wait`: what each command waits for in TaskStatus, and the waiting itself. */
import { subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { TaskStatusSchema, messageTypes } from "@eve-tasks/schemas";
import type { TaskStatus } from "@eve-tasks/schemas";
import { UserError } from "./errors.js";
import { describeStageError } from "./get-view.js";
import { formatAge } from "./human.js";

/** The verdict of a wait condition on the current status (undefined: the key is absent). */
export type WaitVerdict = { done: true } | { done: false; failed?: string };

/** A condition on an app's status. */
export interface WaitCondition {
  /** What is awaited, for messages: `HALTED`, `RUNNING with a new task`, `status removed`. */
  goal: string;
  check(status: TaskStatus | undefined): WaitVerdict;
}

const STOPPED_STATES = new Set(["HALTED", "INSTALLED", "BROKEN", "FAILED"]);

/**
 * A stage error about `configRevision` or later (an error about an older revision is history:
 * the task keeps running on the last good config and a later good revision clears it).
 */
function errorAbout(s: TaskStatus, configRevision: number): string | undefined {
  return s.error && s.error.configRevision >= configRevision ? describeStageError(s.error) : undefined;
}

/** After `stop`: no task (HALTED, INSTALLED, or it had already exited: BROKEN, FAILED). */
export function stoppedCondition(configRevision: number): WaitCondition {
  return {
    goal: "HALTED",
    check(s) {
      if (!s) return { done: false };
      if (STOPPED_STATES.has(s.state) && s.taskId === 0) return { done: true };
      const failed = errorAbout(s, configRevision);
      return failed ? { done: false, failed } : { done: false };
    },
  };
}

/**
 * After `start`, or `restart` when `before` is the status at the time of the change: RUNNING,
 * and for a restart with a task other than `before`'s (another PID or start time). FAILED or
 * BROKEN about this config revision, or a stage error about it, ends the wait as a failure.
 */
export function runningCondition(configRevision: number, before?: TaskStatus): WaitCondition {
  const old = before && before.taskId > 0 ? before : undefined;
  return {
    goal: old ? "RUNNING with a new task" : "RUNNING",
    check(s) {
      if (!s) return { done: false };
      const isNew = !old || s.taskId !== old.taskId || s.startedAt !== old.startedAt;
      if (s.state === "RUNNING" && s.taskId > 0 && isNew) return { done: true };
      const failed = errorAbout(s, configRevision);
      if (failed) return { done: false, failed };
      if ((s.state === "FAILED" || s.state === "BROKEN") && s.configRevision >= configRevision) {
        const exit = s.exitCode === null ? "" : ` (exit ${s.exitCode}${s.signal ? `, ${s.signal}` : ""})`;
        return { done: false, failed: `it is ${s.state}${exit}` };
      }
      return { done: false };
    },
  };
}

/** After `delete`: the status key is gone. */
export function removedCondition(): WaitCondition {
  return { goal: "status removed", check: (s) => ({ done: s === undefined }) };
}

function describeNow(s: TaskStatus | undefined): string {
  if (!s) return "it has no status";
  return s.taskId > 0 ? `it is ${s.state} (taskId ${s.taskId})` : `it is ${s.state}`;
}

/** Options of {@link waitForStatus}. */
export interface WaitOptions {
  uuid: string;
  /** For messages: `hello (6f1c…)`. */
  label: string;
  condition: WaitCondition;
  timeoutMs: number;
  /** Ctrl-C: stop waiting (a UserError with exit code 130). */
  signal: AbortSignal;
}

/**
 * Watches app `uuid`'s TaskStatus until `condition` holds; resolves with the status then
 * (undefined when the goal is its removal). Throws a UserError when the condition reports a
 * failure, on timeout (saying where the app is), and on interruption.
 */
export async function waitForStatus(bus: Bus, o: WaitOptions): Promise<TaskStatus | undefined> {
  let current: TaskStatus | undefined;
  let settle!: (r: { ok: true } | { ok: false; err: UserError }) => void;
  const settled = new Promise<{ ok: true } | { ok: false; err: UserError }>((r) => (settle = r));
  let synced = false;
  const evaluate = (): void => {
    if (!synced) return;
    const v = o.condition.check(current);
    if (v.done) settle({ ok: true });
    else if (v.failed) settle({ ok: false, err: new UserError(`${o.label}: ${v.failed}`) });
  };
  const onKey = (key: string, value: TaskStatus | undefined): void => {
    if (key !== o.uuid) return;
    current = value;
    evaluate();
  };
  const sub = await subscribe(bus, {
    agent: messageTypes.TaskStatus.agent,
    type: "TaskStatus",
    schema: TaskStatusSchema,
    onCreate: (k, v) => onKey(k, v),
    onModify: (k, v) => onKey(k, v),
    onDelete: (k) => onKey(k, undefined),
    onSynchronized: () => {
      synced = true;
      evaluate();
    },
  });
  const timer = setTimeout(() => {
    const msg = `timed out after ${formatAge(o.timeoutMs)} waiting for ${o.label} to be ${o.condition.goal}; ${describeNow(current)}`;
    settle({ ok: false, err: new UserError(msg) });
  }, o.timeoutMs);
  const onAbort = (): void =>
    settle({ ok: false, err: new UserError(`stopped waiting for ${o.label}; ${describeNow(current)}`, 130) });
  if (o.signal.aborted) onAbort();
  o.signal.addEventListener("abort", onAbort, { once: true });
  try {
    const r = await settled;
    if (!r.ok) throw r.err;
    return current;
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener("abort", onAbort);
    await sub.close();
  }
}
