/**
 * dnsmasq of a `local` instance, the acting part: a supervised child of this process (in the
 * namespace where bridges live), restarted with back-off when it dies, sent SIGHUP to re-read
 * its static leases and names, stopped by its PID.
 */
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { DnsmasqError } from "./errors.js";
import { inNetns } from "./exec.js";
import { writeFileAtomic } from "./files.js";
import type { DnsmasqHost, DnsmasqInstance, DnsmasqPaths } from "./dnsmasq-config.js";
import { renderDhcpHosts, renderDnsHosts, renderDnsmasqConf } from "./dnsmasq-config.js";

/** Options of a {@link DnsmasqSupervisor}. */
export interface DnsmasqSupervisorOptions {
  /** The namespace where bridges live (EVE_NET_NS), or null for the current one. */
  readonly hostNetns: string | null;
  readonly paths: DnsmasqPaths;
  readonly logger?: Logger | undefined;
  /** First restart delay; doubles per quick death up to {@link maxBackoffMs}. Default 250 ms. */
  readonly backoffMs?: number;
  /** Default 30 s. */
  readonly maxBackoffMs?: number;
  /** A run this long resets the back-off. Default 60 s. */
  readonly stableMs?: number;
  /** How long to wait for dnsmasq to write its pid file. Default 5 s. */
  readonly startTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Whether `pid` runs a dnsmasq with config file `conf` (so a stale pid file never kills a stranger). */
export async function isOurDnsmasq(pid: number, conf: string): Promise<boolean> {
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    return argv.some((a) => a.endsWith("dnsmasq")) && argv.includes(`--conf-file=${conf}`);
  } catch {
    return false;
  }
}

/** The PID in `pidFile` if that process is our dnsmasq for `conf`. */
export async function dnsmasqPidFromFile(pidFile: string, conf: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(pidFile, "utf8");
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 && (await isOurDnsmasq(pid, conf)) ? pid : undefined;
}

/** Sends SIGTERM to `pid`, then SIGKILL after `graceMs`, and waits until it is gone. */
export async function killPid(pid: number, graceMs = 2000): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await sleep(10);
  if (alive()) process.kill(pid, "SIGKILL");
  while (alive()) await sleep(10);
}

/**
 * The first directory on the way to `path` that user nobody cannot enter (no o+x), if any:
 * dnsmasq drops privileges before it reads its hosts files.
 */
export async function unsearchableAncestor(path: string): Promise<string | undefined> {
  const parts: string[] = [];
  for (let d = path; ; d = dirname(d)) {
    parts.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of parts) {
    const s = await stat(d);
    if ((s.mode & 0o001) === 0) return d;
  }
  return undefined;
}

/** One instance's dnsmasq, kept running until {@link stop}. */
export class DnsmasqSupervisor {
  readonly #o: DnsmasqSupervisorOptions;
  #child: ChildProcess | undefined;
  #stopping = false;
  #backoffMs: number;
  #restartTimer: NodeJS.Timeout | undefined;
  #starts = 0;

  constructor(options: DnsmasqSupervisorOptions) {
    this.#o = options;
    this.#backoffMs = options.backoffMs ?? 250;
  }

  /** The running dnsmasq's PID, if one runs. */
  get pid(): number | undefined {
    return this.#child?.exitCode === null && this.#child.signalCode === null ? this.#child.pid : undefined;
  }

  /** How many times dnsmasq was started (1 + restarts). */
  get starts(): number {
    return this.#starts;
  }

