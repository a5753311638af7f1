/**
 * The task netns helper (`native/eve-netns.c`): builds and removes a container task's netns over
 * netlink, and applies the instances' nft rulesets with libnftables, from one long-lived process,
 * so a task's network starts no process at all. Requests
 * are lines on its stdin, answers lines on its stdout, in order (see the C file's header).
 *
 * Two helpers run: one builds, one tears down. Removing a veth waits for the kernel's RCU grace
 * periods (tens of milliseconds), which must not hold up the next task's start.
 */
import { spawn } from "node:child_process";
import type { ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { socket } from "./command-server.js";
import { CommandError } from "./errors.js";
import type { TaskNetworkPlan } from "./task-netns.js";

/** The helper's C source, shipped with the package. */
export const NETNS_HELPER_SOURCE = fileURLToPath(new URL("../native/eve-netns.c", import.meta.url));
/** The libraries the helper links with: libmnl (netlink), libnftables (rulesets). */
export const NETNS_HELPER_LIBS: readonly string[] = ["-lmnl", "-lnftables"];

interface Pending {
  readonly request: string;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

type Child = ChildProcessByStdio<Writable, Readable, Readable>;

/** One helper process, started at its first request and again after it ends. */
class HelperProcess {
  readonly #binary: string;
  #child: Child | undefined;
  #next = 1;
  readonly #pending = new Map<number, Pending>();
  #buffer = "";
  #stderr = "";

  constructor(binary: string) {
    this.#binary = binary;
  }

  /** The process's PID while it runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Sends one request (its words, then `payload`'s length and bytes when given). */
  request(words: readonly string[], payload?: string): Promise<void> {
    // One request is one line of words: a word that could split or end it is refused here.
    const bad = words.find((w) => !/^[^\s]+$/.test(w));
    if (bad !== undefined)
      return Promise.reject(
        new CommandError(`eve-netns: ${JSON.stringify(bad)} is not a name`, {
          context: { argv: [this.#binary], request: words.join(" "), stage: "args" },
        }),
      );
    const child = this.#child ?? this.#start();
    const id = this.#next++;
    const request = words.join(" ");
    const body = payload === undefined ? "" : ` ${Buffer.byteLength(payload)}\n${payload}`;
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { request, resolve, reject });
      socket(child.stdout).ref();
      child.stdin.write(payload === undefined ? `${id} ${request}\n` : `${id} ${request}${body}`);
    });
  }

  async close(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const closed = new Promise<void>((r) => child.once("close", () => r()));
    // Waiting for it (its output's end, then its exit) keeps this process alive.
    child.ref();
    socket(child.stdout).ref();
    child.stdin.end();
    await closed;
  }

  #start(): Child {
    const child = spawn(this.#binary, [], { stdio: ["pipe", "pipe", "pipe"] });
    this.#child = child;
    this.#stderr = "";
    child.stdin.on("error", () => undefined); // its end is reported by "close"
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => this.#onOutput(chunk));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => (this.#stderr = (this.#stderr + chunk).slice(-2000)));
    const lost = (why: string, cause?: unknown): void => {
      if (this.#child !== child) return;
      this.#child = undefined;
      this.#buffer = "";
      const pending = [...this.#pending.values()];
      this.#pending.clear();
      const detail = this.#stderr.trim() ? `: ${this.#stderr.trim().split("\n").slice(-3).join("; ")}` : "";
      for (const p of pending)
        p.reject(
          new CommandError(`${this.#binary} (PID ${child.pid ?? "none"}) ${why}${detail}`, {
            context: { argv: [this.#binary], request: p.request, stage: "helper" },
            cause,
          }),
        );
    };
    child.on("error", (err) => lost(`could not be started: ${err.message}`, err));
    child.on("close", (code, signal) => lost(`ended (${signal ?? `exit ${code}`})`));
    // Idle, the helper does not keep this process alive.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) socket(s).unref();
    return child;
  }

  #onOutput(chunk: string): void {
    this.#buffer += chunk;
    let nl: number;
    while ((nl = this.#buffer.indexOf("\n")) >= 0) {
      const line = this.#buffer.slice(0, nl);
      this.#buffer = this.#buffer.slice(nl + 1);
      const m = /^(\d+) (ok|err (\S+) (.*))$/.exec(line);
      if (m === null) continue;
      const id = Number(m[1]);
      const p = this.#pending.get(id);
      if (p === undefined) continue;
      this.#pending.delete(id);
      if (this.#pending.size === 0 && this.#child) socket(this.#child.stdout).unref();
      if (m[2] === "ok") p.resolve();
      else
        p.reject(
          new CommandError(`${m[4]} (eve-netns: ${p.request})`, {
            context: { argv: [this.#binary], request: p.request, stage: m[3], stderr: m[4] },
          }),
        );
    }
  }
}

/** The two helper processes of a node (see the module's comment). */
export class NetnsHelper {
  readonly #build: HelperProcess;
  readonly #teardown: HelperProcess;

  /** @param binary the built `eve-netns` (absolute path). */
  constructor(binary: string) {
    this.#build = new HelperProcess(binary);
    this.#teardown = new HelperProcess(binary);
  }

  /** Whether the helper can build `plan` (container interfaces; a VM's taps need the tc path). */
  static handles(plan: TaskNetworkPlan): boolean {
    return plan.interfaces.every((i) => i.tap === undefined);
  }

  /**
   * Builds `plan`'s netns, veths, addresses and default route.
   *
   * @throws CommandError with `context.stage` host (netns, veths, bridge ports), task (inside the
   *   netns), args or helper; what was made stays for the caller's teardown.
   */
  setup(hostNetns: string | null, plan: TaskNetworkPlan): Promise<void> {
    const words = ["setup", plan.netns, hostNetns ?? "-", String(plan.interfaces.length)];
    for (const i of plan.interfaces)
      words.push(
        i.hostIfName,
        i.name,
        i.mac,
        String(i.mtu),
        i.bridge,
        i.ip,
        String(i.prefixLength),
        i.defaultRoute ? i.gateway : "-",
      );
    return this.#build.request(words);
  }

  /** Removes host-side veths `hostIfNames` (their peers go with them) and netns `netns`; idempotent. */
  teardown(hostNetns: string | null, netns: string, hostIfNames: readonly string[]): Promise<void> {
    return this.#teardown.request([
      "teardown",
      netns,
      hostNetns ?? "-",
      String(hostIfNames.length),
      ...hostIfNames,
    ]);
  }

  /**
   * Applies nft script `script` in `hostNetns` (null: the helper's own) as one transaction, as
   * `nft -f` does.
   *
   * @throws CommandError with nft's error (context.stage host) when the ruleset is refused.
   */
  nft(hostNetns: string | null, script: string): Promise<void> {
    return this.#build.request(["nft", hostNetns ?? "-"], script);
  }

  /** The PIDs of the processes that run (for diagnostics and tests). */
  pids(): number[] {
    return [this.#build.pid, this.#teardown.pid].filter((p): p is number => p !== undefined);
  }

  /** Ends both processes (once their requests are answered). */
  async close(): Promise<void> {
    await Promise.all([this.#build.close(), this.#teardown.close()]);
  }
}
