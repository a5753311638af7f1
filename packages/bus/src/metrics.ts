/**
 * What the bus measures in every worker, as Prometheus metrics (prom-client) on the worker's
 * registry: KV writes and their failures, how far behind its watches are, the shared work queues
 * (handling time, outcome, backlog) and the event outbox (events sent, send failures, depth).
 * Labels are bounded: buckets, value types and durable names are few and fixed; no key or uuid.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { METRICS_PREFIX } from "@eve-tasks/schemas";

/** The bus's instruments, on one registry. */
export interface BusMetrics {
  readonly registry: Registry;
  /** KV writes (put, delete, compare-and-set) that the server acknowledged. */
  readonly kvWrites: Counter<"bucket" | "operation">;
  /** KV writes the server refused or never acknowledged (not counting compare-and-set conflicts). */
  readonly kvWriteErrors: Counter<"bucket" | "operation">;
  /** Compare-and-set writes that found someone else's write first (and were retried or skipped). */
  readonly kvConflicts: Counter<"bucket">;
  /** Changes delivered by watches after the initial state: time from the server's store to the handler. */
  readonly watchLag: Histogram<"bucket" | "type">;
  /** Messages the server still holds for a watch after the last delivered one. */
  readonly watchPending: Gauge<"bucket" | "type">;
  /** Work-queue deliveries handled, by outcome: `ack`, `retry` (nak with back-off), `gave-up` (term). */
  readonly workHandled: Counter<"durable" | "outcome">;
  /** Time to handle one work-queue delivery (read the latest state, act, write), in seconds. */
  readonly workDuration: Histogram<"durable">;
  /** Messages of the durable consumer still pending on the server after the last delivery. */
  readonly workPending: Gauge<"durable">;
  /** Acknowledgements (ack, nak, term, working) that could not be sent. */
  readonly ackErrors: Counter<"durable">;
  /** Task events JetStream acknowledged (stored, or recognised as a duplicate by its id). */
  readonly eventsSent: Counter;
  /** Attempts to send a task event that were not acknowledged (retried with back-off). */
  readonly eventSendErrors: Counter;
  /** Events waiting in outboxes to be acknowledged. */
  readonly outboxPending: Gauge;
}

const byRegistry = new WeakMap<Registry, BusMetrics>();

/** Open outboxes' depths, summed at each scrape. */
const outboxDepths = new WeakMap<Registry, Set<() => number>>();

/**
 * The bus's instruments on `registry`, created the first time (a registry refuses a name twice;
 * every connection of one process shares them). Without a registry: instruments on a private
 * one nobody scrapes.
 */
export function busMetrics(registry: Registry = new Registry()): BusMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const p = METRICS_PREFIX;
  const depths = new Set<() => number>();
  outboxDepths.set(registry, depths);
  const m: BusMetrics = {
    registry,
    kvWrites: new Counter({
      name: `${p}kv_writes_total`,
      help: "KV writes acknowledged by the server, by bucket and operation (put, delete).",
      labelNames: ["bucket", "operation"],
      registers,
    }),
    kvWriteErrors: new Counter({
      name: `${p}kv_write_errors_total`,
      help: "KV writes refused or not acknowledged by the server (compare-and-set conflicts excluded).",
      labelNames: ["bucket", "operation"],
      registers,
    }),
    kvConflicts: new Counter({
      name: `${p}kv_cas_conflicts_total`,
      help: "Compare-and-set writes that found a newer write first (then retried or skipped).",
      labelNames: ["bucket"],
      registers,
    }),
    watchLag: new Histogram({
      name: `${p}watch_lag_seconds`,
      help: "Time from a KV change being stored to its watcher's handler, after the initial state, in seconds.",
      labelNames: ["bucket", "type"],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60],
      registers,
    }),
    watchPending: new Gauge({
      name: `${p}watch_pending_messages`,
      help: "Messages the server holds for a watch behind the last one delivered.",
      labelNames: ["bucket", "type"],
      registers,
    }),
    workHandled: new Counter({
      name: `${p}work_handled_total`,
      help: "Work-queue deliveries handled, by durable consumer and outcome (ack, retry, gave-up).",
      labelNames: ["durable", "outcome"],
      registers,
    }),
    workDuration: new Histogram({
      name: `${p}work_duration_seconds`,
      help: "Time to handle one work-queue delivery (reconcile one key), in seconds.",
      labelNames: ["durable"],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 300],
      registers,
    }),
    workPending: new Gauge({
      name: `${p}work_pending_messages`,
      help: "Messages of a work queue's durable consumer pending on the server after the last delivery.",
      labelNames: ["durable"],
      registers,
    }),
    ackErrors: new Counter({
      name: `${p}ack_errors_total`,
      help: "Work-queue acknowledgements (ack, nak, term, in-progress) that could not be sent.",
      labelNames: ["durable"],
      registers,
    }),
    eventsSent: new Counter({
      name: `${p}events_sent_total`,
      help: "Task events acknowledged by JetStream (TASK_EVENTS).",
      registers,
    }),
    eventSendErrors: new Counter({
      name: `${p}event_send_errors_total`,
      help: "Attempts to send a task event that JetStream did not acknowledge (retried).",
      registers,
    }),
    outboxPending: new Gauge({
      name: `${p}outbox_pending_events`,
      help: "Task events stored in the outbox and not yet acknowledged by JetStream.",
      registers,
      collect() {
        let n = 0;
        for (const depth of depths) n += depth();
        this.set(n);
      },
    }),
  };
  byRegistry.set(registry, m);
  return m;
}

/** Counts an outbox's pending events in `outbox_pending_events` until the returned function is called. */
export function trackOutboxDepth(metrics: BusMetrics, depth: () => number): () => void {
  const depths = outboxDepths.get(metrics.registry);
  depths?.add(depth);
  return () => void depths?.delete(depth);
}
