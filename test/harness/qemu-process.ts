// Starts qemu for the tests and stops exactly the processes it started (by their PIDs).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const QEMU = "/usr/bin/qemu-system-x86_64";

/** A paused (`-S`) TCG machine with nothing but a QMP server socket. */
export function qmpOnlyArgs(socketPath: string): string[] {
  return [
    "-accel",
    "tcg",
    "-machine",
    "pc",
    "-m",
    "16",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-S",
    "-qmp",
    `unix:${socketPath},server=on,wait=off`,
  ];
}

export interface StartedQemu {
  child: ChildProcess;
  pid: number;
  /** Settles when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stdout so far. */
  stdout(): string;
  /** stderr so far (qemu's error messages). */
  stderr(): string;
}

/** The qemu processes and temp dirs of one test file; `cleanup()` in afterEach. */
export class QemuProcesses {
  readonly #started: StartedQemu[] = [];
  readonly #dirs: string[] = [];

  async tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "eve-qmp-"));
    this.#dirs.push(dir);
    return dir;
  }

  start(args: string[]): StartedQemu {
    const child = spawn(QEMU, args, { stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid === undefined) throw new Error(`could not start ${QEMU}`);
    let out = "";
    let err = "";
    child.stdout?.setEncoding("latin1").on("data", (s: string) => (out += s));
    child.stderr?.setEncoding("utf8").on("data", (s: string) => (err += s));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const started: StartedQemu = { child, pid: child.pid, exited, stdout: () => out, stderr: () => err };
    this.#started.push(started);
    return started;
  }

  /** SIGKILLs each started qemu still running (that PID only), waits for it, removes the dirs. */
  async cleanup(): Promise<void> {
    for (const q of this.#started.splice(0)) {
      if (q.child.exitCode === null && q.child.signalCode === null) q.child.kill("SIGKILL");
      await q.exited;
    }
    for (const dir of this.#dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  }
}

/** Resolves with `p`'s value, or rejects after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
