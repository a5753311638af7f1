/**
 * Runs commands through one long-lived `/bin/sh` instead of forking this process for each.
 *
 * Node starts a child by forking itself: in a worker holding a few hundred MB that blocks the
 * event loop for several milliseconds per command and costs more than the command (an `ip`
 * batch). A task's network is a handful of such commands on the start path, so they are handed
 * to a small shell started once, which forks itself (cheap) and execs the command.
 *
 * The protocol is files in a private directory (0700, made by this process) and job numbers on
 * the shell's stdin: for job N this process writes `N.cmd` (`exec` of the quoted argv with its
 * redirections, or a script of this package's with its quoted arguments), and `N.in` when there
 * is input; the shell sources `N.cmd` in a fork of itself and answers `N pid P` when the command runs and `N rc C` when it has ended; the
 * output is read from `N.out` and `N.err`, then the job's files are removed. The shell ends when
 * its stdin closes (this process exiting, even by SIGKILL) and then removes the directory.
 */
import { spawn } from "node:child_process";
import type { ChildProcessByStdio } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { constants } from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import { CommandError } from "./errors.js";

/** Output of a command that exited 0. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Options of a command run. */
export interface RunOptions {
  /** Written to the command's stdin (then closed). */
  input?: string;
  /** Kill the command (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
}

/** How long a command may run unless told otherwise. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

/**
 * The shell's loop. Each job runs in a background subshell (stdin /dev/null, as POSIX gives an
 * asynchronous list), which starts the command in the background to learn its PID (the target
 * of a timeout's SIGKILL), reports it, waits for it, and reports its status.
 */
const SERVER_SCRIPT = [
  "d=$1",
  "while IFS= read -r id; do",
  '  case $id in *[!0-9]*|"") continue;; esac',
  '  { . "$d/$id.cmd" & c=$!; echo "$id pid $c"; wait "$c"; echo "$id rc $?"; } &',
  "done",
  "wait",
  'exec rm -rf -- "$d"',
].join("\n");

/** `arg` quoted for sh: one single-quoted word, whatever it holds. */
export function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

interface Job {
  readonly argv: readonly string[];
  readonly input: string | undefined;
  readonly resolve: (r: CommandResult) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  readonly timeoutMs: number;
  pid: number | undefined;
  timedOut: boolean;
}

type Shell = ChildProcessByStdio<Writable, Readable, Readable>;

/** How long a killed command's status may take before its run fails without it. */
const KILL_GRACE_MS = 2_000;

/** A child's stdio stream as the socket it is (pipes can be ref'd and unref'd). */
export const socket = (stream: Readable | Writable): Socket => stream as unknown as Socket;

const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/** One shell and the jobs it runs. */
class Session {
  readonly jobs = new Map<number, Job>();
  #pending = "";
  /** Set once the shell has exited: no new job goes to it. */
  exited = false;

  constructor(
    readonly child: Shell,
    readonly dir: string,
  ) {}

  file(id: number, ext: string): string {
    return join(this.dir, `${id}.${ext}`);
  }

  /** Handles the shell's `N pid P` and `N rc C` lines. */
  onOutput(chunk: string): void {
    this.#pending += chunk;
    let nl: number;
    while ((nl = this.#pending.indexOf("\n")) >= 0) {
      const line = this.#pending.slice(0, nl);
      this.#pending = this.#pending.slice(nl + 1);
      const m = /^(\d+) (pid|rc) (\d+)$/.exec(line);
      if (m === null) continue;
      const id = Number(m[1]);
      const job = this.jobs.get(id);
      if (job === undefined) continue;
      if (m[2] === "pid") {
        job.pid = Number(m[3]);
        if (job.timedOut) kill(job);
      } else {
        this.jobs.delete(id);
        clearTimeout(job.timer);
        this.refWhileBusy();
        void this.#finish(id, job, Number(m[3]));
      }
    }
  }

  async #finish(id: number, job: Job, rc: number): Promise<void> {
    const [stdout, stderr] = await Promise.all([
      readFile(this.file(id, "out"), "utf8").catch(() => ""),
      readFile(this.file(id, "err"), "utf8").catch(() => ""),
    ]);
    await Promise.all(["cmd", "in", "out", "err"].map((ext) => rm(this.file(id, ext), { force: true })));
    if (rc === 0) job.resolve({ stdout, stderr });
    else job.reject(commandFailed(job, rc, stderr));
  }

