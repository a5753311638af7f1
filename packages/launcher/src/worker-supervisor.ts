/**
 * Runs one worker as its own process and restarts it when it dies, with exponential back-off
 * (see backoff.ts). Stopping it sends SIGTERM to its exact PID, then SIGKILL after the grace.
 */
import { spawnLogged } from "@eve-tasks/embedded";
import type { ManagedProcess } from "@eve-tasks/embedded";
import type { Logger } from "@eve-tasks/runtime";
import { backoffDelayMs, nextFailureCount } from "./backoff.js";
import { readStartTicks } from "./proc.js";
import { workerNodeOptions } from "./workers.js";
import type { WorkerEntry } from "./workers.js";

/** Where a supervised worker is. */
export type WorkerState = "starting" | "running" | "backing-off" | "restarting" | "stopping" | "stopped";

/** How a worker's process ended. */
export interface WorkerExit {
  readonly code: number | null;
  readonly signal: string | null;
  /** Epoch ms. */
  readonly at: number;
  /** How long it ran. */
  readonly ranMs: number;
}

/** A worker as the launcher sees it. */
export interface WorkerSnapshot {
  readonly name: string;
  readonly main: string;
  readonly logFile: string;
  readonly state: WorkerState;
  readonly pid: number | null;
  readonly startTicks: number | null;
  /** How many times it has been restarted. */
  readonly restarts: number;
  /** Epoch ms of the current process's start. */
  readonly startedAt: number | null;
  /** Epoch ms of the next start while backing off. */
  readonly nextStartAt: number | null;
  readonly lastExit: WorkerExit | null;
}

/** Options of {@link WorkerSupervisor}. */
export interface WorkerSupervisorOptions {
  /** The process: its name (unique among the launcher's), entry point, and worker (default: its name). */
  readonly entry: WorkerEntry & { readonly worker?: string };
  /** stdout and stderr of the worker are appended here. */
  readonly logFile: string;
  /** The worker's whole environment. */
  readonly env: NodeJS.ProcessEnv;
  readonly logger: Logger;
  /** How long a worker gets after SIGTERM. */
  readonly graceMs: number;
  /** Called on every change of the snapshot, with a human sentence when something happened. */
  readonly onChange: (snapshot: WorkerSnapshot, event?: string) => void;
  /** Back-off policy; default {@link backoffDelayMs}. */
  readonly backoff?: (failures: number) => number;
}

const describeExit = (code: number | null, signal: string | null): string =>
  signal !== null
    ? `signal ${signal}`
    : `code ${String(code)}${code === 2 ? " (invalid configuration? see its log)" : ""}`;

/** Supervises one worker process. */
export class WorkerSupervisor {
  readonly #opts: WorkerSupervisorOptions;
  #state: WorkerState = "starting";
  #proc: ManagedProcess | undefined;
  #spawning: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopping = false;
  #failures = 0;
  #restarts = 0;
  #startedAt: number | null = null;
  #startTicks: number | null = null;
  #nextStartAt: number | null = null;
  #lastExit: WorkerExit | null = null;

  constructor(opts: WorkerSupervisorOptions) {
    this.#opts = opts;
  }

  /** The worker's name. */
  get name(): string {
    return this.#opts.entry.name;
  }

  /** The current view of the worker. */
  snapshot(): WorkerSnapshot {
    return {
      name: this.#opts.entry.name,
      main: this.#opts.entry.main,
      logFile: this.#opts.logFile,
      state: this.#state,
      pid: this.#proc?.pid ?? null,
      startTicks: this.#proc ? this.#startTicks : null,
      restarts: this.#restarts,
      startedAt: this.#proc ? this.#startedAt : null,
      nextStartAt: this.#nextStartAt,
      lastExit: this.#lastExit,
    };
  }

  /** Starts the first process. */
  start(): void {
    this.#spawning = this.#spawn();
  }

  /** Stops for good: no more restarts; SIGTERM to the current PID, SIGKILL after the grace. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#nextStartAt = null;
    await this.#spawning;
    const proc = this.#proc;
    if (proc === undefined) {
      this.#set("stopped");
      return;
    }
    this.#set("stopping", `stopping ${this.name} (pid ${proc.pid})`);
    await proc.stop({ graceMs: this.#opts.graceMs });
  }

  #set(state: WorkerState, event?: string): void {
    this.#state = state;
    this.#opts.onChange(this.snapshot(), event);
  }

  async #spawn(): Promise<void> {
    const { entry, logFile, env, logger } = this.#opts;
    let proc: ManagedProcess;
    const t0 = Date.now();
    try {
      proc = await spawnLogged({
        command: process.execPath,
        args: [...workerNodeOptions(entry.worker ?? entry.name), entry.main],
        logFile,
        env,
        detached: true,
        stopOnParentExit: true,
      });
    } catch (err) {
      logger.error({ err, worker: entry.name }, "cannot spawn worker");
      this.#afterExit(null, null, t0, `cannot spawn ${entry.name}: ${(err as Error).message}`);
      return;
    }
    this.#proc = proc;
    this.#startedAt = Date.now();
    this.#startTicks = readStartTicks(proc.pid) ?? null;
    this.#nextStartAt = null;
    void proc.exited.then((code) => {
      this.#proc = undefined;
      this.#afterExit(code, proc.child.signalCode, this.#startedAt ?? t0, undefined, proc.pid);
    });
    this.#set("running", `${entry.name} started (pid ${proc.pid})`);
  }

  #afterExit(
    code: number | null,
    signal: string | null,
    startedAt: number,
    why?: string,
    pid?: number,
  ): void {
    const now = Date.now();
    const ranMs = now - startedAt;
    this.#lastExit = { code, signal, at: now, ranMs };
    const what = why ?? `${this.name} (pid ${String(pid)}) exited with ${describeExit(code, signal)}`;
    if (this.#stopping) {
      this.#set("stopped", `${what}: stopped`);
      return;
    }
    this.#failures = nextFailureCount(this.#failures, ranMs);
    const delay = (this.#opts.backoff ?? backoffDelayMs)(this.#failures);
    this.#nextStartAt = now + delay;
    this.#set(
      "backing-off",
      `${what} after ${(ranMs / 1000).toFixed(1)} s; restart #${this.#restarts + 1} in ${(delay / 1000).toFixed(0)} s`,
    );
    this.#timer = setTimeout(() => {
      if (this.#stopping) return;
      this.#restarts += 1;
      this.#set("restarting");
      this.#spawning = this.#spawn();
    }, delay);
  }
}
