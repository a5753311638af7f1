/**
 * containerd shims left running without a task, and their end.
 *
 * containerd 1.6 runs `containerd-shim-runc-v2 … start` under the Tasks.Create request's
 * context. When the client goes away in that moment (an executor killed mid-start, or a call cut
 * by its deadline), containerd kills that `start` process, and if it had already forked the shim
 * daemon, the daemon stays: it listens on its socket, holds no task, and containerd no longer
 * knows it. A later Tasks.Create of the same id reuses it; an app deleted meanwhile leaves it
 * forever. The executor ends such shims when it starts, before it creates anything (see
 * `TaskRuntime.endLeakedShims`).
 */
import { lstatSync, readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";

/** A shim daemon: its PID and what it serves (the namespace, task id and containerd socket). */
export interface ShimDaemon {
  readonly pid: number;
  readonly namespace: string;
  readonly id: string;
  readonly address: string;
}

/** A leaked shim the executor ended, and how (SIGKILL when SIGTERM was not enough). */
export interface EndedShim {
  readonly pid: number;
  readonly id: string;
  readonly signal: "SIGTERM" | "SIGKILL";
}

/** The value of Go flag `-name` in `argv` (`-name v`, `-name=v`, `--name v` or `--name=v`). */
function flag(argv: readonly string[], name: string): string | undefined {
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    for (const dash of ["-", "--"]) {
      if (a === `${dash}${name}`) return argv[i + 1];
      if (a.startsWith(`${dash}${name}=`)) return a.slice(dash.length + name.length + 1);
    }
  }
  return undefined;
}

/**
 * The shim daemon `argv` (from /proc/<pid>/cmdline) describes, or undefined for any other
 * program, and for the short-lived `start` and `delete` commands containerd runs itself (their
 * last word is the command; a daemon's last word is a flag's value).
 */
export function shimDaemonOf(pid: number, argv: readonly string[]): ShimDaemon | undefined {
  const program = argv[0]?.split("/").pop() ?? "";
  if (!program.startsWith("containerd-shim")) return undefined;
  const last = argv[argv.length - 1];
  if (last === "start" || last === "delete") return undefined;
  const namespace = flag(argv, "namespace");
  const id = flag(argv, "id");
  const address = flag(argv, "address");
  if (!namespace || !id || !address) return undefined;
  return { pid, namespace, id, address };
}

/** The argv of process `pid`, or undefined once it is gone (or is a kernel thread). */
function argvOf(procRoot: string, pid: number): string[] | undefined {
  try {
    const text = readFileSync(`${procRoot}/${pid}/cmdline`, "utf8");
    if (text === "") return undefined;
    return text.replace(/\0$/, "").split("\0");
  } catch {
    return undefined;
  }
}

/**
 * Every shim daemon of containerd `address` serving `namespace`. Synchronous: it runs once, at
 * the executor's start, before anything else; each /proc read is made from memory.
 */
