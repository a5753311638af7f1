import { setTimeout as sleep } from "node:timers/promises";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import type { Consumer, ConsumerConfig, ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { z } from "zod";
import { decodeValue } from "@eve-tasks/schemas";
import { backoffDelayMs } from "@eve-tasks/backoff";
import type { BackoffPolicy } from "@eve-tasks/backoff";
import type { Bus } from "./connection.js";
import { ConfigMismatchError } from "./errors.js";
import { assertTypeName, bucketSubjectPrefix, kvKey, streamOf } from "./keys.js";
import type { TableOptions } from "./publication.js";

/**
 * The latest state of a source key, read when a change is handled (level-triggered):
 * a handler always works from the newest revision, whichever message woke it.
 */
export type SourceState<T> =
  | { kind: "value"; key: string; revision: number; value: T }
  | { kind: "deleted"; key: string; revision: number }
  | { kind: "invalid"; key: string; revision: number; reason: string; message: string };

/** Context of one delivery. */
export interface WorkContext {
  /** 1 for the first delivery of this message, 2 for the first redelivery, ... */
  deliveryCount: number;
  /** True when this is the last delivery before the work is given up. */
  lastAttempt: boolean;
}

/** A shared work queue over one table: replicas of a worker split its changes between them. */
export interface WorkQueueOptions<S extends z.ZodType> {
  /** The table whose changes are the work. */
  source: TableOptions<S>;
  /** The durable consumer's name, shared by every replica, e.g. `spec-builder`. */
  durable: string;
  /** Deliveries before a key's change is given up (default 5). */
  maxDeliver?: number;
  /** Delay before each redelivery after a failure, in ms (default 1 s, 5 s, 15 s, 30 s). */
  backoffMs?: readonly number[];
  /** Changes handled at once by this replica (default 8); one key is never handled twice at once. */
  concurrency?: number;
  /** How long a delivery may go unacknowledged before the server redelivers it (default 30 s). */
  ackWaitMs?: number;
  handle(state: SourceState<z.infer<S>>, ctx: WorkContext): Promise<void>;
  /**
   * The change failed `maxDeliver` times: report it (e.g. publish the error downstream).
   * `deleted`: the last attempt saw the key deleted (then there is nothing to report an error
   * on: a report must not bring the key back).
   */
  onGiveUp?(state: { key: string; revision: number; deleted: boolean }, err: unknown): Promise<void>;
}

const DEFAULT_BACKOFF_MS = [1000, 5000, 15000, 30000] as const;

/** Delays before the retries of a failed {@link WorkQueue.redo}, in ms. */
const REDO_BACKOFF_MS = [1000, 3000] as const;

/** How long one pull request waits on the server for messages before the next replaces it. */
const PULL_EXPIRES_MS = 10_000;

/** Between pulls that failed (NATS away, the consumer deleted). */
const PULL_RETRY: BackoffPolicy = { initialMs: 250, maxMs: 10_000 };

/**
 * How often a delivery in hand (waiting for a slot, for its key, or being handled) tells the
 * server it is still being worked on: three times per ack wait, so one late tick does not let
 * the ack wait run out.
 */
export function keepAliveIntervalMs(ackWaitMs: number): number {
  return Math.max(50, Math.floor(ackWaitMs / 3));
}

/** The durable consumer configuration owned by the bus for a work queue. */
export function workQueueConsumerConfig(
  options: Pick<WorkQueueOptions<z.ZodType>, "source" | "durable" | "maxDeliver" | "ackWaitMs">,
  /** The source bucket's subject prefix (bucketSubjectPrefix): `$KV.<agent>`, or a mirror's origin's. */
  subjectPrefix = `$KV.${options.source.agent}`,
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: options.durable,
    ack_policy: AckPolicy.Explicit,
    // A new consumer starts from the latest value of every key, then follows changes.
    deliver_policy: DeliverPolicy.LastPerSubject,
    filter_subject: `${subjectPrefix}.${options.source.type}.>`,
    max_deliver: options.maxDeliver ?? 5,
    ack_wait: (options.ackWaitMs ?? 30_000) * 1e6,
    max_ack_pending: 1000,
  };
}

