/** Which NATS server the CLI talks to, and connecting to it with one clear line on failure. */
import { BusError, ServerVersionError, connectBus, isStreamNotFound, streamOf } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { UserError } from "./errors.js";

/** The server used when neither `--server` nor `NATS_URL` names one. */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/** How long the CLI tries to connect before it gives up. */
export const CONNECT_TIMEOUT_MS = 2500;

/** The NATS URL: the `--server` flag, else `NATS_URL`, else {@link DEFAULT_NATS_URL}. */
export function resolveServer(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  const fromFlag = flag?.trim();
  if (fromFlag) return fromFlag;
  const fromEnv = env.NATS_URL?.trim();
  return fromEnv || DEFAULT_NATS_URL;
}

/** The one line printed when NATS cannot be reached. */
export function unreachableMessage(server: string): string {
  return `cannot reach NATS at ${server}: is \`npm start\` running? set NATS_URL (or --server) to the right server`;
}

/**
 * Connects to NATS at `server` as `eve-tasks-cli`. An unreachable server, or one too old, is a
 * UserError with one line saying what to do.
 */
export async function connectCli(server: string): Promise<Bus> {
  try {
    return await connectBus({ servers: server, name: "eve-tasks-cli", connectTimeoutMs: CONNECT_TIMEOUT_MS });
  } catch (err) {
    if (err instanceof ServerVersionError) throw new UserError(`NATS at ${server}: ${err.message}`);
    if (err instanceof BusError) throw new UserError(unreachableMessage(server), 1, { cause: err });
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
export async function requireBucket(bus: Bus, agent: string, server: string): Promise<void> {
  if (!(await bucketExists(bus, agent))) {
    throw new UserError(
      `NATS at ${server} has no "${agent}" bucket: is \`npm start\` running? (it creates the buckets)`,
    );
  }
}

/** Runs `fn` with a connection to `server`, closing it afterwards whatever happens. */
export async function withBus<T>(server: string, fn: (bus: Bus) => Promise<T>): Promise<T> {
  const bus = await connectCli(server);
  try {
    return await fn(bus);
  } finally {
    await bus.close().catch(() => undefined);
  }
}
