import { randomUUID } from "node:crypto";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { TaskEventSchema, encodeValue, eventSubject } from "@eve-tasks/schemas";
import type { TaskEventInput } from "@eve-tasks/schemas";
import { backoffDelayMs } from "@eve-tasks/backoff";
import type { BackoffPolicy } from "@eve-tasks/backoff";
import type { Bus } from "./connection.js";
import { OutboxClosedError, OutboxWriteError } from "./errors.js";
import { trackOutboxDepth } from "./metrics.js";

/** One event waiting to be stored in the stream. */
interface Pending {
  id: string;
  subject: string;
  /** The event's JSON, as sent. */
  data: string;
  /** Size of its emit record in the file, newline included. */
  bytes: number;
}

/** A record of the file: an event emitted, or acknowledged by JetStream. */
type Record_ = { op: "emit"; id: string; subject: string; data: string } | { op: "ack"; id: string };

/** The steps of a compaction, after which {@link OutboxOptions.onCompactionStep} is called. */
export type CompactionStep =
  /** The pending events are in `<file>.tmp`, synced; the file itself is untouched. */
  | "tmp-written"
  /** `<file>.tmp` has replaced the file. */
  | "renamed";

/** Where an outbox keeps what it has not yet had acknowledged. */
export interface OutboxOptions {
  /** A file of its own per worker process, e.g. `<EVE_DATA_DIR>/outbox/task-executor.jsonl`. */
  file: string;
  /** How long one publish may wait for its acknowledgement (default 5 s). */
  publishTimeoutMs?: number;
  /**
   * Rewrite the file to the events still pending once it holds at least this many bytes and
   * at least twice what is pending (default 1 MiB).
   */
  compactAtBytes?: number;
  /**
   * Called after each step of a compaction, before the next: for fault tests that kill the
   * process there (the file must load to the same pending events after every step).
   */
  onCompactionStep?(step: CompactionStep): void | Promise<void>;
}

/** The outbox's defaults, in one place. */
export const OUTBOX_DEFAULTS = {
  publishTimeoutMs: 5000,
  compactAtBytes: 1024 * 1024,
  /** Between attempts to send the oldest pending event while NATS does not acknowledge it. */
  sendRetry: { initialMs: 100, maxMs: 5000 } satisfies BackoffPolicy,
  /** Between attempts to compact after one failed (a full disk). */
  compactRetry: { initialMs: 1000, maxMs: 5 * 60_000 } satisfies BackoffPolicy,
} as const;

/**
 * Whether an outbox file of `fileBytes` bytes, of which `pendingBytes` are records of events
 * still pending, is worth rewriting: it is big, and at least half of it is done with (so the
 * cost of rewriting stays proportional to what was appended since the last time).
 */
export function shouldCompact(fileBytes: number, pendingBytes: number, compactAtBytes: number): boolean {
  return fileBytes >= compactAtBytes && fileBytes >= 2 * pendingBytes;
}

/** The pending events a file's records leave, in emit order; a torn last line is skipped. */
function pendingRecords(text: string): Pending[] {
  const pending = new Map<string, Pending>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let r: Record_;
    try {
      r = JSON.parse(line) as Record_;
    } catch {
      continue; // a torn line from a crash mid-write: its emit never returned
    }
    if (r.op === "emit") pending.set(r.id, pendingOf(r.id, r.subject, r.data).pending);
    else if (r.op === "ack") pending.delete(r.id);
  }
  return [...pending.values()];
}

function emitLine(p: { id: string; subject: string; data: string }): string {
  return JSON.stringify({ op: "emit", id: p.id, subject: p.subject, data: p.data }) + "\n";
}

/** An event as pending, with its emit record's line. */
function pendingOf(id: string, subject: string, data: string): { pending: Pending; line: string } {
  const line = emitLine({ id, subject, data });
  return { pending: { id, subject, data, bytes: Buffer.byteLength(line) }, line };
}

