import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Outbox, connectBus, ensureBuckets, ensureEventsStream } from "@eve-tasks/bus";
import { startNatsServer } from "@eve-tasks/embedded";
import type { RunningNatsServer } from "@eve-tasks/embedded";
import { waitFor } from "../harness/index.js";
import { storedEvents } from "./helpers.js";

const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";

describe("the event outbox", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function privateNats(): Promise<{ dir: string; server: RunningNatsServer }> {
    const dir = await mkdtemp(join(tmpdir(), "eve-outbox-"));
    const server = await startNatsServer({ storeDir: join(dir, "store") });
    cleanups.push(async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    return { dir, server };
  }

  it("delivers every event once across a nats-server outage (same store)", async () => {
    const { dir, server: first } = await privateNats();
    let server = first;
    cleanups.push(async () => server.stop());
    const bus = await connectBus({ servers: server.url, name: "outbox-test" });
    cleanups.push(() => bus.close());
    await ensureBuckets(bus);
    await ensureEventsStream(bus);
    const outbox = await Outbox.open(bus, {
      file: join(dir, "outbox", "test.jsonl"),
      publishTimeoutMs: 1000,
    });
    cleanups.push(() => outbox.close());

    const emit = (i: number) =>
      outbox.emit({
        schemaVersion: 1,
        uuid: UUID,
        type: "started",
        time: new Date().toISOString(),
        message: `event ${i}`,
        fields: { i },
      });
    for (let i = 0; i < 10; i++) await emit(i);
    await outbox.flushed();

    // The server goes away; the worker keeps emitting.
    await server.stop();
    for (let i = 10; i < 40; i++) await emit(i);
    expect(outbox.pending).toBeGreaterThan(0);

    server = await startNatsServer({ storeDir: join(dir, "store"), port: first.port });
    await waitFor(() => outbox.pending === 0, {
      timeoutMs: 30_000,
      message: "outbox did not drain after restart",
    });
    for (let i = 40; i < 45; i++) await emit(i);
    await outbox.flushed();

    const stored = await storedEvents(bus);
    expect(stored.map((e) => e.message)).toEqual(Array.from({ length: 45 }, (_, i) => `event ${i}`));
    expect(new Set(stored.map((e) => e.id)).size).toBe(45);
  }, 90_000);

  it("re-sends what a crashed worker had not had acknowledged, without duplicates", async () => {
    const { dir, server } = await privateNats();
    const file = join(dir, "outbox", "w.jsonl");
    const bus = await connectBus({ servers: server.url, name: "outbox-test-2" });
    cleanups.push(() => bus.close());
    await ensureEventsStream(bus);
    // A first life: two events sent and acknowledged, then the process "crashes"
    // after writing one more to its outbox but before sending it (NATS unreachable).
    const first = await Outbox.open(bus, { file });
    await first.emit({
      schemaVersion: 1,
      uuid: UUID,
      type: "created",
      time: new Date().toISOString(),
      message: "a",
      fields: {},
    });
    await first.emit({
      schemaVersion: 1,
      uuid: UUID,
      type: "started",
      time: new Date().toISOString(),
      message: "b",
      fields: {},
    });
    await first.flushed();
    await first.close();
    const { appendFile } = await import("node:fs/promises");
    const event = {
      schemaVersion: 1,
      uuid: UUID,
      type: "exited",
      time: new Date().toISOString(),
      message: "c",
      fields: {},
    };
    await appendFile(
      file,
      JSON.stringify({
        op: "emit",
        id: "crash-1",
        subject: `eve.events.${UUID}`,
        data: JSON.stringify(event),
      }) + "\n",
    );
    // A re-send of an id already stored is also harmless.
    await bus.js.publish(`eve.events.${UUID}`, JSON.stringify(event), { msgID: "crash-1" });

    const second = await Outbox.open(bus, { file });
    cleanups.push(() => second.close());
    await second.flushed();
    const stored = await storedEvents(bus);
    expect(stored.map((e) => e.message)).toEqual(["a", "b", "c"]);
  }, 60_000);
});