/**
 * A running share of a work queue. Replicas (separate processes) each run one; the
 * server hands every change to one of them. Handlers must be idempotent and write
 * with compare-and-set (Publication.putIfNewer), since a change may be handled again.
 */
export class WorkQueue<S extends z.ZodType> {
  readonly #bus: Bus;
  readonly #opts: WorkQueueOptions<S>;
  /** The pull in progress, stopped by stop(). */
  #batch: ConsumerMessages | undefined;
  readonly #busyKeys = new Map<string, Promise<void>>();
  /** Deliveries in hand and redos, until they are done. */
  readonly #inFlight = new Set<Promise<void>>();
  #slots: number;
  /** Deliveries and redos waiting for a slot. */
  #waiters: (() => void)[] = [];
  /** The pull loop waiting for a slot to become free. */
  #onFreeSlot: (() => void) | undefined;
  #stopped = false;
  /** Aborted by stop(): a redo waiting to retry, or the pull loop backing off, gives up. */
  readonly #stopping = new AbortController();
  /** Resolves when the queue has stopped and in-flight work has finished. */
  done: Promise<void> = Promise.resolve();
  /** The source bucket's subject prefix, read from its stream (a mirror holds its origin's subjects). */
  #subjectPrefix: string;

  constructor(bus: Bus, options: WorkQueueOptions<S>) {
    assertTypeName(options.source.type);
    this.#bus = bus;
    this.#opts = options;
    this.#slots = options.concurrency ?? 8;
    this.#subjectPrefix = `$KV.${options.source.agent}`;
  }

  /** Creates the durable consumer if needed (or checks it). */
  async #ensureConsumer(): Promise<Consumer> {
    const stream = streamOf(this.#opts.source.agent);
    const streamInfo = await this.#bus.jsm.streams.info(stream);
    this.#subjectPrefix = bucketSubjectPrefix(this.#opts.source.agent, streamInfo.config);
    const wanted = workQueueConsumerConfig(this.#opts, this.#subjectPrefix);
    try {
      const info = await this.#bus.jsm.consumers.info(stream, wanted.durable_name);
      const diff: string[] = [];
      for (const k of ["filter_subject", "max_deliver", "ack_wait", "ack_policy"] as const) {
        if (info.config[k] !== wanted[k])
          diff.push(`${k} is ${String(info.config[k])}, expected ${String(wanted[k])}`);
      }
      if (diff.length) throw new ConfigMismatchError(`consumer ${stream}/${wanted.durable_name}`, diff);
    } catch (err) {
      if (err instanceof ConfigMismatchError) throw err;
      // Not found (or another replica is creating it): add is idempotent for an identical config.
      await this.#bus.jsm.consumers.add(stream, wanted);
    }
    return this.#bus.js.consumers.get(stream, wanted.durable_name);
  }

  /** Creates the durable consumer if needed (or checks it) and starts consuming. */
  async start(): Promise<this> {
    const consumer = await this.#ensureConsumer();
    this.done = this.#run(consumer);
    return this;
  }

  async #acquire(): Promise<void> {
    if (this.#slots > 0) {
      this.#slots--;
      return;
    }
    await new Promise<void>((r) => this.#waiters.push(r));
  }

  #release(): void {
    const w = this.#waiters.shift();
    if (w) return w();
    this.#slots++;
    this.#onFreeSlot?.();
  }

