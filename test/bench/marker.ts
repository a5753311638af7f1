// Waiting for a marker, the common measurement of the start-up scenarios: in a task's log file
// (through the tasks subsystem) or on the stdout of a process the bench spawns itself (the
// baseline: the same program started directly).
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { nowMs } from "./stats.js";

/** Polls `file` every `pollMs` until it holds `text`; resolves with the time it was seen. */
export async function seenInFile(file: string, text: string, timeoutMs: number, pollMs = 5): Promise<number> {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    const body = await readFile(file, "utf8").catch(() => "");
    if (body.includes(text)) return nowMs();
    if (nowMs() > deadline)
      throw new Error(`${text} not in ${file} within ${timeoutMs} ms: ${body.slice(-500)}`);
    await sleep(pollMs);
  }
}

/** What {@link spawnToMarker} starts and waits for. */
export interface SpawnToMarker {
  /** Names the process in errors ("direct qemu"). */
  readonly what: string;
  readonly command: string;
  readonly args: readonly string[];
  /** The text on stdout that ends the measurement. */
  readonly marker: string;
  readonly timeoutMs: number;
}

/**
 * Spawns the process and resolves with the ms from the spawn to `marker` on its stdout. Whatever
 * the outcome (marker, timeout, an exit before the marker), the process is killed by its PID
 * (SIGKILL) if it still runs, and waited for.
 */
export async function spawnToMarker(o: SpawnToMarker): Promise<number> {
  const t0 = nowMs();
  const child = spawn(o.command, o.args, { stdio: ["ignore", "pipe", "pipe"] });
  try {
    return await new Promise<number>((ok, fail) => {
      let out = "";
      let err = "";
      const timer = setTimeout(
        () =>
          fail(
            new Error(`${o.what}: no ${o.marker} in ${o.timeoutMs} ms: ${out.slice(-500)}${err.slice(-500)}`),
          ),
        o.timeoutMs,
      );
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes(o.marker)) {
          clearTimeout(timer);
          ok(nowMs() - t0);
        }
      });
      child.stderr.on("data", (d: Buffer) => void (err += d.toString()));
      child.on("error", (e) => {
        clearTimeout(timer);
        fail(new Error(`${o.what}: cannot start ${o.command}: ${e.message}`, { cause: e }));
      });
      child.on("exit", (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`${o.what} exited ${code ?? signal}: ${out.slice(-500)}${err.slice(-500)}`));
      });
    });
  } finally {
    // A process that never started (pid undefined) has nothing to kill or wait for.
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
  }
}
