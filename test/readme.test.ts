// The README's quick start, then the VM example's walk-through, followed as a newcomer types them: `npm start` (as a detached process
// group, like a terminal's foreground job, with its own data and run dirs), then every command of
// the quick start's shell blocks, in order, each through bash from the repository's root, each
// one's effect checked; then Ctrl-C (SIGINT to the group), after which nothing it started may be
// left: no launcher, nats-server, containerd or worker, no shim, no task, no mount.
//
// The commands are read from README.md itself, so a README that changes and stops being true
// fails here. `.data/` in a command means the data dir (`npm start`'s default) and is replaced by
// this test's own. NATS_URL is exported as the banner says to when 127.0.0.1:4222 is taken.
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { natsCredentialsDir, natsPasswordFile, removeTreeSafely } from "@eve-tasks/embedded";
import { isSameProcessAlive, readStateFile, stateFilePath } from "@eve-tasks/launcher";
import type { LauncherStateRecord } from "@eve-tasks/launcher";
import { messageTable } from "@eve-tasks/schemas";
import type { TaskStatus, TaskStatusSchema } from "@eve-tasks/schemas";
import { REPO_ROOT, waitFor } from "./harness/index.js";

/** The quick start: the start command, then the commands a user types while it runs. */
interface QuickStart {
  start: string;
  commands: string[];
}

/**
 * The shell blocks of README.md's "Quick start" section. The first line of the first block is
 * how the system is started (`npm ci && npm start`); the rest of that block (`npm test`) is not
 * typed while it runs. Comments after `#` are dropped.
 */