  /**
   * The pull loop: asks the server for at most as many messages as there are free slots, so no
   * delivery waits in this replica for a slot it cannot have soon (and the others' replicas get
   * the rest). A failed pull is retried with back-off; a deleted consumer is created again.
   */
  async #run(initial: Consumer): Promise<void> {
    let consumer = initial;
    let failures = 0;
    while (!this.#stopped) {
      if (this.#slots === 0) {
        await new Promise<void>((r) => (this.#onFreeSlot = r));
        this.#onFreeSlot = undefined;
        continue;
      }
      try {
        const started = Date.now();
        let got = 0;
        this.#batch = await consumer.fetch({ max_messages: this.#slots, expires: PULL_EXPIRES_MS });
        if (this.#stopped) await this.#batch.close();
        for await (const m of this.#batch) {
          got++;
          const prefix = `${this.#subjectPrefix}.${this.#opts.source.type}.`;
          const key = m.subject.startsWith(prefix) ? m.subject.slice(prefix.length) : "";
          if (!key || key.startsWith("_")) m.ack();
          else this.#accept(key, m);
        }
        // A pull that ends early with nothing is a failure in disguise (e.g. the consumer is
        // gone): treated as one, so it is not repeated in a tight loop.
        if (got === 0 && !this.#stopped && Date.now() - started < PULL_EXPIRES_MS / 2) {
          throw new Error("the pull ended early without messages");
        }
        failures = 0;
      } catch (err) {
        if (this.#stopped) break;
        const retryInMs = backoffDelayMs(++failures, PULL_RETRY);
        this.#bus.logger.warn(
          { err, durable: this.#opts.durable, retryInMs },
          "pulling work failed; will retry",
        );
        await sleep(retryInMs, undefined, { signal: this.#stopping.signal }).catch(() => undefined);
        if (this.#stopped) break;
        // The consumer may be gone (deleted by an operator): make it again, as start() does.
        try {
          consumer = await this.#ensureConsumer();
        } catch (e) {
          this.#bus.logger.warn({ err: e, durable: this.#opts.durable }, "cannot check the consumer");
        }
      } finally {
        this.#batch = undefined;
      }
    }
    await Promise.allSettled([...this.#inFlight]);
  }

  /**
   * Takes a delivery in hand: keeps it alive from now until it is acknowledged (also while it
   * waits for a slot or for an earlier change of its key), then handles it in a slot. After
   * stop() a delivery not yet started is handed back at once (nak) for another replica.
   */
  #accept(key: string, m: JsMsg): void {
    const ackWait = this.#opts.ackWaitMs ?? 30_000;
    const keepAlive = setInterval(() => this.#acknowledge(() => m.working()), keepAliveIntervalMs(ackWait));
    const p = (async () => {
      try {
        await this.#acquire();
        if (this.#stopped) {
          this.#release();
          this.#acknowledge(() => m.nak());
          return;
        }
        await this.#chain(key, () => this.#handle(key, m));
      } finally {
        clearInterval(keepAlive);
      }
    })();
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p));
  }

  /**
   * Runs `work` for `key` in a slot already acquired (released when it ends): one key at a time
   * within a replica, after the work already queued for it; other keys run concurrently.
   */
  #chain(key: string, work: () => Promise<void>): Promise<void> {
    const before = this.#busyKeys.get(key) ?? Promise.resolve();
    const p: Promise<void> = before.then(work).finally(() => {
      this.#release();
      if (this.#busyKeys.get(key) === p) this.#busyKeys.delete(key);
    });
    this.#busyKeys.set(key, p);
    return p;
  }

  async #readLatest(key: string): Promise<SourceState<z.infer<S>>> {
    const kv = await this.#bus.bucket(this.#opts.source.agent);
    const e = await kv.get(kvKey(this.#opts.source.type, key));
    if (!e || e.operation !== "PUT") return { kind: "deleted", key, revision: e?.revision ?? 0 };
    const d = decodeValue(this.#opts.source.schema, e.value);
    if (!d.ok) return { kind: "invalid", key, revision: e.revision, reason: d.reason, message: d.message };
    return { kind: "value", key, revision: e.revision, value: d.value };
  }

  /**
   * The latest state of `key`. A first delivery with nothing pending behind it is the latest
   * there is (any newer revision of any key would be pending), so its own payload serves
   * without a read; anything else is read again from the bucket.
   */
  async #stateOf(key: string, m: JsMsg): Promise<SourceState<z.infer<S>>> {
    if (m.info.deliveryCount !== 1 || m.info.pending !== 0) return this.#readLatest(key);
    const revision = m.seq;
    const op = m.headers?.get("KV-Operation");
    if (op === "DEL" || op === "PURGE") return { kind: "deleted", key, revision };
    const d = decodeValue(this.#opts.source.schema, m.data);
    if (!d.ok) return { kind: "invalid", key, revision, reason: d.reason, message: d.message };
    return { kind: "value", key, revision, value: d.value };
  }

  /** Sends an acknowledgement (ack, nak, term, working), counting one that cannot be sent. */
  #acknowledge(send: () => void): void {
    try {
      send();
    } catch (err) {
      this.#bus.metrics.ackErrors.inc({ durable: this.#opts.durable });
      this.#bus.logger.warn({ err, durable: this.#opts.durable }, "cannot acknowledge a delivery");
    }
  }

  async #handle(key: string, m: JsMsg): Promise<void> {
    const maxDeliver = this.#opts.maxDeliver ?? 5;
    const deliveryCount = m.info.deliveryCount;
    const ctx: WorkContext = { deliveryCount, lastAttempt: deliveryCount >= maxDeliver };
    const metrics = this.#bus.metrics;
    const durable = this.#opts.durable;
    metrics.workPending.set({ durable }, m.info.pending);
    const started = performance.now();
    const done = (outcome: "ack" | "retry" | "gave-up"): void => {
      metrics.workDuration.observe({ durable }, (performance.now() - started) / 1000);
      metrics.workHandled.inc({ durable, outcome });
    };
    let state: SourceState<z.infer<S>> | undefined;
    try {
      state = await this.#stateOf(key, m);
      await this.#opts.handle(state, ctx);
      done("ack");
      this.#acknowledge(() => m.ack());
    } catch (err) {
      const log = this.#bus.logger;
      if (ctx.lastAttempt) {
        log.error(
          { err, key, deliveryCount, durable: this.#opts.durable },
          "work given up after last delivery",
        );
        try {
          await this.#opts.onGiveUp?.(
            {
              key,
              revision: state?.revision ?? m.info.streamSequence,
              deleted: state?.kind === "deleted",
            },
            err,
          );
        } catch (reportErr) {
          log.error({ err: reportErr, key }, "reporting a given-up change failed");
        }
        done("gave-up");
        this.#acknowledge(() => m.term(`gave up after ${deliveryCount} deliveries`));
      } else {
        const backoff = this.#opts.backoffMs ?? DEFAULT_BACKOFF_MS;
        const delay = backoff[Math.min(deliveryCount - 1, backoff.length - 1)] ?? 1000;
        log.warn({ err, key, deliveryCount, retryInMs: delay }, "work failed; will retry");
        done("retry");
        this.#acknowledge(() => m.nak(delay));
      }
    }
  }

  /**
   * Handles `key` again from its latest state, as if it had changed: for work that depends on
   * something besides the source table (the spec-builder's seeds). Runs in this replica, after
   * any handling of the key already queued here and before any queued later (one key at a
   * time), with `{ deliveryCount: 1, lastAttempt: false }`. A failure is logged and retried
   * a couple of times with back-off, then given up (logged); it is never thrown. Resolves when
   * done; after stop() it does nothing.
   */
  async redo(key: string): Promise<void> {
    if (this.#stopped || !key || key.startsWith("_")) return;
    const p = (async () => {
      await this.#acquire();
      if (this.#stopped) return this.#release();
      await this.#chain(key, () => this.#redo(key));
    })();
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p));
    return p;
  }

  async #redo(key: string): Promise<void> {
    const ctx: WorkContext = { deliveryCount: 1, lastAttempt: false };
    const log = this.#bus.logger;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#opts.handle(await this.#readLatest(key), ctx);
        return;
      } catch (err) {
        const delay = REDO_BACKOFF_MS[attempt - 1];
        if (delay === undefined || this.#stopped) {
          log.warn({ err, key, attempt, durable: this.#opts.durable }, "redo failed; given up");
          return;
        }
        log.warn(
          { err, key, attempt, retryInMs: delay, durable: this.#opts.durable },
          "redo failed; will retry",
        );
        // stop() cuts the wait short.
        await sleep(delay, undefined, { signal: this.#stopping.signal }).catch(() => undefined);
        if (this.#stopped) return;
      }
    }
  }

  /** Stops taking new work (redo included) and waits for in-flight handlers to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping.abort();
    this.#onFreeSlot?.();
    await this.#batch?.close();
    await this.done;
    await Promise.allSettled([...this.#inFlight]);
  }
}

/** Joins a shared work queue over a table. */
export async function shareWork<S extends z.ZodType>(
  bus: Bus,
  options: WorkQueueOptions<S>,
): Promise<WorkQueue<S>> {
  return new WorkQueue(bus, options).start();
}
