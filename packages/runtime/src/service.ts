/**
 * Every worker is a NATS service (the NATS "micro" protocol, @nats-io/services): it answers
 * `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` as `eve-tasks-<worker>`, one instance per process
 * (replicas included), with its node, version and metrics URL as metadata. Request/reply
 * subjects a worker answers are endpoints of that service, so they show in `$SRV.INFO` and their
 * request counts, errors and processing times in `$SRV.STATS`.
 */
import { readFileSync } from "node:fs";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import type { Service, ServiceMsg } from "@nats-io/services";
import { Histogram } from "prom-client";
import type { Registry } from "prom-client";
import type { z } from "zod";
import {
  METRICS_PREFIX,
  WORKER_SERVICE_PREFIX,
  WorkerServiceMetadataSchema,
  decodeValue,
  encodeValue,
  workerServiceName,
} from "@eve-tasks/schemas";
import type { WorkerServiceMetadata } from "@eve-tasks/schemas";
import type { Logger } from "./logging.js";

export type { Service } from "@nats-io/services";

/** The eve-tasks version (every workspace is versioned with the project). */
export function projectVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** Options of {@link startWorkerService}. */
export interface WorkerServiceOptions {
  /** The worker's name: the service is `eve-tasks-<worker>`. */
  worker: string;
  node: string;
  /** The metrics endpoint's URL, or "" when there is none. */
  metricsUrl: string;
  /** Default: {@link projectVersion}. */
  version?: string;
  description?: string;
}

/** The service metadata of a worker (validated: what `$SRV.INFO` readers may rely on). */
export function workerServiceMetadata(o: {
  node: string;
  version: string;
  metricsUrl: string;
  pid?: number;
}): WorkerServiceMetadata {
  return WorkerServiceMetadataSchema.parse({
    node: o.node,
    version: o.version,
    metrics: o.metricsUrl,
    pid: String(o.pid ?? process.pid),
  });
}

/**
 * Registers this process as an instance of service `eve-tasks-<worker>` on `nc`. It answers
 * `$SRV.PING|INFO|STATS`, `$SRV.<verb>.eve-tasks-<worker>` and `$SRV.<verb>.eve-tasks-<worker>.<id>`
 * until stopped (or the connection closes).
 */
export async function startWorkerService(nc: NatsConnection, o: WorkerServiceOptions): Promise<Service> {
  const version = o.version ?? projectVersion();
  return new Svcm(nc).add({
    name: workerServiceName(o.worker),
    version,
    description: o.description ?? `eve-tasks ${o.worker} worker`,
    metadata: workerServiceMetadata({ node: o.node, version, metricsUrl: o.metricsUrl }),
  });
}

/** What {@link serveEndpoint} answers with. */
export interface EndpointOptions<Req extends z.ZodType, Rep extends z.ZodType> {
  /** The endpoint's name in `$SRV.INFO` / `$SRV.STATS`, e.g. `signal`. */
  name: string;
  /** The subject it answers, e.g. `eve.rpc.task-executor.<node>.signal`. */
  subject: string;
  request: Req;
  reply: Rep;
  /** Called for every valid request; its result is the reply. A throw becomes `onError`'s reply. */
  handle(request: z.output<Req>): Promise<z.input<Rep>> | z.input<Rep>;
  /** The reply to an invalid request or a handler failure (`message` says what went wrong). */
  onError(message: string): z.input<Rep>;
  logger: Logger;
  /** Where `eve_tasks_rpc_duration_seconds` is recorded (the worker's registry). */
  metrics?: Registry;
}

const RPC_DURATION = `${METRICS_PREFIX}rpc_duration_seconds`;

/**
 * `eve_tasks_rpc_duration_seconds{endpoint, outcome}` of `registry`: from a request's arrival to
 * its reply (`$SRV.STATS` counts requests, but its processing time ends when an asynchronous
 * handler has only started). `outcome` is `ok` or `error` (invalid request, or the handler threw).
 */
function rpcDuration(registry: Registry): Histogram<"endpoint" | "outcome"> {
  const existing = registry.getSingleMetric(RPC_DURATION);
  if (existing) return existing as Histogram<"endpoint" | "outcome">;
  return new Histogram({
    name: RPC_DURATION,
    help: "Time from a request's arrival at a worker's endpoint to its reply, in seconds.",
    labelNames: ["endpoint", "outcome"],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 30, 60],
    registers: [registry],
  });
}

/**
 * Adds a request/reply endpoint with a schema on both sides to `service`. An undecodable request
 * gets `onError`'s reply naming the problem (and counts as an error in `$SRV.STATS`); nothing
 * throws out. Requests are handled concurrently, each replied to when its handler settles.
 */
