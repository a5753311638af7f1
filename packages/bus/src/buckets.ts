import { DiscardPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import type { StreamConfig, StreamInfo } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { setTimeout as sleep } from "node:timers/promises";
import { EVENTS_STREAM, agents } from "@eve-tasks/schemas";
import { backoffDelayMs } from "@eve-tasks/backoff";
import type { BackoffPolicy } from "@eve-tasks/backoff";
import type { Bus } from "./connection.js";
import { ConfigMismatchError } from "./errors.js";
import { streamOf } from "./keys.js";
import { isStreamNotFound } from "./table-keys.js";

/** Largest value NATS will store (1 MiB); values over 64 KiB are stored but reported too large. */
export const MAX_VALUE_BYTES = 1024 * 1024;

/**
 * The bucket configuration the bus owns, for every agent's bucket: file storage,
 * 1 MiB values, the latest value per key only.
 */
export const BUCKET_CONFIG = {
  storage: StorageType.File,
  maxValueSize: MAX_VALUE_BYTES,
  history: 1,
} as const;

/**
 * The events stream: `eve.events.<uuid>`, kept 7 days, with a one-hour duplicate
 * window so an outbox that re-sends after an outage of up to an hour stores nothing twice.
 */
export const EVENTS_STREAM_CONFIG = {
  name: EVENTS_STREAM,
  subjects: ["eve.events.>"],
  storage: StorageType.File,
  retention: RetentionPolicy.Limits,
  discard: DiscardPolicy.Old,
  max_age: 7 * 24 * 3600 * 1e9,
  max_msgs_per_subject: 10_000,
  duplicate_window: 3600 * 1e9,
} as const;

async function streamInfo(bus: Bus, name: string): Promise<StreamInfo | undefined> {
  try {
    return await bus.jsm.streams.info(name);
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  }
}

function differences(actual: Partial<StreamConfig>, wanted: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(wanted)) {
    const a = (actual as Record<string, unknown>)[k];
    if (JSON.stringify(a) !== JSON.stringify(v))
      out.push(`${k} is ${JSON.stringify(a)}, expected ${JSON.stringify(v)}`);
  }
  return out;
}

/**
 * How an existing bucket's stream differs from the bus's configuration. A mirror of another
 * bucket (a device's `controller`, mirroring the hub's `controller-<node>`) is the same bucket:
 * same storage, value size and history, read by its origin's subjects; a mirror of a stream that
 * is no bucket is not.
 */
export function bucketDifferences(config: Partial<StreamConfig>): string[] {
  const diff = differences(config, bucketStreamSettings());
  const origin = config.mirror?.name;
  if (origin !== undefined && !origin.startsWith("KV_"))
    diff.push(`it mirrors ${JSON.stringify(origin)}, which is not a bucket`);
  return diff;
}

/** The stream settings a bucket must have, in stream terms, for comparison with what exists. */
function bucketStreamSettings(): Record<string, unknown> {
  return {
    storage: BUCKET_CONFIG.storage,
    max_msg_size: BUCKET_CONFIG.maxValueSize,
    max_msgs_per_subject: BUCKET_CONFIG.history,
  };
}

/**
 * Creates an agent's bucket, or checks that the existing one has the bus's
 * configuration (storage, value size, history) and throws ConfigMismatchError if not.
 * Replicas are not compared: a cluster may run buckets with 3 replicas.
 */
export async function ensureBucket(bus: Bus, agent: string): Promise<void> {
  const existing = await streamInfo(bus, streamOf(agent));
  if (existing) {
    const diff = bucketDifferences(existing.config);
    if (diff.length) throw new ConfigMismatchError(`bucket ${agent}`, diff);
    return;
  }
  await new Kvm(bus.js).create(agent, { ...BUCKET_CONFIG });
}

/** Creates (or checks) every bucket of the design: one per publishing agent. */
export async function ensureBuckets(bus: Bus): Promise<void> {
  for (const agent of agents) await ensureBucket(bus, agent);
}

/** Creates (or checks) the TASK_EVENTS stream. */
export async function ensureEventsStream(bus: Bus): Promise<void> {
  const existing = await streamInfo(bus, EVENTS_STREAM);
  if (existing) {
    const { name: _name, ...wanted } = EVENTS_STREAM_CONFIG;
    const diff = differences(existing.config, { ...wanted, subjects: [...wanted.subjects] });
    if (diff.length) throw new ConfigMismatchError(`stream ${EVENTS_STREAM}`, diff);
    return;
  }
  await bus.jsm.streams.add({ ...EVENTS_STREAM_CONFIG, subjects: [...EVENTS_STREAM_CONFIG.subjects] });
}

/** Between looks for a bucket that does not exist yet: from `intervalMs`, doubling up to 5 s. */
const BUCKET_WAIT: BackoffPolicy = { initialMs: 1000, maxMs: 5000 };

/**
 * Waits until `agent`'s bucket exists with the bus's configuration: for a bucket this worker
 * reads but may not create (with per-worker NATS users, only a bucket's own agent, or an
 * admin, creates it). Looks again with back-off (from `intervalMs`, default 1 s, up to 5 s).
 * Says once, at info level, what it waits for. Rejects when `signal` aborts.
 */
export async function waitForBucket(
  bus: Bus,
  agent: string,
  options: { intervalMs?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const policy = { ...BUCKET_WAIT, initialMs: options.intervalMs ?? BUCKET_WAIT.initialMs };
  let said = false;
  for (let attempt = 0; ; attempt++) {
    const existing = await streamInfo(bus, streamOf(agent));
    if (existing) {
      const diff = bucketDifferences(existing.config);
      if (diff.length) throw new ConfigMismatchError(`bucket ${agent}`, diff);
      return;
    }
    if (!said) {
      bus.logger.info(
        { event: "waiting-for-bucket", bucket: agent },
        `waiting for bucket ${agent} to be created`,
      );
      said = true;
    }
    options.signal?.throwIfAborted();
    await sleep(backoffDelayMs(attempt + 1, policy), undefined, { signal: options.signal });
  }
}
