import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
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
