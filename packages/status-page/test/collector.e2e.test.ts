// The status page's collector against the harness's real nats-server: what is on the bus becomes
// rows, a change becomes a patch, and `$SRV.INFO` answers become the workers table (real NATS
// services registered here with @nats-io/services, as the workers register theirs).
import { randomBytes, randomUUID } from "node:crypto";
import { Svcm } from "@nats-io/services";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { connectBus, ensureBuckets, ensureEventsStream } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { eventSubject } from "@eve-tasks/schemas";
import type {} from "../../../test/harness/global-setup.js";
import { StatusCollector, pollServices } from "../src/index.js";
import type { Patch } from "../src/index.js";
import { config, event, metrics, network, seed, status } from "./fixtures.js";

const logger = pino({ level: "silent" });
let bus: Bus;
let nc: NatsConnection;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  bus = await connectBus({ servers: inject("natsUrl"), name: "status-page-test" });
  await ensureBuckets(bus);
  await ensureEventsStream(bus);
  nc = await connect({ servers: inject("natsUrl") });
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await nc?.close();
  await bus?.close();
});

const until = async <T>(what: string, get: () => T | undefined, ms = 10_000): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

const put = async (agent: string, key: string, value: unknown): Promise<void> => {
  await (await bus.bucket(agent)).put(key, JSON.stringify(value));
};

/** A collector with this file's defaults (`extra` overrides them), closed after the file. */
const openCollector = async (
  extra: Partial<Parameters<typeof StatusCollector.open>[0]> = {},
): Promise<StatusCollector> => {
  const c = await StatusCollector.open({
    bus,
    logger,
    node: "local",
    natsUrl: "nats://x",
    natsUser: null,
    pollServices: () => pollServices(bus.nc, 300),
    flushIntervalMs: 50,
    ...extra,
  });
  closers.push(() => c.close());
  return c;
};

