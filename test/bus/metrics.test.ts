// What the bus measures, on a registry as a worker's: KV writes and their failures and conflicts,
// watch lag after synchronized, work-queue outcomes and durations, events sent and outbox depth.
// Each is read back from the exposition text prom-client renders.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { Registry } from "prom-client";
import {
  Outbox,
  Publication,
  connectBus,
  ensureBuckets,
  ensureEventsStream,
  shareWork,
  subscribe,
} from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { parseExposition, sampleValue } from "../harness/prometheus.js";
import { waitFor, withPrivateNats } from "../harness/index.js";
import { ItemSchema, OutputSchema, uniqueType } from "./helpers.js";

let bus: Bus;
let registry: Registry;
let dir: string;

beforeAll(async () => {
  registry = new Registry();
  bus = await connectBus({ servers: inject("natsUrl"), name: "bus-metrics-test", metrics: registry });
  await ensureBuckets(bus);
  await ensureEventsStream(bus);
  dir = await mkdtemp(join(tmpdir(), "eve-bus-metrics-"));
});
afterAll(async () => {
  await bus.close();
  await rm(dir, { recursive: true, force: true });
});

const read = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
  sampleValue(parseExposition(await registry.metrics()), name, labels) ?? 0;

describe("bus metrics", () => {
  it("count acknowledged KV writes by bucket and operation, and compare-and-set conflicts", async () => {
    const type = uniqueType("M");
    const pub = new Publication(bus, { agent: "spec-builder", type, schema: OutputSchema });
    const puts = await read("eve_tasks_kv_writes_total", { bucket: "spec-builder", operation: "put" });
    const deletes = await read("eve_tasks_kv_writes_total", { bucket: "spec-builder", operation: "delete" });
    const conflicts = await read("eve_tasks_kv_cas_conflicts_total", { bucket: "spec-builder" });
    expect(await pub.putIfNewer("k", { schemaVersion: 1, configRevision: 1, n: 1, replica: "a" })).toBe(
      "written",
    );
    // Another writer (another process) gets in between: this one's next write finds it first.
    const other = new Publication(bus, { agent: "spec-builder", type, schema: OutputSchema });
    expect(await other.putIfNewer("k", { schemaVersion: 1, configRevision: 2, n: 2, replica: "b" })).toBe(
      "written",
    );
    expect(await pub.putIfNewer("k", { schemaVersion: 1, configRevision: 3, n: 3, replica: "a" })).toBe(
      "written",
    );
    await pub.unpublish("k");
    expect(await read("eve_tasks_kv_writes_total", { bucket: "spec-builder", operation: "put" })).toBe(
      puts + 3,
    );
    expect(await read("eve_tasks_kv_writes_total", { bucket: "spec-builder", operation: "delete" })).toBe(
      deletes + 1,
    );
    expect(await read("eve_tasks_kv_cas_conflicts_total", { bucket: "spec-builder" })).toBeGreaterThanOrEqual(
      conflicts + 1,
    );
  });

  it("count a write the server refuses", async () => {
    // A bucket of 200 bytes at most (discard new): the second value does not fit and JetStream
    // refuses it.
    const agent = `obsfull${randomBytes(3).toString("hex")}`;
    await new Kvm(bus.js).create(agent, { max_bytes: 200 });
    try {
      const pub = new Publication(bus, { agent, type: "T", schema: ItemSchema });
      const labels = { bucket: agent, operation: "put" };
      await pub.publish("a", { schemaVersion: 1, n: 1, note: "x".repeat(60) });
      await expect(pub.publish("b", { schemaVersion: 1, n: 2, note: "y".repeat(150) })).rejects.toThrow(
        /publish failed/,
      );
      expect(await read("eve_tasks_kv_writes_total", labels)).toBe(1);
      expect(await read("eve_tasks_kv_write_errors_total", labels)).toBe(1);
    } finally {
      await bus.jsm.streams.delete(`KV_${agent}`);
    }
  });

  it("observe watch lag only for changes after the initial state, and the watch's pending count", async () => {
    const type = uniqueType("W");
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    await pub.publish("old", { schemaVersion: 1, n: 0 });
    const labels = { bucket: "controller", type };
    const seen: number[] = [];
    const sub = await subscribe(bus, {
      agent: "controller",
      type,
      schema: ItemSchema,
      onCreate: (_k, v) => void seen.push(v.n),
      onModify: (_k, v) => void seen.push(v.n),
    });
    await sub.synchronized;
    expect(await read("eve_tasks_watch_lag_seconds_count", labels)).toBe(0);
    await pub.publish("new", { schemaVersion: 1, n: 1 });
    await pub.publish("new", { schemaVersion: 1, n: 2 });
    await waitFor(() => (seen.length === 3 ? true : undefined), { timeoutMs: 5000, message: "changes" });
    expect(await read("eve_tasks_watch_lag_seconds_count", labels)).toBe(2);
    expect(await read("eve_tasks_watch_lag_seconds_sum", labels)).toBeLessThan(5);
    expect(await read("eve_tasks_watch_pending_messages", labels)).toBe(0);
    await sub.close();
  });

  it("count work-queue outcomes and time each delivery", async () => {
    const type = uniqueType("Q");
    const durable = `metrics-${randomBytes(3).toString("hex")}`;
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    const handled: string[] = [];
    const queue = await shareWork(bus, {
      source: { agent: "controller", type, schema: ItemSchema },
      durable,
      backoffMs: [50],
      maxDeliver: 2,
      async handle(state) {
        handled.push(state.key);
        if (state.key === "bad") throw new Error("always fails");
        await new Promise((r) => setTimeout(r, 20));
      },
    });
    try {
      await pub.publish("good", { schemaVersion: 1, n: 1 });
      await pub.publish("bad", { schemaVersion: 1, n: 2 });
      await waitFor(
        async () =>
          (await read("eve_tasks_work_handled_total", { durable, outcome: "gave-up" })) === 1
            ? true
            : undefined,
        {
          timeoutMs: 10_000,
          message: "bad given up",
        },
      );
      expect(await read("eve_tasks_work_handled_total", { durable, outcome: "ack" })).toBe(1);
      expect(await read("eve_tasks_work_handled_total", { durable, outcome: "retry" })).toBe(1);
      expect(await read("eve_tasks_work_duration_seconds_count", { durable })).toBe(3);
      expect(await read("eve_tasks_work_duration_seconds_sum", { durable })).toBeGreaterThanOrEqual(0.02);
      expect(await read("eve_tasks_ack_errors_total", { durable })).toBe(0);
    } finally {
      await queue.stop();
      await bus.jsm.consumers.delete("KV_controller", durable);
    }
  });

  it("count events sent, and the outbox's depth while they are not acknowledged", async () => {
    const event = (message: string) => ({
      schemaVersion: 1 as const,
      uuid: "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10",
      type: "error" as const,
      time: new Date().toISOString(),
      message,
      fields: {},
    });
    // A server without TASK_EVENTS yet: nothing is acknowledged, every attempt fails.
    const nats = await withPrivateNats();
    const own = new Registry();
    const other = await connectBus({ servers: nats.url, name: "outbox-metrics", metrics: own });
    const count = async (name: string) => sampleValue(parseExposition(await own.metrics()), name) ?? 0;
    const outbox = await Outbox.open(other, { file: join(dir, "outbox.jsonl"), publishTimeoutMs: 500 });
    try {
      for (let i = 0; i < 3; i++) await outbox.emit(event(`m${i}`));
      expect(await count("eve_tasks_outbox_pending_events")).toBe(3);
      await waitFor(
        async () => ((await count("eve_tasks_event_send_errors_total")) >= 1 ? true : undefined),
        {
          timeoutMs: 10_000,
          message: "a failed send counted",
        },
      );
      expect(await count("eve_tasks_events_sent_total")).toBe(0);
      await ensureEventsStream(other);
      await outbox.flushed();
      expect(await count("eve_tasks_events_sent_total")).toBe(3);
      expect(await count("eve_tasks_outbox_pending_events")).toBe(0);
    } finally {
      await outbox.close();
      await other.close();
      await nats.cleanup();
    }
  });
});
