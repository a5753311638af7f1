import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { readProcStatSync } from "@eve-tasks/procfs";
import { ProcessError } from "./errors.js";

/** How a process should be stopped. */
export interface StopOptions {
  /** First signal; default SIGTERM. */
  signal?: NodeJS.Signals;
  /** How long to wait after `signal` before sending `killSignal`; default 10 000 ms. */
  graceMs?: number;
  /** Signal sent when the grace period is over; default SIGKILL. */
  killSignal?: NodeJS.Signals;
  /** How long to wait after `killSignal` before giving up with an error; default 5 000 ms. */
  killGraceMs?: number;
}

/** Options of {@link spawnLogged}. */
export interface SpawnLoggedOptions {
  /** Executable name (looked up on PATH) or path. */
  command: string;
  /** Arguments, not including the command. */
  args: readonly string[];
  /** stdout and stderr are appended to this file (created with its directory). */
  logFile: string;
  /** Environment; default the parent's. */
  env?: NodeJS.ProcessEnv;
  /** Working directory; default the parent's. */
  cwd?: string;
  /**
   * Run the child in its own process group, so a terminal's Ctrl-C reaches only the parent,
   * which then stops its children in order. Default true.
   */
  detached?: boolean;
  /**
   * Send SIGTERM to the child (by its PID) if the parent process exits while it still runs.
   * Covers normal exits and uncaught exceptions, not SIGKILL of the parent. Default true.
   */
  stopOnParentExit?: boolean;
}

/** A child process this package started, with stdout and stderr going to a log file. */
export interface ManagedProcess {
  /** The child's PID. */
  readonly pid: number;
  /** The underlying Node child process. */
  readonly child: ChildProcess;
  /** The log file receiving stdout and stderr. */
  readonly logFile: string;
  /** Settles when the process has exited: its exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
  /** True once the process has exited (and its PID may be reused by someone else). */
  hasExited(): boolean;
  /** Stops exactly this PID: signal, wait, then SIGKILL. Idempotent; resolves with the exit code. */
  stop(options?: StopOptions): Promise<number | null>;
}

const DEFAULT_GRACE_MS = 10_000;
const DEFAULT_KILL_GRACE_MS = 5_000;

/** PIDs to SIGTERM if the parent exits while they still run. */
const stopOnExit = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pid of stopOnExit) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
  });
}

/**
 * Arranges for SIGTERM to be sent to exactly this PID if the parent process exits (normally or by
 * an uncaught exception) while it is registered. Returns the function that unregisters it; call it
 * once the process has exited, so a reused PID is never signalled.
 */
export function registerStopOnParentExit(pid: number): () => void {
  if (!isSinglePid(pid)) throw new ProcessError(`not a single process ID: ${pid}`, { context: { pid } });
  installExitHook();
  stopOnExit.add(pid);
  return () => {
    stopOnExit.delete(pid);
  };
}

/**
 * Spawns a long-running child with stdout and stderr appended to a log file. Resolves once the
 * OS has started it; rejects with {@link ProcessError} when the executable cannot be run.
 */
export async function spawnLogged(options: SpawnLoggedOptions): Promise<ManagedProcess> {
  mkdirSync(dirname(options.logFile), { recursive: true });
  const fd = openSync(options.logFile, "a");
  let child: ChildProcess;
  try {
    child = spawn(options.command, [...options.args], {
      stdio: ["ignore", fd, fd],
      env: options.env ?? process.env,
      cwd: options.cwd,
      detached: options.detached ?? true,
    });
  } catch (err) {
    throw new ProcessError(`cannot spawn ${options.command}: ${errorMessage(err)}`, {
      context: { command: options.command, args: options.args },
      cause: err,
    });
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(fd);
  }

  await new Promise<void>((resolve, reject) => {
    const onSpawn = (): void => {
      child.off("error", onError);
      resolve();
    };
    const onError = (err: Error): void => {
      child.off("spawn", onSpawn);
      const notFound = (err as NodeJS.ErrnoException).code === "ENOENT";
      reject(
        new ProcessError(
          notFound
            ? `cannot run ${options.command}: not found (is it installed and on PATH? try \`npm run prerequisites\`)`
            : `cannot run ${options.command}: ${err.message}`,
          { context: { command: options.command, args: options.args }, cause: err },
        ),
      );
    };
    child.once("spawn", onSpawn);
    child.once("error", onError);
  });

  const pid = child.pid;
  if (pid === undefined) {
    throw new ProcessError(`cannot run ${options.command}: no PID after spawn`, {
      context: { command: options.command },
    });
  }
  // Later errors (e.g. a failed kill) must not crash the parent; stop() reports its own.
  child.on("error", () => undefined);

  const exited = waitForChildExit(child);
  if (options.stopOnParentExit ?? true) {
    const unregister = registerStopOnParentExit(pid);
    void exited.finally(unregister);
  }

  let stopping: Promise<number | null> | undefined;
  return {
    pid,
    child,
    logFile: options.logFile,
    exited,
    hasExited: () => childHasExited(child),
    stop(stopOptions?: StopOptions): Promise<number | null> {
      stopping ??= stopProcess(child, stopOptions).then(() => exited);
      return stopping;
    },
  };
}

function childHasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForChildExit(child: ChildProcess): Promise<number | null> {
  if (childHasExited(child)) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    child.once("exit", (code) => resolve(code));
  });
}

/**
 * True when a process with this PID exists and is not a zombie. Signal 0 checks existence;
 * /proc tells a zombie (already dead, not yet reaped) from a live process.
 */
export function isProcessAlive(pid: number): boolean {
  // 0 and negative numbers address process groups (-1: every process); never a single process.
  if (!isSinglePid(pid)) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const state = readProcStatSync(pid)?.state;
    return state === "Z" || state === "X";
  } catch {
    return false;
  }
}

function isSinglePid(pid: number): boolean {
  return Number.isSafeInteger(pid) && pid > 0;
}

/** Sends a signal to exactly this PID; false when the process does not exist any more. */
function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  if (!isSinglePid(pid)) {
    throw new ProcessError(`refusing to signal ${pid}: not a single process ID`, {
      context: { pid, signal },
    });
  }
  try {
    process.kill(pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw new ProcessError(`cannot send ${signal} to PID ${pid}: ${errorMessage(err)}`, {
      context: { pid, signal },
      cause: err,
    });
  }
}

/**
 * Stops one process by its exact PID (never by name, never its group): sends `signal`, waits up to
 * `graceMs`, then sends `killSignal` and waits up to `killGraceMs`. Accepts a ChildProcess
 * (preferred: its exit is tracked, so a reused PID is never signalled) or a bare PID (polled via
 * /proc). Resolves once the process is gone; rejects with {@link ProcessError} if it survives.
 */
export async function stopProcess(target: number | ChildProcess, options: StopOptions = {}): Promise<void> {
  const signal = options.signal ?? "SIGTERM";
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const killSignal = options.killSignal ?? "SIGKILL";
  const killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;

  if (typeof target === "number") {
    const pid = target;
    if (!isSinglePid(pid)) {
      throw new ProcessError(`refusing to stop ${pid}: not a single process ID`, { context: { pid } });
    }
    if (!isProcessAlive(pid)) return;
    if (!signalPid(pid, signal)) return;
    if (await pollUntilGone(pid, graceMs)) return;
    if (!signalPid(pid, killSignal)) return;
    if (await pollUntilGone(pid, killGraceMs)) return;
    throw new ProcessError(`PID ${pid} is still alive ${graceMs + killGraceMs} ms after ${signal}`, {
      context: { pid, signal, killSignal, graceMs, killGraceMs },
    });
  }

  const child = target;
  const pid = child.pid;
  if (pid === undefined || childHasExited(child)) return;
  const exit = waitForChildExit(child);
  if (!signalPid(pid, signal)) {
    await exit;
    return;
  }
  if (await raceTimeout(exit, graceMs)) return;
  if (childHasExited(child)) return;
  signalPid(pid, killSignal);
  if (await raceTimeout(exit, killGraceMs)) return;
  throw new ProcessError(`PID ${pid} is still alive ${graceMs + killGraceMs} ms after ${signal}`, {
    context: { pid, signal, killSignal, graceMs, killGraceMs },
  });
}

async function pollUntilGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isProcessAlive(pid)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
}

/** Resolves true if `promise` settles within `ms`, false otherwise. */
async function raceTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const ac = new AbortController();
  try {
    return await Promise.race([
      promise.then(() => true),
      sleep(ms, false, { signal: ac.signal }).catch(() => false),
    ]);
  } finally {
    ac.abort();
  }
}

/** The last `maxBytes` of a log file as text ("" if it does not exist). */
export async function readLogTail(file: string, maxBytes = 4_000): Promise<string> {
  try {
    const handle = await open(file, "r");
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - maxBytes);
      const buf = Buffer.alloc(size - start);
      await handle.read(buf, 0, buf.length, start);
      const text = buf.toString("utf8");
      // Drop a partial first line.
      return start > 0 ? text.slice(text.indexOf("\n") + 1) : text;
    } finally {
      await handle.close();
    }
  } catch {
    return "";
  }
}

/** Reads a whole small file, or returns undefined if it does not exist. */
export async function readFileIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** The message of anything thrown. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