describe("the status page's collector", () => {
  it("turns configs, statuses, metrics, events, seeds and network instances into rows, and changes into patches", async () => {
    const uuid = randomUUID();
    const node = `sp-${randomBytes(3).toString("hex")}`;
    await put("controller", `AppInstanceConfig.${uuid}`, config({ uuid, displayName: "<b>bold</b>" }));
    await put("task-executor", `TaskStatus.${uuid}`, status({ uuid, node }));
    await put("proc-monitor", `TaskMetrics.${uuid}`, metrics({ uuid }));
    await put("hypervisor-seed-fetcher", `ImageSeed.${node}.abc`, seed());
    await put("task-executor", `NetworkInstanceStatus.${node}.lan`, network({ node, apps: [uuid] }));
    await bus.js.publish(
      eventSubject(uuid),
      JSON.stringify(event("created", new Date().toISOString(), "made", uuid)),
    );

    const c = await openCollector({ node });
    const patches: Patch[] = [];
    c.onPatches((p) => patches.push(...p));
    await c.warm();

    // The tables' current state is there at once; events arrive from the stream.
    let snap = c.snapshot();
    expect(snap.apps[uuid]).toMatchObject({
      name: "<b>bold</b>",
      state: "RUNNING",
      memoryUsedBytes: 3 * 1048576,
    });
    expect(snap.seeds[`ImageSeed.${node}.abc`]).toMatchObject({ node, state: "PULLING" });
    expect(snap.networks[`${node}.lan`]).toMatchObject({ state: "READY", apps: 1 });
    await until("the event under its app", () => (c.snapshot().apps[uuid]?.events.length ? true : undefined));
    snap = c.snapshot();
    expect(snap.apps[uuid]?.events).toEqual([expect.objectContaining({ type: "created", message: "made" })]);

    // A change is one patch with the new row; a deletion of everything of the app removes it.
    await put(
      "task-executor",
      `TaskStatus.${uuid}`,
      status({ uuid, node, state: "HALTED", taskId: 0, anchorStartTicks: null, exitCode: 0 }),
    );
    const halted = await until("a patch to HALTED", () =>
      patches.find(
        (p) =>
          p.section === "apps" &&
          p.key === uuid &&
          p.row !== null &&
          "state" in p.row &&
          p.row.state === "HALTED",
      ),
    );
    expect(halted.row).toMatchObject({ memoryUsedBytes: null, taskId: 0 });
    await (await bus.bucket("controller")).delete(`AppInstanceConfig.${uuid}`);
    await (await bus.bucket("task-executor")).delete(`TaskStatus.${uuid}`);
    await until("the app's removal", () => patches.find((p) => p.key === uuid && p.row === null));
    expect(c.snapshot().apps[uuid]).toBeUndefined();
  });

  it("follows TaskMetrics only while someone looks, and a while after", async () => {
    const uuid = randomUUID();
    const node = `sp-${randomBytes(3).toString("hex")}`;
    const MIB = 1048576;
    await put("controller", `AppInstanceConfig.${uuid}`, config({ uuid }));
    await put("task-executor", `TaskStatus.${uuid}`, status({ uuid, node }));
    await put("proc-monitor", `TaskMetrics.${uuid}`, metrics({ uuid, memoryUsageBytes: 5 * MIB }));
    const c = await openCollector({ node, metricsLingerMs: 300 });
    const used = () => c.snapshot().apps[uuid]?.memoryUsedBytes;

    // Nobody has looked: the row is there, without the metrics.
    expect(c.snapshot().apps[uuid]).toMatchObject({ state: "RUNNING", memoryUsedBytes: null });
    // A look (a /state.json read) brings the current ones, and new ones follow while it lingers.
    await c.warm();
    expect(used()).toBe(5 * MIB);
    await put("proc-monitor", `TaskMetrics.${uuid}`, metrics({ uuid, memoryUsageBytes: 6 * MIB }));
    await until("the new metrics", () => (used() === 6 * MIB ? true : undefined));

    // A browser's stream keeps them followed past the linger, and gets their changes as patches.
    const patches: Patch[] = [];
    const off = c.onPatches((p) => patches.push(...p));
    await new Promise((r) => setTimeout(r, 500));
    await put("proc-monitor", `TaskMetrics.${uuid}`, metrics({ uuid, memoryUsageBytes: 7 * MIB }));
    await until("a patch with the new metrics", () =>
      patches.find(
        (p) =>
          p.key === uuid && p.row !== null && "memoryUsedBytes" in p.row && p.row.memoryUsedBytes === 7 * MIB,
      ),
    );

    // The browser gone and the linger over: no longer followed, and the rows say so.
    off();
    await until("the metrics dropped", () => (used() === null ? true : undefined), 5_000);
    await put("proc-monitor", `TaskMetrics.${uuid}`, metrics({ uuid, memoryUsageBytes: 8 * MIB }));
    await new Promise((r) => setTimeout(r, 300));
    expect(used()).toBeNull();
    await c.warm();
    expect(used()).toBe(8 * MIB);
  });

  it("lists the instances answering $SRV.INFO with their metrics links, and says so when none answers", async () => {
    const worker = `testworker-${randomBytes(3).toString("hex")}`;
    const svcm = new Svcm(nc);
    let polls = 0;
    const c = await openCollector({
      metricsLingerMs: 1_000,
      pollServices: async () => {
        polls++;
        const r = await pollServices(bus.nc, 300);
        // Other tests' services on the shared server are not this test's business.
        return r.ok
          ? { ok: true, instances: r.instances.filter((i) => i.name === `eve-tasks-${worker}`) }
          : r;
      },
      servicePollIntervalMs: 200,
    });
    const row = () => c.snapshot().workers[worker];
    expect(row()).toBeUndefined();
    // Nobody looks: $SRV.INFO is not asked (a node's workers are not woken for a closed page).
    await new Promise((r) => setTimeout(r, 600));
    expect(polls).toBe(0);
    // A look asks at once (a one-off read also waits for the answers); then every poll interval
    // while a stream listens (and a linger after).
    await c.warm({ freshServices: true });
    expect(polls).toBe(1);
    expect(c.snapshot().meta.meta?.servicesPolledAt).not.toBeNull();
    const off = c.onPatches(() => undefined);

    const services = await Promise.all(
      ["http://127.0.0.1:9464/metrics", "javascript:alert(1)"].map((metricsUrl) =>
        svcm.add({
          name: `eve-tasks-${worker}`,
          version: "1.2.3",
          metadata: { node: "edge-9", metrics: metricsUrl },
        }),
      ),
    );
    const two = await until("two instances", () => (row()?.replicas === 2 ? row() : undefined));
    expect(two.instances.map((i) => i.metricsUrl)).toEqual(
      expect.arrayContaining([null, "http://127.0.0.1:9464/metrics"]),
    );
    expect(two.instances.every((i) => i.node === "edge-9" && i.version === "1.2.3")).toBe(true);
    expect(two.health).toBe("ok");

    await Promise.all(services.map((s) => s.stop()));
    await until("the worker gone from the table", () => (row() === undefined ? true : undefined));

    // The stream gone and the linger over: the polls stop.
    off();
    await new Promise((r) => setTimeout(r, 1_500));
    const after = polls;
    await new Promise((r) => setTimeout(r, 600));
    expect(polls).toBe(after);
  });

  it("asks $SRV.INFO again after a poll that failed", async () => {
    let calls = 0;
    const c = await openCollector({
      servicePollIntervalMs: 100,
      pollServices: () => {
        calls++;
        return calls === 1
          ? Promise.reject(new Error("connection closed"))
          : Promise.resolve({ ok: false, reason: "no service answers $SRV.INFO" });
      },
    });
    await c.warm({ freshServices: true });
    const off = c.onPatches(() => undefined);
    await until("a poll after the failed one", () =>
      c.snapshot().meta.meta?.servicesPolledAt ? true : undefined,
    );
    expect(calls).toBeGreaterThanOrEqual(2);
    off();
  });

  it("degrades to 'no service info' when nothing answers $SRV.INFO", async () => {
    const r = await pollServices(nc, 200).then((p) =>
      p.ok ? p.instances.filter((i) => i.name === "eve-tasks-nobody") : [],
    );
    expect(r).toEqual([]);
    const c = await openCollector({
      pollServices: () => Promise.resolve({ ok: false, reason: "no service answers $SRV.INFO" }),
    });
    await c.warm();
    await until("the poll", () => (c.snapshot().meta.meta?.servicesPolledAt ? true : undefined));
    expect(c.snapshot().meta.meta?.serviceNote).toBe("no service answers $SRV.INFO");
    expect(c.snapshot().workers["spec-builder"]).toMatchObject({ replicas: null, health: "unknown" });
  });
});
