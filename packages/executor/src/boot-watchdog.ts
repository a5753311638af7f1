/**
 * The boot watchdog of VMs given KVM on the probe's word (`auto`, see kvm-probe.ts). The probe
 * guest can come up under a nested KVM that then hangs a real guest: the vCPU spins at 100 % and
 * the guest never writes a byte. A VM whose guest shows no sign of life by the deadline is
 * stopped (the one stop of lifecycle.ts, not counted by the restart policy) and started again
 * under TCG, and the node's verdict becomes "KVM is not usable" for the rest of its boot.
 *
 * **Sign of life**: a line of the task's console log, written after Tasks.Start, that is not the
 * runtime's own: not empty, and not starting with `<qemu program>:` (qemu's own warnings, such as
 * a CPU feature KVM lacks) nor `eve-tasks loader` (a loader's message). A line still being
 * written counts once it can no longer become one of those. What the serial console carries is
 * the guest's: firmware, boot loader or kernel output all count. A guest that writes nothing to
 * its serial console under a working KVM is therefore taken for a hung one: ask for `kvm`
 * explicitly for such a guest (never watched), or turn the watchdog off (deadline 0).
 *
 * Decisions are pure ({@link guestSignOfLife}, {@link checkBoot}, {@link watchesBoot}); the
 * class only reads the log on a timer and reports.
 */
import type { LogCursor } from "@eve-tasks/schemas";
import { readLogFrom } from "@eve-tasks/task-logs";
import type { RuntimeFacts } from "./runtime-task.js";

/** Whether a task with these runtime facts is watched at boot (deadline 0: never). */
export function watchesBoot(
  runtime: Pick<RuntimeFacts, "accel" | "watchBoot"> | undefined,
  deadlineMs: number,
): boolean {
  return deadlineMs > 0 && runtime?.accel === "kvm" && runtime.watchBoot === true;
}

/** The prefixes of lines a runtime task writes itself, not its guest (see the module's comment). */
export function ownLinePrefixes(qemuProgram: string): string[] {
  return [`${qemuProgram}:`, "eve-tasks loader"];
}

/**
 * The first line of `output` (console output written since the start) that is a sign of life of
 * the guest, or undefined. The last line, if it does not end in a newline, counts only when no
 * more bytes could make it one of the runtime's own.
 */
export function guestSignOfLife(output: string, ownPrefixes: readonly string[]): string | undefined {
  const lines = output.split(/\r?\n/);
  const partial = lines.pop() ?? "";
  const own = (line: string): boolean => ownPrefixes.some((p) => line.startsWith(p));
  for (const line of lines) {
    if (line.trim() !== "" && !own(line)) return line;
  }
  if (partial.trim() === "" || own(partial)) return undefined;
  // "qemu-sys" may still become "qemu-system-x86_64: warning: ...".
  if (ownPrefixes.some((p) => p.startsWith(partial))) return undefined;
  return partial;
}

/** What {@link checkBoot} decided. */
export type BootCheck =
  /** The guest is up: stop watching. */
  | { readonly kind: "alive"; readonly line: string }
  /** Nothing yet: look again, no later than `untilMs` (the deadline). */
  | { readonly kind: "wait"; readonly untilMs: number }
  /** No sign of life by the deadline: stop the task and start it again under TCG. */
  | { readonly kind: "fallback"; readonly reason: string };

/** What {@link checkBoot} looks at. */
export interface BootCheckInput {
  /** When Tasks.Start returned (epoch ms). */
  readonly startedAtMs: number;
  readonly nowMs: number;
  readonly deadlineMs: number;
  /** The guest's first line since the start ({@link guestSignOfLife}), if any. */
  readonly sign: string | undefined;
}

/** The watchdog's decision for one look at a booting VM. */
export function checkBoot(input: BootCheckInput): BootCheck {
  if (input.sign !== undefined) return { kind: "alive", line: input.sign };
  const untilMs = input.startedAtMs + input.deadlineMs;
  if (input.nowMs < untilMs) return { kind: "wait", untilMs };
  return {
    kind: "fallback",
    reason:
      `a VM under KVM (auto) showed no sign of life within ${input.deadlineMs} ms: ` +
      "nothing from its guest on the serial console",
  };
}

/** At most this much of the new output is read at one look: a sign of life is in its first lines. */
const READ_BYTES = 64 * 1024;

/** One VM to watch. */
export interface BootWatch {
  readonly uuid: string;
  readonly pid: number;
  readonly logPath: string;
  /**
   * Where the log ended right before Tasks.Start (`logEndCursor` of @eve-tasks/task-logs), so
   * only the new task's output is looked at; null: the log had no file then, all of it is new.
   */
  readonly mark: LogCursor | null;
  readonly startedAtMs: number;
  readonly deadlineMs: number;
  readonly ownPrefixes: readonly string[];
  /** Whether `pid` is still the app's task (a task that ended or was replaced is not watched). */
  current(): boolean;
  /** The guest showed a sign of life (`line`). */
  onAlive(line: string, afterMs: number): void;
  /** No sign of life by the deadline. */
  onFallback(reason: string): void;
}

/** Looks at each watched VM's console log every `pollMs` until it is up, gone or past its deadline. */
export class BootWatchdog {
  readonly #pollMs: number;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(options: { pollMs?: number } = {}) {
    this.#pollMs = options.pollMs ?? 250;
  }

  /** Watches `w` (replacing any watch of the same app). */
  watch(w: BootWatch): void {
    this.cancel(w.uuid);
    this.#schedule(w, 0);
  }

  /** Stops watching `uuid`. */
  cancel(uuid: string): void {
    const t = this.#timers.get(uuid);
    if (t) clearTimeout(t);
    this.#timers.delete(uuid);
  }

  /** Stops every watch (the executor stops). */
  close(): void {
    this.#closed = true;
    for (const uuid of [...this.#timers.keys()]) this.cancel(uuid);
  }

  #schedule(w: BootWatch, inMs: number): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      void this.#look(w, timer);
    }, inMs);
    timer.unref();
    this.#timers.set(w.uuid, timer);
  }

  async #look(w: BootWatch, timer: NodeJS.Timeout): Promise<void> {
    if (this.#timers.get(w.uuid) !== timer) return;
    if (!w.current()) {
      this.#timers.delete(w.uuid);
      return;
    }
    const output = await readLogFrom(w.logPath, w.mark, READ_BYTES)
      .then((span) => span.data.toString("utf8"))
      .catch(() => "");
    if (this.#timers.get(w.uuid) !== timer) return;
    const now = Date.now();
    const check = checkBoot({
      startedAtMs: w.startedAtMs,
      nowMs: now,
      deadlineMs: w.deadlineMs,
      sign: guestSignOfLife(output, w.ownPrefixes),
    });
    switch (check.kind) {
      case "wait":
        this.#schedule(w, Math.min(this.#pollMs, Math.max(0, check.untilMs - now)));
        return;
      case "alive":
        this.#timers.delete(w.uuid);
        w.onAlive(check.line, now - w.startedAtMs);
        return;
      case "fallback":
        this.#timers.delete(w.uuid);
        w.onFallback(check.reason);
        return;
    }
  }
}
