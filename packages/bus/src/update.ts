import type { KV, KvEntry } from "@nats-io/kv";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { z } from "zod";
import { canonicalJson, decodeValue, encodeValue } from "@eve-tasks/schemas";
import { setTimeout as sleep } from "node:timers/promises";
import { backoffDelayMs } from "@eve-tasks/backoff";
import { CAS_BACKOFF, MAX_CAS_ATTEMPTS } from "./backoff.js";
import { PublishError } from "./errors.js";
import { kvKey } from "./keys.js";

/** Whether `err` is JetStream's answer to a compare-and-set whose expected revision was wrong. */
export function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** The current state of a key, as an update function sees it. */
export interface Current<T> {
  /** The valid current value, or undefined when the key is absent or deleted. */
  value: T | undefined;
  /** The KV revision of the key's last record (a delete too), 0 when never written. */
  revision: number;
  /** When the current value is not valid: the decoder's message. */
  invalid?: string;
}

/** What an update did: wrote a new revision, or found the value already as wanted. */
export interface UpdateResult<T> {
  outcome: "written" | "unchanged";
  /** The revision written, or the revision of the unchanged value. */
  revision: number;
  /** The value now stored (defaults applied). */
  value: T;
  /** Compare-and-set conflicts that were retried. */
  conflicts: number;
}

function currentOf<S extends z.ZodType>(schema: S, entry: KvEntry | null): Current<z.output<S>> {
  if (!entry) return { value: undefined, revision: 0 };
  if (entry.operation !== "PUT") return { value: undefined, revision: entry.revision };
  const d = decodeValue(schema, entry.value);
  return d.ok
    ? { value: d.value, revision: entry.revision }
    : { value: undefined, revision: entry.revision, invalid: d.message };
}

/**
 * Read-modify-write of `<type>.<key>` with compare-and-set on the revision `fn` saw: on a
 * conflict it reads again and calls `fn` again, so a concurrent edit is never lost. `fn` may
 * throw to refuse (e.g. the key is gone). A result equal to the stored value (canonical JSON)
 * is not written. Throws PublishError after `maxAttempts` conflicts.
 */
export async function updateKey<S extends z.ZodType>(
  kv: KV,
  agent: string,
  type: string,
  key: string,
  schema: S,
  fn: (current: Current<z.output<S>>) => z.input<S>,
  options: { maxAttempts?: number } = {},
): Promise<UpdateResult<z.output<S>>> {
  const full = kvKey(type, key);
  const maxAttempts = options.maxAttempts ?? MAX_CAS_ATTEMPTS;
  for (let conflicts = 0; conflicts < maxAttempts; conflicts++) {
    const current = currentOf(schema, await kv.get(full));
    const bytes = encodeValue(schema, fn(current), { type, key });
    const value = decodeValue(schema, bytes);
    if (!value.ok) throw new PublishError(agent, full, `encoded value does not decode: ${value.message}`);
    if (current.value !== undefined && canonicalJson(current.value) === canonicalJson(value.value)) {
      return { outcome: "unchanged", revision: current.revision, value: value.value, conflicts };
    }
    try {
      const revision = await kv.put(full, bytes, { previousSeq: current.revision });
      return { outcome: "written", revision, value: value.value, conflicts };
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
      // Another writer got in between: back off a little (with jitter) and redo from its value.
      await sleep(backoffDelayMs(conflicts + 1, CAS_BACKOFF));
    }
  }
  throw new PublishError(agent, full, `gave up after ${maxAttempts} compare-and-set conflicts; try again`);
}
