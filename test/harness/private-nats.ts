import { join } from "node:path";
import { startNatsServer } from "@eve-tasks/embedded";
import type { RunningNatsServer } from "@eve-tasks/embedded";
import { deferCleanup, tempDir } from "./cleanup.js";

/** Options of {@link withPrivateNats}. */
export interface PrivateNatsOptions {
  /** JetStream store directory; default a fresh temp dir. */
  storeDir?: string;
  /** Client port; default a random one, kept across restarts. */
  port?: number;
  /** Server name. */
  serverName?: string;
}

/** A nats-server of one test, which the test may stop and start again (same port, same store). */
export interface PrivateNats extends AsyncDisposable {
  /** Client URL; stays the same across restarts. */
  readonly url: string;
  /** Client port; stays the same across restarts. */
  readonly port: number;
  /** JetStream store directory. */
  readonly storeDir: string;
  /** Log file (appended across restarts). */
  readonly logFile: string;
  /** PID of the current server process, undefined while stopped. */
  readonly pid: number | undefined;
  /** Every PID this handle started, in order. */
  readonly pids: readonly number[];
  /** Whether a server process is running. */
  readonly running: boolean;
  /** Stops the server (an outage); idempotent. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same store; no-op when running. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** Stops the server; the temp store dir goes with the test's cleanups. Idempotent. */
  cleanup(): Promise<void>;
}

/**
 * Starts a nats-server for one test (for tests that stop and restart it to simulate an outage).
 * It is stopped when the test (or, from beforeAll, the file) finishes, or by `cleanup()` /
 * `await using`.
 */
export async function withPrivateNats(options: PrivateNatsOptions = {}): Promise<PrivateNats> {
  const storeDir = options.storeDir ?? (await tempDir("nats-"));
  const logFile = join(storeDir, "nats-server.log");
  const pids: number[] = [];
  let current: RunningNatsServer | undefined = await startNatsServer({
    storeDir,
    port: options.port ?? -1,
    logFile,
    serverName: options.serverName,
  });
  pids.push(current.pid);
  const port = current.port;
  const url = current.url;

  const handle: PrivateNats = {
    url,
    port,
    storeDir,
    logFile,
    get pid() {
      return current?.pid;
    },
    pids,
    get running() {
      return current !== undefined;
    },
    async stop() {
      const server = current;
      current = undefined;
      await server?.stop();
    },
    async start() {
      if (current !== undefined) return;
      current = await startNatsServer({ storeDir, port, logFile, serverName: options.serverName });
      pids.push(current.pid);
    },
    async restart() {
      await handle.stop();
      await handle.start();
    },
    cleanup: () => handle.stop(),
    [Symbol.asyncDispose]: () => handle.stop(),
  };
  deferCleanup(() => handle.cleanup());
  return handle;
}
