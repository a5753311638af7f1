/**
 * Which NATS server the CLI talks to, as which NATS user, and connecting to it with one clear
 * line on failure.
 *
 * Credentials, first found wins:
 * 1. NATS_USER with NATS_PASSWORD_FILE (or NATS_PASSWORD), or a `user:password@` in the URL;
 * 2. the ones `npm start` generated, `<EVE_DATA_DIR>/nats-credentials/<user>.password` (EVE_DATA_DIR
 *    default `./.data`), when that directory exists and the server is on loopback (where `npm
 *    start`'s nats-server listens; they are never sent elsewhere): user `viewer` for commands that
 *    only read, `controller` for those that write. The files are root's (mode 0600): another user
 *    gets an error saying so;
 * 3. none (a server that asks for no credentials).
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import {
  BusError,
  NatsCredentialsError,
  ServerVersionError,
  connectBus,
  isStreamNotFound,
  splitCredentials,
  streamOf,
} from "@eve-tasks/bus";
import type { Bus, NatsCredentials } from "@eve-tasks/bus";
import { natsCredentialsDir, natsPasswordFile } from "@eve-tasks/embedded";
import { ConfigError, natsConnection } from "@eve-tasks/runtime";
import { UserError } from "./errors.js";

/** The server used when neither `--server` nor `NATS_URL` names one. */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/** How long the CLI tries to connect before it gives up. */
export const CONNECT_TIMEOUT_MS = 2500;

/** What a command does on the bus: only read, or also write (the controller's bucket, signals). */
export type CliAccess = "read" | "write";

/** The NATS user of `npm start`'s credentials for each access. */
export const CLI_NATS_USERS = { read: "viewer", write: "controller" } as const satisfies Record<
  CliAccess,
  string
>;

/** Environment variables, as `process.env` holds them. */
type Env = Readonly<Record<string, string | undefined>>;

/** Where a command connects, and what for. */
export interface NatsTarget {
  /** The NATS URL(s) as given or defaulted: what messages show. */
  readonly url: string;
  readonly access: CliAccess;
  /** Where NATS_USER, NATS_PASSWORD(_FILE) and EVE_DATA_DIR come from. */
  readonly env: Env;
}

/** The NATS URL: the `--server` flag, else `NATS_URL`, else {@link DEFAULT_NATS_URL}. */
export function resolveServer(flag: string | undefined, env: Env): string {
  const fromFlag = flag?.trim();
  if (fromFlag) return fromFlag;
  const fromEnv = env.NATS_URL?.trim();
  return fromEnv || DEFAULT_NATS_URL;
}

/** The target of a command: the server ({@link resolveServer}) and its access. */
export function natsTarget(flag: string | undefined, env: Env, access: CliAccess): NatsTarget {
  return { url: resolveServer(flag, env), access, env };
}

/** The one line printed when NATS cannot be reached. */
export function unreachableMessage(server: string): string {
  return `cannot reach NATS at ${server}: is \`npm start\` running? set NATS_URL (or --server) to the right server`;
}

/** Whether every URL of `urls` names a loopback address. */
export function isLoopbackServer(urls: string): boolean {
  const { servers } = splitCredentials(urls);
  return (
    servers.length > 0 &&
    servers.every((s) => {
      let host: string;
      try {
        host = new URL(s.includes("://") ? s : `nats://${s}`).hostname;
      } catch {
        return false;
      }
      return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
    })
  );
}

/** How the CLI authenticates for `target`, and a few words on where that came from (for errors). */
export interface CliCredentials {
  readonly credentials?: NatsCredentials;
  /** e.g. `as NATS user viewer (.data/nats-credentials/viewer.password)`. */
  readonly how: string;
}

/**
 * The credentials for `target` (see the module comment for the order).
 *
 * @throws {UserError} on a half-given NATS_USER / password, or `npm start`'s credentials that this
 *   user may not read.
 */
