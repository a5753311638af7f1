import type { Bus } from "./connection.js";
import { bucketSubjectPrefix, streamOf } from "./keys.js";

/** Whether `err` is JetStream's "stream not found" (a bucket that does not exist). */
export function isStreamNotFound(err: unknown): boolean {
  const e = (typeof err === "object" && err !== null ? err : {}) as {
    code?: unknown;
    status?: unknown;
    message?: unknown;
  };
  return (
    e.code === 10059 || e.code === 404 || e.status === 404 || /stream not found/i.test(String(e.message))
  );
}

/**
 * The KV keys under `filter` (e.g. `TaskStatus.>`) that have a record in `agent`'s bucket,
 * deletes included; undefined when the bucket does not exist.
 *
 * Reads the stream's per-subject counts (one request, paged by nats.js) instead of
 * nats.js's `kv.keys()`, whose listing consumer was seen to stall for up to 30 s when a key
 * of the table is written while it lists.
 */
export async function listKvKeys(bus: Bus, agent: string, filter: string): Promise<string[] | undefined> {
  let subjects: Record<string, number> | undefined;
  let prefix: string;
  try {
    // `$KV.*.`: a bucket's stream holds one bucket's subjects only, its own or (a mirror, e.g. a
    // device's `controller`) its origin's, so the wildcard reads either in one request.
    const info = await bus.jsm.streams.info(streamOf(agent), { subjects_filter: `$KV.*.${filter}` });
    prefix = `${bucketSubjectPrefix(agent, info.config)}.`;
    subjects = info.state.subjects;
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  }
  return Object.keys(subjects ?? {})
    .filter((s) => s.startsWith(prefix))
    .map((s) => s.slice(prefix.length));
}

/**
 * The stream sequence (KV revision) of the newest record under `filter` (e.g. `TaskStatus.>`) in
 * `agent`'s bucket, deletes included; undefined when there is none or the bucket does not exist.
 */
export async function lastKvRevision(bus: Bus, agent: string, filter: string): Promise<number | undefined> {
  try {
    const m = await bus.jsm.streams.getMessage(streamOf(agent), { last_by_subj: `$KV.${agent}.${filter}` });
    return m?.seq;
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  }
}
