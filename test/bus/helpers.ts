import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import { z } from "zod";
import { connectBus, ensureBuckets, ensureEventsStream } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";

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