export function serveEndpoint<Req extends z.ZodType, Rep extends z.ZodType>(
  service: Service,
  o: EndpointOptions<Req, Rep>,
): void {
  const duration = o.metrics ? rpcDuration(o.metrics) : undefined;
  const respond = (
    msg: ServiceMsg,
    reply: z.input<Rep>,
    failed: string | undefined,
    started: number,
  ): void => {
    duration?.observe(
      { endpoint: o.name, outcome: failed === undefined ? "ok" : "error" },
      (performance.now() - started) / 1000,
    );
    if (!msg.reply) return;
    const data = encodeValue(o.reply, reply, { type: "reply" });
    // respondError marks the request as failed in $SRV.STATS (num_errors, last_error) and puts the
    // reason in the Nats-Service-Error headers; the body is the same reply either way.
    if (failed !== undefined) msg.respondError(400, failed.split("\n", 1)[0] ?? failed, data);
    else msg.respond(data);
  };
  service.addEndpoint(o.name, {
    subject: o.subject,
    handler: (err, msg) => {
      if (err) return void o.logger.warn({ err, subject: o.subject }, "endpoint subscription ended");
      const started = performance.now();
      void (async () => {
        const r = decodeValue(o.request, msg.data);
        if (!r.ok) {
          const message = `invalid request: ${r.message}`;
          return respond(msg, o.onError(message), message, started);
        }
        let reply: z.input<Rep>;
        try {
          reply = await o.handle(r.value);
        } catch (e) {
          const message = (e as Error).message;
          return respond(msg, o.onError(message), message, started);
        }
        respond(msg, reply, undefined, started);
      })().catch((e: unknown) => o.logger.error({ err: e, subject: o.subject }, "cannot reply"));
    },
  });
}

/** One worker process found by {@link discoverWorkers}. */
export interface DiscoveredWorker {
  /** The worker, e.g. `task-executor` (its service name without `eve-tasks-`). */
  readonly worker: string;
  /** The service instance's id (one per process). */
  readonly id: string;
  readonly version: string;
  /** Its `$SRV.INFO` metadata (node, version, metrics URL, pid), as validated. */
  readonly metadata: WorkerServiceMetadata;
  /** When the instance started (from `$SRV.STATS`), or null when it did not answer STATS. */
  readonly started: string | null;
  /** Its endpoints with their request and error counts (from `$SRV.STATS`). */
  readonly endpoints: readonly { name: string; subject: string; requests: number; errors: number }[];
}

/**
 * Every eve-tasks worker process that answers `$SRV.INFO` (and `$SRV.STATS`) within `maxWaitMs`,
 * sorted by worker, node and pid. Services of other projects, and instances whose metadata is not
 * a worker's, are left out.
 */
export async function discoverWorkers(
  nc: NatsConnection,
  o: { maxWaitMs: number },
): Promise<DiscoveredWorker[]> {
  const client = new Svcm(nc).client({ strategy: "timer", maxWait: o.maxWaitMs });
  const [infos, stats] = await Promise.all([client.info(), client.stats()]);
  const statsById = new Map<string, Awaited<ReturnType<Service["stats"]>>>();
  const collectStats = (async () => {
    for await (const s of stats) statsById.set(s.id, s);
  })();
  const found: DiscoveredWorker[] = [];
  for await (const info of infos) {
    if (!info.name.startsWith(WORKER_SERVICE_PREFIX)) continue;
    const metadata = WorkerServiceMetadataSchema.safeParse(info.metadata ?? {});
    if (!metadata.success) continue;
    found.push({
      worker: info.name.slice(WORKER_SERVICE_PREFIX.length),
      id: info.id,
      version: info.version,
      metadata: metadata.data,
      started: null,
      endpoints: info.endpoints.map((e) => ({ name: e.name, subject: e.subject, requests: 0, errors: 0 })),
    });
  }
  await collectStats;
  return found
    .map((w) => {
      const s = statsById.get(w.id);
      if (!s) return w;
      return {
        ...w,
        started: s.started,
        endpoints: (s.endpoints ?? []).map((e) => ({
          name: e.name,
          subject: e.subject,
          requests: e.num_requests,
          errors: e.num_errors,
        })),
      };
    })
    .sort(
      (a, b) =>
        a.worker.localeCompare(b.worker) ||
        a.metadata.node.localeCompare(b.metadata.node) ||
        Number(a.metadata.pid) - Number(b.metadata.pid),
    );
}
