/**
 * Answering a LogsRequest (`eve.rpc.task-executor.<node>.logs`): one chunk of an app's log from
 * where the reader is, waiting up to `waitMs` for new output when there is none yet. The
 * executor keeps no state per reader: the reply's cursor is all a follower needs, so followers
 * cost it nothing between their requests, and one that falls behind by more than the files kept
 * gets a gap instead of holding output in memory.
 */
import { dirname } from "node:path";
import { LOG_CHUNK_MAX_BYTES, LOG_WAIT_MAX_MS } from "@eve-tasks/schemas";
import type { LogsReply, LogsRequest } from "@eve-tasks/schemas";
import { readLogChunk } from "./reader.js";
import type { LogChunk } from "./reader.js";
import { LogWatchers } from "./watch.js";

/** The defaults of the logs service, in one place. */
export const TASK_LOGS_DEFAULTS = {
  /** A chunk when the request names no maxBytes. */
  maxBytes: LOG_CHUNK_MAX_BYTES,
  /** Readers that may wait for new output at once on a node. */
  maxFollowers: 256,
  /** Reads (file I/O and encoding) at once; more requests wait their turn. */
  concurrentReads: 8,
} as const;

/** Options of {@link TaskLogsService}. */
export interface TaskLogsServiceOptions {
  /** The console log of app `uuid` on this node (`<EVE_DATA_DIR>/tasks/<uuid>/console.log`). */
  logPathOf(uuid: string): string;
  /** This node's name, for messages. */
  node: string;
  maxFollowers?: number;
  concurrentReads?: number;
  /** Aborts waits at a stop (they answer at once with what there is). */
  signal?: AbortSignal;
}

/** Counts what the service does, for the executor's metrics. */
export interface TaskLogsObserver {
  /** A chunk was sent (bytes of log in it). */
  onChunk?(bytes: number): void;
  /** A reader was told of a gap. */
  onGap?(): void;
}

/** A simple counting semaphore. */
class Slots {
  #free: number;
  readonly #queue: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#queue.push(r));
    try {
      return await fn();
    } finally {
      const next = this.#queue.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/** Serves task logs of one node. */
export class TaskLogsService {
  readonly #o: TaskLogsServiceOptions;
  readonly #watchers: LogWatchers;
  readonly #reads: Slots;
  readonly #observer: TaskLogsObserver;

  constructor(options: TaskLogsServiceOptions, observer: TaskLogsObserver = {}) {
    this.#o = options;
    this.#watchers = new LogWatchers(options.maxFollowers ?? TASK_LOGS_DEFAULTS.maxFollowers);
    this.#reads = new Slots(options.concurrentReads ?? TASK_LOGS_DEFAULTS.concurrentReads);
    this.#observer = observer;
  }

  /** Readers waiting for new output now. */
  get followers(): number {
    return this.#watchers.waiting;
  }

  /** Wakes every waiting reader (at a stop). */
  wakeAll(): void {
    this.#watchers.wakeAll();
  }

  /** The reply to `r`. Throws only for what the caller turns into an error reply. */
  async handle(r: LogsRequest): Promise<LogsReply> {
    const logPath = this.#o.logPathOf(r.uuid);
    const maxBytes = Math.min(r.maxBytes ?? TASK_LOGS_DEFAULTS.maxBytes, LOG_CHUNK_MAX_BYTES);
    const waitMs = Math.min(r.waitMs ?? 0, LOG_WAIT_MAX_MS);
    const deadline = Date.now() + waitMs;
    let cursor = r.cursor;
    let gap: string | null = null;
    for (;;) {
      const chunk: LogChunk | undefined = await this.#reads.run(() =>
        readLogChunk(logPath, {
          cursor,
          tailLines: cursor ? undefined : r.tailLines,
          sinceMs: cursor || r.since === undefined ? undefined : Date.parse(r.since),
          maxBytes,
        }),
      );
      if (chunk === undefined) {
        return this.#reply(r.uuid, {
          error: `no log of app ${r.uuid} on node ${this.#o.node}: it has not run here, or was deleted`,
        });
      }
      gap ??= chunk.gap;
      const left = deadline - Date.now();
      if (chunk.data.length > 0 || chunk.more || left <= 0 || this.#o.signal?.aborted) {
        if (gap !== null) this.#observer.onGap?.();
        this.#observer.onChunk?.(chunk.data.length);
        return this.#reply(r.uuid, { data: chunk.data, cursor: chunk.cursor, more: chunk.more, gap });
      }
      // Nothing new: wait for the directory to change (a write, a rotation), then read again
      // from where this read ended (without a log yet, from the start once there is one).
      cursor = chunk.cursor ?? undefined;
      await this.#watchers.wait(dirname(logPath), left, this.#o.signal);
    }
  }

  /** The reply to a request that could not be served (invalid, or too many followers). */
  errorReply(message: string, uuid = ""): LogsReply {
    return this.#reply(uuid, { error: message });
  }

  #reply(
    uuid: string,
    p: { data?: Buffer; cursor?: LogsReply["cursor"]; more?: boolean; gap?: string | null; error?: string },
  ): LogsReply {
    return {
      uuid,
      dataBase64: (p.data ?? Buffer.alloc(0)).toString("base64"),
      cursor: p.cursor ?? null,
      more: p.more ?? false,
      gap: p.gap ? { message: p.gap } : null,
      error: p.error ?? null,
    };
  }
}
