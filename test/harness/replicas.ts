// Worker replicas as separate OS processes, with their output captured line by line.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { WaitTimeoutError, registerStopOnParentExit, stopProcess } from "@eve-tasks/embedded";
import type { StopOptions } from "@eve-tasks/embedded";
import { deferCleanup } from "./cleanup.js";

/** The repository root (where node_modules/tsx is). */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** A JSON value from a log line. */
export type JsonObject = Record<string, unknown>;

/** One line a replica wrote. */
export interface ReplicaLine {
  /** Replica index (0-based). */
  replica: number;
  /** PID of the process that wrote it. */
  pid: number;
  /** Which stream it came from. */
  stream: "stdout" | "stderr";
  /** The raw text, without the newline. */
  text: string;
  /** The line parsed as a JSON object (pino logs), when it is one. */
  json: JsonObject | undefined;
  /** When it was read (ms since the epoch). */
  receivedAt: number;
}

/** How a replica exited. */
export interface ReplicaExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One worker process. */
export interface Replica {
  readonly index: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Lines this process wrote. */
  readonly lines: readonly ReplicaLine[];
  /** Settles when the process has exited. */
  readonly exited: Promise<ReplicaExit>;
}

/** Options of {@link spawnReplicas}. */
export interface SpawnReplicasOptions {
  /** A .ts file (run with `node --import tsx`) or a .js/.mjs file (run with node). */
  entry: string;
  /** How many processes; default 1. */
  count?: number;
  /** Extra environment for every replica (on top of the parent's). */
  env?: Record<string, string>;
  /** Extra environment for replica `index` (on top of `env`). */
  envFor?: (index: number) => Record<string, string>;
  /** Name for messages and REPLICA_NAME (`<name>-<index>`); default the entry's file name. */
  name?: string;
  /** Arguments after the entry. */
  args?: readonly string[];
  /** Working directory; default the repository root. */
  cwd?: string;
  /** Mirror every line to the test's stderr, prefixed with the replica name (for debugging). */
  echo?: boolean;
}

/** Separate worker processes started by {@link spawnReplicas}. */
export interface Replicas extends AsyncDisposable {
  /** Current process of each slot. */
  readonly replicas: readonly Replica[];
  /** Current PID of each slot. */
  readonly pids: readonly number[];
  /** Every PID ever started through this handle (respawns included). */
  readonly allPids: readonly number[];
  /** Every line from every replica, in arrival order. */
  readonly lines: readonly ReplicaLine[];
  /**
   * Resolves with the first line (already received or future) matching `pred`; rejects with
   * {@link WaitTimeoutError} (showing the last lines) after `timeoutMs` (default 10 000).
   */
  waitForLine(pred: (line: ReplicaLine) => boolean, timeoutMs?: number): Promise<ReplicaLine>;
  /** Sends `signal` (default SIGTERM) to exactly slot `index`'s PID; resolves when it exited. */
  kill(index: number, signal?: NodeJS.Signals): Promise<ReplicaExit>;
  /** Starts a new process in slot `index` (after it exited) and returns it. */
  respawn(index: number): Replica;
  /** Stops every process by its PID (SIGTERM, then SIGKILL after the grace period). Idempotent. */
  stopAll(options?: StopOptions): Promise<void>;
}

/**
 * Starts `count` workers as separate OS processes (not threads), each with REPLICA_INDEX and
 * REPLICA_NAME in its env, and captures their stdout and stderr line by line (JSON parsed when
 * possible). They are stopped when the test (or file) finishes, or by `stopAll()`.
 */
