/**
 * Graceful shutdown, after Temporal's worker lifecycle: a worker is `running` until a signal (or
 * its own code) starts the stop; cleanup steps registered while it ran are then run once, in
 * reverse order of registration (last started, first stopped), each logged, within a grace period.
 * A second signal during the stop forces the exit.
 */
import { constants } from "node:os";
import type { Logger } from "pino";

/** Where a lifecycle is: `running` → `stopping` → `stopped` (every step succeeded) or `failed`. */
export type LifecycleState = "running" | "stopping" | "stopped" | "failed";

/** One cleanup step, e.g. "drain NATS" or "finish in-flight work". */
export interface ShutdownStep {
  readonly name: string;
  readonly run: () => Promise<void> | void;
}

/** How a stop went. */
export interface ShutdownResult {
  /** True when every step finished without error within the grace period. */
  readonly ok: boolean;
  /** What started the stop, e.g. `SIGTERM`. */
  readonly reason: string;
  /** Names of the steps that threw. */
  readonly failed: readonly string[];
  /** True when the grace period ran out before every step finished. */
  readonly timedOut: boolean;
  readonly durationMs: number;
}

/** Options of {@link Lifecycle}. */
export interface LifecycleOptions {
  logger: Logger;
  /** How long all steps together may take; default 10 000 ms. */
  graceMs?: number;
}

/** A step was registered after the stop began. */
export class LifecycleError extends Error {
  override readonly name = "LifecycleError";
}

/** Cleanup steps of one process, run once in reverse order. */
export class Lifecycle {
  readonly #logger: Logger;
  readonly #graceMs: number;
  readonly #steps: ShutdownStep[] = [];
  readonly #abort = new AbortController();
  #state: LifecycleState = "running";
  #stopping: Promise<ShutdownResult> | undefined;
  #resolveStopped!: (r: ShutdownResult) => void;
  /** Resolves once the stop has finished (whoever started it). */
  readonly stopped: Promise<ShutdownResult> = new Promise((resolve) => (this.#resolveStopped = resolve));

  constructor(opts: LifecycleOptions) {
    this.#logger = opts.logger;
    this.#graceMs = opts.graceMs ?? 10_000;
  }

  /** The current state. */
  get state(): LifecycleState {
    return this.#state;
  }

  /** Aborted when the stop begins: long-running loops watch it. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * Registers a cleanup step. Steps run in reverse order of registration.
   * @throws {LifecycleError} once the stop has begun.
   */
  onShutdown(name: string, run: () => Promise<void> | void): void {
    if (this.#state !== "running") {
      throw new LifecycleError(`cannot register shutdown step "${name}": lifecycle is ${this.#state}`);
    }
    this.#steps.push({ name, run });
  }

  /** Starts the stop (once; later calls return the same promise) and resolves when it ends. */
  shutdown(reason: string): Promise<ShutdownResult> {
    this.#stopping ??= this.#run(reason);
    return this.#stopping;
  }

  async #run(reason: string): Promise<ShutdownResult> {
    const started = Date.now();
    this.#state = "stopping";
    this.#logger.info({ reason, steps: this.#steps.length, graceMs: this.#graceMs }, "shutdown: stopping");
    this.#abort.abort(new Error(`shutdown: ${reason}`));
    const failed: string[] = [];
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#graceMs);
    });
    const steps = [...this.#steps].reverse();
    try {
      for (const step of steps) {
        const t0 = Date.now();
        this.#logger.info({ step: step.name }, "shutdown: step started");
        const outcome = await Promise.race([
          Promise.resolve()
            .then(step.run)
            .then(
              () => "done" as const,
              (err: unknown) => {
                failed.push(step.name);
                this.#logger.error({ step: step.name, err }, "shutdown: step failed");
                return "failed" as const;
              },
            ),
          deadline,
        ]);
        if (outcome === "timeout") {
          timedOut = true;
          const left = steps.slice(steps.indexOf(step)).map((s) => s.name);
          this.#logger.error(
            { step: step.name, left, graceMs: this.#graceMs },
            "shutdown: grace period over",
          );
          break;
        }
        if (outcome === "done")
          this.#logger.info({ step: step.name, ms: Date.now() - t0 }, "shutdown: step done");
      }
    } finally {
      clearTimeout(timer);
    }
    const result: ShutdownResult = {
      ok: failed.length === 0 && !timedOut,
      reason,
      failed,
      timedOut,
      durationMs: Date.now() - started,
    };
    this.#state = result.ok ? "stopped" : "failed";
    this.#logger.info({ ...result }, result.ok ? "shutdown: stopped" : "shutdown: stopped with errors");
    this.#resolveStopped(result);
    return result;
  }
}

/** What {@link installShutdown} listens on; `process` by default. */
export interface SignalSource {
  on(event: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
  off(event: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
}

/** Options of {@link installShutdown}. */
export interface InstallShutdownOptions extends LifecycleOptions {
  /** Default SIGINT and SIGTERM. */
  signals?: readonly NodeJS.Signals[];
  /** Default `process.exit`. */
  exit?: (code: number) => void;
  /** Default `process`. */
  source?: SignalSource;
}

/** Exit code of a stop forced by a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM). */
export const forcedExitCode = (signal: NodeJS.Signals): number => 128 + (constants.signals[signal] ?? 0);

/** A {@link Lifecycle} bound to the process: signals start the stop, and the process exits after it. */
export class ProcessLifecycle extends Lifecycle {
  readonly #exit: (code: number) => void;
  readonly #uninstall: () => void;
  readonly #logger: Logger;

  constructor(opts: InstallShutdownOptions) {
    super(opts);
    this.#logger = opts.logger;
    this.#exit = opts.exit ?? ((code) => process.exit(code));
    const source = opts.source ?? process;
    const signals = opts.signals ?? ["SIGINT", "SIGTERM"];
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.state === "running") {
        this.#logger.info({ signal }, `received ${signal}, stopping (send it again to force)`);
        void this.exitAfterShutdown(signal);
      } else {
        this.#logger.warn({ signal }, `received ${signal} again while ${this.state}: forcing exit`);
        this.#exit(forcedExitCode(signal));
      }
    };
    for (const s of signals) source.on(s, onSignal);
    this.#uninstall = () => {
      for (const s of signals) source.off(s, onSignal);
    };
  }

  /**
   * Stops (see {@link Lifecycle.shutdown}) and exits with `exitCode`, by default 0 on a clean stop
   * and 1 when a step failed or the grace period ran out (a failed stop never exits 0).
   */
  async exitAfterShutdown(reason: string, exitCode?: number): Promise<void> {
    const result = await this.shutdown(reason);
    this.#exit(result.ok ? (exitCode ?? 0) : Math.max(1, exitCode ?? 1));
  }

  /** Removes the signal handlers (tests, or a caller that takes over). */
  uninstall(): void {
    this.#uninstall();
  }
}

/**
 * Installs SIGINT/SIGTERM handlers: the first signal runs the cleanup steps in reverse order and
 * exits 0 when all succeed (1 otherwise); a second signal exits at once with 128 + its number.
 */
export function installShutdown(opts: InstallShutdownOptions): ProcessLifecycle {
  return new ProcessLifecycle(opts);
}
