// A subscription must synchronize even when a key of its snapshot is written while its watch
// starts. nats-server 2.9 then counts one message too many as pending, so no snapshot entry ever
// has delta 0: `eve-tasks stop --wait` saw HALTED arrive and still timed out, because it waits for
// synchronized before it judges a status (the executor writes HALTING right as the CLI watches).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subscribe, kvKey } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { waitFor } from "../harness/index.js";
import { ItemSchema, testBus, uniqueType } from "./helpers.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("subscription snapshot", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await testBus("subscription-sync-test");
  });
  afterAll(async () => {
    await bus.close();
  });

  it("synchronizes when the snapshot's key is written while the watch starts", async () => {
    // Each round races puts of a one-key table against the watch's start; before the fix about
    // seven rounds in ten never synchronized, so 20 rounds cannot all pass by luck.
    const rounds = 20;
    const kv = await bus.bucket("controller");
    const missed: string[] = [];
    for (let round = 0; round < rounds; round++) {
      const type = uniqueType("Sync");
      const key = kvKey(type, "a");
      await kv.put(key, JSON.stringify({ schemaVersion: 1, n: 0 }));
      let synchronized = false;
      const starting = subscribe(bus, {
        agent: "controller",
        type,
        schema: ItemSchema,
        onCreate: () => undefined,
        onSynchronized: () => void (synchronized = true),
      });
      const puts: Promise<number>[] = [];
      for (let n = 1; n <= 10; n++) {
        puts.push(kv.put(key, JSON.stringify({ schemaVersion: 1, n })));
        await sleep(Math.random() * 2);
      }
      const sub = await starting;
      await Promise.all(puts);
      try {
        await waitFor(() => synchronized, { timeoutMs: 2000 });
        // The table it holds is the newest value, whichever way it got there.
        await waitFor(() => sub.get("a")?.n === 10, { timeoutMs: 2000 });
      } catch {
        missed.push(`round ${round}: synchronized ${synchronized}, holds ${JSON.stringify(sub.get("a"))}`);
      } finally {
        await sub.close();
      }
    }
    expect(missed).toEqual([]);
  }, 120_000);
});
