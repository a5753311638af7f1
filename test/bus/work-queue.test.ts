import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { Publication, shareWork, subscribe } from "@eve-tasks/bus";
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

describe("WorkQueue.redo", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("work-queue-redo-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  it("handles a key again from its latest state, one at a time with deliveries, retrying failures", async () => {
    const source = uniqueType("Redo");
    const pub = new Publication(bus, { agent: "controller", type: source, schema: ItemSchema });
    const calls: { key: string; kind: string; n: number | undefined; ctx: unknown; overlap: boolean }[] = [];
    let busy = 0;
    let release: (() => void) | undefined;
    let failNext = 0;
    const queue = await shareWork(bus, {
      source: { agent: "controller", type: source, schema: ItemSchema },
      durable: `redo-${source}`,
      async handle(state, ctx) {
        busy++;
        try {
          calls.push({
            key: state.key,
            kind: state.kind,
            n: state.kind === "value" ? state.value.n : undefined,
            ctx,
            overlap: busy > 1,
          });
          if (release === undefined && state.kind === "value" && state.value.n === 2) {
            // Hold the delivery of n=2 until the test lets it go.
            await new Promise<void>((r) => (release = r));
          }
          if (failNext > 0) {
            failNext--;
            throw new Error("transient");
          }
        } finally {
          busy--;
        }
      },
    });
    try {
      await pub.publish("k", { schemaVersion: 1, n: 1 });
      await waitFor(() => calls.length === 1, { message: "first delivery" });

      // A redo reads the latest state and says it is a first, not-last delivery.
      await queue.redo("k");
      expect(calls[1]).toMatchObject({ key: "k", kind: "value", n: 1, overlap: false });
      expect(calls[1]?.ctx).toEqual({ deliveryCount: 1, lastAttempt: false });

      // Serialized with the queue's own handling of the key: a redo waits for a running delivery.
      await pub.publish("k", { schemaVersion: 1, n: 2 });
      await waitFor(() => release !== undefined, { message: "delivery of n=2 held" });
      let redone = false;
      const redo = queue.redo("k").then(() => (redone = true));
      await new Promise((r) => setTimeout(r, 200));
      expect(redone).toBe(false);
      expect(calls.length).toBe(3);
      release!();
      await redo;
      expect(calls.length).toBe(4);
      expect(calls[3]).toMatchObject({ n: 2, overlap: false });

      // A failure is retried with back-off and never thrown out.
      failNext = 1;
      await expect(queue.redo("k")).resolves.toBeUndefined();
      expect(calls.slice(4).map((c) => c.n)).toEqual([2, 2]);
      // Past the retries it is given up, still without a throw.
      failNext = 10;
      await expect(queue.redo("k")).resolves.toBeUndefined();
      expect(calls.length).toBe(9);
      failNext = 0;

      // A deleted key is redone as deleted.
      await pub.unpublish("k");
      await waitFor(() => calls.some((c) => c.kind === "deleted"), { message: "delete delivered" });
      const before = calls.length;
      await queue.redo("k");
      expect(calls[before]).toMatchObject({ key: "k", kind: "deleted" });
    } finally {
      await queue.stop();
    }
    // After stop, a redo does nothing.
    const after = calls.length;
    await queue.redo("k");
    expect(calls.length).toBe(after);
  }, 30_000);
});

describe("deliveries waiting for a slot", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("work-queue-slots-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  it("are never redelivered or given up while a slow handler holds the only slot", async () => {
    const source = uniqueType("Slow");
    const table = { agent: "controller", type: source, schema: ItemSchema };
    const handled: { key: string; deliveryCount: number }[] = [];
    const gaveUp: string[] = [];
    const queue = await shareWork(bus, {
      source: table,
      durable: `slow-${source}`,
      concurrency: 1,
      ackWaitMs: 1000,
      maxDeliver: 2,
      async handle(state, ctx) {
        handled.push({ key: state.key, deliveryCount: ctx.deliveryCount });
        // Longer than the ack wait: the keep-alive must cover it, and the deliveries waiting
        // behind it must not be left to time out.
        await new Promise((r) => setTimeout(r, 1500));
      },
      onGiveUp(state) {
        gaveUp.push(state.key);
        return Promise.resolve();
      },
    });
    try {
      const pub = new Publication(bus, table);
      const keys = ["k0", "k1", "k2", "k3"];
      for (const [i, key] of keys.entries()) await pub.publish(key, { schemaVersion: 1, n: i });
      await waitFor(() => new Set(handled.map((h) => h.key)).size === keys.length, {
        timeoutMs: 30_000,
        message: "every key handled",
      });
      // Long enough for a timed-out delivery to come back.
      await new Promise((r) => setTimeout(r, 2500));
      expect(handled).toEqual(keys.map((key) => ({ key, deliveryCount: 1 })));
      expect(gaveUp).toEqual([]);
    } finally {
      await queue.stop();
    }
  }, 60_000);
});

describe("the pull loop", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("work-queue-pull-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  it("tells onGiveUp whether the change it gave up on was a delete", async () => {
    const source = uniqueType("GiveUp");
    const table = { agent: "controller", type: source, schema: ItemSchema };
    const gaveUp: { key: string; deleted: boolean }[] = [];
    const queue = await shareWork(bus, {
      source: table,
      durable: `giveup-${source}`,
      maxDeliver: 2,
      backoffMs: [100],
      handle(state) {
        return state.kind === "deleted" ? Promise.reject(new Error("cannot delete")) : Promise.resolve();
      },
      onGiveUp(state) {
        gaveUp.push({ key: state.key, deleted: state.deleted });
        return Promise.resolve();
      },
    });
    try {
      const pub = new Publication(bus, table);
      await pub.publish("k", { schemaVersion: 1, n: 1 });
      await pub.unpublish("k");
      await waitFor(() => gaveUp.length > 0, { timeoutMs: 20_000, message: "given up" });
      expect(gaveUp).toEqual([{ key: "k", deleted: true }]);
    } finally {
      await queue.stop();
    }
  }, 60_000);

  it("makes a deleted durable consumer again and goes on; stops promptly while idle", async () => {
    const source = uniqueType("Gone");
    const table = { agent: "controller", type: source, schema: ItemSchema };
    const durable = `gone-${source}`;
    const handled: number[] = [];
    const queue = await shareWork(bus, {
      source: table,
      durable,
      handle(state) {
        if (state.kind === "value") handled.push(state.value.n);
        return Promise.resolve();
      },
    });
    try {
      const pub = new Publication(bus, table);
      await pub.publish("k", { schemaVersion: 1, n: 1 });
      await waitFor(() => handled.includes(1), { message: "first change handled" });
      await bus.jsm.consumers.delete("KV_controller", durable);
      await pub.publish("k", { schemaVersion: 1, n: 2 });
      await waitFor(() => handled.includes(2), { timeoutMs: 30_000, message: "change after the delete" });
    } finally {
      const t0 = Date.now();
      await queue.stop();
      expect(Date.now() - t0).toBeLessThan(2000);
      await bus.jsm.consumers.delete("KV_controller", durable).catch(() => undefined);
    }
  }, 60_000);
});
