import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { followEvents, readEvents } from "@eve-tasks/bus";
import type { Bus, EventFollower } from "@eve-tasks/bus";
import { eventSubject } from "@eve-tasks/schemas";
import type { TaskEvent, TaskEventInput } from "@eve-tasks/schemas";
import { waitFor } from "../harness/index.js";
import { testBus } from "./helpers.js";

describe("followEvents", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function follow(types?: TaskEventInput["type"][]): Promise<{ bus: Bus; got: TaskEvent[] }> {
    const bus = await testBus("events-test");
    const got: TaskEvent[] = [];
    const uuid = randomUUID();
    const follower: EventFollower = followEvents(bus, (e) => got.push(e), {
      uuid,
      ...(types ? { types } : {}),
    });
    cleanups.push(async () => {
      await follower.close();
      await bus.drain();
    });
    await bus.nc.flush();
    const send = (v: unknown): void => bus.nc.publish(eventSubject(uuid), JSON.stringify(v));
    const event = (type: string, message: string): TaskEventInput =>
      ({ schemaVersion: 1, uuid, type, time: new Date().toISOString(), message }) as TaskEventInput;
    send(event("created", "one"));
    send(event("exited", "two"));
    send({ ...event("exited", "bad"), time: "yesterday" }); // invalid: dropped
    send("not an event");
    send(event("started", "three"));
    send(event("exited", "four"));
    return { bus, got };
  }

  it("delivers every valid event of the app, in order", async () => {
    const { got } = await follow();
    await waitFor(() => (got.length >= 4 ? true : undefined), { timeoutMs: 5000 });
    expect(got.map((e) => e.message)).toEqual(["one", "two", "three", "four"]);
  });

  it("with types, only those (still validated)", async () => {
    const { bus, got } = await follow(["exited"]);
    await waitFor(() => (got.length >= 2 ? true : undefined), { timeoutMs: 5000 });
    await bus.nc.flush();
    expect(got.map((e) => [e.type, e.message])).toEqual([
      ["exited", "two"],
      ["exited", "four"],
    ]);
  });
});

describe("readEvents({ recent })", () => {
  it("starts that many stream sequences before the end, without a pass over the stream", async () => {
    const bus = await testBus("events-recent-test");
    try {
      const uuid = randomUUID();
      const seqs: number[] = [];
      for (const message of ["one", "two", "three", "four", "five"]) {
        const ack = await bus.js.publish(
          eventSubject(uuid),
          JSON.stringify({
            schemaVersion: 1,
            uuid,
            type: "started",
            time: new Date().toISOString(),
            message,
          }),
        );
        seqs.push(ack.seq);
      }
      const got: { seq: number; message: string }[] = [];
      for await (const { seq, event } of readEvents(bus, { recent: 3 }))
        got.push({ seq, message: event.message });
      // Other tests may publish meanwhile (one shared server): what comes is at most the last 3,
      // and never this app's first two.
      expect(got.length).toBeGreaterThan(0);
      expect(got.length).toBeLessThanOrEqual(3);
      expect(got.every((g) => g.seq > seqs[1]!)).toBe(true);
      expect(got.map((g) => g.message)).not.toContain("two");
      await expect(readEvents(bus, { recent: 3, uuid }).next()).rejects.toThrow(
        /`recent` reads every app's events/,
      );
    } finally {
      await bus.drain();
    }
  });
});