function quickStartOf(readme: string): QuickStart {
  const start = readme.search(/^## Quick start\s*$/m);
  if (start < 0) throw new Error('README.md has no "## Quick start" section');
  const rest = readme.slice(start + 1);
  const end = rest.search(/^## /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  const blocks = shBlocks(section);
  if (blocks.length === 0) throw new Error("the quick start has no sh blocks");
  const [first, ...others] = blocks;
  return { start: first![0]!, commands: [...others.flat(), ...VM_EXAMPLE] };
}

/** The commands of each `sh` block of a Markdown text, comments after `#` dropped. */
function shBlocks(text: string): string[][] {
  return [...text.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) =>
    m[1]!
      .split("\n")
      .map((l) => l.replace(/\s+#\s.*$/, "").trim())
      .filter((l) => l !== "" && !l.startsWith("#")),
  );
}

const README = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
/** The VM example's walk-through: the first sh block of examples/vm/README.md. */
const VM_EXAMPLE = shBlocks(readFileSync(join(REPO_ROOT, "examples/vm/README.md"), "utf8"))[0]!;
const HELLO = JSON.parse(readFileSync(join(REPO_ROOT, "examples/hello.json"), "utf8")) as { uuid: string };
const VM_UUID = /APP_UUID="([0-9a-f-]{36})"/.exec(
  readFileSync(join(REPO_ROOT, "examples/vm/make-guest.sh"), "utf8"),
)![1]!;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

let tmp: string;
let dataDir: string;
let runDir: string;
let env: NodeJS.ProcessEnv;
let launcherPid: number;
let launcherOut = "";
let launcherExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
let bus: Bus | undefined;
let statuses: Subscription<typeof TaskStatusSchema>;
/** Every process the launcher said it owns, and every task anchor seen, with start ticks. */
const owned = new Map<number, number | undefined>();
const anchors = new Map<number, number | undefined>();

async function launcherState(): Promise<LauncherStateRecord | undefined> {
  const s = await readStateFile(stateFilePath(dataDir));
  if (s) {
    for (const r of [s.nats.process, s.containerd.process]) if (r) owned.set(r.pid, r.startTicks);
    for (const w of Object.values(s.workers)) if (w.pid) owned.set(w.pid, w.startTicks ?? undefined);
  }
  return s;
}

/** Runs one README line through bash, as typed at a prompt in the repository's root. */
function sh(command: string, opts: { interruptWhen?: (out: string) => boolean } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", command], { cwd: REPO_ROOT, env, detached: true });
    let stdout = "";
    let stderr = "";
    let interrupted = false;
    const interrupt = (): void => {
      if (!interrupted && opts.interruptWhen?.(stdout)) {
        interrupted = true;
        process.kill(-child.pid!, "SIGINT"); // Ctrl-C: the whole foreground job
      }
    };
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      interrupt();
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), 240_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A README line with `.data/` pointing at this test's data dir. */
const localize = (command: string): string => command.replace(/(^|[\s=])\.data\//g, `$1${dataDir}/`);

const status = (uuid: string): TaskStatus | undefined => statuses.get(uuid);
const until = (what: string, pred: () => boolean, timeoutMs = 90_000) =>
  waitFor(() => pred(), {
    timeoutMs,
    message: `${what}; last status ${JSON.stringify(statuses?.get(HELLO.uuid))}`,
  });

/** What each README command must do, matched in order against the command as written. */
interface Step {
  match: RegExp;
  /** Retried until it holds (a user who types too early types again), up to this long. */
  retryMs?: number;
  interruptWhen?: (out: string) => boolean;
  check(r: Run, command: string): Promise<void> | void;
}

const STEPS: Step[] = [
  {
    match: /^npx eve-tasks apply -f examples\/hello\.json$/,
    async check(r) {
      expect(r.stdout).toMatch(/^applied hello \(6f1c1c1e-[0-9a-f-]+\) at revision \d+$/m);
      await until("hello RUNNING", () => status(HELLO.uuid)?.state === "RUNNING");
    },
  },
  {
    match: /^npx eve-tasks get$/,
    check(r) {
      expect(r.stdout).toMatch(/^NAME +UUID +STATE +TASK ID +MEMORY +AGE/);
      expect(r.stdout).toMatch(
        new RegExp(`^hello +${HELLO.uuid} +RUNNING +${status(HELLO.uuid)!.taskId} `, "m"),
      );
    },
  },
  {
    match: /^npx eve-tasks watch$/,
    interruptWhen: (out) => out.includes("hello"),
    check(r) {
      expect(r.stdout).toMatch(/hello.*RUNNING/);
    },
  },
  {
    match: /^cat \S+\/tasks\/6f1c1c1e-[0-9a-f-]+\/console\.log$/,
    retryMs: 10_000,
    check(r) {
      expect(r.stdout).toMatch(/^hello from /m);
    },
  },
  {
    match: /^npx eve-tasks stop hello --wait && npx eve-tasks start hello --wait$/,
    check(r) {
      expect(r.stdout).toMatch(/is HALTED\n/);
      expect(r.stdout).toMatch(/is RUNNING \(taskId \d+\)\n$/);
      expect(status(HELLO.uuid)!.state).toBe("RUNNING");
    },
  },
  {
    match: /^npx eve-tasks events hello$/,
    check(r) {
      for (const type of ["created", "started", "stopping", "exited"])
        expect(r.stdout).toContain(` ${type} `);
    },
  },
  {
    match: /^npx eve-tasks kill --signal HUP hello$/,
    async check(r) {
      expect(r.stdout).toMatch(/SIGHUP/);
      const log = status(HELLO.uuid)!.logPath;
      await until(
        "hello's trap to print SIGHUP",
        () => readFileSync(log, "utf8").includes("hello got SIGHUP"),
        15_000,
      );
      expect(status(HELLO.uuid)!.state).toBe("RUNNING");
    },
  },
  {
    match: /^npx eve-tasks delete hello --wait$/,
    check(r) {
      expect(r.stdout).toMatch(/is gone\n$/);
      expect(status(HELLO.uuid)).toBeUndefined();
    },
  },
  {
    match: /^bash examples\/vm\/make-guest\.sh \S+\/volumes\/vm-hello$/,
    check(r) {
      expect(readdirSync(join(dataDir, "volumes", "vm-hello"))).toEqual(
        expect.arrayContaining(["vmlinuz", "initrd.img", "vm-hello.json"]),
      );
      expect(r.stdout).toMatch(/app: +\S+vm-hello\.json/);
    },
  },
  {
    match: /^npx eve-tasks apply -f \S+\/volumes\/vm-hello\/vm-hello\.json$/,
    async check(r) {
      expect(r.stdout).toMatch(/^applied vm-hello/m);
      await until("vm-hello RUNNING", () => status(VM_UUID)?.state === "RUNNING", 120_000);
    },
  },
  {
    match: /^grep EVE-TASKS-GUEST-UP \S+\/tasks\/\*\/console\.log$/,
    retryMs: 90_000,
    check(r) {
      expect(r.stdout).toContain("EVE-TASKS-GUEST-UP");
    },
  },
  {
    match: /^npx eve-tasks tax$/,
    retryMs: 30_000,
    check(r) {
      expect(r.stdout).toMatch(/^TOOLS +GUEST +VCPUS +RESERVED/);
      expect(r.stdout).toMatch(/ 128Mi +1 /);
    },
  },

  // examples/vm/README.md, after the README's quick start.
  {
    match:
      /^bash examples\/vm\/make-guest\.sh \S+\/volumes\/vm-hello && npx eve-tasks apply -f \S+\/vm-hello\.json$/,
    async check(r) {
      expect(r.stdout).toMatch(/^applied vm-hello \(3c5e7a90-/m);
      await until("vm-hello RUNNING", () => status(VM_UUID)?.state === "RUNNING", 120_000);
    },
  },
  {
    match: /^npx eve-tasks watch vm-hello$/,
    interruptWhen: (out) => /vm-hello.*RUNNING/.test(out),
    check(r) {
      expect(r.stdout).toMatch(/vm-hello.*RUNNING/);
    },
  },
  {
    match: /^cat \S+\/tasks\/3c5e7a90-[0-9a-f-]+\/console\.log$/,
    retryMs: 90_000,
    check(r) {
      expect(r.stdout).toContain("EVE-TASKS-GUEST-UP");
    },
  },
  {
    match: /^npx eve-tasks stop vm-hello --wait$/,
    check(r) {
      expect(r.stdout).toMatch(/is HALTED\n$/);
      expect(status(VM_UUID)).toMatchObject({ state: "HALTED", taskId: 0 });
    },
  },
  {
    match: /^npx eve-tasks delete vm-hello$/,
    async check(r) {
      expect(r.stdout).toMatch(/^deleted vm-hello/m);
      await until("vm-hello's status removed", () => status(VM_UUID) === undefined, 60_000);
    },
  },
];

beforeAll(async () => {
  // Short: containerd's sockets live in the run dir (108-byte limit).
  tmp = await mkdtemp("/tmp/evreadme-");
  dataDir = join(tmp, "data");
  runDir = join(tmp, "run");
  env = { ...process.env, EVE_DATA_DIR: dataDir, EVE_RUN_DIR: runDir };
  for (const v of ["NATS_URL", "CONTAINERD_ADDRESS", "EVE_NODE", "EVE_VOLUME_ROOTS"]) delete env[v];
}, 10_000);

afterAll(async () => {
  // Normally Ctrl-C has stopped everything; if not, end exactly what was recorded.
  await statuses?.close().catch(() => undefined);
  await bus?.close().catch(() => undefined);
  // A test that failed half-way still stops the system with Ctrl-C, so that containerd removes
  // its tasks (runc's state of a task outlives a killed containerd and would block the next run).
  if (launcherPid && isSameProcessAlive({ pid: launcherPid })) {
    process.kill(-launcherPid, "SIGINT");
    const stopped = await Promise.race([launcherExit, new Promise((r) => setTimeout(r, 90_000, "timeout"))]);
    if (stopped === "timeout") process.kill(-launcherPid, "SIGKILL");
  }
  await launcherState().catch(() => undefined);
  for (const [pid, startTicks] of [...owned, ...anchors]) {
    if (isSameProcessAlive({ pid, startTicks })) process.kill(pid, "SIGKILL");
  }
  // Shims of this run's containerd (they name its socket) outlive a containerd that was killed.
  for (const line of await processesNaming(tmp)) {
    try {
      process.kill(Number(line.split(":")[0]), "SIGKILL");
    } catch {
      // already gone
    }
  }
  if (tmp) await removeTreeSafely(tmp);
}, 180_000);

/** `<pid>: <command line>` of every process whose command line names `path`. */
async function processesNaming(path: string): Promise<string[]> {
  const found: string[] = [];
  if (!path) return found;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(path)) found.push(`${pid}: ${cmdline.replaceAll("\0", " ")}`);
  }
  return found;
}

describe("the README's quick start", () => {
  const quick = quickStartOf(README);

  it("starts with `npm ci && npm start`, and has a check for every command it shows", () => {
    expect(quick.start).toBe("npm ci && npm start");
    let next = 0;
    for (const command of quick.commands) {
      const i = STEPS.findIndex((s, j) => j >= next && s.match.test(command));
      expect({ command, known: i >= 0 }).toEqual({ command, known: true });
      next = i + 1;
    }
  });

  it("works as typed: npm start, every command in order, then Ctrl-C leaves nothing behind", async () => {
    // `npm ci` has run (CI does it on a clean clone before `npm test`); `npm start` runs as typed.
    const child = spawn("bash", ["-c", quick.start.replace(/^npm ci && /, "")], {
      cwd: REPO_ROOT,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    launcherPid = child.pid!;
    child.stdout.on("data", (d: Buffer) => (launcherOut += d.toString()));
    child.stderr.on("data", (d: Buffer) => (launcherOut += d.toString()));
    launcherExit = new Promise((r) => child.on("exit", (code, signal) => r({ code, signal })));

    const up = await waitFor(
      async () => {
        const s = await launcherState();
        const workers = s ? Object.values(s.workers) : [];
        // The banner (what to type next) is printed once everything runs: wait for it too, as a
        // user reads it.
        return s?.launcher.phase === "running" &&
          workers.length > 0 &&
          workers.every((w) => w.state === "running") &&
          launcherOut.includes("npx eve-tasks apply -f examples/hello.json")
          ? s
          : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 250, message: `npm start never came up:\n${launcherOut}` },
    );
    expect(launcherOut).toContain("npx eve-tasks apply -f examples/hello.json");
    // The banner says which NATS_URL to export when NATS is not where eve-tasks looks by default.
    if (up.nats.url === "nats://127.0.0.1:4222") expect(launcherOut).not.toContain("export NATS_URL");
    else expect(launcherOut).toContain(`export NATS_URL='${up.nats.url}'`);
    env.NATS_URL = up.nats.url!;
    // npm start's NATS refuses anonymous clients: the test watches as its user `viewer`.
    bus = await connectBus({
      servers: up.nats.url!,
      credentials: { user: "viewer", passwordFile: natsPasswordFile(natsCredentialsDir(dataDir), "viewer") },
      name: "readme-test",
    });
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: (_k, v) => void (v.taskId > 0 && anchors.set(v.taskId, v.anchorStartTicks ?? undefined)),
      onModify: (_k, v) => void (v.taskId > 0 && anchors.set(v.taskId, v.anchorStartTicks ?? undefined)),
    });
    await statuses.synchronized;

    let next = 0;
    for (const written of quick.commands) {
      const i = STEPS.findIndex((s, j) => j >= next && s.match.test(written));
      const step = STEPS[i]!;
      next = i + 1;
      const command = localize(written);
      const began = Date.now();
      const deadline = Date.now() + (step.retryMs ?? 0);
      for (;;) {
        const r = await sh(command, { interruptWhen: step.interruptWhen });
        try {
          // Ctrl-C ends npx by the signal (a shell shows 130), after eve-tasks has closed its watch.
          const ok = r.code === 0 || (step.interruptWhen !== undefined && r.signal === "SIGINT");
          expect({ command: written, ok, code: r.code, stderr: ok ? "" : r.stderr }).toEqual({
            command: written,
            ok: true,
            code: r.code,
            stderr: "",
          });
          await step.check(r, command);
          process.stderr.write(`[readme] ${((Date.now() - began) / 1000).toFixed(1)} s  ${written}\n`);
          break;
        } catch (err) {
          if (Date.now() > deadline) {
            throw new Error(`${written}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`, {
              cause: err,
            });
          }
          await new Promise((res) => setTimeout(res, 1000));
        }
      }
    }

    // Ctrl-C in the terminal of `npm start`: npm ends by the signal (a shell shows 130), the
    // launcher under it stops everything it started and exits 0.
    const { launcher } = (await launcherState())!;
    const tasks = [...anchors];
    await statuses.close();
    await bus.close();
    bus = undefined;
    process.kill(-launcherPid, "SIGINT");
    const exit = await launcherExit;
    expect(exit.code === 0 || exit.signal === "SIGINT").toBe(true);
    await waitFor(() => !isSameProcessAlive(launcher), {
      timeoutMs: 120_000,
      message: `the launcher (pid ${launcher.pid}) did not stop:\n${launcherOut}`,
    });
    expect(launcherOut).toMatch(/nats-server \(pid \d+\) stopped/);
    expect(launcherOut).not.toMatch(/^\S* ?error: /m);
    const final = (await readStateFile(stateFilePath(dataDir)))!;
    expect(final.launcher.phase).toBe("stopped");
    expect(final.pids).toEqual([]);
    const alive = [...owned, ...tasks].filter(([pid, startTicks]) => isSameProcessAlive({ pid, startTicks }));
    expect(alive).toEqual([]);
    // No process anywhere still names this run's dirs (containerd shims, qemu, workers), no mount.
    expect(await processesNaming(tmp)).toEqual([]);
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .filter((l) => l.split(" ")[4]?.startsWith(tmp));
    expect(mounts).toEqual([]);
  }, 600_000);
});
