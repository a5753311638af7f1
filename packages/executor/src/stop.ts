/**
 * The one way a task is stopped, whoever asks (a config change, a deleted config, a restart
 * request, the node stopping): by its stop kind.
 *
 * - `signal`: the stop signal (SIGTERM, or the StopSignal a runtime image declares) to every
 *   process of the task, `stopTimeoutMs`, then SIGKILL.
 * - `qmp` (a runtime whose image says `org.lfedge.eve-tasks.stop: qmp`, such as a VM): QMP `system_powerdown` (the guest's ACPI power button), `stopTimeoutMs`, QMP
 *   `quit`, `quitTimeoutMs`, then SIGKILL. When QMP does not answer, the `signal` steps instead
 *   (qemu also ends cleanly on SIGTERM).
 *
 * After SIGKILL the caller waits at most `killTimeoutMs`, then deletes the task anyway.
 */
import { existsSync } from "node:fs";
import type { ReadyTaskConfig, StopTasksReply } from "@eve-tasks/schemas";
import type { TaskRuntime } from "./runtime.js";
import { stopVmByQmp } from "./vm-stop.js";
import { within } from "./within.js";

/** How a task is stopped; kept in its container's labels. */
export type StopKind = "signal" | "qmp";

/** The step that ended a stopped task: a QMP command, the stop signal, or SIGKILL. */
export type StopStep = StopTasksReply["stopped"][number]["stoppedBy"] & string;

/** The stop signal of a task that names none. */
export const DEFAULT_STOP_SIGNAL = "SIGTERM";

/**
 * A task's stop kind and signal by its config: those its runtime image's labels declare (checked
 * against the seed on the node by `applyRuntimeFacts`), else SIGTERM.
 */
export function stopOf(config: Pick<ReadyTaskConfig, "runtime">): { kind: StopKind; signal: string } {
  const stop = config.runtime?.stop;
  if (stop?.method === "qmp") return { kind: "qmp", signal: DEFAULT_STOP_SIGNAL };
  return { kind: "signal", signal: stop?.signal ?? DEFAULT_STOP_SIGNAL };
}

/**
 * The stop kind of an existing task: its container's label, or for a container made before the
 * label existed, `qmp` exactly when the VM's QMP socket is there.
 */
export function resolveStopKind(label: StopKind | undefined, qmpSocketPath: string): StopKind {
  return label ?? (existsSync(qmpSocketPath) ? "qmp" : "signal");
}

/** What {@link stopTask} needs. */
export interface StopTaskOptions {
  runtime: TaskRuntime;
  id: string;
  kind: StopKind;
  /** The signal of `signal` (and of `qmp` when QMP does not answer); default SIGTERM. */
  signal?: string;
  /** The VM's QMP socket as the host sees it (for `qmp`). */
  qmpSocketPath: string;
  /** Settles when the task has exited (its pending Tasks.Wait). */
  exited: Promise<unknown> | undefined;
  stopTimeoutMs: number;
  quitTimeoutMs: number;
  killTimeoutMs: number;
  qmpConnectTimeoutMs: number;
  /** Told of each escalation, with a sentence for the task's events. */
  onStep(step: "quit" | "SIGKILL", message: string): Promise<void>;
  /** Told when a VM's QMP socket did not answer (the stop signal is used instead). */
  onNoQmp?(error: string): void;
}

/** How a stop went: the step that ended the task, or SIGKILL with `exited` false if nothing did. */
export interface StopOutcome {
  by: StopStep;
  exited: boolean;
}

/** The stop-in-progress sentence of the `stopping` event. */
export function stoppingMessage(
  kind: StopKind,
  reason: string,
  o: { stopTimeoutMs: number; quitTimeoutMs: number; signal?: string },
): string {
  const signal = o.signal ?? DEFAULT_STOP_SIGNAL;
  return kind === "qmp"
    ? `stopping: ${reason} (QMP system_powerdown, quit after ${o.stopTimeoutMs} ms, SIGKILL ${o.quitTimeoutMs} ms later)`
    : signal === DEFAULT_STOP_SIGNAL
      ? `stopping: ${reason}`
      : `stopping: ${reason} (${signal}, SIGKILL after ${o.stopTimeoutMs} ms)`;
}

/** Stops the task by its kind and says which step ended it. The task is not deleted. */
export async function stopTask(o: StopTaskOptions): Promise<StopOutcome> {
  let viaSignal = o.kind === "signal";
  if (o.kind === "qmp") {
    const result = await stopVmByQmp({
      socketPath: o.qmpSocketPath,
      exited: o.exited,
      powerdownTimeoutMs: o.stopTimeoutMs,
      quitTimeoutMs: o.quitTimeoutMs,
      connectTimeoutMs: o.qmpConnectTimeoutMs,
      onStep: async (step, previousError) => {
        if (step !== "quit") return;
        const why = previousError
          ? `system_powerdown failed (${previousError})`
          : `no exit ${o.stopTimeoutMs} ms after system_powerdown`;
        await o.onStep("quit", `${why}: sent QMP quit`);
      },
    });
    if (result.ended) return { by: result.ended, exited: true };
    if ("noQmp" in result) {
      o.onNoQmp?.(result.noQmp);
      viaSignal = true;
    }
  }
  const signal = o.signal ?? DEFAULT_STOP_SIGNAL;
  if (viaSignal) {
    await o.runtime.killTask(o.id, signal as NodeJS.Signals, { all: true });
    if (await within(o.exited, o.stopTimeoutMs)) return { by: signal, exited: true };
  }
  await o.runtime.killTask(o.id, "SIGKILL", { all: true });
  const after = viaSignal ? `${o.stopTimeoutMs} ms after ${signal}` : `${o.quitTimeoutMs} ms after QMP quit`;
  await o.onStep("SIGKILL", `no exit ${after}: sent SIGKILL`);
  return { by: "SIGKILL", exited: await within(o.exited, o.killTimeoutMs) };
}
