import type { StoredMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Empty, headers } from "@nats-io/nats-core";
import { setTimeout as sleep } from "node:timers/promises";
import type { z } from "zod";
import { decodeValue, encodeValue, encodeValueText } from "@eve-tasks/schemas";
import type { EncodedValue } from "@eve-tasks/schemas";
import { backoffDelayMs } from "@eve-tasks/backoff";
import { CAS_BACKOFF, MAX_CAS_ATTEMPTS } from "./backoff.js";
import type { Bus } from "./connection.js";
import { PublishError } from "./errors.js";
import {
  RESTARTED_MARKER,
  assertTypeName,
  assertUserKey,
  kvKey,
  streamOf,
  subjectOf,
  userKeyOf,
} from "./keys.js";
import {
  CONFIG_REVISION_HEADER,
  KV_OPERATION_HEADER,
  parseConfigRevision,
  planDelete,
  planPut,
} from "./ordering.js";
import type { StoredRecord } from "./ordering.js";
import { listKvKeys } from "./table-keys.js";
import { isWrongLastSequence, updateKey } from "./update.js";
import type { Current, UpdateResult } from "./update.js";

/** Which table a publication writes: the agent's bucket and the value type. */
export interface TableOptions<S extends z.ZodType> {
  /** The publishing agent, which is also its bucket's name. */
  agent: string;
  /** The type name, e.g. `TaskStatus`: the first token of every key. */
  type: string;
  /** The zod schema every value is checked against, on publish and on receipt. */
  schema: S;
}

/** The value of the restarted marker. */
export interface RestartedMarker {
  counter: number;
  at: string;
}

/** Result of a compare-and-set write ordered by configRevision. */
export type OrderedWriteResult = "written" | "unchanged" | "stale" | "deleted" | "absent";

const utf8 = new TextDecoder();

function configRevisionOf(text: string): number | undefined {
  try {
    const v = JSON.parse(text) as { configRevision?: unknown };
    return typeof v.configRevision === "number" ? v.configRevision : undefined;
  } catch {
    return undefined;
  }
}

/** A stored message as the ordering rule sees it: a value, or a delete marker (tombstone). */
function storedRecordOf(sm: StoredMsg | null): StoredRecord {
  if (!sm) return { kind: "none" };
  const op = sm.header?.get(KV_OPERATION_HEADER);
  if (op === "DEL" || op === "PURGE") {
    return {
      kind: "tombstone",
      revision: sm.seq,
      configRevision: parseConfigRevision(sm.header?.get(CONFIG_REVISION_HEADER) || undefined),
    };
  }
  const text = utf8.decode(sm.data);
  return { kind: "value", revision: sm.seq, configRevision: configRevisionOf(text), text };
}

/** Waits before compare-and-set retry number `attempt`, so racing replicas do not collide in step. */
function casPause(attempt: number): Promise<void> {
  return sleep(backoffDelayMs(attempt + 1, CAS_BACKOFF));
}

/**
 * One agent's table of one type, EVE-style: publish, unpublish, get, get all, and
 * the restarted signal. Every value is validated with its zod schema before it is
 * sent. Writing a value identical to the one this process last wrote is skipped.
 */
export class Publication<S extends z.ZodType> {
  readonly agent: string;
  readonly type: string;
  readonly schema: S;
  readonly #bus: Bus;
  /** What this process last wrote per key (its JSON text), to skip identical writes. */
  readonly #written = new Map<string, string>();
  /** putIfNewer's last write per key: its KV revision and configRevision, for a write without a read. */
  readonly #lastOrdered = new Map<string, { kvRevision: number; configRevision: number }>();
  /** Whether the bucket's stream answers direct gets (as nats.js's kv.get decides), once known. */
  #direct: Promise<boolean> | undefined;

  constructor(bus: Bus, options: TableOptions<S>) {
    assertTypeName(options.type);
    this.#bus = bus;
    this.agent = options.agent;
    this.type = options.type;
    this.schema = options.schema;
  }

