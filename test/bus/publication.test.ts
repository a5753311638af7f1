import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Msg } from "@nats-io/nats-core";
import { CONFIG_REVISION_HEADER, Publication, subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { waitFor } from "../harness/index.js";
import { OutputSchema, testBus, uniqueType } from "./helpers.js";

describe("compare-and-set writes ordered by configRevision", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("publication-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  const out = (configRevision: number, replica: string) => ({
    schemaVersion: 1 as const,
    configRevision,
    n: configRevision,
    replica,
  });

  it("never lets an older revision overwrite a newer one written by another replica", async () => {
    const type = uniqueType("Cas");
    const a = new Publication(bus, { agent: "spec-builder", type, schema: OutputSchema });
    const b = new Publication(bus, { agent: "spec-builder", type, schema: OutputSchema });
    expect(await a.putIfNewer("k", out(5, "a"))).toBe("written");
    expect(await b.putIfNewer("k", out(7, "b"))).toBe("written");
    // a's write without a read (its own last revision) must fail over to read-compare.
    expect(await a.putIfNewer("k", out(6, "a"))).toBe("stale");
    expect(await a.get("k")).toMatchObject({ configRevision: 7, replica: "b" });
    // The same value again is no write at all; a newer one is.
    expect(await b.putIfNewer("k", out(7, "b"))).toBe("unchanged");
    expect(await a.putIfNewer("k", out(8, "a"))).toBe("written");
    expect(await b.get("k")).toMatchObject({ configRevision: 8, replica: "a" });
  });

  it("deletes only what is not newer, and writes again after a delete", async () => {
    const type = uniqueType("Cas");
    const a = new Publication(bus, { agent: "spec-builder", type, schema: OutputSchema });
    const b = new Publication(bus, { agent: "spec-builder", type, schema: OutputSchema });
    expect(await a.putIfNewer("k", out(3, "a"))).toBe("written");
    expect(await b.deleteIfNotNewer("k", 2)).toBe("stale");
    expect(await b.deleteIfNotNewer("k", 4)).toBe("deleted");
    expect(await b.deleteIfNotNewer("k", 4)).toBe("absent");
    expect(await a.get("k")).toBeUndefined();
    // a last wrote revision 3 itself, but the key has a delete marker since: its write
    // without a read fails and it falls back to read-compare-write.
    expect(await a.putIfNewer("k", out(5, "a"))).toBe("written");
    expect(await b.get("k")).toMatchObject({ configRevision: 5 });
  });
});

describe("a delete carries its configRevision (tombstone)", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("tombstone-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  const out = (configRevision: number, replica: string) => ({
    schemaVersion: 1 as const,
    configRevision,
    n: configRevision,
    replica,
  });
  const replicas = (type: string) =>
    ["a", "b", "c"].map(() => new Publication(bus, { agent: "spec-builder", type, schema: OutputSchema }));

  it("an older write never lands after a newer delete", async () => {
    const type = uniqueType("Tomb");
    const [a, b, c] = replicas(type);
    expect(await a!.putIfNewer("k", out(5, "a"))).toBe("written");
    expect(await b!.deleteIfNotNewer("k", 6)).toBe("deleted");
    // c read revision 5 before the delete and writes only now.
    expect(await c!.putIfNewer("k", out(5, "c"))).toBe("stale");
    expect(await a!.get("k")).toBeUndefined();
    // The app created again at a later revision is written.
    expect(await c!.putIfNewer("k", out(7, "c"))).toBe("written");
    expect(await a!.get("k")).toMatchObject({ configRevision: 7 });
  });

  it("a delete of a key that was never written still stops an older write", async () => {
    const type = uniqueType("Tomb");
    const [a, b] = replicas(type);
    expect(await b!.deleteIfNotNewer("k", 6)).toBe("absent");
    expect(await a!.putIfNewer("k", out(5, "a"))).toBe("stale");
    expect(await a!.get("k")).toBeUndefined();
    // An older delete does not replace the newer tombstone; a newer one does.
    expect(await b!.deleteIfNotNewer("k", 4)).toBe("absent");
    expect(await a!.putIfNewer("k", out(5, "a"))).toBe("stale");
    expect(await b!.deleteIfNotNewer("k", 8)).toBe("absent");
    expect(await a!.putIfNewer("k", out(7, "a"))).toBe("stale");
    expect(await a!.putIfNewer("k", out(9, "a"))).toBe("written");
  });

  it("an older delete never removes a newer write", async () => {
    const type = uniqueType("Tomb");
    const [a, b] = replicas(type);
    expect(await a!.putIfNewer("k", out(7, "a"))).toBe("written");
    expect(await b!.deleteIfNotNewer("k", 6)).toBe("stale");
    expect(await b!.get("k")).toMatchObject({ configRevision: 7 });
  });

  it("is a KV delete to every reader: empty body, KV-Operation DEL, the revision in a header", async () => {
    const type = uniqueType("Tomb");
    const [a, b] = replicas(type);
    const deleted: string[] = [];
    const sub = await subscribe(bus, {
      agent: "spec-builder",
      type,
      schema: OutputSchema,
      onCreate: () => undefined,
      onDelete: (key) => void deleted.push(key),
    });
    const plain: Msg[] = [];
    const raw = bus.nc.subscribe(`$KV.spec-builder.${type}.>`, { callback: (_e, m) => void plain.push(m) });
    try {
      await sub.synchronized;
      await a!.putIfNewer("k", out(5, "a"));
      await waitFor(() => sub.get("k") !== undefined, { message: "value seen" });
      expect(await b!.deleteIfNotNewer("k", 6)).toBe("deleted");
      await waitFor(() => deleted.includes("k"), { message: "unpublish seen by a KV watcher" });
      await waitFor(() => plain.length === 2, { message: "both messages on the plain subscription" });
      const marker = plain[1]!;
      expect(marker.subject).toBe(`$KV.spec-builder.${type}.k`);
      expect(marker.data.length).toBe(0);
      expect(marker.headers?.get("KV-Operation")).toBe("DEL");
      expect(marker.headers?.get(CONFIG_REVISION_HEADER)).toBe("6");
      const kv = await bus.bucket("spec-builder");
      expect((await kv.get(`${type}.k`))?.operation).toBe("DEL");
    } finally {
      raw.unsubscribe();
      await sub.close();
    }
  });
});
