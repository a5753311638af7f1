import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { NatsServerStartError } from "./errors.js";
import { findExecutable } from "./executables.js";
import { canConnect } from "./net-probe.js";
import { errorMessage, readFileIfExists, readLogTail, spawnLogged } from "./process.js";
import type { ManagedProcess } from "./process.js";

/** Options of {@link startNatsServer}. */
export interface StartNatsServerOptions {
  /** JetStream store directory (`-sd`); created if missing. Reuse it to keep streams across restarts. */
  storeDir: string;
  /** Client port; default -1 (a random free port). Give the old port to restart "the same" server. */
  port?: number;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** stdout and stderr go here (appended); default `<storeDir>/nats-server.log`. */
  logFile?: string;
  /** Executable name or path; default `nats-server` (PATH, then the sbin directories). */
  binary?: string;
  /** Server name (`-n`); nats-server picks one otherwise. */
  serverName?: string;
  /** Where nats-server writes `nats-server_<pid>.ports`; default `storeDir`. */
  portsFileDir?: string;
  /**
   * A config file (`-c`), e.g. prepareNatsAuth's: users and permissions. The command-line options
   * above (address, port, JetStream store) take precedence over what it says.
   */
  configFile?: string;
  /** Environment additions (the passwords a config refers to as `$EVE_NATS_…_PASSWORD`). */
  env?: Readonly<Record<string, string>>;
  /** More command-line arguments. */
  extraArgs?: readonly string[];
  /** How long to wait for the server to be ready; default 15 000 ms. */
  startTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL; default 10 000 ms. */
  stopGraceMs?: number;
  /** Own process group (Ctrl-C reaches only the parent); default true. */
  detached?: boolean;
  /** SIGTERM the server if the parent process exits; default true. */
  stopOnParentExit?: boolean;
}

/** A nats-server this process started. */
export interface RunningNatsServer {
  /** Client URL, e.g. `nats://127.0.0.1:4222`. */
  readonly url: string;
  /** Client port actually bound. */
  readonly port: number;
  /** Listen address. */
  readonly host: string;
  /** PID of the nats-server process. */
  readonly pid: number;
  /** JetStream store directory. */
  readonly storeDir: string;
  /** Log file (stdout and stderr). */
  readonly logFile: string;
  /** Stops exactly this PID: SIGTERM, wait, SIGKILL after the grace period. Idempotent. */
  stop(): Promise<void>;
  /** Settles when the process has exited: its exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
}

const portsFileSchema = z.object({ nats: z.array(z.string()).min(1) }).loose();

/**
 * Starts a nats-server with JetStream (`-js -sd storeDir -a host -p port --ports_file_dir dir`)
 * and resolves once it accepts client connections. Rejects with {@link NatsServerStartError}
 * (carrying the log tail) if the process exits or the start times out; the process is stopped then.
 */
export async function startNatsServer(options: StartNatsServerOptions): Promise<RunningNatsServer> {
  const storeDir = resolve(options.storeDir);
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? -1;
  const portsFileDir = resolve(options.portsFileDir ?? storeDir);
  const logFile = resolve(options.logFile ?? join(storeDir, "nats-server.log"));
  const timeoutMs = options.startTimeoutMs ?? 15_000;
  const binaryName = options.binary ?? "nats-server";
  const binary = findExecutable(binaryName);
  if (binary === undefined) {
    throw new NatsServerStartError(
      `cannot start nats-server: ${binaryName} not found on PATH or in /usr/sbin (Debian: apt-get install -y nats-server, or run \`npm run prerequisites\`)`,
      { context: { binary: binaryName } },
    );
  }

  await mkdir(storeDir, { recursive: true });
  await mkdir(portsFileDir, { recursive: true });
  const args = [
    ...(options.configFile !== undefined ? ["-c", resolve(options.configFile)] : []),
    "-js",
    "-sd",
    storeDir,
    "-a",
    host,
    "-p",
    String(port),
    "--ports_file_dir",
    portsFileDir,
  ];
  if (options.serverName !== undefined) args.push("-n", options.serverName);
  if (options.extraArgs) args.push(...options.extraArgs);

  const proc = await spawnLogged({
    command: binary,
    args,
    logFile,
    env: options.env !== undefined ? { ...process.env, ...options.env } : undefined,
    detached: options.detached,
    stopOnParentExit: options.stopOnParentExit,
  });
  const stopGraceMs = options.stopGraceMs ?? 10_000;
  const context = { pid: proc.pid, binary, args, storeDir, logFile, host, port };

  let url: URL;
  try {
    url = await waitForPortsFile(proc, join(portsFileDir, `nats-server_${proc.pid}.ports`), host, timeoutMs);
  } catch (err) {
    await proc.stop({ graceMs: 2_000 }).catch(() => undefined);
    const tail = await readLogTail(logFile);
    const exitCode = proc.child.exitCode;
    throw new NatsServerStartError(
      `nats-server did not start: ${errorMessage(err)}\n--- ${logFile} (tail) ---\n${tail}`,
      {
        context: { ...context, exitCode, logTail: tail },
        cause: err,
      },
    );
  }

  const boundPort = Number(url.port);
  return {
    url: `nats://${url.host}`,
    port: boundPort,
    host,
    pid: proc.pid,
    storeDir,
    logFile,
    exited: proc.exited,
    async stop(): Promise<void> {
      await proc.stop({ graceMs: stopGraceMs });
    },
  };
}

/** Polls for the ports file of exactly this PID, then checks the URL accepts a TCP connection. */
async function waitForPortsFile(
  proc: ManagedProcess,
  portsFile: string,
  host: string,
  timeoutMs: number,
): Promise<URL> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.hasExited()) {
      throw new Error(`nats-server (PID ${proc.pid}) exited with ${describeExit(proc)} before it was ready`);
    }
    const text = await readFileIfExists(portsFile);
    if (text !== undefined) {
      const url = pickClientUrl(text, host);
      if (url && (await canConnect({ host: url.hostname, port: Number(url.port) }, 1_000))) return url;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${portsFile}`);
    }
    await sleep(20);
  }
}

/** The client URL from a ports file; prefers the listen host, then loopback. Undefined if not parsable yet. */
function pickClientUrl(text: string, host: string): URL | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined; // Partially written; read again.
  }
  const result = portsFileSchema.safeParse(parsed);
  if (!result.success) return undefined;
  const urls = result.data.nats.flatMap((u) => {
    try {
      return [new URL(u)];
    } catch {
      return [];
    }
  });
  return urls.find((u) => u.hostname === host) ?? urls.find((u) => u.hostname === "127.0.0.1") ?? urls[0];
}

function describeExit(proc: ManagedProcess): string {
  const { exitCode, signalCode } = proc.child;
  return signalCode !== null ? `signal ${signalCode}` : `code ${String(exitCode)}`;
}