  #kv(): Promise<KV> {
    return this.#bus.bucket(this.agent);
  }

  /** Counts a write the server acknowledged. */
  #counted(operation: "put" | "delete"): void {
    this.#bus.metrics.kvWrites.inc({ bucket: this.agent, operation });
  }

  /** Counts a write the server refused or did not acknowledge. */
  #failed(operation: "put" | "delete"): void {
    this.#bus.metrics.kvWriteErrors.inc({ bucket: this.agent, operation });
  }

  /** Counts a compare-and-set write that lost to another. */
  #conflict(): void {
    this.#bus.metrics.kvConflicts.inc({ bucket: this.agent });
  }

  /**
   * The last record of KV key `full`, headers included (kv.get does not show them): read the
   * way kv.get reads it, by a direct get when the stream allows one.
   */
  async #lastRecord(full: string): Promise<StoredRecord> {
    const stream = streamOf(this.agent);
    if (!this.#direct) {
      const direct = this.#bus.jsm.streams.info(stream).then((i) => i.config.allow_direct === true);
      // A failed look-up is asked again next time.
      direct.catch(() => {
        if (this.#direct === direct) this.#direct = undefined;
      });
      this.#direct = direct;
    }
    const last_by_subj = `$KV.${this.agent}.${full}`;
    const sm = (await this.#direct)
      ? await this.#bus.jsm.direct.getMessage(stream, { last_by_subj })
      : await this.#bus.jsm.streams.getMessage(stream, { last_by_subj });
    return storedRecordOf(sm);
  }

  /**
   * Writes a delete marker for `key` that carries `configRevision`, with compare-and-set on
   * `previousSeq` (0: the key has no record). To every KV reader it is a plain delete.
   */
  async #tombstone(key: string, configRevision: number, previousSeq: number): Promise<void> {
    const h = headers();
    h.set(KV_OPERATION_HEADER, "DEL");
    h.set(CONFIG_REVISION_HEADER, String(configRevision));
    await this.#bus.js.publish(subjectOf(this.agent, this.type, key), Empty, {
      headers: h,
      expect: { lastSubjectSequence: previousSeq },
    });
  }

  /**
   * Validates once and serializes the parsed value (defaults applied). Its JSON text is the
   * fingerprint of identical writes: the schema fixes the order of an object's fields, so the
   * same value gives the same text (a map filled in another order only costs a write).
   */
  #encode(key: string, value: z.input<S>): EncodedValue {
    assertUserKey(key);
    return encodeValueText(this.schema, value, { type: this.type, key });
  }

  /**
   * Publishes `value` under `key` (acked by JetStream). Throws SchemaValidationError or
   * ValueTooLargeError (from @eve-tasks/schemas) before sending a bad value, and
   * PublishError when NATS refuses it. Returns the KV revision, or undefined when the
   * value equals what this process last published and nothing was sent.
   */
  async publish(key: string, value: z.input<S>): Promise<number | undefined> {
    const { bytes, text } = this.#encode(key, value);
    if (this.#written.get(key) === text) return undefined;
    const kv = await this.#kv();
    try {
      const rev = await kv.put(kvKey(this.type, key), bytes);
      this.#written.set(key, text);
      this.#counted("put");
      return rev;
    } catch (err) {
      this.#failed("put");
      throw new PublishError(this.agent, kvKey(this.type, key), `publish failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * Publishes a sample that is superseded soon anyway (metrics): validated and encoded like
   * {@link publish}, but sent as a plain publish to the key's subject, which JetStream stores in
   * the bucket without an acknowledgement. Cheap (no round trip, no identical-write check); a
   * sample lost in an outage is simply replaced by the next. Throws only for a bad value, and
   * PublishError when the connection is closed.
   */
  publishSample(key: string, value: z.input<S>): void {
    assertUserKey(key);
    const bytes = encodeValue(this.schema, value, { type: this.type, key });
    this.#written.delete(key);
    try {
      this.#bus.nc.publish(`$KV.${this.agent}.${kvKey(this.type, key)}`, bytes);
    } catch (err) {
      throw new PublishError(this.agent, kvKey(this.type, key), `publish failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Removes `key` (a KV delete: subscribers see unpublish). Removing an absent key succeeds. */
  async unpublish(key: string): Promise<void> {
    assertUserKey(key);
    const kv = await this.#kv();
    this.#written.delete(key);
    this.#lastOrdered.delete(key);
    try {
      await kv.delete(kvKey(this.type, key));
      this.#counted("delete");
    } catch (err) {
      this.#failed("delete");
      throw new PublishError(
        this.agent,
        kvKey(this.type, key),
        `unpublish failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  /** The current valid value of `key`, or undefined when absent, deleted or invalid. */
  async get(key: string): Promise<z.infer<S> | undefined> {
    assertUserKey(key);
    const kv = await this.#kv();
    const e = await kv.get(kvKey(this.type, key));
    if (!e || e.operation !== "PUT") return undefined;
    const d = decodeValue(this.schema, e.value);
    return d.ok ? d.value : undefined;
  }

  /**
   * Every current valid value of the table, by key (invalid ones are left out): the keys, then a
   * direct get of each. Not a watch: a reader may be allowed direct gets of a bucket but not to
   * create consumers on it (the spec-builder on the controller's), and a mirrored bucket is read
   * the same way. A caller that reads a big table often follows it with `subscribe` instead.
   */
  async getAll(): Promise<Map<string, z.infer<S>>> {
    const out = new Map<string, z.infer<S>>();
    const keys = (await listKvKeys(this.#bus, this.agent, `${this.type}.>`)) ?? [];
    const kv = await this.#kv();
    const entries = await Promise.all(keys.map(async (k) => [k, await kv.get(k)] as const));
    for (const [k, e] of entries) {
      const key = userKeyOf(this.type, k);
      if (key === undefined || key.startsWith("_") || !e || e.operation !== "PUT") continue;
      const d = decodeValue(this.schema, e.value);
      if (d.ok) out.set(key, d.value);
    }
    return out;
  }

  /**
   * Read-modify-write of `key` with compare-and-set, retried on conflict (see updateKey): for
   * a table with more than one writer, such as the controller's configs edited by people
   * and tools at once.
   */
  async update(
    key: string,
    fn: (current: Current<z.infer<S>>) => z.input<S>,
  ): Promise<UpdateResult<z.infer<S>>> {
    assertUserKey(key);
    const r = await updateKey(await this.#kv(), this.agent, this.type, key, this.schema, fn);
    this.#written.delete(key);
    if (r.outcome === "written") this.#counted("put");
    for (let i = 0; i < r.conflicts; i++) this.#conflict();
    return r;
  }

  /**
   * Says "I have republished everything" (EVE's SignalRestarted): subscribers'
   * restarted handlers get the counter, which grows with every signal.
   */
  async signalRestarted(): Promise<number> {
    const kv = await this.#kv();
    const key = kvKey(this.type, RESTARTED_MARKER);
    const cur = await kv.get(key);
    let counter = 1;
    if (cur?.operation === "PUT") {
      try {
        counter = (JSON.parse(cur.string()) as RestartedMarker).counter + 1;
      } catch {
        counter = 1;
      }
    }
    const marker: RestartedMarker = { counter, at: new Date().toISOString() };
    await kv.put(key, JSON.stringify(marker));
    return counter;
  }

  /** Withdraws the restarted signal at start-up (EVE's ClearRestarted). */
  async clearRestarted(): Promise<void> {
    const kv = await this.#kv();
    await kv.delete(kvKey(this.type, RESTARTED_MARKER));
  }

  /**
   * Writes `value` only if no record with a higher `configRevision` is stored — a value, or a
   * delete's tombstone with a higher or equal one (see {@link deleteIfNotNewer}) — with
   * compare-and-set on the key's KV revision, so replicas racing on one key never put an older
   * revision over a newer one, nor bring back a key deleted since. Returns "written",
   * "unchanged" (the same value is stored) or "stale" (a newer configRevision is stored).
   * `encoded`: `value` as {@link encodeValueText} already gave it for this table's schema (not
   * validated again).
   */
  async putIfNewer(
    key: string,
    value: z.input<S> & { configRevision: number },
    encoded?: EncodedValue,
  ): Promise<"written" | "unchanged" | "stale"> {
    if (encoded) assertUserKey(key);
    const { bytes, text } = encoded ?? this.#encode(key, value);
    const kv = await this.#kv();
    const full = kvKey(this.type, key);
    const written = (kvRevision: number): "written" => {
      this.#counted("put");
      this.#written.set(key, text);
      this.#lastOrdered.set(key, { kvRevision, configRevision: value.configRevision });
      return "written";
    };
    // The common case costs one round trip: when this process wrote the key last (or it was
    // never written), a compare-and-set on that revision succeeds only if nobody wrote since,
    // and then what is stored is our own older write. Otherwise: read, compare, write.
    const last = this.#lastOrdered.get(key);
    if (!last || last.configRevision <= value.configRevision) {
      if (last && this.#written.get(key) === text) return "unchanged";
      try {
        return written(await kv.put(full, bytes, { previousSeq: last?.kvRevision ?? 0 }));
      } catch (err) {
        if (!isWrongLastSequence(err)) {
          this.#failed("put");
          throw new PublishError(this.agent, full, `write failed: ${(err as Error).message}`, { cause: err });
        }
        this.#conflict();
      }
    }
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const plan = planPut(await this.#lastRecord(full), value.configRevision, text);
      if (plan.action === "skip") return plan.result;
      try {
        return written(await kv.put(full, bytes, { previousSeq: plan.previousSeq }));
      } catch (err) {
        if (!isWrongLastSequence(err)) {
          this.#failed("put");
          throw new PublishError(this.agent, full, `write failed: ${(err as Error).message}`, { cause: err });
        }
        this.#conflict();
        await casPause(attempt);
      }
    }
    this.#failed("put");
    throw new PublishError(this.agent, full, `gave up after ${MAX_CAS_ATTEMPTS} compare-and-set conflicts`);
  }

  /**
   * Deletes `key` as of source revision `configRevision`, unless a newer value is stored: a
   * KV delete marker carrying the revision in its {@link CONFIG_REVISION_HEADER} header (a
   * tombstone), written with compare-and-set. The tombstone is written also where there is no
   * value, so that {@link putIfNewer} of an older revision (a replica that read the source
   * before it was deleted) never lands afterwards. Returns "deleted" (a value was removed),
   * "absent" (there was none) or "stale" (a newer configRevision is stored).
   */
  async deleteIfNotNewer(key: string, configRevision: number): Promise<"deleted" | "absent" | "stale"> {
    assertUserKey(key);
    const full = kvKey(this.type, key);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const plan = planDelete(await this.#lastRecord(full), configRevision);
      if (plan.action === "skip") return plan.result;
      try {
        await this.#tombstone(key, configRevision, plan.previousSeq);
        this.#counted("delete");
        this.#written.delete(key);
        this.#lastOrdered.delete(key);
        return plan.result;
      } catch (err) {
        if (!isWrongLastSequence(err)) {
          this.#failed("delete");
          throw new PublishError(this.agent, full, `delete failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
        this.#conflict();
        await casPause(attempt);
      }
    }
    this.#failed("delete");
    throw new PublishError(this.agent, full, `gave up after ${MAX_CAS_ATTEMPTS} compare-and-set conflicts`);
  }
}