/** Writes `text` to a new `path` and syncs it to disk. */
async function writeSynced(path: string, text: string): Promise<void> {
  const fh = await open(path, "w");
  try {
    await fh.writeFile(text);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** Makes a rename in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Events go through an outbox: `emit` appends the event to a file (synced to disk)
 * and returns; a background loop publishes events in order to the TASK_EVENTS stream
 * with a `Nats-Msg-Id`, retrying with back-off while NATS is away. An event is dropped
 * from the file only once JetStream has acknowledged it, and a re-sent event whose
 * first send was stored is recognised by its id: a NATS outage or a worker restart
 * loses none and duplicates none.
 *
 * Writes to the file run one at a time. A write that fails (a full disk) fails only its own
 * `emit`: the torn record is cut off the file and later writes go on. The file is rewritten
 * to the pending events (compacted) at start and whenever acknowledged events make up most of
 * it, through a synced temporary file renamed over it, so a crash at any point leaves a file
 * that loads to the same pending events with the same ids.
 */
export class Outbox {
  readonly #bus: Bus;
  readonly #opts: OutboxOptions;
  readonly #file: string;
  readonly #compactAtBytes: number;
  /** Pending events in emit order: exactly the events the file holds unacknowledged. */
  readonly #queue: Pending[] = [];
  #pendingBytes = 0;
  /** The append handle, or undefined until the next write opens it (after a compaction). */
  #fh: FileHandle | undefined;
  /** Bytes of whole records in the file. */
  #fileBytes = 0;
  /** A failed write may have left part of a record after #fileBytes: cut it before writing. */
  #torn = false;
  /** The tail of the chain of file operations; never rejects. */
  #tail: Promise<void> = Promise.resolve();
  #compactFailures = 0;
  #compactNotBefore = 0;
  #compactQueued = false;
  #wake: (() => void) | undefined;
  #closed = false;
  #idle: (() => void)[] = [];
  #loop: Promise<void> = Promise.resolve();
  readonly #stopping = new AbortController();
  /** Stops counting this outbox's depth in the worker's metrics. */
  #untrack: () => void = () => undefined;

  private constructor(bus: Bus, options: OutboxOptions) {
    this.#bus = bus;
    this.#opts = options;
    this.#file = options.file;
    this.#compactAtBytes = options.compactAtBytes ?? OUTBOX_DEFAULTS.compactAtBytes;
  }

  /** Opens the outbox file, reloads what was not acknowledged, and starts sending. */
  static async open(bus: Bus, options: OutboxOptions): Promise<Outbox> {
    const o = new Outbox(bus, options);
    await o.#load();
    o.#untrack = trackOutboxDepth(bus.metrics, () => o.#queue.length);
    o.#loop = o.#sendLoop();
    return o;
  }

  async #load(): Promise<void> {
    const file = this.#file;
    await mkdir(dirname(file), { recursive: true });
    let bytes = Buffer.alloc(0);
    try {
      bytes = await readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    for (const p of pendingRecords(bytes.toString("utf8"))) {
      this.#queue.push(p);
      this.#pendingBytes += p.bytes;
    }
    try {
      await this.#rewrite();
    } catch (err) {
      if (!(err instanceof OutboxWriteError)) throw err;
      // The file as it is loads to the same events: append to it, after its last whole line.
      this.#bus.logger.warn(
        { event: "outbox-compaction-failed", file, err: err.message },
        "cannot compact the outbox file at start; appending to it as it is",
      );
      this.#fileBytes = bytes.lastIndexOf(0x0a) + 1;
      this.#torn = this.#fileBytes < bytes.length;
    }
    if (this.#queue.length) {
      this.#bus.logger.info(
        { event: "outbox-reloaded", pending: this.#queue.length },
        "re-sending unacknowledged events",
      );
    }
  }

  /** Runs `op` after every file operation queued before it; its failure fails only itself. */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(op);
    this.#tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** The append handle, opened if needed, with any torn tail of a failed write cut off. */
  async #handle(): Promise<FileHandle> {
    this.#fh ??= await open(this.#file, "a");
    if (this.#torn) {
      await this.#fh.truncate(this.#fileBytes);
      this.#torn = false;
    }
    return this.#fh;
  }

  /**
   * Appends one record's `line` (in the chain); `what` names it in an error. On failure the
   * file is left with whole records only.
   */
  async #append(line: string, sync: boolean, what: string): Promise<void> {
    try {
      const fh = await this.#handle();
      // writeFile loops over short writes (a nearly full disk takes part of a record).
      await fh.writeFile(line);
      if (sync) await fh.datasync();
    } catch (err) {
      this.#torn = true;
      // Cut the torn record now if we can; otherwise the next write does it first.
      await this.#handle().catch(() => undefined);
      throw new OutboxWriteError(this.#file, what, { cause: err });
    }
    this.#fileBytes += Buffer.byteLength(line);
  }

  /**
   * Replaces the file with one holding only the pending events (in the chain, or before the
   * send loop starts): a synced temporary file renamed over it. Throws OutboxWriteError and
   * leaves the old file in place when the copy cannot be written.
   */
  async #rewrite(): Promise<void> {
    const text = this.#queue.map(emitLine).join("");
    const tmp = `${this.#file}.tmp`;
    try {
      await writeSynced(tmp, text);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new OutboxWriteError(this.#file, "a compacted copy", { cause: err });
    }
    await this.#opts.onCompactionStep?.("tmp-written");
    try {
      await rename(tmp, this.#file);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new OutboxWriteError(this.#file, "a compacted copy", { cause: err });
    }
    // The old handle now appends to a file nobody will read: nothing may write through it.
    const old = this.#fh;
    this.#fh = undefined;
    this.#fileBytes = Buffer.byteLength(text);
    this.#torn = false;
    await this.#opts.onCompactionStep?.("renamed");
    await old?.close().catch(() => undefined);
    // Without this a power loss could bring back the old file: still valid, only longer.
    await syncDir(dirname(this.#file)).catch((err: unknown) =>
      this.#bus.logger.warn(
        { event: "outbox-sync-failed", err: (err as Error).message },
        "cannot sync outbox dir",
      ),
    );
  }

  /** Compacts in the chain when the file is worth it (see {@link shouldCompact}); never throws. */
  #maybeCompact(): void {
    if (this.#compactQueued || this.#closed || Date.now() < this.#compactNotBefore) return;
    if (!shouldCompact(this.#fileBytes, this.#pendingBytes, this.#compactAtBytes)) return;
    this.#compactQueued = true;
    void this.#serial(async () => {
      this.#compactQueued = false;
      if (this.#closed) return;
      try {
        await this.#rewrite();
        this.#compactFailures = 0;
      } catch (err) {
        const retryInMs = backoffDelayMs(++this.#compactFailures, OUTBOX_DEFAULTS.compactRetry);
        this.#compactNotBefore = Date.now() + retryInMs;
        this.#bus.logger.warn(
          { event: "outbox-compaction-failed", file: this.#file, err: (err as Error).message, retryInMs },
          "cannot compact the outbox file; it keeps growing until a later attempt succeeds",
        );
      }
    });
  }

  /**
   * Rewrites the file to the events pending now (also done by itself as the file grows).
   * Rejects with OutboxWriteError when the copy cannot be written; the file stays as it was.
   */
  compact(): Promise<void> {
    if (this.#closed) return Promise.reject(new OutboxClosedError(this.#file));
    return this.#serial(() => this.#rewrite());
  }

  /** Events not yet acknowledged by JetStream. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Validates a task event, stores it durably in the outbox and queues it for sending.
   * Resolves once it is on disk (not once NATS has it). Returns the event's message id.
   * Rejects with OutboxWriteError when it cannot be stored (the event is then not sent), and
   * with OutboxClosedError after close.
   */
  async emit(event: TaskEventInput, id: string = randomUUID()): Promise<string> {
    if (this.#closed) throw new OutboxClosedError(this.#file);
    const data = new TextDecoder().decode(encodeValue(TaskEventSchema, event, { type: "TaskEvent" }));
    const { pending: p, line } = pendingOf(id, eventSubject(event.uuid), data);
    await this.#serial(async () => {
      if (this.#closed) throw new OutboxClosedError(this.#file);
      await this.#append(line, true, `event ${id}`);
      // Queued in the chain, so the queue always matches the file for a compaction.
      this.#queue.push(p);
      this.#pendingBytes += p.bytes;
    });
    this.#wake?.();
    return id;
  }

  /** Resolves when every event emitted so far has been acknowledged. */
  flushed(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  async #sendLoop(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      const next = this.#queue[0];
      if (!next) {
        for (const r of this.#idle.splice(0)) r();
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = undefined;
        continue;
      }
      try {
        await this.#bus.js.publish(next.subject, next.data, {
          msgID: next.id,
          timeout: this.#opts.publishTimeoutMs ?? OUTBOX_DEFAULTS.publishTimeoutMs,
        });
      } catch (err) {
        if (this.#closed) break;
        this.#bus.metrics.eventSendErrors.inc();
        const retryInMs = backoffDelayMs(++failures, OUTBOX_DEFAULTS.sendRetry);
        this.#bus.logger.warn(
          { event: "outbox-retry", err: (err as Error).message, pending: this.#queue.length, retryInMs },
          "event not acknowledged yet; will retry",
        );
        // New emits do not cut this wait short; only close does.
        await sleep(retryInMs, undefined, { signal: this.#stopping.signal }).catch(() => undefined);
        continue;
      }
      failures = 0;
      this.#bus.metrics.eventsSent.inc();
      this.#queue.shift();
      this.#pendingBytes -= next.bytes;
      try {
        const ack: Record_ = { op: "ack", id: next.id };
        await this.#serial(() =>
          this.#append(JSON.stringify(ack) + "\n", false, `the acknowledgement of event ${next.id}`),
        );
      } catch (err) {
        // Harmless: after a restart the event is re-sent with its id and JetStream drops it
        // (duplicate window); the next compaction leaves it out anyway.
        this.#bus.logger.warn(
          { event: "outbox-ack-unrecorded", id: next.id, err: (err as Error).message },
          "cannot record an acknowledged event in the outbox file",
        );
      }
      this.#maybeCompact();
    }
  }

  /** Stops sending; what is not acknowledged stays in the file for the next open. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#untrack();
    this.#wake?.();
    this.#stopping.abort();
    await this.#loop;
    await this.#serial(async () => {
      await this.#fh?.close();
      this.#fh = undefined;
    }).catch(() => undefined);
  }
}
