import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { pino } from "pino";
import type { Logger } from "pino";
import { assertMinimumServer, serverVersionOf } from "./server-version.js";
import { BusError } from "./errors.js";

/** How to reach the bus. */
export interface BusOptions {
  /** NATS URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`. */
  servers: string;
  /** Connection name shown by the server (`nats server report connections`): the worker's name. */
  name: string;
  logger?: Logger;
  /** Give up connecting after this long at start-up (default 10 s). Reconnects after that never give up. */
  connectTimeoutMs?: number;
}

/**
 * A connection to the bus: the NATS connection and the JetStream handles every
 * publication, subscription, work queue and outbox is built on. Workers never touch
 * NATS directly; they go through this package.
 */
export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly serverVersion: string;
  readonly logger: Logger;
  /** Opens (and caches) an agent's bucket. The bucket must exist: see ensureBuckets. */
  bucket(agent: string): Promise<KV>;
  /** Finishes in-flight work on the connection, then closes it. */
  drain(): Promise<void>;
  /** Closes at once. */
  close(): Promise<void>;
}

/**
 * Connects to NATS, checks the server version (refusing one older than 2.9) and sets
 * up JetStream. Reconnects forever once connected; the logger says when it is
 * disconnected and when it is back.
 */
export async function connectBus(options: BusOptions): Promise<Bus> {
  const logger = options.logger ?? pino({ level: "silent" });
  const deadline = Date.now() + (options.connectTimeoutMs ?? 10_000);
  let nc: NatsConnection | undefined;
  let lastErr: unknown;
  // At start-up the server may still be coming up (the launcher starts it alongside
  // the workers): try again until the deadline, then say where we tried.
  const { servers, user, pass } = splitCredentials(options.servers);
  while (!nc) {
    try {
      nc = await connect({
        servers,
        ...(user !== undefined ? { user, pass } : {}),
        name: options.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: Math.max(500, Math.min(5000, deadline - Date.now())),
        // Otherwise every request (each KV put) captures a stack trace for a possible error:
        // a measurable share of a worker's CPU. Our errors name the agent and key instead.
        noAsyncTraces: true,
      });
    } catch (err) {
      lastErr = err;
      if (Date.now() + 250 >= deadline) {
        throw new BusError(`cannot connect to NATS at ${servers.join(",")}: ${(err as Error).message}`, {
          cause: lastErr,
        });
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const serverVersion = serverVersionOf(nc);
  try {
    assertMinimumServer(serverVersion);
  } catch (err) {
    await nc.close();
    throw err;
  }
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect") {
        logger.info({ event: `nats-${s.type}`, server: s.server }, `nats ${s.type}`);
      }
    }
  })();
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(js);
  const buckets = new Map<string, Promise<KV>>();
  logger.debug({ event: "nats-connected", serverVersion }, "connected to NATS");
  return {
    nc,
    js,
    jsm,
    serverVersion,
    logger,
    bucket(agent) {
      let b = buckets.get(agent);
      if (!b) {
        b = kvm.open(agent);
        b.catch(() => buckets.delete(agent));
        buckets.set(agent, b);
      }
      return b;
    },
    async drain() {
      if (!nc.isClosed()) await nc.drain();
    },
    async close() {
      if (!nc.isClosed()) await nc.close();
    },
  };
}

/**
 * Splits `user:password@` out of NATS URLs (the client would otherwise drop it and connect
 * without credentials), so NATS_URL alone can carry a worker's NATS user. Every URL that has
 * credentials must have the same ones.
 */
export function splitCredentials(urls: string): { servers: string[]; user?: string; pass?: string } {
  let creds: { user: string; pass: string } | undefined;
  const servers = urls
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const m = /^([a-z]+:\/\/)?([^@/]*)@(.*)$/i.exec(s);
      if (!m) return s;
      const [userPart = "", passPart = ""] = (m[2] ?? "").split(/:(.*)/s);
      const c = { user: decodeURIComponent(userPart), pass: decodeURIComponent(passPart) };
      if (creds && (creds.user !== c.user || creds.pass !== c.pass)) {
        throw new BusError(
          "NATS_URL: every server URL with credentials must carry the same user and password",
        );
      }
      creds = c;
      return `${m[1] ?? ""}${m[3] ?? ""}`;
    });
  return creds ? { servers, user: creds.user, pass: creds.pass } : { servers };
}
