/** The raw JetStream KV the CLI reads and compare-and-sets, typed through @eve-tasks/bus. */
import type { Bus } from "@eve-tasks/bus";
import { listKvKeys, userKeyOf } from "@eve-tasks/bus";
import { decodeValue } from "@eve-tasks/schemas";
import type { z } from "zod";

/** A nats.js KV bucket, as `bus.bucket()` opens it. */
export type Kv = Awaited<ReturnType<Bus["bucket"]>>;
/** One KV entry (value, revision, time written, operation). */
export type KvEntry = NonNullable<Awaited<ReturnType<Kv["get"]>>>;

/** A valid value read from a table, with the KV revision and time it was written at. */
export interface Stored<T> {
  key: string;
  revision: number;
  /** When this revision was written (the server's time). */
  writtenAt: Date;
  value: T;
}

/** A value of a table that fails its schema (or is not JSON): shown as a warning, never used. */
export interface InvalidStored {
  key: string;
  revision: number;
  message: string;
}

/** Everything in one table: valid values by key, and the invalid ones. */
export interface TableSnapshot<T> {
  values: Map<string, Stored<T>>;
  invalid: InvalidStored[];
}

/** Decodes one entry of table `type`: a Stored value, an InvalidStored, or undefined for a delete. */
export function decodeEntry<S extends z.ZodType>(
  schema: S,
  key: string,
  entry: KvEntry,
): Stored<z.output<S>> | InvalidStored | undefined {
  if (entry.operation !== "PUT") return undefined;
  const d = decodeValue(schema, entry.value);
  if (!d.ok) return { key, revision: entry.revision, message: d.message };
  return { key, revision: entry.revision, writtenAt: entry.created, value: d.value };
}

/** Whether a decoded entry is a valid value. */
export function isStored<T>(x: Stored<T> | InvalidStored | undefined): x is Stored<T> {
  return x !== undefined && "value" in x;
}

/**
 * Reads every current value of table `type` in `agent`'s bucket (keys starting with `_` are the
 * bus's own and skipped), validating each with `schema`. A missing bucket reads as empty.
 */
export async function readTable<S extends z.ZodType>(
  bus: Bus,
  agent: string,
  type: string,
  schema: S,
): Promise<TableSnapshot<z.output<S>>> {
  const out: TableSnapshot<z.output<S>> = { values: new Map(), invalid: [] };
  const keys = await listKvKeys(bus, agent, `${type}.>`);
  if (keys === undefined) return out;
  const kv = await bus.bucket(agent);
  const entries = await Promise.all(keys.map(async (full) => [full, await kv.get(full)] as const));
  for (const [full, entry] of entries) {
    const key = userKeyOf(type, full);
    if (key === undefined || key.startsWith("_") || !entry) continue;
    const d = decodeEntry(schema, key, entry);
    if (isStored(d)) out.values.set(key, d);
    else if (d) out.invalid.push(d);
  }
  return out;
}