  /**
   * Writes the config and hosts files, stops a dnsmasq a previous run of this process left for
   * the same config, and starts dnsmasq; resolves once it has written its pid file (it is then
   * bound and serving).
   *
   * @throws DnsmasqError with dnsmasq's own message when it does not come up.
   */
  async start(ni: DnsmasqInstance, hosts: readonly DnsmasqHost[]): Promise<void> {
    const p = this.#o.paths;
    await mkdir(dirname(p.conf), { recursive: true, mode: 0o755 });
    await mkdir(dirname(p.pidFile), { recursive: true, mode: 0o700 });
    const blocked = await unsearchableAncestor(dirname(p.dhcpHosts));
    if (blocked !== undefined) {
      throw new DnsmasqError(
        `dnsmasq reads ${dirname(p.dhcpHosts)} as user nobody, but ${blocked} is not searchable by others (chmod o+x it, or choose another run directory)`,
        { context: { blocked } },
      );
    }
    await writeFileAtomic(p.conf, renderDnsmasqConf(ni, p), 0o644, false);
    await this.#writeHosts(hosts);
    const stale = await dnsmasqPidFromFile(p.pidFile, p.conf);
    if (stale !== undefined) await killPid(stale);
    await rm(p.pidFile, { force: true });
    this.#stopping = false;
    await this.#spawn();
  }

  async #writeHosts(hosts: readonly DnsmasqHost[]): Promise<void> {
    // Rebuilt from the IPAM at every start: atomic, not durable.
    await writeFileAtomic(this.#o.paths.dhcpHosts, renderDhcpHosts(hosts), 0o644, false);
    await writeFileAtomic(this.#o.paths.dnsHosts, renderDnsHosts(hosts), 0o644, false);
  }

  async #spawn(): Promise<void> {
    const p = this.#o.paths;
    const argv = inNetns(this.#o.hostNetns, ["dnsmasq", "--keep-in-foreground", `--conf-file=${p.conf}`]);
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    this.#child = child;
    this.#starts++;
    const startedAt = Date.now();
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString("utf8")).slice(-4096);
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.once("exit", (code, signal) => {
      if (this.#child !== child || this.#stopping) return;
      const ranMs = Date.now() - startedAt;
      if (ranMs >= (this.#o.stableMs ?? 60_000)) this.#backoffMs = this.#o.backoffMs ?? 250;
      const delay = this.#backoffMs;
      this.#backoffMs = Math.min(this.#backoffMs * 2, this.#o.maxBackoffMs ?? 30_000);
      this.#o.logger?.warn(
        { conf: p.conf, code, signal, ranMs, restartInMs: delay, stderr: stderr.trim() || undefined },
        "dnsmasq exited; restarting",
      );
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        if (this.#stopping) return;
        this.#spawn().catch((err: unknown) =>
          this.#o.logger?.error({ conf: p.conf, err }, "dnsmasq restart failed; trying again"),
        );
      }, delay);
    });
    child.once("error", () => undefined); // reported through "exit" or the pid-file wait below
    const deadline = Date.now() + (this.#o.startTimeoutMs ?? 5000);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        await exited;
        throw new DnsmasqError(
          `dnsmasq for ${p.conf} exited at start: ${stderr.trim() || `status ${child.exitCode}`}`,
          {
            context: { conf: p.conf, exitCode: child.exitCode, stderr },
          },
        );
      }
      const pid = await readFile(p.pidFile, "utf8").then(
        (t) => Number(t.trim()),
        () => 0,
      );
      if (pid === child.pid) break;
      if (Date.now() > deadline) {
        throw new DnsmasqError(`dnsmasq for ${p.conf} did not write its pid file in time`, {
          context: { conf: p.conf },
        });
      }
      await sleep(5);
    }
    this.#o.logger?.info({ conf: p.conf, pid: child.pid }, "dnsmasq started");
  }

  /** Rewrites the static leases and names and has dnsmasq re-read them (SIGHUP). */
  async update(hosts: readonly DnsmasqHost[]): Promise<void> {
    await this.#writeHosts(hosts);
    const pid = this.pid;
    if (pid !== undefined) process.kill(pid, "SIGHUP");
  }

  /** Stops dnsmasq (SIGTERM, then SIGKILL) and any restart pending; removes its pid file. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const child = this.#child;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
      await exited;
      clearTimeout(timer);
    }
    this.#child = undefined;
    await rm(this.#o.paths.pidFile, { force: true });
  }
}
