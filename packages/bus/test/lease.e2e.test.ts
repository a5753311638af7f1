// The lease against the harness's real nats-server: a renewal that was stored although its
// caller saw it fail is not a lost lease; another holder, or no lease, is.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { acquireLease, connectBus, ensureBuckets } from "../src/index.js";
import type { Bus, Lease, LeaseValue } from "../src/index.js";
import type {} from "../../../test/harness/global-setup.js";

let bus: Bus;
beforeAll(async () => {
  bus = await connectBus({ servers: inject("natsUrl"), name: "lease-test" });
  await ensureBuckets(bus);
});
afterAll(async () => {
  await bus?.close();
});

const AGENT = "task-executor";
const TYPE = "TestLease";
const TTL_MS = 300; // renewed every 100 ms
const me = { pid: process.pid, startTicks: 1, host: "lease-test", bootId: "boot" };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Takes a fresh lease; `lost` collects what onLost was told. */
async function take(): Promise<{ key: string; full: string; lease: Lease; lost: string[] }> {
  const key = `n${randomBytes(4).toString("hex")}`;
  const lost: string[] = [];
  const lease = await acquireLease(bus, {
    agent: AGENT,
    type: TYPE,
    key,
    claimant: me,
    isAlive: () => true,
    ttlMs: TTL_MS,
    onLost: (why) => lost.push(why),
  });
  return { key, full: `${TYPE}.${key}`, lease, lost };
}

const leaseValue = (over: Partial<LeaseValue> = {}): string =>
  JSON.stringify({ schemaVersion: 1, ...me, acquiredAt: "", renewedAt: "", ttlMs: TTL_MS, ...over });

describe("a held lease", () => {
  it("is kept when a renewal of its own was stored behind its back (ack lost); renewals go on; release removes it", async () => {
    const kv = await bus.bucket(AGENT);
    const { full, lease, lost } = await take();
    try {
      // What a renewal whose acknowledgement never arrived leaves: our lease, one revision on.
      const injected = await kv.put(full, leaseValue());
      await sleep(TTL_MS * 2);
      expect(lost).toEqual([]);
      const now = await kv.get(full);
      expect(now!.revision, "renewed after the write it did not see").toBeGreaterThan(injected);
      expect(now!.json<LeaseValue>().pid).toBe(me.pid);
      // Released, the key holds no lease (the delete names the last revision).
      await lease.release();
      const released = await kv.get(full);
      expect(released === null || released.operation !== "PUT").toBe(true);
    } finally {
      await lease.release();
    }
  });

  it("is lost, once, when another process holds it", async () => {
    const kv = await bus.bucket(AGENT);
    const { full, lease, lost } = await take();
    try {
      await kv.put(full, leaseValue({ pid: me.pid + 1, host: "elsewhere" }));
      await sleep(TTL_MS * 2);
      expect(lost).toEqual([expect.stringContaining(`held by pid ${me.pid + 1} on host elsewhere`)]);
      // It stops renewing: the other holder's value stays.
      expect((await kv.get(full))!.json<LeaseValue>().host).toBe("elsewhere");
    } finally {
      await lease.release();
      await kv.purge(full);
    }
  });

  it("is lost when its key is removed", async () => {
    const kv = await bus.bucket(AGENT);
    const { full, lease, lost } = await take();
    try {
      await kv.delete(full);
      await sleep(TTL_MS * 2);
      expect(lost).toEqual([expect.stringContaining("the lease was removed")]);
    } finally {
      await lease.release();
      await kv.purge(full);
    }
  });
});