export function findShimDaemons(address: string, namespace: string, procRoot = "/proc"): ShimDaemon[] {
  const found: ShimDaemon[] = [];
  for (const name of readdirSync(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    // The short name first: one tiny read per process, the whole argv only for shims.
    let comm: string;
    try {
      comm = readFileSync(`${procRoot}/${name}/comm`, "utf8");
    } catch {
      continue;
    }
    if (!comm.startsWith("containerd-shim")) continue;
    const argv = argvOf(procRoot, pid);
    const shim = argv && shimDaemonOf(pid, argv);
    if (shim && shim.address === address && shim.namespace === namespace) found.push(shim);
  }
  return found;
}

/** Whether `pid` is still the shim daemon `shim` (not gone, not a reused PID). */
function stillThere(shim: ShimDaemon, procRoot: string): boolean {
  const argv = argvOf(procRoot, shim.pid);
  const now = argv && shimDaemonOf(shim.pid, argv);
  return (
    now !== undefined &&
    now.id === shim.id &&
    now.address === shim.address &&
    now.namespace === shim.namespace
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One row of `/proc/net/unix` (columns: Num RefCount Protocol Flags Type St Inode Path). */
export interface UnixSocketRow {
  /** `00010000`: accepting connections (listening). */
  readonly flags: string;
  readonly inode: string;
  /** The bound path; undefined for an unbound or abstract socket. */
  readonly path: string | undefined;
}

/** The unix sockets of the system (`<procRoot>/net/unix`), or [] when it cannot be read. */
export function unixSockets(procRoot = "/proc"): UnixSocketRow[] {
  let table: string;
  try {
    table = readFileSync(`${procRoot}/net/unix`, "utf8");
  } catch {
    return [];
  }
  const rows: UnixSocketRow[] = [];
  for (const line of table.split("\n").slice(1)) {
    const [, , , flags, , , inode, path] = line.trim().split(/\s+/);
    if (flags === undefined || inode === undefined) continue;
    rows.push({ flags, inode, path: path?.startsWith("/") ? path : undefined });
  }
  return rows;
}

/** The paths of the unix sockets process `pid` listens on: its descriptors' socket inodes. */
export function listeningSocketPaths(pid: number, procRoot = "/proc"): string[] {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`${procRoot}/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${procRoot}/${pid}/fd/${fd}`, { encoding: "utf8" }));
      if (m?.[1]) inodes.add(m[1]);
    }
  } catch {
    return [];
  }
  if (inodes.size === 0) return [];
  return unixSockets(procRoot)
    .filter((s) => s.flags === "00010000" && inodes.has(s.inode) && s.path !== undefined)
    .map((s) => s.path!);
}

/**
 * Removes each path that is still a socket (one a killed shim listened on; a shim that exited by
 * itself may have removed its own already).
 */
export function removeSocketFiles(paths: readonly string[]): void {
  for (const path of paths) {
    try {
      if (lstatSync(path).isSocket()) rmSync(path);
    } catch {
      // Gone already.
    }
  }
}

/**
 * Ends one shim daemon: SIGTERM, then SIGKILL after `graceMs`, then removes the socket it
 * listened on if it is still there. A leaked runc shim that got as far as serving exits at once
 * on SIGTERM; one still opening its log FIFO, whose reader containerd closed, never does (it
 * catches SIGTERM before it blocks), so SIGKILL follows. Without a task, neither holds anything
 * else. Resolves how it ended, or undefined when it was already gone.
 */
export async function endShim(
  shim: ShimDaemon,
  options: { graceMs?: number; procRoot?: string } = {},
): Promise<EndedShim | undefined> {
  const procRoot = options.procRoot ?? "/proc";
  const graceMs = options.graceMs ?? 1_000;
  // A shim removes its socket when it exits on SIGTERM, but only with its bundle dir (gone in a
  // leak) or not at all on SIGKILL: the file would stay in containerd's socket dir.
  const sockets = stillThere(shim, procRoot) ? listeningSocketPaths(shim.pid, procRoot) : [];
  const removeSockets = (): void => removeSocketFiles(sockets);
  const send = (signal: NodeJS.Signals): boolean => {
    if (!stillThere(shim, procRoot)) return false;
    try {
      process.kill(shim.pid, signal);
      return true;
    } catch {
      return false;
    }
  };
  if (!send("SIGTERM")) return undefined;
  for (const deadline = Date.now() + graceMs; Date.now() < deadline;) {
    await sleep(20);
    if (!stillThere(shim, procRoot)) {
      removeSockets();
      return { pid: shim.pid, id: shim.id, signal: "SIGTERM" };
    }
  }
  send("SIGKILL");
  for (let i = 0; i < 50 && stillThere(shim, procRoot); i++) await sleep(20);
  removeSockets();
  return { pid: shim.pid, id: shim.id, signal: "SIGKILL" };
}
