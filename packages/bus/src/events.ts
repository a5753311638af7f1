/**
 * Reading task events: live (a core subscription to `eve.events.*`, for workers that react to
 * other workers' events) and from the `TASK_EVENTS` stream (for users: history, then follow).
 */
import { DeliverPolicy } from "@nats-io/jetstream";
import type { Subscription as NatsSubscription } from "@nats-io/nats-core";
import {
  EVENTS_STREAM,
  EVENTS_SUBJECTS,
  TaskEventSchema,
  decodeValue,
  eventSubject,
} from "@eve-tasks/schemas";
import type { TaskEvent, TaskEventType } from "@eve-tasks/schemas";
import type { Bus } from "./connection.js";

/** A live event follower; {@link EventFollower.close} ends it. */
export interface EventFollower {
  close(): Promise<void>;
}

/** What {@link followEvents} follows. */
export interface FollowEventsOptions {
  /** One app's events; every app's when missing. */
  uuid?: string;
  /**
   * Only events of these types: the others are dropped before they are validated (a worker that
   * reacts to one kind of event skips the cost of checking every other one).
   */
  types?: readonly TaskEventType[];
}

const utf8 = new TextDecoder();

/** The `type` of an event's JSON, or "" when it has none (then validation reports the problem). */
function typeOf(data: Uint8Array): string {
  try {
    const v = JSON.parse(utf8.decode(data)) as { type?: unknown };
    return typeof v?.type === "string" ? v.type : "";
  } catch {
    return "";
  }
}

/**
 * Calls `onEvent` for every valid task event published from now on (no history, no replay:
 * a missed event is the caller's safety net's business). Invalid messages are logged and
 * dropped. `uuid` narrows it to one app.
 */
export function followEvents(
  bus: Bus,
  onEvent: (event: TaskEvent) => void,
  options: FollowEventsOptions = {},
): EventFollower {
  const subject = options.uuid ? eventSubject(options.uuid) : EVENTS_SUBJECTS;
  const types = options.types ? new Set<string>(options.types) : undefined;
  const sub: NatsSubscription = bus.nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) {
        bus.logger.warn({ err, subject }, "event subscription ended");
        return;
      }
      if (types && !types.has(typeOf(msg.data))) return;
      const r = decodeValue(TaskEventSchema, msg.data);
      if (!r.ok) {
        bus.logger.warn({ subject: msg.subject, reason: r.reason }, `invalid task event: ${r.message}`);
        return;
      }
      onEvent(r.value);
    },
  });
  return {
    async close() {
      sub.unsubscribe();
      await sub.closed.catch(() => undefined);
    },
  };
}

/** A stored event with its place in the stream. */
export interface StoredEvent {
  /** Stream sequence number. */
  readonly seq: number;
  readonly event: TaskEvent;
}

/** What {@link readEvents} reads. */
export interface ReadEventsOptions {
  /** One app's events; every app's when missing. */
  uuid?: string;
  /** Keep going after the stored events, yielding new ones as they arrive. */
  follow?: boolean;
  /** Only the last `last` stored events (per the filter). */
  last?: number;
  /**
   * Start at most this many stream sequence numbers before the end (every app's events only;
   * exclusive with `last`): the recent events at the cost of one stream info, where `last`
   * counts exactly with a pass over the stream. Fewer when events in that range were removed
   * (the per-app limit). For a page that shows an app's latest few events.
   */
  recent?: number;
  /** Ends the iteration (also in follow mode). */
  signal?: AbortSignal;
}

/**
 * Yields stored task events in stream order (an ordered consumer: nothing is left behind on
 * the server), then, with `follow`, new ones until `signal` aborts. Messages that are not valid
 * events are skipped with a warning.
 */
export async function* readEvents(bus: Bus, options: ReadEventsOptions = {}): AsyncGenerator<StoredEvent> {
  const filter = options.uuid ? eventSubject(options.uuid) : EVENTS_SUBJECTS;
  let startSeq = 1;
  let stored = 0;
  if (options.recent !== undefined) {
    if (options.uuid !== undefined || options.last !== undefined)
      throw new RangeError("readEvents: `recent` reads every app's events and excludes `last`");
    // No per-subject counts: with every app's subject they would list every app.
    const { state } = await bus.jsm.streams.info(EVENTS_STREAM);
    startSeq = Math.max(state.first_seq, state.last_seq - options.recent + 1, 1);
    stored = state.messages === 0 ? 0 : Math.min(state.messages, state.last_seq - startSeq + 1);
  } else {
    const info = await bus.jsm.streams.info(EVENTS_STREAM, { subjects_filter: filter });
    const counts = info.state.subjects ?? {};
    for (const n of Object.values(counts)) stored += n;
  }
  if (options.recent === undefined && options.last !== undefined && stored > options.last) {
    // Skip to the first of the last N: count back from the end through the per-subject
    // totals is not possible, so read sequence numbers with a headers-only pass.
    startSeq = await nthFromEnd(bus, filter, stored - options.last);
    stored = options.last;
  }
  if (stored === 0 && !options.follow) return;
  const consumer = await bus.js.consumers.get(EVENTS_STREAM, {
    filter_subjects: filter,
    deliver_policy: startSeq > 1 ? DeliverPolicy.StartSequence : DeliverPolicy.All,
    ...(startSeq > 1 ? { opt_start_seq: startSeq } : {}),
  });
  const messages = await consumer.consume();
  const stop = (): void => void messages.stop();
  options.signal?.addEventListener("abort", stop, { once: true });
  try {
    if (options.signal?.aborted) return;
    let seen = 0;
    for await (const m of messages) {
      const r = decodeValue(TaskEventSchema, m.data);
      if (r.ok) yield { seq: m.seq, event: r.value };
      else bus.logger.warn({ seq: m.seq, subject: m.subject }, `invalid task event skipped: ${r.message}`);
      seen++;
      if (!options.follow && (seen >= stored || m.info.pending === 0)) break;
    }
  } finally {
    options.signal?.removeEventListener("abort", stop);
    stop();
  }
}

/** The stream sequence of the `skip`+1-th message matching `filter`. */
async function nthFromEnd(bus: Bus, filter: string, skip: number): Promise<number> {
  const consumer = await bus.js.consumers.get(EVENTS_STREAM, { filter_subjects: filter, headers_only: true });
  const messages = await consumer.consume();
  let n = 0;
  try {
    for await (const m of messages) {
      if (n === skip) return m.seq;
      n++;
    }
  } finally {
    void messages.stop();
  }
  return 1;
}
