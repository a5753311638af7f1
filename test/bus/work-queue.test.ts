import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { spawnReplicas, waitFor } from "../harness/index.js";
import { ItemSchema, OutputSchema, testBus, uniqueType } from "./helpers.js";

const replicaEntry = fileURLToPath(new URL("../fixtures/bus-replica.ts", import.meta.url));

describe("replicas sharing one durable consumer", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("work-queue-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  it("share 200 keys with several revisions each: latest wins, nothing older overwrites newer", async () => {
    const source = uniqueType("In");
    const output = uniqueType("Out");
    // Watch every write of the output table: configRevision must only ever grow per key.
    const regressions: string[] = [];
    const writers = new Map<string, number>();
    const outSub = await subscribe(bus, {
      agent: "spec-builder",
      type: output,
      schema: OutputSchema,
      onCreate: (_k, v) => void writers.set(v.replica, (writers.get(v.replica) ?? 0) + 1),
      onModify: (k, v, old) => {
        writers.set(v.replica, (writers.get(v.replica) ?? 0) + 1);
        if (v.configRevision < old.configRevision) {
          regressions.push(`${k}: ${old.configRevision} -> ${v.configRevision}`);
        }
      },
    });
    await outSub.synchronized;

    const replicas = spawnReplicas({
      entry: replicaEntry,
      count: 3,
      name: "bus-replica",
      env: { NATS_URL: inject("natsUrl"), SOURCE_TYPE: source, OUTPUT_TYPE: output },
      envFor: (i: number) => ({ REPLICA: `r${i}` }),
    });
    try {
      await Promise.all(
        [0, 1, 2].map((i) =>
          replicas.waitForLine((l) => l.json?.event === "ready" && l.json.replica === `r${i}`, 30_000),
        ),
      );
      const pub = new Publication(bus, { agent: "controller", type: source, schema: ItemSchema });
      const latest = new Map<string, { rev: number; n: number }>();
      // 200 keys, 4 revisions each, interleaved so revisions of a key race across replicas.
      for (let round = 0; round < 4; round++) {
        await Promise.all(
          Array.from({ length: 200 }, async (_, i) => {
            const key = `key${i}`;
            const n = round * 1000 + i;
            const rev = await pub.publish(key, { schemaVersion: 1, n });
            latest.set(key, { rev: rev!, n });
          }),
        );
      }
      await waitFor(
        () => {
          let done = 0;
          for (const [k, want] of latest) {
            const got = outSub.get(k);
            if (got && got.configRevision === want.rev) done++;
          }
          return done === latest.size;
        },
        { timeoutMs: 60_000, message: "not every key reached its latest revision" },
      );
      for (const [k, want] of latest) {
        expect(outSub.get(k)).toMatchObject({ configRevision: want.rev, n: want.n });
      }
      // Deleting a source key removes its output (compare-and-set on delete too).
      for (let i = 0; i < 20; i++) await pub.unpublish(`key${i}`);
      await waitFor(
        () => Array.from({ length: 20 }, (_, i) => outSub.get(`key${i}`)).every((v) => v === undefined),
        {
          timeoutMs: 30_000,
          message: "deleted keys kept their output",
        },
      );
      expect(outSub.get("key20")).toBeDefined();
      expect(regressions).toEqual([]);
      // The work was spread: every replica handled some changes.
      const handledBy = new Map<string, number>();
      for (const l of replicas.lines) {
        if (l.json?.event === "handled") {
          const r = String(l.json.replica);
          handledBy.set(r, (handledBy.get(r) ?? 0) + 1);
        }
      }
      expect([...handledBy.keys()].sort()).toEqual(["r0", "r1", "r2"]);
      for (const count of handledBy.values()) expect(count).toBeGreaterThan(20);
    } finally {
      await replicas.stopAll();
      await outSub.close();
    }
  }, 120_000);
});