  timeOut(id: number): void {
    const job = this.jobs.get(id);
    if (job === undefined) return;
    job.timedOut = true;
    if (job.pid !== undefined) kill(job);
    // Its status is reported once it is dead; should that never come, it fails all the same.
    setTimeout(() => {
      if (this.jobs.get(id) !== job) return;
      this.jobs.delete(id);
      this.refWhileBusy();
      job.reject(commandFailed(job, 128 + constants.signals.SIGKILL, ""));
    }, KILL_GRACE_MS).unref();
  }

  /** The shell's output keeps this process alive exactly while commands run. */
  refWhileBusy(): void {
    if (this.jobs.size > 0) socket(this.child.stdout).ref();
    else socket(this.child.stdout).unref();
  }

  /** The shell and every job's output are gone: what is still waiting failed. */
  lost(message: string, cause?: unknown): void {
    const jobs = [...this.jobs.values()];
    this.jobs.clear();
    for (const job of jobs) {
      clearTimeout(job.timer);
      job.reject(
        new CommandError(`${job.argv.join(" ")}: ${message}`, { context: { argv: job.argv }, cause }),
      );
    }
    // The shell removes its directory when it ends normally; not when it was killed.
    void rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function kill(job: Job): void {
  try {
    process.kill(job.pid!, "SIGKILL");
  } catch {
    // already gone: its rc line follows
  }
}

/** The error of a job that ended with status `rc` (the shell's `$?`: 128 + N for signal N). */
function commandFailed(job: Job, rc: number, stderr: string): CommandError {
  const [command] = job.argv;
  // The shell's exec found nothing to run.
  if (rc === 127 && /not found|No such file|Permission denied/.test(stderr))
    return new CommandError(`${command} could not be started: ${stderr.trim()}`, {
      context: { argv: job.argv, exitCode: rc, stderr },
    });
  const signal = rc > 128 ? (SIGNAL_NAMES.get(rc - 128) ?? null) : null;
  const exitCode = signal === null ? rc : null;
  const how = job.timedOut
    ? `was killed by SIGKILL after ${job.timeoutMs} ms`
    : signal !== null
      ? `was killed by ${signal}`
      : `exited ${exitCode}`;
  const detail = stderr.trim().split("\n").slice(-5).join("; ");
  return new CommandError(`${job.argv.join(" ")} ${how}${detail ? `: ${detail}` : ""}`, {
    context: { argv: job.argv, exitCode, signal, stderr, input: job.input },
  });
}

/** One long-lived shell that runs commands for this process (see the module's comment). */
export class CommandServer {
  readonly #shell: string;
  #session: Promise<Session> | undefined;
  /** The session {@link #session} resolved to, once it has. */
  #live: Session | undefined;
  #next = 1;

  /** @param shell the shell to run (default `/bin/sh`). */
  constructor(shell = "/bin/sh") {
    this.#shell = shell;
  }

  /**
   * Runs `argv` (no shell interprets it) and resolves with its output.
   *
   * @throws CommandError unless it exits 0; its context has argv, exitCode, signal, stderr, input.
   */
  async run(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    if (argv[0] === undefined) throw new CommandError("empty command");
    return this.#run(argv, (redirect) => `exec ${argv.map(shellQuote).join(" ")} ${redirect}\n`, options, 1);
  }

  /**
   * Runs sh script `script` with positional parameters `args` in the shell's own fork (no
   * program is started for the script itself), as `sh -c script sh ...args` would.
   *
   * @throws CommandError unless it exits 0 (its argv in the context is that `sh -c` form).
   */
  async runScript(script: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    const body = (redirect: string): string =>
      `set -- ${args.map(shellQuote).join(" ")}\n{\n${script}\n} ${redirect}\n`;
    return this.#run(["sh", "-c", script, "sh", ...args], body, options, 1);
  }

  async #run(
    argv: readonly string[],
    body: (redirect: string) => string,
    options: RunOptions,
    retries: number,
  ): Promise<CommandResult> {
    const s = await this.#current();
    const id = this.#next++;
    const stdin = options.input === undefined ? "/dev/null" : s.file(id, "in");
    if (options.input !== undefined) await writeFile(s.file(id, "in"), options.input, { mode: 0o600 });
    const redirect = `<${shellQuote(stdin)} >${shellQuote(s.file(id, "out"))} 2>${shellQuote(s.file(id, "err"))}`;
    await writeFile(s.file(id, "cmd"), body(redirect), { mode: 0o600 });
    // The shell ended while the job was written: it never ran, so a new shell runs it.
    if (s.exited && retries > 0) return this.#run(argv, body, options, retries - 1);
    const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const done = new Promise<CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => s.timeOut(id), timeoutMs);
      const job: Job = {
        argv,
        input: options.input,
        resolve,
        reject,
        timer,
        timeoutMs,
        pid: undefined,
        timedOut: false,
      };
      s.jobs.set(id, job);
    });
    s.refWhileBusy();
    if (s.exited) s.lost("the command shell had ended");
    else s.child.stdin.write(`${id}\n`);
    return done;
  }

  /** The shell's PID while it runs (for tests and diagnostics). */
  async pid(): Promise<number | undefined> {
    const s = await this.#session?.catch(() => undefined);
    return s?.exited === false ? s.child.pid : undefined;
  }

  /** Ends the shell once its running commands are done; resolves when it and they have ended. */
  async close(): Promise<void> {
    const s = await this.#session?.catch(() => undefined);
    this.#session = undefined;
    this.#live = undefined;
    if (s === undefined || s.exited) return;
    const closed = new Promise<void>((r) => s.child.once("close", () => r()));
    // Waiting for it (its output's end, then its exit) keeps this process alive.
    s.child.ref();
    socket(s.child.stdout).ref();
    s.child.stdin.end();
    await closed;
  }

  #current(): Promise<Session> {
    this.#session ??= this.#start().catch((err: unknown) => {
      this.#session = undefined;
      throw err;
    });
    return this.#session;
  }

  async #start(): Promise<Session> {
    const dir = await mkdtemp(join(tmpdir(), "eve-cmd-"));
    const child = spawn(this.#shell, ["-c", SERVER_SCRIPT, "sh", dir], { stdio: ["pipe", "pipe", "pipe"] });
    const s = new Session(child, dir);
    const errors: string[] = [];
    child.stdin.on("error", () => undefined); // its end is reported by "exit" and "close"
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => s.onOutput(chunk));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => errors.push(chunk));
    const ended = (how: string): string =>
      `the command shell ${this.#shell} (PID ${child.pid ?? "none"}) ${how}` +
      (errors.length > 0 ? `: ${errors.join("").trim().split("\n").slice(-3).join("; ")}` : "");
    // No new job goes to a shell that has exited; the jobs it started still report until their
    // output closes ("close"), then whatever has not reported failed.
    const retire = (): void => {
      s.exited = true;
      if (this.#live !== s) return;
      this.#live = undefined;
      this.#session = undefined;
    };
    child.on("exit", retire);
    child.on("error", (err) => {
      retire();
      s.lost(ended(`could not be started: ${err.message}`), err);
    });
    child.on("close", (code, signal) => s.lost(ended(`ended (${signal ?? `exit ${code}`})`)));
    // Idle, the shell does not keep this process alive.
    this.#live = s;
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) socket(stream).unref();
    return s;
  }
}
