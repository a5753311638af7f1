// Property: however the handling of source changes interleaves across three replicas, the output
// table ends up as the last write of each source key — its value, or deleted. Every read and
// write goes to a real nats-server; fast-check chooses the changes and the interleaving, and the
// steps run one at a time in that order, so a counterexample replays exactly.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import { Publication } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { ItemSchema, OutputSchema, testBus, uniqueType } from "./helpers.js";

const REPLICAS = 3;

/** One change of the source table, and who handles it. */
interface Change {
  key: number;
  kind: "put" | "update" | "delete";
  /** The replica the change is delivered to. */
  replica: number;
  /**
   * The handler uses the delivery's own payload instead of reading the key again (what the
   * work queue does for a first delivery with nothing pending behind it).
   */
  payload: boolean;
  /** A second delivery of the same change (a redelivery), to this replica; it reads the key. */
  redeliverTo: number | null;
}

interface Scenario {
  changes: Change[];
  /** Which actor takes the next step, modulo the actors that can: the source, then each replica. */
  schedule: number[];
}

/** What a handler knows of a source key: a value at a KV revision, or a delete at one. */
type Seen = { kind: "value"; revision: number; n: number } | { kind: "deleted"; revision: number };

/** A change in a replica's hands: read (if it has no payload), then written. */
interface Handling {
  key: string;
  seen: Seen | undefined;
}

const changeArb: fc.Arbitrary<Change> = fc.record({
  key: fc.nat({ max: 1 }),
  kind: fc.constantFrom("put" as const, "update" as const, "delete" as const),
  replica: fc.nat({ max: REPLICAS - 1 }),
  payload: fc.boolean(),
  redeliverTo: fc.option(fc.nat({ max: REPLICAS - 1 }), { nil: null }),
});

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  changes: fc.array(changeArb, { minLength: 1, maxLength: 8 }),
  schedule: fc.array(fc.nat({ max: 7 }), { maxLength: 48 }),
});

/**
 * The race of issue 13 item 9, spelled out: replica 0 reads a config, the config is deleted,
 * replica 1 handles the delete, then replica 0 writes what it read.
 */
const deletedAppComesBack: Scenario = {
  changes: [
    { key: 0, kind: "put", replica: 0, payload: false, redeliverTo: null },
    { key: 0, kind: "delete", replica: 1, payload: false, redeliverTo: null },
  ],
  // source put, r0 reads, source delete, r1 reads, r1 deletes, r0 writes
  schedule: [0, 1, 0, 1, 1, 0],
};

describe("writes ordered by configRevision, deletes included", () => {
  let buses: Bus[];
  let source: Publication<typeof ItemSchema>;
  let sourceKv: KV;
  let replicaKvs: KV[];
  const sourceType = uniqueType("Src");
  const outputType = uniqueType("Out");
  let run = 0;

  beforeAll(async () => {
    // The source's writer and each replica on a connection of its own.
    buses = await Promise.all(Array.from({ length: REPLICAS + 1 }, (_, i) => testBus(`ordering-${i}`)));
    source = new Publication(buses[REPLICAS]!, { agent: "controller", type: sourceType, schema: ItemSchema });
    sourceKv = await buses[REPLICAS]!.bucket("controller");
    replicaKvs = await Promise.all(buses.slice(0, REPLICAS).map((b) => b.bucket("controller")));
  });
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });

  async function seenOf(kv: KV, key: string): Promise<Seen> {
    const e = await kv.get(`${sourceType}.${key}`);
    if (!e || e.operation !== "PUT") return { kind: "deleted", revision: e?.revision ?? 0 };
    return { kind: "value", revision: e.revision, n: ItemSchema.parse(e.json()).n };
  }

  /** Plays a scenario; returns the last source state of each key and the output's final state. */
  async function play(s: Scenario): Promise<{ key: string; want: Seen; got: unknown }[]> {
    run++;
    const keyOf = (i: number): string => `run${run}-k${i}`;
    const outputs = buses
      .slice(0, REPLICAS)
      .map((b) => new Publication(b, { agent: "spec-builder", type: outputType, schema: OutputSchema }));
    const queues: Handling[][] = Array.from({ length: REPLICAS }, () => []);
    const last = new Map<string, Seen>();
    let next = 0;
    let step = 0;
    for (;;) {
      const actors: number[] = [];
      if (next < s.changes.length) actors.push(-1);
      for (let r = 0; r < REPLICAS; r++) if (queues[r]!.length > 0) actors.push(r);
      if (actors.length === 0) break;
      const actor = actors[(s.schedule[step++] ?? 0) % actors.length]!;
      if (actor === -1) {
        const c = s.changes[next]!;
        const key = keyOf(c.key);
        // Unique values, so no write is skipped as identical.
        const n = run * 1000 + next * 10;
        next++;
        if (c.kind === "put") await source.publish(key, { schemaVersion: 1, n });
        else if (c.kind === "update")
          await source.update(key, (cur) => ({ schemaVersion: 1, n: (cur.value?.n ?? n) + 1 }));
        else await source.unpublish(key);
        const seen = await seenOf(sourceKv, key);
        last.set(key, seen);
        queues[c.replica]!.push({ key, seen: c.payload ? seen : undefined });
        if (c.redeliverTo !== null) queues[c.redeliverTo]!.push({ key, seen: undefined });
        continue;
      }
      const h = queues[actor]![0]!;
      if (h.seen === undefined) {
        h.seen = await seenOf(replicaKvs[actor]!, h.key);
        continue;
      }
      queues[actor]!.shift();
      const out = outputs[actor]!;
      if (h.seen.kind === "deleted") await out.deleteIfNotNewer(h.key, h.seen.revision);
      else
        await out.putIfNewer(h.key, {
          schemaVersion: 1,
          configRevision: h.seen.revision,
          n: h.seen.n,
          replica: `r${actor}`,
        });
    }
    const check = outputs[0]!;
    return Promise.all([...last].map(async ([key, want]) => ({ key, want, got: await check.get(key) })));
  }

  const endsAsLastWrite = fc.asyncProperty(scenarioArb, async (s) => {
    for (const { key, want, got } of await play(s)) {
      if (want.kind === "deleted") expect(got, `${key} was deleted last`).toBeUndefined();
      else expect(got, key).toMatchObject({ configRevision: want.revision, n: want.n });
    }
  });

  it("the output of each key is its last source write, however three replicas interleave", async () => {
    await fc.assert(endsAsLastWrite, { numRuns: 150, examples: [[deletedAppComesBack]] });
  }, 180_000);
});