export async function cliCredentials(target: NatsTarget): Promise<CliCredentials> {
  let explicit;
  try {
    explicit = natsConnection({
      NATS_URL: target.url,
      NATS_USER: target.env.NATS_USER || undefined,
      NATS_PASSWORD: target.env.NATS_PASSWORD || undefined,
      NATS_PASSWORD_FILE: target.env.NATS_PASSWORD_FILE
        ? path.resolve(target.env.NATS_PASSWORD_FILE)
        : undefined,
    });
  } catch (err) {
    if (err instanceof ConfigError) throw new UserError(err.message, 1, { cause: err });
    throw err;
  }
  if (explicit.credentials) {
    return {
      credentials: explicit.credentials,
      how: `as NATS user ${explicit.credentials.user} (NATS_USER)`,
    };
  }
  if (splitCredentials(target.url).user !== undefined) return { how: "with the credentials in the URL" };
  if (!isLoopbackServer(target.url)) return { how: "without credentials" };

  const dataDir = path.resolve(target.env.EVE_DATA_DIR || ".data");
  const dir = natsCredentialsDir(dataDir);
  const user = CLI_NATS_USERS[target.access];
  const passwordFile = natsPasswordFile(dir, user);
  try {
    await stat(passwordFile);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return { how: "without credentials" };
    if (code === "EACCES" || code === "EPERM") {
      const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
      throw new UserError(
        `cannot read the NATS credentials \`npm start\` made (${passwordFile}: permission denied): ` +
          `they are root's, mode 0600, and this is ${uid === undefined ? "another user" : `uid ${uid}`}. ` +
          `Run eve-tasks as root, or connect as a NATS user of your own: NATS_USER with NATS_PASSWORD_FILE`,
        1,
        { cause: err },
      );
    }
    throw err;
  }
  return { credentials: { user, passwordFile }, how: `as NATS user ${user} (${passwordFile})` };
}

/**
 * Connects to NATS for `target` as `eve-tasks-cli`. An unreachable server, one too old, refused or
 * unusable credentials are each a UserError with one line saying what to do.
 */
export async function connectCli(target: NatsTarget): Promise<Bus> {
  const { credentials, how } = await cliCredentials(target);
  try {
    return await connectBus({
      servers: target.url,
      name: "eve-tasks-cli",
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      credentials,
    });
  } catch (err) {
    if (err instanceof ServerVersionError) throw new UserError(`NATS at ${target.url}: ${err.message}`);
    if (err instanceof NatsCredentialsError) {
      const hint =
        credentials === undefined
          ? "; connect as a NATS user: NATS_USER with NATS_PASSWORD_FILE (or, for `npm start`'s server, " +
            "run eve-tasks as root where EVE_DATA_DIR is its data dir)"
          : "";
      throw new UserError(`${err.message} (connecting ${how})${hint}`, 1, { cause: err });
    }
    if (err instanceof BusError) throw new UserError(unreachableMessage(target.url), 1, { cause: err });
    throw err;
  }
}

/** Whether `agent`'s bucket exists on the server. */
export async function bucketExists(bus: Bus, agent: string): Promise<boolean> {
  try {
    await bus.jsm.streams.info(streamOf(agent));
    return true;
  } catch (err) {
    if (isStreamNotFound(err)) return false;
    throw err;
  }
}

/** Throws a UserError unless `agent`'s bucket exists: the launcher and the workers create them. */
export async function requireBucket(bus: Bus, agent: string, target: NatsTarget): Promise<void> {
  if (!(await bucketExists(bus, agent))) {
    throw new UserError(
      `NATS at ${target.url} has no "${agent}" bucket: is \`npm start\` running? (it creates the buckets)`,
    );
  }
}

/** Runs `fn` with a connection for `target`, closing it afterwards whatever happens. */
export async function withBus<T>(target: NatsTarget, fn: (bus: Bus) => Promise<T>): Promise<T> {
  const bus = await connectCli(target);
  try {
    return await fn(bus);
  } finally {
    await bus.close().catch(() => undefined);
  }
}
