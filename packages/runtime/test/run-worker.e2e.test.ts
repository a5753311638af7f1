// A real worker process on the built runtime against the harness's nats-server: liveness, the
// order of its cleanup, its metrics endpoint and its NATS service ($SRV.PING/INFO/STATS and an
// endpoint), and what it does when NATS or its metrics port is not there.
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import type { AddressInfo, Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { z } from "zod";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import type { ServiceIdentity, ServiceInfo, ServiceStats } from "@nats-io/services";
import { WorkerServiceMetadataSchema } from "@eve-tasks/schemas";
import { sampleValue, scrape } from "../../../test/harness/prometheus.js";
import { readHeartbeats } from "../src/index.js";

const fixture = fileURLToPath(new URL("./fixtures/worker.mjs", import.meta.url));
const started: number[] = [];
let dir: string;
let nc: NatsConnection;
/** A node name of this file's own, so other files' services on the shared server are told apart. */
const NODE = `rw${process.pid}`;

beforeAll(async () => {
  nc = await connect({ servers: inject("natsUrl") });
});
afterAll(async () => {
  await nc.close();
});
afterEach(async () => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  pid: number;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

async function startFixture(env: Record<string, string> = {}): Promise<Run> {
  dir = await mkdtemp(path.join(tmpdir(), "eve-rw-"));
  const child = spawn(process.execPath, [fixture], {
    env: {
      PATH: process.env.PATH ?? "",
      EVE_RUN_DIR: dir,
      EVE_DATA_DIR: dir,
      EVE_NODE: NODE,
      NATS_URL: inject("natsUrl"),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child.pid!);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on("exit", (code) => resolve({ code, stdout, stderr })),
  );
  return { pid: child.pid!, done };
}

async function until<T>(probe: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

const running = (run: Run) =>
  until(async () =>
    (await readHeartbeats(path.join(dir, "health"))).find((h) => h.pid === run.pid && h.state === "running"),
  );

/** Every answer of the `eve-tasks-fixture` services to `verb`, of this file's node. */
async function ask<T extends ServiceIdentity>(verb: "ping" | "info" | "stats"): Promise<T[]> {
  const out: T[] = [];
  for await (const r of await new Svcm(nc).client()[verb]("eve-tasks-fixture")) out.push(r as T);
  return out.filter((r) => r.metadata?.node === NODE);
}

const echo = z.object({ text: z.string().nullable(), error: z.string().nullable() });
async function request(text: unknown): Promise<z.infer<typeof echo>> {
  const m = await nc.request(`fixture.${NODE}.echo`, JSON.stringify(text), { timeout: 5000 });
  return echo.parse(m.json());
}

describe("runWorker with NATS", () => {
  it("heartbeats while running and on SIGTERM runs cleanup in reverse order, then exits 0", async () => {
    const run = await startFixture();
    await running(run);
    process.kill(run.pid, "SIGTERM");
    const { code, stdout } = await run.done;
    expect(code).toBe(0);
    const msgs = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { msg: string; step?: string });
    expect(msgs.map((m) => m.msg)).toContain("fixture ready");
    const steps = msgs.filter((m) => m.msg === "shutdown: step started").map((m) => m.step);
    // main's own steps, then the service, NATS, the metrics endpoint, the liveness file.
    expect(steps).toEqual([
      "registered second",
      "registered first",
      "stop the NATS service",
      "drain NATS",
      "close the metrics endpoint",
      "remove liveness file",
    ]);
    expect(msgs.at(-1)?.msg).toBe("shutdown: stopped");
    expect(await readdir(path.join(dir, "health"))).toEqual([]);
  });

  it("exits 1 when main throws, after cleaning up", async () => {
    const run = await startFixture({ FIXTURE_FAIL: "true" });
    const { code, stdout } = await run.done;
    expect(code).toBe(1);
    expect(stdout).toContain("worker failed to start");
    expect(stdout).toContain("cleanup: registered first");
  });

  it("exits 1, saying where it tried, when NATS is not there", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const run = await startFixture({ NATS_URL: `nats://127.0.0.1:${port}` });
    const { code, stdout } = await run.done;
    expect(code).toBe(1);
    expect(stdout).toContain(`cannot connect to NATS at nats://127.0.0.1:${port}`);
  });

  it("is NATS service eve-tasks-fixture whose metadata names its node, version and metrics endpoint", async () => {
    const run = await startFixture();
    const beat = await running(run);
    const [info] = await ask<ServiceInfo>("info");
    expect(info).toMatchObject({ name: "eve-tasks-fixture", version: "0.1.0" });
    const metadata = WorkerServiceMetadataSchema.parse(info!.metadata);
    expect(metadata).toEqual({ node: NODE, version: "0.1.0", metrics: beat.metrics, pid: String(run.pid) });
    expect(info!.endpoints).toEqual([{ name: "echo", subject: `fixture.${NODE}.echo`, queue_group: "q" }]);
    expect((await ask("ping")).map((p) => p.id)).toEqual([info!.id]);

    const families = await scrape(metadata.metrics);
    expect(
      sampleValue(families, "eve_tasks_process_cpu_seconds_total", { worker: "fixture", node: NODE }),
    ).toBeGreaterThan(0);
    expect(families.has("eve_tasks_kv_writes_total")).toBe(true);
  });

  it("answers an endpoint with its schemas; STATS and eve_tasks_rpc_duration_seconds count requests and errors", async () => {
    const run = await startFixture();
    const beat = await running(run);
    expect(await request({ text: "hi" })).toEqual({ text: "hi", error: null });
    expect(await request({ text: "throw" })).toEqual({ text: null, error: "asked to throw" });
    const invalid = await request({ nope: 1 });
    expect(invalid.text).toBeNull();
    expect(invalid.error).toMatch(/^invalid request: /);

    const [stats] = await ask<ServiceStats>("stats");
    expect(stats?.endpoints?.[0]).toMatchObject({ name: "echo", num_requests: 3 });
    const families = await scrape(beat.metrics!);
    const count = (outcome: string) =>
      sampleValue(families, "eve_tasks_rpc_duration_seconds_count", { endpoint: "echo", outcome });
    expect(count("ok")).toBe(1);
    expect(count("error")).toBe(2);
    // The reply came after the handler's 5 ms: the histogram measures to the reply.
    expect(
      sampleValue(families, "eve_tasks_rpc_duration_seconds_sum", { endpoint: "echo", outcome: "ok" }),
    ).toBeGreaterThanOrEqual(0.005);
  });

  it("runs without metrics when its fixed port is taken, and says so", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    try {
      const port = (blocker.address() as AddressInfo).port;
      const run = await startFixture({ EVE_METRICS_PORT: String(port) });
      const beat = await running(run);
      expect(beat.metrics).toBeUndefined();
      const [info] = await ask<ServiceInfo>("info");
      expect(info?.metadata?.metrics).toBe("");
      expect(await request({ text: "still here" })).toEqual({ text: "still here", error: null });
      process.kill(run.pid, "SIGTERM");
      const { stdout } = await run.done;
      expect(stdout).toContain(`cannot serve metrics on 127.0.0.1:${port}: port in use`);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it("with EVE_METRICS_PORT=off serves none and announces none", async () => {
    const run = await startFixture({ EVE_METRICS_PORT: "off" });
    const beat = await running(run);
    expect(beat.metrics).toBeUndefined();
    const [info] = await ask<ServiceInfo>("info");
    expect(info?.metadata?.metrics).toBe("");
  });
});
