import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { StorageType } from "@nats-io/jetstream";
import {
  BUCKET_CONFIG,
  ConfigMismatchError,
  ServerVersionError,
  assertMinimumServer,
  assertServerSupports,
  compareVersions,
  connectBus,
  ensureBucket,
  ensureBuckets,
  ensureEventsStream,
  splitCredentials,
  waitForBucket,
} from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { agents, EVENTS_STREAM } from "@eve-tasks/schemas";

describe("server version", () => {
  it("compares versions numerically", () => {
    expect(compareVersions("2.9.10", "2.9.2")).toBe(1);
    expect(compareVersions("v2.10.0", "2.9.99")).toBe(1);
    expect(compareVersions("2.9.0", "2.9")).toBe(0);
    expect(compareVersions("2.8.4", "2.9.0")).toBe(-1);
  });

  it("refuses an old server and features the server would silently ignore", () => {
    expect(() => assertMinimumServer("2.8.4")).toThrow(ServerVersionError);
    expect(() => assertMinimumServer("2.8.4")).toThrow(
      /requires nats-server 2\.9\.0 or newer; the server is 2\.8\.4/,
    );
    expect(() => assertMinimumServer("2.9.10")).not.toThrow();
    expect(() => assertServerSupports("2.9.10", "perMessageTtl")).toThrow(
      /perMessageTtl requires nats-server 2\.11\.0/,
    );
    expect(() => assertServerSupports("2.9.10", "jetstreamKv")).not.toThrow();
  });
});

describe("NATS URLs with credentials", () => {
  it("takes user and password out of the URLs, decoded", () => {
    expect(splitCredentials("nats://127.0.0.1:4222")).toEqual({ servers: ["nats://127.0.0.1:4222"] });
    expect(
      splitCredentials("nats://task-executor:p%40ss@a:4222, nats://task-executor:p%40ss@b:4222"),
    ).toEqual({
      servers: ["nats://a:4222", "nats://b:4222"],
      user: "task-executor",
      pass: "p@ss",
    });
    expect(() => splitCredentials("nats://a:x@h1:1,nats://b:y@h2:1")).toThrow(/same user and password/);
  });
});

describe("buckets", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: inject("natsUrl"), name: "buckets-test" });
  });
  afterAll(async () => {
    await bus.close();
  });

  it("connects and reports the server version", () => {
    expect(bus.serverVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("creates one bucket per agent with file storage and 1 MiB values, idempotently", async () => {
    await ensureBuckets(bus);
    await ensureBuckets(bus);
    await ensureEventsStream(bus);
    await ensureEventsStream(bus);
    for (const agent of agents) {
      const info = await bus.jsm.streams.info(`KV_${agent}`);
      expect(info.config.storage).toBe(StorageType.File);
      expect(info.config.max_msg_size).toBe(BUCKET_CONFIG.maxValueSize);
    }
    const ev = await bus.jsm.streams.info(EVENTS_STREAM);
    expect(ev.config.subjects).toEqual(["eve.events.>"]);
  });

  it("refuses to run against a bucket with another configuration", async () => {
    await bus.jsm.streams.add({
      name: "KV_odd-agent",
      subjects: ["$KV.odd-agent.>"],
      storage: StorageType.Memory,
      max_msgs_per_subject: 1,
      max_msg_size: 1024,
      allow_rollup_hdrs: true,
      deny_delete: true,
    });
    const err = await ensureBucket(bus, "odd-agent").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigMismatchError);
    expect((err as Error).message).toMatch(/bucket odd-agent exists with another configuration/);
    expect((err as Error).message).toMatch(/max_msg_size is 1024, expected 1048576/);
    await bus.jsm.streams.delete("KV_odd-agent");
  });

  it("waits for a bucket it may not create until its owner creates it", async () => {
    const agent = `late-${Date.now().toString(36)}`;
    let done = false;
    const waiting = waitForBucket(bus, agent, { intervalMs: 50 }).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    await ensureBucket(bus, agent);
    await waiting;
    expect(done).toBe(true);
    await bus.jsm.streams.delete(`KV_${agent}`);
  });

  it("looks for a missing bucket again with back-off, and stops when told to", async () => {
    const agent = `later-${Date.now().toString(36)}`;
    // Every look is a stream-info request: count them on the wire.
    let looks = 0;
    const sub = bus.nc.subscribe(`$JS.API.STREAM.INFO.KV_${agent}`, { callback: () => void looks++ });
    const stop = new AbortController();
    const waiting = waitForBucket(bus, agent, { intervalMs: 50, signal: stop.signal });
    await new Promise((r) => setTimeout(r, 1600));
    // 50, 100, 200, 400, 800 ms: 5 or 6 looks, where a fixed 50 ms interval makes ~30.
    expect(looks).toBeGreaterThanOrEqual(4);
    expect(looks).toBeLessThanOrEqual(7);
    const t0 = Date.now();
    stop.abort();
    await expect(waiting).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(500);
    sub.unsubscribe();
  });

  it("says clearly when NATS is not there", async () => {
    await expect(
      connectBus({ servers: "nats://127.0.0.1:1", name: "nowhere", connectTimeoutMs: 1000 }),
    ).rejects.toThrow(/cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/);
  });
});
