// The metrics endpoint on loopback (no other server needed), read back with an independent parser
// of the exposition format.
import { createServer } from "node:net";
import type { AddressInfo, Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Counter, Histogram } from "prom-client";
import { ExpositionError, parseExposition, sampleValue, scrape } from "../../../test/harness/prometheus.js";
import { MetricsServerError, createMetricsRegistry, startMetricsServer } from "../src/index.js";
import type { MetricsServer } from "../src/index.js";

const servers: MetricsServer[] = [];
const blockers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await Promise.all(blockers.splice(0).map((b) => new Promise((r) => b.close(r))));
});

async function serve(registry = createMetricsRegistry({ worker: "w", node: "n1" }), port = 0) {
  const s = await startMetricsServer({ registry, port });
  servers.push(s);
  return s;
}

describe("the metrics endpoint", () => {
  it("serves the process metrics, every name eve_tasks_…, labelled with worker and node", async () => {
    const registry = createMetricsRegistry({ worker: "spec-builder", node: "edge-1" });
    const hits = new Counter({ name: "eve_tasks_test_hits_total", help: "hits", registers: [registry] });
    const s = await serve(registry);
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    hits.inc(3);
    const families = await scrape(s.url);
    expect([...families.keys()].every((n) => n.startsWith("eve_tasks_"))).toBe(true);
    for (const name of [
      "eve_tasks_process_cpu_seconds_total",
      "eve_tasks_process_resident_memory_bytes",
      "eve_tasks_nodejs_eventloop_lag_seconds",
      "eve_tasks_nodejs_heap_size_used_bytes",
    ]) {
      expect(families.has(name), name).toBe(true);
    }
    // The 1 s event-loop histogram's summaries would read "1 s + delay": not exported.
    expect(families.has("eve_tasks_nodejs_eventloop_lag_p99_seconds")).toBe(false);
    for (const f of families.values()) {
      for (const sample of f.samples)
        expect(sample.labels).toMatchObject({ worker: "spec-builder", node: "edge-1" });
    }
    expect(sampleValue(families, "eve_tasks_test_hits_total")).toBe(3);
    hits.inc();
    expect(sampleValue(await scrape(s.url), "eve_tasks_test_hits_total")).toBe(4);
    expect(sampleValue(families, "eve_tasks_process_resident_memory_bytes")).toBeGreaterThan(1e6);
  });

  it("takes any free port for 0, so two processes (replicas) never clash", async () => {
    const [a, b] = await Promise.all([serve(), serve()]);
    expect(a.port).not.toBe(b.port);
    expect(a.port).toBeGreaterThan(0);
  });

  it("refuses a port in use with an error naming it", async () => {
    const blocker = createServer();
    blockers.push(blocker);
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as AddressInfo).port;
    const err = await startMetricsServer({
      registry: createMetricsRegistry({ worker: "w", node: "n" }),
      port,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MetricsServerError);
    expect((err as Error).message).toBe(
      `cannot serve metrics on 127.0.0.1:${port}: port in use (another process, or a replica with the same fixed port: use 0)`,
    );
  });

  it("answers only GET and HEAD of /metrics", async () => {
    const s = await serve();
    expect((await fetch(s.url.replace("/metrics", "/"))).status).toBe(404);
    expect((await fetch(s.url, { method: "POST" })).status).toBe(405);
    const head = await fetch(s.url, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  it("without process metrics registers none (EVE_METRICS_PORT=off)", async () => {
    const registry = createMetricsRegistry({ worker: "w", node: "n", processMetrics: false });
    expect(await registry.getMetricsAsJSON()).toEqual([]);
  });

  it("histograms are cumulative with +Inf equal to _count", async () => {
    const registry = createMetricsRegistry({ worker: "w", node: "n", processMetrics: false });
    const h = new Histogram({
      name: "eve_tasks_test_seconds",
      help: "t",
      labelNames: ["kind"],
      buckets: [0.1, 1],
      registers: [registry],
    });
    h.observe({ kind: "a" }, 0.05);
    h.observe({ kind: "a" }, 0.5);
    h.observe({ kind: "a" }, 5);
    const families = parseExposition(await registry.metrics());
    expect(sampleValue(families, "eve_tasks_test_seconds_bucket", { kind: "a", le: "0.1" })).toBe(1);
    expect(sampleValue(families, "eve_tasks_test_seconds_bucket", { kind: "a", le: "+Inf" })).toBe(3);
    expect(sampleValue(families, "eve_tasks_test_seconds_count", { kind: "a" })).toBe(3);
  });
});

describe("the exposition parser used by the tests", () => {
  const ok = '# HELP eve_tasks_x_total x\n# TYPE eve_tasks_x_total counter\neve_tasks_x_total{a="b"} 1\n';
  it("reads valid text", () => {
    expect(sampleValue(parseExposition(ok), "eve_tasks_x_total", { a: "b" })).toBe(1);
  });
  it.each([
    ["a sample without # TYPE", "eve_tasks_y 1\n", /no # TYPE/],
    [
      "a counter not ending in _total",
      "# TYPE eve_tasks_c counter\neve_tasks_c 1\n",
      /does not end in _total/,
    ],
    ["an unquoted label", "# TYPE eve_tasks_g gauge\neve_tasks_g{a=b} 1\n", /not quoted/],
    ["a value that is no number", "# TYPE eve_tasks_g gauge\neve_tasks_g one\n", /not a number/],
    [
      "a family split in two",
      `${ok}# TYPE eve_tasks_g gauge\neve_tasks_g 1\neve_tasks_x_total{a="c"} 2\n`,
      /not together/,
    ],
    [
      "buckets that are not cumulative",
      '# TYPE eve_tasks_h histogram\neve_tasks_h_bucket{le="1"} 2\neve_tasks_h_bucket{le="+Inf"} 1\neve_tasks_h_sum 1\neve_tasks_h_count 1\n',
      /not cumulative/,
    ],
    [
      "a +Inf bucket that is not _count",
      '# TYPE eve_tasks_h histogram\neve_tasks_h_bucket{le="+Inf"} 1\neve_tasks_h_sum 1\neve_tasks_h_count 2\n',
      /differs from the \+Inf bucket/,
    ],
  ])("refuses %s", (_what, text, message) => {
    expect(() => parseExposition(text)).toThrow(message);
  });
  it("says which line is wrong", () => {
    expect(() => parseExposition("# TYPE eve_tasks_g gauge\n\neve_tasks_g{a=b} 1\n")).toThrow(
      ExpositionError,
    );
    expect(() => parseExposition("# TYPE eve_tasks_g gauge\n\neve_tasks_g{a=b} 1\n")).toThrow(/^line 3:/);
  });
});
