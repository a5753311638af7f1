import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import { z } from "zod";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { connectBus, ensureBuckets, ensureEventsStream } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { EVENTS_STREAM } from "@eve-tasks/schemas";

/** A unique table name per test, so tests sharing one nats-server never see each other's keys. */
export function uniqueType(prefix = "T"): string {
  return `${prefix}${randomBytes(4).toString("hex")}`;
}

/** A small value schema for bus tests, with a configRevision like the real messages. */
export const ItemSchema = z.object({
  schemaVersion: z.literal(1),
  n: z.number().int(),
  note: z.string().optional(),
});

export const OutputSchema = z.object({
  schemaVersion: z.literal(1),
  configRevision: z.number().int().positive(),
  n: z.number().int(),
  replica: z.string(),
});

/** Connects to the shared test nats-server, with the buckets and stream in place. */
export async function testBus(name = "test"): Promise<Bus> {
  const bus = await connectBus({ servers: inject("natsUrl"), name });
  await ensureBuckets(bus);
  await ensureEventsStream(bus);
  return bus;
}

/** Every event in the TASK_EVENTS stream, in stream order: its `Nats-Msg-Id` and its message. */
export async function storedEvents(bus: Bus): Promise<{ id: string; message: string }[]> {
  const info = await bus.jsm.streams.info(EVENTS_STREAM);
  const total = info.state.messages;
  const name = `check-${randomBytes(4).toString("hex")}`;
  await bus.jsm.consumers.add(EVENTS_STREAM, {
    name,
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    inactive_threshold: 60e9,
  });
  const c = await bus.js.consumers.get(EVENTS_STREAM, name);
  const out: { id: string; message: string }[] = [];
  while (out.length < total) {
    const batch = await c.fetch({ max_messages: total - out.length, expires: 2000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      out.push({ id: m.headers?.get("Nats-Msg-Id") ?? "", message: m.json<{ message: string }>().message });
    }
    if (got === 0) break;
  }
  await bus.jsm.consumers.delete(EVENTS_STREAM, name);
  return out;
}