export function spawnReplicas(options: SpawnReplicasOptions): Replicas {
  const count = options.count ?? 1;
  const entry = resolve(options.entry);
  const name = options.name ?? entry.replace(/^.*\//, "").replace(/\.[cm]?[jt]s$/, "");
  const cwd = options.cwd ?? REPO_ROOT;
  const nodeArgs = /\.[cm]?ts$/.test(entry) ? ["--import", "tsx", entry] : [entry];
  const lines: ReplicaLine[] = [];
  const listeners = new Set<(line: ReplicaLine) => void>();
  const slots: Replica[] = [];
  const allPids: number[] = [];

  const startOne = (index: number): Replica => {
    const child = spawn(process.execPath, [...nodeArgs, ...(options.args ?? [])], {
      cwd,
      env: {
        ...process.env,
        ...options.env,
        ...options.envFor?.(index),
        REPLICA_INDEX: String(index),
        REPLICA_NAME: `${name}-${index}`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    // process.execPath always exists, so the PID is known synchronously.
    const pid = child.pid;
    if (pid === undefined) throw new Error(`replica ${name}-${index}: spawning ${process.execPath} failed`);
    child.on("error", () => undefined);
    allPids.push(pid);
    const unregister = registerStopOnParentExit(pid);
    const own: ReplicaLine[] = [];
    const exited = new Promise<ReplicaExit>((ok) => {
      child.once("exit", (code, signal) => {
        unregister();
        ok({ code, signal });
      });
    });
    for (const stream of ["stdout", "stderr"] as const) {
      createInterface({ input: child[stream] }).on("line", (text) => {
        const line: ReplicaLine = {
          replica: index,
          pid,
          stream,
          text,
          json: parseJson(text),
          receivedAt: Date.now(),
        };
        own.push(line);
        lines.push(line);
        if (options.echo) process.stderr.write(`[${name}-${index} ${pid}] ${text}\n`);
        for (const listener of listeners) listener(line);
      });
    }
    const replica: Replica = { index, pid, child, lines: own, exited };
    slots[index] = replica;
    return replica;
  };

  const slot = (index: number): Replica => {
    const replica = slots[index];
    if (replica === undefined) throw new RangeError(`no replica ${index} (count ${count})`);
    return replica;
  };

  const handle: Replicas = {
    get replicas() {
      return [...slots];
    },
    get pids() {
      return slots.map((r) => r.pid);
    },
    allPids,
    lines,
    waitForLine(pred, timeoutMs = 10_000) {
      const existing = lines.find(pred);
      if (existing) return Promise.resolve(existing);
      return new Promise((ok, fail) => {
        const listener = (line: ReplicaLine): void => {
          if (!pred(line)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          ok(line);
        };
        const timer = setTimeout(() => {
          listeners.delete(listener);
          const tail = lines
            .slice(-20)
            .map((l) => `  [${name}-${l.replica} ${l.stream}] ${l.text}`)
            .join("\n");
          fail(
            new WaitTimeoutError(
              `no matching line from ${name} within ${timeoutMs} ms; last lines:\n${tail}`,
              {
                context: { name, pids: slots.map((r) => r.pid), timeoutMs },
              },
            ),
          );
        }, timeoutMs);
        listeners.add(listener);
      });
    },
    async kill(index, signal = "SIGTERM") {
      const replica = slot(index);
      if (replica.child.exitCode === null && replica.child.signalCode === null) {
        process.kill(replica.pid, signal);
      }
      return replica.exited;
    },
    respawn(index) {
      const replica = slot(index);
      if (replica.child.exitCode === null && replica.child.signalCode === null) {
        throw new Error(`replica ${name}-${index} (PID ${replica.pid}) is still running; kill it first`);
      }
      return startOne(index);
    },
    async stopAll(stopOptions) {
      // stopProcess returns at once for a process that already exited, so this is idempotent.
      await Promise.all(slots.map((r) => stopProcess(r.child, { graceMs: 5_000, ...stopOptions })));
    },
    [Symbol.asyncDispose]: () => handle.stopAll(),
  };

  deferCleanup(() => handle.stopAll());
  for (let i = 0; i < count; i++) startOne(i);
  return handle;
}

function parseJson(text: string): JsonObject | undefined {
  if (!text.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as JsonObject)
      : undefined;
  } catch {
    return undefined;
  }
}
