/**
 * A worker's Prometheus metrics (prom-client): one registry per process, every metric named
 * `eve_tasks_…` and labelled with the worker and node, served as text on
 * `http://127.0.0.1:<EVE_METRICS_PORT>/metrics` (0: a free port the kernel picks, so replicas of
 * a worker on one node never clash; the URL is announced in the worker's `$SRV.INFO` and its
 * liveness file).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry, collectDefaultMetrics } from "prom-client";
import { METRICS_PREFIX } from "@eve-tasks/schemas";

export { Registry } from "prom-client";

/** Options of {@link createMetricsRegistry}. */
export interface MetricsRegistryOptions {
  /** The worker's name: label `worker` on every metric. */
  worker: string;
  /** The node's name: label `node` on every metric. */
  node: string;
  /** Whether to collect the process's own metrics (CPU, memory, heap, event loop, GC); default true. */
  processMetrics?: boolean;
}

/**
 * How often prom-client's event-loop delay histogram samples, in ms. Its default (10 ms) wakes an
 * idle worker 100 times a second: about 1% of a core per worker, measured. Once a second costs
 * nothing measurable.
 */
export const EVENT_LOOP_SAMPLE_MS = 1000;

/**
 * prom-client's summaries of that histogram: each sample is the interval between two timer
 * callbacks, so at a 1 s interval they read "1 s + delay", which would only mislead. The event
 * loop's delay stays measured by `eve_tasks_nodejs_eventloop_lag_seconds` (at each scrape).
 */
const EVENT_LOOP_HISTOGRAM_SUMMARIES = ["min", "max", "mean", "stddev", "p50", "p90", "p99"].map(
  (s) => `${METRICS_PREFIX}nodejs_eventloop_lag_${s}_seconds`,
);

/**
 * A registry with the worker's process metrics (prom-client's default set, prefixed
 * `eve_tasks_`: `eve_tasks_process_cpu_seconds_total`, `eve_tasks_process_resident_memory_bytes`,
 * `eve_tasks_nodejs_eventloop_lag_seconds`, `eve_tasks_nodejs_heap_size_used_bytes`, GC
 * durations, …) and `worker` and `node` as default labels.
 */
export function createMetricsRegistry(opts: MetricsRegistryOptions): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ worker: opts.worker, node: opts.node });
  if (opts.processMetrics ?? true) {
    collectDefaultMetrics({
      register: registry,
      prefix: METRICS_PREFIX,
      eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
    });
    for (const name of EVENT_LOOP_HISTOGRAM_SUMMARIES) registry.removeSingleMetric(name);
  }
  return registry;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://127.0.0.1:<port>/metrics`. */
  readonly url: string;
  /** The port it listens on (the one picked when asked for 0). */
  readonly port: number;
  /** Stops listening and closes idle connections. */
  close(): Promise<void>;
}

/** The metrics endpoint could not listen (the port is taken, or not allowed). */
export class MetricsServerError extends Error {
  override readonly name = "MetricsServerError";
  constructor(
    message: string,
    readonly port: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  registry: Registry;
  /** 0: any free port. */
  port: number;
  /** Default `127.0.0.1`: metrics are for the node's own Prometheus (or an SSH tunnel), never the network. */
  host?: string;
}

/**
 * Serves `registry` in Prometheus' text format at `GET /metrics` (and HEAD); anything else is 404
 * (405 for another method on /metrics). A failure to collect is a 500 with the reason.
 *
 * @throws {MetricsServerError} when it cannot listen, e.g. `EVE_METRICS_PORT=9464: port in use`.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const host = opts.host ?? "127.0.0.1";
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: try /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end();
      return;
    }
    opts.registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": opts.registry.contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: unknown) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`cannot collect metrics: ${(err as Error).message}\n`);
      },
    );
  });
  // Scrapes are seconds apart: an idle keep-alive connection need not hold a socket longer.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why =
        err.code === "EADDRINUSE"
          ? "port in use (another process, or a replica with the same fixed port: use 0)"
          : err.code === "EACCES"
            ? "permission denied"
            : err.message;
      reject(
        new MetricsServerError(`cannot serve metrics on ${host}:${opts.port}: ${why}`, opts.port, {
          cause: err,
        }),
      );
    };
    server.once("error", onError);
    server.listen({ port: opts.port, host }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  // The endpoint alone never keeps the process alive.
  server.unref();
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}/metrics`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
