/**
 * How a VM is stopped: QMP `system_powerdown` (the guest's ACPI power button: a guest that
 * handles it shuts down cleanly), then QMP `quit` (qemu ends at once, the guest unaware), each
 * with its deadline; what is left after both is the caller's SIGKILL.
 */
import { connectQmp } from "@eve-tasks/qmp";
import { EXECUTOR_DEFAULTS } from "./defaults.js";
import { within } from "./within.js";

/** Options of {@link stopVmByQmp}. */
export interface VmStopOptions {
  /** The QMP socket as the host sees it. */
  socketPath: string;
  /** Settles when the task has exited. */
  exited: Promise<unknown> | undefined;
  /** How long the guest may take to power down (the app's stopTimeoutMs). */
  powerdownTimeoutMs: number;
  /** How long qemu may take to end after `quit`. */
  quitTimeoutMs: number;
  /** How long to wait for the QMP socket to answer. */
  connectTimeoutMs?: number;
  /** Called before each step, for events and logs. */
  onStep?: (step: "system_powerdown" | "quit", previousError?: string) => void | Promise<void>;
}

/** What {@link stopVmByQmp} achieved. */
export type VmStopResult =
  /** The VM ended after this step. */
  | { ended: "system_powerdown" | "quit" }
  /** It still runs after both steps: SIGKILL is next. */
  | { ended: undefined }
  /** QMP could not be reached (`error` says why): nothing was sent. */
  | { ended: undefined; noQmp: string };

/**
 * Runs the QMP steps and says which one ended the VM. When the first command cannot be sent,
 * nothing waits out its deadline: `quit` follows at once.
 */
export async function stopVmByQmp(o: VmStopOptions): Promise<VmStopResult> {
  let qmp: Awaited<ReturnType<typeof connectQmp>>;
  try {
    qmp = await connectQmp(o.socketPath, {
      timeoutMs: o.connectTimeoutMs ?? EXECUTOR_DEFAULTS.qmpConnectTimeoutMs,
    });
  } catch (err) {
    return { ended: undefined, noQmp: err instanceof Error ? err.message : String(err) };
  }
  try {
    await o.onStep?.("system_powerdown");
    let failure: string | undefined;
    const sent = await qmp.execute("system_powerdown").then(
      () => true,
      (err: unknown) => {
        failure = err instanceof Error ? err.message : String(err);
        return false;
      },
    );
    if (await within(o.exited, sent ? o.powerdownTimeoutMs : 0)) return { ended: "system_powerdown" };
    await o.onStep?.("quit", failure);
    // qemu answers and closes the connection: a closed socket is an expected reply.
    await qmp.execute("quit").catch(() => undefined);
    if (await within(o.exited, o.quitTimeoutMs)) return { ended: "quit" };
    return { ended: undefined };
  } finally {
    qmp.close();
  }
}
