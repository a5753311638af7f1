import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { connect, usernamePasswordAuthenticator } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { Bucket, Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { pino } from "pino";
import type { Logger } from "pino";
import { natsInboxPrefix } from "@eve-tasks/schemas";
import type { Registry } from "prom-client";
import { assertMinimumServer, serverVersionOf } from "./server-version.js";
import { BusError } from "./errors.js";
import { busMetrics } from "./metrics.js";
import type { BusMetrics } from "./metrics.js";

/**
 * Who to connect as: a NATS user and its password, given as such or as a file holding it (the
 * file is read at each (re)connect, so a rotated password is picked up).
 */
export type NatsCredentials =
  | { readonly user: string; readonly password: string }
  | { readonly user: string; readonly passwordFile: string };

/** How to reach the bus. */
export interface BusOptions {
  /**
   * NATS URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`. A `user:password@` in the URLs
   * is taken as the credentials too (then `credentials` must not be given).
   */
  servers: string;
  /** Connection name shown by the server (`nats server report connections`): the worker's name. */
  name: string;
  /**
   * The NATS user to connect as; none connects anonymously (a server that asks for no
   * credentials). A user's replies and consumer deliveries use its private inbox prefix
   * `_INBOX_<user>` (natsInboxPrefix), which is all a user may subscribe to on the project's
   * nats-servers.
   */
  credentials?: NatsCredentials;
  logger?: Logger;
  /** Give up connecting after this long at start-up (default 10 s). Reconnects after that never give up. */
  connectTimeoutMs?: number;
  /** The worker's Prometheus registry, where the bus's metrics go (see metrics.ts); none: not exported. */
  metrics?: Registry;
}

/** Credentials that cannot be used: a password file missing, unreadable or empty; or given twice. */
export class NatsCredentialsError extends BusError {
  override name = "NatsCredentialsError";
  constructor(
    message: string,
    readonly file?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The password in `text` (a password file's content): without surrounding whitespace (a final newline). */
function passwordOf(text: string, file: string): string {
  const password = text.trim();
  if (password === "") throw new NatsCredentialsError(`NATS password file ${file} is empty`, file);
  return password;
}

function passwordFileError(file: string, err: unknown): NatsCredentialsError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === "ENOENT"
      ? "no such file"
      : code === "EACCES" || code === "EPERM"
        ? `permission denied (it is readable by its owner only${
            typeof process.getuid === "function" && process.getuid() !== 0 ? "; this process is not root" : ""
          })`
        : (err as Error).message;
  return new NatsCredentialsError(`cannot read the NATS password file ${file}: ${why}`, file, { cause: err });
}

/** Reads a password file (the whole file, surrounding whitespace dropped). */
export async function readPasswordFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw passwordFileError(file, err);
  }
  return passwordOf(text, file);
}

/** {@link readPasswordFile}, synchronously (for the client's authenticator at a reconnect). */
function readPasswordFileSync(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw passwordFileError(file, err);
  }
  return passwordOf(text, file);
}

/** The connect options carrying `credentials` (read once now, so a bad file fails the start clearly). */
async function authOptions(
  credentials: NatsCredentials,
  logger: Logger,
): Promise<{ authenticator: ReturnType<typeof usernamePasswordAuthenticator>; inboxPrefix: string }> {
  const { user } = credentials;
  let password: () => string;
  if ("passwordFile" in credentials) {
    const file = credentials.passwordFile;
    let last = await readPasswordFile(file);
    password = () => {
      try {
        last = readPasswordFileSync(file);
      } catch (err) {
        logger.warn({ err, file }, "cannot read the NATS password file again; using the one read before");
      }
      return last;
    };
  } else {
    if (credentials.password === "") throw new NatsCredentialsError(`the NATS password of ${user} is empty`);
    const fixed = credentials.password;
    password = () => fixed;
  }
  return { authenticator: usernamePasswordAuthenticator(user, password), inboxPrefix: natsInboxPrefix(user) };
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
  /** The connection's inbox prefix: `_INBOX_<user>` (natsInboxPrefix), `_INBOX` without a user. */
  readonly inboxPrefix: string;
  readonly logger: Logger;
  /** What publications, subscriptions, work queues and outboxes on this connection measure. */
  readonly metrics: BusMetrics;
  /** Opens (and caches) an agent's bucket. The bucket must exist: see ensureBuckets. */
  bucket(agent: string): Promise<KV>;
  /** Finishes in-flight work on the connection, then closes it. */
  drain(): Promise<void>;
  /** Closes at once. */
  close(): Promise<void>;
}

/**
 * Opens an agent's bucket. A bucket whose stream is a mirror of another domain's bucket (a
 * device's `controller`, mirroring the hub's `controller-<node>`) holds the origin's subjects:
 * nats.js reads it by them once it has seen the stream's config, which `Kvm.open` does not look
 * at, hence the stream info here (one request per bucket and connection).
 */
async function openBucket(kvm: Kvm, jsm: JetStreamManager, agent: string): Promise<KV> {
  const kv = await kvm.open(agent);
  try {
    const info = await jsm.streams.info(`KV_${agent}`);
    if (info.config.mirror && kv instanceof Bucket) kv.initializePrefixes(info);
  } catch {
    // Not there yet (or not readable): the plain bucket, as before; reads then fail as they would.
  }
  return kv;
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
  if (user !== undefined && options.credentials !== undefined) {
    throw new NatsCredentialsError(
      "NATS credentials given twice: in the URL and as a user and password; give them one way",
    );
  }
  const credentials: NatsCredentials | undefined =
    options.credentials ?? (user !== undefined ? { user, password: pass ?? "" } : undefined);
  const auth = credentials ? await authOptions(credentials, logger) : {};
  while (!nc) {
    try {
      nc = await connect({
        servers,
        ...auth,
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
      // A refused user or password does not heal by trying again.
      if (isAuthorizationError(err)) {
        const who = credentials ? `as NATS user ${credentials.user}` : "without credentials";
        throw new NatsCredentialsError(
          `NATS at ${servers.join(",")} refused the connection ${who}: ${(err as Error).message}`,
          undefined,
          { cause: err },
        );
      }
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
  logger.debug(
    { event: "nats-connected", serverVersion, natsUser: credentials?.user ?? null },
    "connected to NATS",
  );
  return {
    nc,
    js,
    jsm,
    serverVersion,
    inboxPrefix: credentials ? natsInboxPrefix(credentials.user) : "_INBOX",
    logger,
    metrics: busMetrics(options.metrics),
    bucket(agent) {
      let b = buckets.get(agent);
      if (!b) {
        b = openBucket(kvm, jsm, agent);
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

/** Whether `err` (from connecting) is the server refusing the credentials, or their absence. */
export function isAuthorizationError(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (/authorization violation|authentication/i.test(e.message)) return true;
  }
  return false;
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
