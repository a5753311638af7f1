import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Bus, InvalidValue, Known } from "@eve-tasks/bus";
import { waitFor } from "../harness/index.js";
import { ItemSchema, testBus, uniqueType } from "./helpers.js";

type Item = { schemaVersion: 1; n: number; note?: string | undefined };

/** Records every handler call of a subscription, in order. */
function recorder() {
  const events: string[] = [];
  const invalid: InvalidValue<Item>[] = [];
  return {
    events,
    invalid,
    handlers: {
      onCreate: (k: string, v: Item) => void events.push(`create ${k}=${v.n}`),
      onModify: (k: string, v: Item, old: Item) => void events.push(`modify ${k}=${v.n} (was ${old.n})`),
      onDelete: (k: string, old: Item) => void events.push(`delete ${k} (was ${old.n})`),
      onSynchronized: () => void events.push("synchronized"),
      onRestarted: (c: number) => void events.push(`restarted ${c}`),
      onInvalid: (i: InvalidValue<Item>) => void invalid.push(i),
    },
  };
}

describe("subscriptions", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("subscription-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  it("gives a late subscriber the current state, then synchronized, then changes", async () => {
    const type = uniqueType();
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    await pub.publish("a", { schemaVersion: 1, n: 1 });
    await pub.publish("b", { schemaVersion: 1, n: 2 });
    await pub.publish("a", { schemaVersion: 1, n: 3 });
    const r = recorder();
    const sub = await subscribe(bus, { agent: "controller", type, schema: ItemSchema, ...r.handlers });
    await sub.synchronized;
    // The snapshot comes in revision order: b (rev 2) before a (rev 3, republished).
    expect(r.events).toEqual(["create b=2", "create a=3", "synchronized"]);
    await pub.publish("b", { schemaVersion: 1, n: 4 });
    await waitFor(() => r.events.length === 4, { message: "modify of b not delivered" });
    expect(r.events[3]).toBe("modify b=4 (was 2)");
    expect(sub.get("b")).toEqual({ schemaVersion: 1, n: 4 });
    await sub.close();
  });

  it("synchronizes an empty table", async () => {
    const r = recorder();
    const sub = await subscribe(bus, {
      agent: "controller",
      type: uniqueType(),
      schema: ItemSchema,
      ...r.handlers,
    });
    await sub.synchronized;
    expect(r.events).toEqual(["synchronized"]);
    await sub.close();
  });

  it("synchronizes a table whose only record is a delete", async () => {
    const type = uniqueType();
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    await pub.publish("gone", { schemaVersion: 1, n: 1 });
    await pub.unpublish("gone");
    const r = recorder();
    const sub = await subscribe(bus, { agent: "controller", type, schema: ItemSchema, ...r.handlers });
    await sub.synchronized;
    expect(r.events).toEqual(["synchronized"]);
    await sub.close();
  });

  it("suppresses an identical update and delivers a delete", async () => {
    const type = uniqueType();
    const writer = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    const r = recorder();
    const sub = await subscribe(bus, { agent: "controller", type, schema: ItemSchema, ...r.handlers });
    await sub.synchronized;
    await writer.publish("k", { schemaVersion: 1, n: 1 });
    // A second publisher object does not know what the first wrote, so this reaches NATS
    // as a new revision with identical content: the subscriber must drop it.
    const other = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    const rev = await other.publish("k", { n: 1, schemaVersion: 1 });
    expect(rev).toBeGreaterThan(0);
    await writer.publish("k", { schemaVersion: 1, n: 2 });
    await writer.unpublish("k");
    await waitFor(() => r.events.length >= 4, { message: "changes not delivered" });
    expect(r.events).toEqual(["synchronized", "create k=1", "modify k=2 (was 1)", "delete k (was 2)"]);
    expect(sub.get("k")).toBeUndefined();
    await sub.close();
  });

  it("resyncs a restarted subscriber without missing or repeating a change", async () => {
    const type = uniqueType();
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    for (let i = 0; i < 10; i++) await pub.publish(`k${i}`, { schemaVersion: 1, n: i });
    const first = recorder();
    const sub1 = await subscribe(bus, { agent: "controller", type, schema: ItemSchema, ...first.handlers });
    await sub1.synchronized;
    // The subscriber saves its view, then goes away mid-stream.
    const saved: Map<string, Known<Item>> = sub1.getAll();
    await sub1.close();
    // While it is gone: one key changes, one is deleted, one is added, and one is
    // rewritten with identical content.
    await pub.publish("k1", { schemaVersion: 1, n: 100 });
    await pub.unpublish("k2");
    await pub.publish("k10", { schemaVersion: 1, n: 10 });
    await new Publication(bus, { agent: "controller", type, schema: ItemSchema }).publish("k3", {
      schemaVersion: 1,
      n: 3,
    });
    const second = recorder();
    const sub2 = await subscribe(bus, {
      agent: "controller",
      type,
      schema: ItemSchema,
      known: saved,
      ...second.handlers,
    });
    await sub2.synchronized;
    expect(second.events.sort()).toEqual(
      ["create k10=10", "delete k2 (was 2)", "modify k1=100 (was 1)", "synchronized"].sort(),
    );
    expect(second.events.at(-1)).toBe("synchronized");
    expect(sub2.getAll().size).toBe(10);
    await sub2.close();
  });

  it("passes the restarted signal with a growing counter", async () => {
    const type = uniqueType();
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    await pub.clearRestarted();
    const r = recorder();
    const sub = await subscribe(bus, { agent: "controller", type, schema: ItemSchema, ...r.handlers });
    await sub.synchronized;
    await pub.publish("x", { schemaVersion: 1, n: 1 });
    expect(await pub.signalRestarted()).toBe(1);
    expect(await pub.signalRestarted()).toBe(2);
    await waitFor(() => r.events.includes("restarted 2"), { message: "restarted signal not delivered" });
    expect(r.events).toEqual(["synchronized", "create x=1", "restarted 1", "restarted 2"]);
    expect([...(await pub.getAll()).keys()]).toEqual(["x"]);
    await sub.close();
  });

  it("reports malformed, schema-violating and oversized values to the invalid handler and goes on", async () => {
    const type = uniqueType();
    const kv = await bus.bucket("controller");
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    await pub.publish("good", { schemaVersion: 1, n: 1 });
    const r = recorder();
    let handlerThrew = 0;
    const sub = await subscribe(bus, {
      agent: "controller",
      type,
      schema: ItemSchema,
      ...r.handlers,
      onCreate: (k, v) => {
        r.events.push(`create ${k}=${v.n}`);
        if (k === "boom") {
          handlerThrew++;
          throw new Error("handler bug");
        }
      },
      onHandlerError: () => undefined,
    });
    await sub.synchronized;
    await kv.put(`${type}.good`, "{ not json");
    await kv.put(`${type}.schema`, JSON.stringify({ schemaVersion: 1, n: "seven" }));
    await kv.put(`${type}.big`, JSON.stringify({ schemaVersion: 1, n: 1, note: "x".repeat(100 * 1024) }));
    await pub.publish("boom", { schemaVersion: 1, n: 5 });
    await pub.publish("after", { schemaVersion: 1, n: 6 });
    await waitFor(() => r.events.includes("create after=6"), {
      message: "subscription stopped after bad values",
    });
    expect(handlerThrew).toBe(1);
    const byKey = new Map(r.invalid.map((i) => [i.key, i]));
    expect(byKey.get("good")?.reason).toBe("malformed-json");
    expect(byKey.get("good")?.message).toMatch(/JSON/);
    expect(byKey.get("good")?.previous).toEqual({ schemaVersion: 1, n: 1 });
    expect(byKey.get("schema")?.reason).toBe("schema");
    expect(byKey.get("schema")?.message).toMatch(/n/);
    expect(byKey.get("big")?.reason).toBe("too-large");
    expect(byKey.get("big")?.message).toMatch(/65536|64 KiB/);
    // The last good value of "good" stays current.
    expect(sub.get("good")).toEqual({ schemaVersion: 1, n: 1 });
    await sub.close();
  });

  it("reports a value whose content disagrees with its key", async () => {
    const type = uniqueType();
    const pub = new Publication(bus, { agent: "controller", type, schema: ItemSchema });
    await pub.publish("n2", { schemaVersion: 1, n: 3 });
    const r = recorder();
    const sub = await subscribe(bus, {
      agent: "controller",
      type,
      schema: ItemSchema,
      ...r.handlers,
      checkKey: (k, v) => (k === `n${v.n}` ? null : `key ${k} does not match n=${v.n}`),
    });
    await sub.synchronized;
    expect(r.invalid.map((i) => [i.reason, i.message])).toEqual([["key", "key n2 does not match n=3"]]);
    expect(r.events).toEqual(["synchronized"]);
    await sub.close();
  });
});
