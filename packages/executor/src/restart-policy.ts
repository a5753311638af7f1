/**
 * The restart policy as pure decisions: given how a task ended by itself and the restarts the
 * policy already made in its window, restart (after a back-off), or not, and why.
 */
import { backoffDelayMs } from "@eve-tasks/backoff";
import type { RestartPolicy } from "@eve-tasks/schemas";
import { MAX_RESTART_HISTORY } from "./labels.js";

/** How a task ended by itself. */
export interface ExitFacts {
  /** Exit status as containerd reports it (128+n for signal n); null when unknown. */
  exitCode: number | null;
  signal: string | null;
}

/** What the policy decided. */
export type RestartDecision =
  | {
      action: "restart";
      /** Wait this long after the exit before starting again. */
      delayMs: number;
      /** This restart's number within the window (1 = first). */
      attempt: number;
      message: string;
    }
  | { action: "give-up"; message: string }
  | { action: "none"; message: string };

/** Restart times (epoch ms) still inside the policy's sliding window at `nowMs`. */
export function inWindow(policy: RestartPolicy, timesMs: readonly number[], nowMs: number): number[] {
  return timesMs.filter((t) => nowMs - t < policy.windowMs);
}

/**
 * The restart history after one more restart at `nowMs`: the times still in the window plus
 * `nowMs`, the latest `min(maxRestarts, MAX_RESTART_HISTORY)` of them. Counting no further than
 * `maxRestarts` decides the same as counting all of them; a `maxRestarts` above
 * {@link MAX_RESTART_HISTORY} can therefore never be reached, and the policy then restarts
 * without a limit, at `maxBackoffMs` apart.
 */
export function recordRestart(policy: RestartPolicy, timesMs: readonly number[], nowMs: number): number[] {
  const keep = Math.min(policy.maxRestarts, MAX_RESTART_HISTORY);
  return keep === 0 ? [] : [...inWindow(policy, timesMs, nowMs), nowMs].slice(-keep);
}

/** The n-th restart's delay: `min(backoffMs · 2^(n−1), maxBackoffMs)`. */
export function backoffFor(policy: RestartPolicy, n: number): number {
  return backoffDelayMs(n, { initialMs: policy.backoffMs, maxMs: policy.maxBackoffMs });
}

function describe(exit: ExitFacts): string {
  if (exit.exitCode === null) return "an unknown exit status";
  if (exit.signal) return `${exit.signal} (exit status ${exit.exitCode})`;
  return `exit code ${exit.exitCode}`;
}

/**
 * Decides what to do after a task ended by itself. `always` restarts after any exit,
 * `on-failure` after a non-zero exit or a signal (an unknown status counts as a failure),
 * `never` never; at most `maxRestarts` within `windowMs`, then it gives up.
 */
export function decideRestart(
  policy: RestartPolicy,
  exit: ExitFacts,
  restartTimesMs: readonly number[],
  nowMs: number,
): RestartDecision {
  const how = describe(exit);
  if (policy.mode === "never")
    return { action: "none", message: `ended with ${how}; restart policy is never` };
  const failed = exit.exitCode !== 0 || exit.signal !== null;
  if (policy.mode === "on-failure" && !failed) {
    return { action: "none", message: `ended with ${how}; on-failure does not restart a clean exit` };
  }
  const recent = inWindow(policy, restartTimesMs, nowMs);
  if (recent.length >= policy.maxRestarts) {
    return {
      action: "give-up",
      message:
        `ended with ${how}; restart policy gave up after ${recent.length} restart(s) ` +
        `within ${policy.windowMs} ms (maxRestarts ${policy.maxRestarts})`,
    };
  }
  const attempt = recent.length + 1;
  const delayMs = backoffFor(policy, attempt);
  return {
    action: "restart",
    delayMs,
    attempt,
    message: `ended with ${how}; restarting in ${delayMs} ms (restart ${attempt} of at most ${policy.maxRestarts} within ${policy.windowMs} ms)`,
  };
}
