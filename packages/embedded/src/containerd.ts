import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { renderContainerdConfig } from "./containerd-config.js";
import { ContainerdStartError, SocketPathTooLongError } from "./errors.js";
import { findExecutable, pathWithSbin } from "./executables.js";
import { MAX_UNIX_SOCKET_PATH_BYTES, canConnect, socketPathBytes } from "./net-probe.js";
import { errorMessage, readLogTail, spawnLogged } from "./process.js";
import type { ManagedProcess } from "./process.js";

/** Options of {@link startContainerd}. */
export interface StartContainerdOptions {
  /** Directory holding `root/`, `state/`, `tmp/`, `config.toml` and the log; created if missing. */
  dir: string;
  /** Directory of `containerd.sock` and `containerd.sock.ttrpc`; default `dir`. Keep it short (108-byte limit). */
  socketDir?: string;
  /** stdout and stderr go here (appended); default `<dir>/containerd.log`. */
  logFile?: string;
  /** Executable name or path; default `containerd`. */
  binary?: string;
  /** containerd log level; default "info". */
  logLevel?: string;
  /** How long to wait for the gRPC socket; default 20 000 ms. */
  startTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL; default 10 000 ms. */
  stopGraceMs?: number;
  /** Own process group (Ctrl-C reaches only the parent); default true. */
  detached?: boolean;
  /** SIGTERM containerd if the parent process exits; default true. */
  stopOnParentExit?: boolean;
}

/** A containerd this process started. */
export interface RunningContainerd {
  /** gRPC unix socket path (what `ctr --address` and CONTAINERD_ADDRESS take). */
  readonly address: string;
  /** ttrpc unix socket path. */
  readonly ttrpcAddress: string;
  /** PID of the containerd process. */
  readonly pid: number;
  /** Persistent data directory. */
  readonly root: string;
  /** State directory. */
  readonly state: string;
  /** The generated config.toml. */
  readonly configFile: string;
  /** Log file (stdout and stderr). */
  readonly logFile: string;
  /**
   * Stops exactly this PID: SIGTERM, wait, SIGKILL after the grace period. Idempotent.
   * Tasks and their shims survive it: run {@link cleanupContainerd} first to remove them.
   */
  stop(): Promise<void>;
  /** Settles when the process has exited: its exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
}

/** Throws {@link SocketPathTooLongError} if a unix socket path exceeds the kernel's limit. */
export function assertSocketPathFits(path: string, what = "unix socket"): void {
  const bytes = socketPathBytes(path);
  if (bytes > MAX_UNIX_SOCKET_PATH_BYTES) {
    throw new SocketPathTooLongError(
      `${what} path is ${bytes} bytes, over the ${MAX_UNIX_SOCKET_PATH_BYTES}-byte limit of unix socket paths (108 with the NUL): ${path}; choose a shorter socket directory`,
      { context: { path, bytes, limit: MAX_UNIX_SOCKET_PATH_BYTES } },
    );
  }
}

/**
 * Starts a private containerd: writes its own config.toml (private root, state, temp, gRPC and
 * ttrpc sockets; CRI and other host-touching plugins disabled; no TCP listeners), spawns
 * `containerd --config`, and resolves once the gRPC socket accepts a connection. It can run next
 * to another containerd. Needs root. Rejects with {@link ContainerdStartError} (with the log tail)
 * if containerd exits or the start times out, or {@link SocketPathTooLongError} before spawning.
 */
export async function startContainerd(options: StartContainerdOptions): Promise<RunningContainerd> {
  const dir = resolve(options.dir);
  const socketDir = resolve(options.socketDir ?? dir);
  const address = join(socketDir, "containerd.sock");
  const ttrpcAddress = `${address}.ttrpc`;
  assertSocketPathFits(address, "containerd gRPC socket");
  assertSocketPathFits(ttrpcAddress, "containerd ttrpc socket");

  const root = join(dir, "root");
  const state = join(dir, "state");
  const temp = join(dir, "tmp");
  const configFile = join(dir, "config.toml");
  const logFile = resolve(options.logFile ?? join(dir, "containerd.log"));
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  const baseContext = { dir, address, root, state, configFile, logFile };

  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new ContainerdStartError("containerd needs root: run the tests or the launcher as root", {
      context: { ...baseContext, uid: process.getuid() },
    });
  }
  const binaryName = options.binary ?? "containerd";
  const binary = findExecutable(binaryName);
  if (binary === undefined) {
    throw new ContainerdStartError(
      `cannot start containerd: ${binaryName} not found on PATH (Debian: apt-get install -y containerd runc, or run \`npm run prerequisites\`)`,
      { context: { ...baseContext, binary: binaryName } },
    );
  }
  // Never take over the socket of a containerd that is already serving it.
  if (await canConnect({ path: address }, 500)) {
    throw new ContainerdStartError(`another containerd is already listening on ${address}`, {
      context: baseContext,
    });
  }

  await Promise.all([root, state, temp, socketDir].map((d) => mkdir(d, { recursive: true, mode: 0o711 })));
  await writeFile(
    configFile,
    renderContainerdConfig({
      root,
      state,
      temp,
      grpcAddress: address,
      ttrpcAddress,
      logLevel: options.logLevel,
    }),
  );

  const args = ["--config", configFile];
  const proc = await spawnLogged({
    command: binary,
    args,
    logFile,
    // containerd looks up containerd-shim-runc-v2 and runc on its PATH; Debian's runc is in /usr/sbin.
    env: { ...process.env, PATH: pathWithSbin(process.env.PATH) },
    detached: options.detached,
    stopOnParentExit: options.stopOnParentExit,
  });
  const stopGraceMs = options.stopGraceMs ?? 10_000;

  try {
    await waitForSocket(proc, address, timeoutMs);
  } catch (err) {
    await proc.stop({ graceMs: 3_000 }).catch(() => undefined);
    const tail = await readLogTail(logFile);
    throw new ContainerdStartError(
      `containerd did not start: ${errorMessage(err)}\n--- ${logFile} (tail) ---\n${tail}`,
      {
        context: { ...baseContext, pid: proc.pid, binary, exitCode: proc.child.exitCode, logTail: tail },
        cause: err,
      },
    );
  }

  return {
    address,
    ttrpcAddress,
    pid: proc.pid,
    root,
    state,
    configFile,
    logFile,
    exited: proc.exited,
    async stop(): Promise<void> {
      await proc.stop({ graceMs: stopGraceMs });
    },
  };
}

async function waitForSocket(proc: ManagedProcess, address: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.hasExited()) {
      const { exitCode, signalCode } = proc.child;
      throw new Error(
        `containerd (PID ${proc.pid}) exited with ${signalCode !== null ? `signal ${signalCode}` : `code ${String(exitCode)}`} before its socket was ready`,
      );
    }
    if (await canConnect({ path: address }, 500)) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${address}`);
    await sleep(25);
  }
}
