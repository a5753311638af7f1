import { randomUUID } from "node:crypto";
import { mkdir, open, readFile, rename, writeFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { TaskEventSchema, encodeValue, eventSubject } from "@eve-tasks/schemas";
import type { TaskEventInput } from "@eve-tasks/schemas";
import type { Bus } from "./connection.js";

/** One event waiting to be stored in the stream. */
interface Pending {
  id: string;
  subject: string;
  /** The event's JSON, as sent. */
  data: string;
}

type Record_ = ({ op: "emit" } & Pending) | { op: "ack"; id: string };

/** Where an outbox keeps what it has not yet had acknowledged. */
export interface OutboxOptions {
  /** A file of its own per worker process, e.g. `<EVE_DATA_DIR>/outbox/task-executor.jsonl`. */
  file: string;
  /** How long one publish may wait for its acknowledgement (default 5 s). */
  publishTimeoutMs?: number;
}

/**
 * Events go through an outbox: `emit` appends the event to a file (synced to disk)
 * and returns; a background loop publishes events in order to the TASK_EVENTS stream
 * with a `Nats-Msg-Id`, retrying with back-off while NATS is away. An event is dropped
 * from the file only once JetStream has acknowledged it, and a re-sent event whose
 * first send was stored is recognised by its id: a NATS outage or a worker restart
 * loses none and duplicates none.
 */
export class Outbox {
  readonly #bus: Bus;
  readonly #opts: OutboxOptions;
  readonly #queue: Pending[] = [];
  #fh: FileHandle | undefined;
  #writes: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;
  #closed = false;
  #idle: (() => void)[] = [];
  #loop: Promise<void> = Promise.resolve();
  #cancelSleep: (() => void) | undefined;

  private constructor(bus: Bus, options: OutboxOptions) {
    this.#bus = bus;
    this.#opts = options;
  }

  /** Opens the outbox file, reloads what was not acknowledged, and starts sending. */
  static async open(bus: Bus, options: OutboxOptions): Promise<Outbox> {
    const o = new Outbox(bus, options);
    await o.#load();
    o.#loop = o.#sendLoop();
    return o;
  }

  async #load(): Promise<void> {
    const file = this.#opts.file;
    await mkdir(dirname(file), { recursive: true });
    let text = "";
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    const pending = new Map<string, Pending>();
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      let r: Record_;
      try {
        r = JSON.parse(line) as Record_;
      } catch {
        continue; // a torn last line from a crash mid-write: its emit never returned
      }
      if (r.op === "emit") pending.set(r.id, { id: r.id, subject: r.subject, data: r.data });
      else pending.delete(r.id);
    }
    this.#queue.push(...pending.values());
    // Compact: rewrite only what is still pending, atomically.
    const tmp = `${file}.tmp`;
    await writeFile(tmp, this.#queue.map((p) => JSON.stringify({ op: "emit", ...p }) + "\n").join(""));
    await rename(tmp, file);
    this.#fh = await open(file, "a");
    if (this.#queue.length) {
      this.#bus.logger.info(
        { event: "outbox-reloaded", pending: this.#queue.length },
        "re-sending unacknowledged events",
      );
    }
  }

  #append(r: Record_, sync: boolean): Promise<void> {
    const fh = this.#fh;
    if (!fh) return Promise.reject(new Error("outbox is closed"));
    this.#writes = this.#writes.then(async () => {
      await fh.write(JSON.stringify(r) + "\n");
      if (sync) await fh.datasync();
    });
    return this.#writes;
  }

  /** Events not yet acknowledged by JetStream. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Validates a task event, stores it durably in the outbox and queues it for sending.
   * Resolves once it is on disk (not once NATS has it). Returns the event's message id.
   */
  async emit(event: TaskEventInput, id: string = randomUUID()): Promise<string> {
    if (this.#closed) throw new Error("outbox is closed");
    const data = new TextDecoder().decode(encodeValue(TaskEventSchema, event, { type: "TaskEvent" }));
    const p: Pending = { id, subject: eventSubject(event.uuid), data };
    await this.#append({ op: "emit", ...p }, true);
    this.#queue.push(p);
    this.#wake?.();
    return id;
  }

  /** Resolves when every event emitted so far has been acknowledged. */
  flushed(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  async #sendLoop(): Promise<void> {
    let backoffMs = 100;
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
          timeout: this.#opts.publishTimeoutMs ?? 5000,
        });
        this.#queue.shift();
        backoffMs = 100;
        await this.#append({ op: "ack", id: next.id }, false);
      } catch (err) {
        if (this.#closed) break;
        this.#bus.logger.warn(
          {
            event: "outbox-retry",
            err: (err as Error).message,
            pending: this.#queue.length,
            retryInMs: backoffMs,
          },
          "event not acknowledged yet; will retry",
        );
        // New emits do not cut this wait short; only close does.
        await new Promise<void>((r) => {
          const t = setTimeout(r, backoffMs);
          this.#cancelSleep = () => {
            clearTimeout(t);
            r();
          };
        });
        this.#cancelSleep = undefined;
        backoffMs = Math.min(backoffMs * 2, 5000);
      }
    }
  }

  /** Stops sending; what is not acknowledged stays in the file for the next open. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#wake?.();
    this.#cancelSleep?.();
    await this.#loop;
    await this.#writes.catch(() => undefined);
    await this.#fh?.close();
    this.#fh = undefined;
  }
}
