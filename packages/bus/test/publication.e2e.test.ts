// Publication.getAll against the harness's real nats-server: the current valid values of one
// table, whatever else the bucket holds.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { z } from "zod";
import { Publication, connectBus, ensureBuckets, subscribe } from "../src/index.js";
import type { Bus } from "../src/index.js";
import type {} from "../../../test/harness/global-setup.js";

let bus: Bus;
beforeAll(async () => {
  bus = await connectBus({ servers: inject("natsUrl"), name: "publication-test" });
  await ensureBuckets(bus);
});
afterAll(async () => {
  await bus?.close();
});

const Thing = z.object({ n: z.number().int() });

describe("Publication.getAll", () => {
  it("gives every current valid value of its table, and nothing of another table", async () => {
    const type = `GetAll${randomBytes(3).toString("hex")}`;
    const things = new Publication(bus, { agent: "controller", type, schema: Thing });
    const others = new Publication(bus, { agent: "controller", type: `${type}Other`, schema: Thing });
    expect(await things.getAll()).toEqual(new Map());

    for (let i = 0; i < 300; i++) await things.publish(`k${i}`, { n: i });
    await things.publish("k1", { n: 1001 });
    await things.unpublish("k2");
    await others.publish("k3", { n: -1 });
    const kv = await bus.bucket("controller");
    await kv.put(`${type}.bad`, JSON.stringify({ n: "not a number" }));

    const all = await things.getAll();
    expect(all.size).toBe(299);
    expect(all.get("k0")).toEqual({ n: 0 });
    expect(all.get("k1")).toEqual({ n: 1001 });
    expect(all.has("k2")).toBe(false);
    expect(all.get("k3")).toEqual({ n: 3 });
    expect(all.get("k299")).toEqual({ n: 299 });
    expect(all.has("bad")).toBe(false);

    for (const key of [...all.keys(), "bad"]) await kv.purge(`${type}.${key}`);
    await kv.purge(`${type}.k2`);
    await kv.purge(`${type}Other.k3`);
  });
});

describe("Subscription.caughtUp", () => {
  it("resolves once what was stored before the call has been handled; rejects once closed", async () => {
    const type = `CaughtUp${randomBytes(3).toString("hex")}`;
    const things = new Publication(bus, { agent: "controller", type, schema: Thing });
    const seen: number[] = [];
    const sub = await subscribe(bus, {
      agent: "controller",
      type,
      schema: Thing,
      onCreate: (_k, v) => void seen.push(v.n),
      onModify: (_k, v) => void seen.push(v.n),
    });
    for (let round = 0; round < 20; round++) {
      await things.publish("k", { n: round });
      await sub.caughtUp();
      expect(sub.get("k")).toEqual({ n: round });
      expect(seen.at(-1)).toBe(round);
    }
    await sub.close();
    await things.publish("k", { n: 99 });
    await expect(sub.caughtUp()).rejects.toThrow(/closed/);
    await (await bus.bucket("controller")).purge(`${type}.k`);
  });
});
