/**
 * Every default of the executor in one place: timeouts of a stop, how often every app is checked
 * again, how many starts run at once, and the back-off of each retry. {@link executorDefaults}
 * completes what a caller gives, the way nats.js completes connection options.
 */
import type { BackoffPolicy } from "@eve-tasks/backoff";

/** The executor's tunables, every one set. */
export interface ExecutorTunables {
  /** Tasks created and started at once. */
  readonly startConcurrency: number;
  /** How often every app is checked against containerd as a safety net (0 = never). */
  readonly relistIntervalMs: number;
  /**
   * The stop timeout of an app whose config the executor has not seen (a container found at
   * start-up whose config is gone); otherwise the app's own `stopTimeoutMs`.
   */
  readonly stopTimeoutMs: number;
  /** How long the SIGKILL of a stop may take before the executor deletes the task anyway. */
  readonly killTimeoutMs: number;
  /** How long qemu may take to end after QMP `quit` before SIGKILL. */
  readonly vmQuitTimeoutMs: number;
  /** How long a VM's QMP socket may take to answer at a stop before SIGTERM is used instead. */
  readonly qmpConnectTimeoutMs: number;
  /** How long the KVM probe guest may take to print its marker (EVE_KVM_PROBE_TIMEOUT_MS). */
  readonly kvmProbeTimeoutMs: number;
  /**
   * How long a VM given KVM on the probe's word (`auto`) may take to show a sign of life on its
   * serial console before it is restarted under TCG and the node's verdict becomes "KVM is not
   * usable" (EVE_VM_BOOT_DEADLINE_MS; 0 = no boot watchdog). See boot-watchdog.ts.
   */
  readonly vmBootDeadlineMs: number;
  /** When Tasks.Wait ends without an exit (not a missing task), look again after this long. */
  readonly waitRetryMs: number;
  /** Re-running a reconcile that failed (containerd unreachable, a NATS write refused). */
  readonly reconcileRetry: Required<BackoffPolicy>;
  /** Trying again a start that failed (runc refused the task), while nothing else changed. */
  readonly startRetry: Required<BackoffPolicy>;
  /** Resubscribing to containerd's events after the stream broke. */
  readonly eventsResubscribe: Required<BackoffPolicy>;
  /** Steps (observe → plan → act) one reconcile may take before it gives up and retries later. */
  readonly maxStepsPerReconcile: number;
}

/** The defaults. */
export const EXECUTOR_DEFAULTS: ExecutorTunables = Object.freeze({
  startConcurrency: 8,
  relistIntervalMs: 30_000,
  stopTimeoutMs: 10_000,
  killTimeoutMs: 10_000,
  vmQuitTimeoutMs: 5_000,
  qmpConnectTimeoutMs: 2_000,
  kvmProbeTimeoutMs: 10_000,
  vmBootDeadlineMs: 60_000,
  waitRetryMs: 1_000,
  reconcileRetry: Object.freeze({ initialMs: 1_000, maxMs: 30_000, factor: 2, jitter: 0.1 }),
  startRetry: Object.freeze({ initialMs: 5_000, maxMs: 300_000, factor: 2, jitter: 0.1 }),
  eventsResubscribe: Object.freeze({ initialMs: 500, maxMs: 10_000, factor: 2, jitter: 0 }),
  maxStepsPerReconcile: 8,
});

/** `given` over {@link EXECUTOR_DEFAULTS} (undefined fields take the default). */
export function executorDefaults(given: Partial<ExecutorTunables> = {}): ExecutorTunables {
  const out: Record<string, unknown> = { ...EXECUTOR_DEFAULTS };
  for (const [k, v] of Object.entries(given)) if (v !== undefined) out[k] = v;
  return out as unknown as ExecutorTunables;
}
