/**
 * Running ip, tc, nft and sysctl writes in a network namespace: the current one, or a named one
 * under /run/netns entered with nsenter (which, unlike `ip -n`, keeps the caller's mount
 * namespace, so `ip netns add` inside a batch is visible to everyone).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { CommandError } from "./errors.js";
import { NETNS_DIR } from "./names.js";

/** Output of a command that exited 0. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Options of {@link runCommand}. */
export interface RunOptions {
  /** Written to the command's stdin (then closed). */
  input?: string;
  /** Kill the command after this long; default 30 s. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Runs `argv` (no shell) and resolves with its output; rejects with {@link CommandError} unless it exits 0. */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const [command, ...args] = argv;
  if (command === undefined) return Promise.reject(new CommandError("empty command"));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      killSignal: "SIGKILL",
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) =>
      reject(
        new CommandError(`${command} could not be started: ${e.message}`, { context: { argv }, cause: e }),
      ),
    );
    child.on("close", (code, signal) => {
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (code === 0) {
        resolve({ stdout, stderr });
        return;
      }
      const how = signal !== null ? `was killed by ${signal}` : `exited ${code}`;
      const detail = stderr.trim().split("\n").slice(-5).join("; ");
      reject(
        new CommandError(`${argv.join(" ")} ${how}${detail ? `: ${detail}` : ""}`, {
          context: { argv, exitCode: code, signal, stderr, input: options.input },
        }),
      );
    });
    if (options.input !== undefined && child.stdin) {
      child.stdin.on("error", () => undefined); // an early exit is reported by "close"
      child.stdin.end(options.input);
    }
  });
}

/** `argv` run inside named netns `netns` (via nsenter), or as it is when `netns` is null. */
export function inNetns(netns: string | null, argv: readonly string[]): string[] {
  return netns === null ? [...argv] : ["nsenter", `--net=${join(NETNS_DIR, netns)}`, "--", ...argv];
}

/** Runs `lines` as one `ip -batch -` in `netns`; the first failing line fails the batch. */
export async function ipBatch(netns: string | null, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  await runCommand(inNetns(netns, ["ip", "-batch", "-"]), { input: `${lines.join("\n")}\n` });
}

/** Like {@link ipBatch} but goes on past failing lines (for teardown); returns whether all succeeded. */
export async function ipBatchForce(netns: string | null, lines: readonly string[]): Promise<boolean> {
  if (lines.length === 0) return true;
  try {
    await runCommand(inNetns(netns, ["ip", "-force", "-batch", "-"]), { input: `${lines.join("\n")}\n` });
    return true;
  } catch (err) {
    if (err instanceof CommandError) return false;
    throw err;
  }
}

/** Runs `ip -json <args>` in `netns` and parses its output. */
export async function ipJson<T>(netns: string | null, args: readonly string[]): Promise<T> {
  const { stdout } = await runCommand(inNetns(netns, ["ip", "-json", ...args]));
  return (stdout.trim() === "" ? [] : JSON.parse(stdout)) as T;
}

/** Applies an nftables script with `nft -f -` in `netns` (one transaction: all or nothing). */
export async function nftApply(netns: string | null, script: string): Promise<void> {
  await runCommand(inNetns(netns, ["nft", "-f", "-"]), { input: script });
}
