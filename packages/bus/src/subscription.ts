import type { KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { z } from "zod";
import { decodeValue, jsonEqual } from "@eve-tasks/schemas";
import type { Bus } from "./connection.js";
import { RESTARTED_MARKER, assertTypeName, userKeyOf } from "./keys.js";
import { lastKvRevision } from "./table-keys.js";
import type { RestartedMarker, TableOptions } from "./publication.js";

/** Why a received value was not handed to the create/modify handlers. */
export interface InvalidValue<T> {
  key: string;
  /** KV revision of the bad value. */
  revision: number;
  reason: "too-large" | "malformed-json" | "schema" | "key";
  /** A message for a human, naming the field or limit. */
  message: string;
  /** The last valid value of the key, if any: it stays current in the subscription. */
  previous: T | undefined;
}

/** A value as the subscription knows it, with the KV revision it was stored at. */
export interface Known<T> {
  revision: number;
  value: T;
}

/** Handlers and options of a subscription; only `onCreate` is required, as in EVE. */
export interface SubscribeOptions<S extends z.ZodType> extends TableOptions<S> {
  /** Only keys under this prefix (dot-separated tokens), e.g. a node name for seeds. */
  keyPrefix?: string;
  onCreate(key: string, value: z.infer<S>, revision: number): void | Promise<void>;
  onModify?(key: string, value: z.infer<S>, old: z.infer<S>, revision: number): void | Promise<void>;
  onDelete?(key: string, old: z.infer<S>, revision: number): void | Promise<void>;
  /** Once, after the current state has been delivered; also for an empty table. */
  onSynchronized?(): void | Promise<void>;
  /** The publisher said it has republished everything. */
  onRestarted?(counter: number): void | Promise<void>;
  /** A value that is malformed, too large, fails the schema or fails `checkKey`. Never thrown. */
  onInvalid?(invalid: InvalidValue<z.infer<S>>): void | Promise<void>;
  /** A handler threw; the subscription goes on with the next change. */
  onHandlerError?(key: string, err: unknown): void;
  /** Extra check of a valid value against its key, e.g. a uuid field equal to the key: a message, or null. */
  checkKey?(key: string, value: z.infer<S>): string | null;
  /**
   * What this subscriber already knew (a persistent subscriber's saved view): keys at
   * the same revision are not delivered again, changed keys arrive as modify, and
   * known keys that are gone arrive as delete before synchronized.
   */
  known?: ReadonlyMap<string, Known<z.infer<S>>>;
}

/**
 * A live subscription: the current state of the table (valid values only), the
 * synchronized promise, and close.
 */
export class Subscription<S extends z.ZodType> {
  readonly #opts: SubscribeOptions<S>;
  readonly #bus: Bus;
  readonly #table = new Map<string, Known<z.infer<S>>>();
  #iterator: QueuedIterator<KvWatchEntry> | undefined;
  #filter = "";
  /** Callers of caughtUp() waiting for a later revision. */
  #waiters: (() => void)[] = [];
  #closed = false;
  #synchronized = false;
  #resolveSync!: () => void;
  /** Resolves once the current state has been delivered (also for an empty table). */
  readonly synchronized: Promise<void>;
  /** Resolves when the subscription has stopped. */
  done: Promise<void> = Promise.resolve();

  constructor(bus: Bus, options: SubscribeOptions<S>) {
    assertTypeName(options.type);
    this.#bus = bus;
    this.#opts = options;
    this.synchronized = new Promise((r) => (this.#resolveSync = r));
    for (const [k, v] of options.known ?? []) {
      this.#table.set(k, { ...v });
    }
  }

  get isSynchronized(): boolean {
    return this.#synchronized;
  }

  /** The current valid value of `key`. */
  get(key: string): z.infer<S> | undefined {
    return this.#table.get(key)?.value;
  }

  /** Every current valid value, with its revision. */
  getAll(): Map<string, Known<z.infer<S>>> {
    return new Map([...this.#table].map(([k, v]) => [k, { revision: v.revision, value: v.value }]));
  }

  /** Starts watching: call once. Resolves when the watch is open (not when synchronized). */
  async start(): Promise<this> {
    const kv = await this.#bus.bucket(this.#opts.agent);
    const prefix = this.#opts.keyPrefix ? `${this.#opts.type}.${this.#opts.keyPrefix}` : this.#opts.type;
    const filter = `${prefix}.>`;
    this.#filter = filter;
    // Not ignoreDeletes: with it, a snapshot ending in a delete never yields the delta-0 entry.
    this.#iterator = await kv.watch({ key: filter });
    const seen = new Set<string>();
    this.done = this.#run(this.#iterator, seen);
    // The snapshot is complete once the watch has delivered the table's newest record as of
    // now (the watch delivers in stream order), or an entry with nothing pending after it
    // (delta 0). Both are needed: nats-server 2.9 counts one message too many as pending when a
    // key of the snapshot is written while the watch starts (the overwritten record is never
    // delivered), and delta then never reaches 0; and NATS v3 gives no signal at all for an
    // empty match, where nothing comes before the first change.
    const last = await lastKvRevision(this.#bus, this.#opts.agent, filter);
    await this.#enqueue(async () => {
      this.#syncRevision = last ?? 0;
      if (this.#delivered >= this.#syncRevision) await this.#markSynchronized(seen);
    });
    return this;
  }

  /**
   * Resolves once every record of the table stored before the call has been handled: for a
   * reader that must not act on a view older than the moment it asks (one request to the
   * server, then the watch's own pace).
   */
  async caughtUp(): Promise<void> {
    await this.synchronized;
    const last = (await lastKvRevision(this.#bus, this.#opts.agent, this.#filter)) ?? 0;
    while (this.#delivered < last) {
      if (this.#closed) throw new Error(`the ${this.#opts.type} subscription is closed`);
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    // The handlers of what was delivered have run.
    await this.#chain;
  }

  /** The revision whose delivery completes the snapshot (known once the watch is open). */
  #syncRevision = Number.POSITIVE_INFINITY;
  /** The highest revision the watch has delivered. */
  #delivered = 0;

  #chain: Promise<void> = Promise.resolve();

  /** Runs `fn` after every change handler already queued, so handlers never overlap. */
  #enqueue(fn: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(fn);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async #run(it: QueuedIterator<KvWatchEntry>, seen: Set<string>): Promise<void> {
    for await (const e of it) {
      await this.#enqueue(() => this.#process(e, seen));
    }
  }

  async #call(key: string, fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (this.#opts.onHandlerError) this.#opts.onHandlerError(key, err);
      else this.#bus.logger.error({ err, key, type: this.#opts.type }, "subscription handler failed");
    }
  }

  async #process(e: KvWatchEntry, seen: Set<string>): Promise<void> {
    const o = this.#opts;
    this.#delivered = Math.max(this.#delivered, e.revision);
    if (this.#waiters.length > 0) for (const wake of this.#waiters.splice(0)) wake();
    const labels = { bucket: o.agent, type: o.type };
    if (e.delta !== undefined) this.#bus.metrics.watchPending.set(labels, e.delta);
    // The initial state is old by nature: only changes after it say how far behind the watch is.
    if (this.#synchronized) {
      this.#bus.metrics.watchLag.observe(labels, Math.max(0, Date.now() - e.created.getTime()) / 1000);
    }
    const key = userKeyOf(o.type, e.key);
    if (key === undefined) {
      // not this table's: nothing to hand out, but it may still complete the snapshot
    } else if (key === RESTARTED_MARKER) {
      if (e.operation === "PUT" && o.onRestarted) {
        try {
          const m = JSON.parse(e.string()) as RestartedMarker;
          await this.#call(key, () => o.onRestarted!(m.counter));
        } catch (err) {
          this.#bus.logger.warn({ err, type: o.type }, "unreadable restarted marker");
        }
      }
    } else if (!key.startsWith("_")) {
      if (!this.#synchronized) seen.add(key);
      await this.#apply(key, e);
    }
    if (!this.#synchronized && (e.delta === 0 || e.revision >= this.#syncRevision)) {
      await this.#markSynchronized(seen);
    }
  }

  async #apply(key: string, e: KvWatchEntry): Promise<void> {
    const o = this.#opts;
    const cur = this.#table.get(key);
    if (e.operation !== "PUT") {
      if (!cur) return;
      this.#table.delete(key);
      if (o.onDelete) await this.#call(key, () => o.onDelete!(key, cur.value, e.revision));
      return;
    }
    if (cur && cur.revision === e.revision) return; // already known (persistent subscriber)
    const d = decodeValue(o.schema, e.value);
    let invalid: InvalidValue<z.infer<S>> | undefined;
    if (!d.ok) {
      invalid = { key, revision: e.revision, reason: d.reason, message: d.message, previous: cur?.value };
    } else {
      const keyProblem = o.checkKey?.(key, d.value) ?? null;
      if (keyProblem !== null) {
        invalid = { key, revision: e.revision, reason: "key", message: keyProblem, previous: cur?.value };
      }
    }
    if (invalid || !d.ok) {
      if (o.onInvalid) await this.#call(key, () => o.onInvalid!(invalid!));
      else this.#bus.logger.warn({ key, type: o.type, reason: invalid?.reason }, invalid?.message);
      return;
    }
    this.#table.set(key, { revision: e.revision, value: d.value });
    if (!cur) {
      await this.#call(key, () => o.onCreate(key, d.value, e.revision));
    } else if (!jsonEqual(cur.value, d.value)) {
      if (o.onModify) await this.#call(key, () => o.onModify!(key, d.value, cur.value, e.revision));
    }
    // An identical update is suppressed, as in EVE.
  }

  async #markSynchronized(seen: Set<string>): Promise<void> {
    if (this.#synchronized) return;
    // Keys the subscriber knew from before but that are gone now.
    for (const [key, cur] of [...this.#table]) {
      if (!seen.has(key)) {
        this.#table.delete(key);
        if (this.#opts.onDelete)
          await this.#call(key, () => this.#opts.onDelete!(key, cur.value, cur.revision));
      }
    }
    this.#synchronized = true;
    if (this.#opts.onSynchronized) await this.#call("", () => this.#opts.onSynchronized!());
    this.#resolveSync();
  }

  /** Stops the watch; handlers already running finish. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const wake of this.#waiters.splice(0)) wake();
    this.#iterator?.stop();
    await this.done.catch(() => undefined);
    await this.#chain;
  }
}

/** Subscribes to a table: create/modify/delete handlers, synchronized and restarted signals. */
export async function subscribe<S extends z.ZodType>(
  bus: Bus,
  options: SubscribeOptions<S>,
): Promise<Subscription<S>> {
  return new Subscription(bus, options).start();
}
