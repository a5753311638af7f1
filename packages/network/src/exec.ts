/**
 * Running ip, tc, nft and sysctl writes in a network namespace: the current one, or a named one
 * under /run/netns entered with nsenter (which, unlike `ip -n`, keeps the caller's mount
 * namespace, so `ip netns add` inside a batch is visible to everyone).
 */
import { join } from "node:path";
import { CommandServer } from "./command-server.js";
import type { CommandResult, RunOptions } from "./command-server.js";
import { CommandError } from "./errors.js";
import { NETNS_DIR } from "./names.js";

export type { CommandResult, RunOptions } from "./command-server.js";

/** The process's command shell: started at the first command, ended by {@link closeCommands}. */
const commands = new CommandServer();

/**
 * Runs `argv` (no shell interprets it) through this process's command shell and resolves with
 * its output.
 *
 * @throws CommandError unless it exits 0.
 */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  return commands.run(argv, options);
}

/**
 * Runs sh script `script` with arguments `args` (as `sh -c script sh ...args`) in a fork of this
 * process's command shell: no program is started for the script itself.
 *
 * @throws CommandError unless it exits 0.
 */
export function runScript(
  script: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  return commands.runScript(script, args, options);
}

/** Ends this process's command shell once its commands are done (a worker's shutdown). */
export function closeCommands(): Promise<void> {
  return commands.close();
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
