/**
 * `npm start`'s system for a test: the launcher (packages/launcher/dist/main.js, what `npm start`
 * runs once it has built) as its own process group with its own data and run dirs, up until every
 * worker runs; stopped with Ctrl-C (SIGINT to the group) like a terminal's, and whatever it
 * recorded as its own (nats-server, containerd, workers) and every containerd shim naming its dirs
 * killed by PID if it did not stop by itself. Its NATS users' passwords are under the data dir.
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isProcessAlive, natsPasswordFile, natsCredentialsDir, removeTreeSafely } from "@eve-tasks/embedded";
import { listeningSocketPaths, removeSocketFiles } from "@eve-tasks/executor";
import { isSameProcessAlive, readStateFile, stateFilePath } from "@eve-tasks/launcher";
import type { LauncherStateRecord } from "@eve-tasks/launcher";
import { REPO_ROOT } from "./e2e.js";
import { waitFor } from "./wait.js";

/** A running launcher. */
export interface TestLauncher {
  /** The temp dir holding its data and run dirs. */
  readonly dir: string;
  readonly dataDir: string;
  readonly runDir: string;
  readonly natsUrl: string;
  /** The status page's URL from the banner, when it serves one. */
  readonly statusPageUrl: string | undefined;
  readonly state: LauncherStateRecord;
  /** Everything it printed so far. */
  output(): string;
  /** `<data>/nats-credentials/<user>.password`. */
  passwordFile(user: string): string;
  /** Ctrl-C; resolves with how it exited, after everything it owned is gone. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `<pid>: <command line>` of every process whose command line names `path`. */
export async function processesNaming(path: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(path)) found.push(`${pid}: ${cmdline.replaceAll("\0", " ")}`);
  }
  return found;
}

/**
 * SIGKILLs every process whose command line names `path` (a test's containerd and its shims),
 * then removes the sockets those shims listened on: a killed shim cannot remove its own.
 */
export async function killProcessesNaming(path: string): Promise<void> {
  const pids = (await processesNaming(path)).map((line) => Number(line.split(":")[0]));
  const sockets = pids.flatMap((pid) => listeningSocketPaths(pid));
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  if (pids.length === 0) return;
  await waitFor(() => pids.every((pid) => !isProcessAlive(pid)), {
    timeoutMs: 5_000,
    message: "killed processes",
  }).catch(() => undefined);
  removeSocketFiles(sockets);
}

/** Starts the launcher with `env` added (EVE_UI_PORT=0 unless given) and waits until its workers run. */
export async function startTestLauncher(
  o: { env?: Record<string, string>; args?: readonly string[]; timeoutMs?: number } = {},
): Promise<TestLauncher> {
  // Short: containerd's sockets live in the run dir (108-byte limit).
  const dir = await mkdtemp("/tmp/evl-");
  const dataDir = join(dir, "data");
  const runDir = join(dir, "run");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    EVE_UI_PORT: "0",
    ...o.env,
    EVE_DATA_DIR: dataDir,
    EVE_RUN_DIR: runDir,
  };
  for (const v of [
    "NATS_URL",
    "CONTAINERD_ADDRESS",
    "EVE_NODE",
    "EVE_VOLUME_ROOTS",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_PASSWORD_FILE",
  ])
    if (o.env?.[v] === undefined) delete env[v];
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, "packages/launcher/dist/main.js"), ...(o.args ?? [])],
    {
      cwd: REPO_ROOT,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const pid = child.pid!;
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on("exit", (code, signal) => r({ code, signal })),
  );
  /** Every process it said it owns, with start ticks (so a reused PID is never killed). */
  const owned = new Map<number, number | undefined>();
  const record = async (): Promise<LauncherStateRecord | undefined> => {
    const s = await readStateFile(stateFilePath(dataDir));
    if (s) {
      for (const r of [s.nats.process, s.containerd.process]) if (r) owned.set(r.pid, r.startTicks);
      for (const w of Object.values(s.workers)) if (w.pid) owned.set(w.pid, w.startTicks ?? undefined);
    }
    return s;
  };

  let stopped: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const stop = (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    stopped ??= (async () => {
      await record().catch(() => undefined);
      if (isSameProcessAlive({ pid })) {
        try {
          process.kill(-pid, "SIGINT");
        } catch {
          // already gone
        }
      }
      const exit = await Promise.race([
        exited,
        new Promise<"timeout">((r) => setTimeout(r, 90_000, "timeout")),
      ]);
      if (exit === "timeout") {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      for (const [p, startTicks] of owned)
        if (isSameProcessAlive({ pid: p, startTicks })) process.kill(p, "SIGKILL");
      // Shims of its containerd (they name its socket) outlive a containerd that was killed.
      await killProcessesNaming(dir);
      await removeTreeSafely(dir);
      return exit === "timeout" ? { code: null, signal: "SIGKILL" as const } : exit;
    })();
    return stopped;
  };

  try {
    const state = await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`the launcher exited with ${child.exitCode}`);
        const s = await record();
        const workers = s ? Object.values(s.workers) : [];
        return s?.launcher.phase === "running" &&
          workers.length > 0 &&
          workers.every((w) => w.state === "running") &&
          /eve-tasks is up/.test(out)
          ? s
          : undefined;
      },
      { timeoutMs: o.timeoutMs ?? 120_000, intervalMs: 200, message: "the launcher to come up" },
    );
    const statusPageUrl = /^ {2}status page +(http:\/\/\S+)/m.exec(out)?.[1];
    return {
      dir,
      dataDir,
      runDir,
      natsUrl: state.nats.url!,
      statusPageUrl,
      state,
      output: () => out,
      passwordFile: (user) => natsPasswordFile(natsCredentialsDir(dataDir), user),
      stop,
    };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- launcher output ---\n${out}`, { cause: err });
  }
}
