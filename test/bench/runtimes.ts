// Runtime scenarios (the built-in runtime images of @eve-tasks/tools-image, as the e2e tests use
// them, from test/harness/runtimes.ts's cache).
//
// "jar": a JAR (built here with Debian's javac and jar) published as an app on the `jvm` runtime
// → its first line in the task log, against `java -jar` of the same JAR with the same JRE (the
// seed's, the very files the task runs) and the same options the jvm loader gives it, spawned
// directly in a cgroup of this bench's own with the task cgroup's memory limit and CPU quota
// (read from the task's cgroup) → its first line on stdout. Alternating, a warm-up each.
//
// "emulators": the memory an idle busybox shell costs as an arm64 task under the `emulators`
// runtime's qemu-aarch64 (binfmt_misc) against the native x86_64 busybox as a plain task: RSS
// of the task's processes and the task cgroup's usage, after the tasks have settled.
import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, readFile, rmdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { Publication, subscribe } from "@eve-tasks/bus";
import {
  CONTAINERD_NAMESPACE,
  DEFAULT_NODE,
  hypervisorSeedKey,
  messageTable,
  taskLogPath,
} from "@eve-tasks/schemas";
import type { AppInstanceConfigInput, HypervisorSeed } from "@eve-tasks/schemas";
import type { BuiltInRuntime } from "@eve-tasks/tools-image";
import { arm64Busybox } from "../harness/arm64-busybox.js";
import { builtInRuntime } from "../harness/runtimes.js";
import { TASK_MEMORY_MIB, log } from "./env.js";
import type { BenchEnv } from "./env.js";
import { medianRatio } from "./result.js";
import type { ScenarioResult } from "./result.js";
import { seenInFile, spawnToMarker } from "./marker.js";
import { median, nowMs, r1 } from "./stats.js";

const run = promisify(execFile);
const MiB = 2 ** 20;
const CGROUP_ROOT = "/sys/fs/cgroup";
const FIRST_LINE_TIMEOUT_MS = 120_000;
/** The line the bench's JAR prints first (then it waits). */
const JAR_MARKER = "eve-bench-jar-up";

const BENCH_JAVA = `
public class BenchUp {
  public static void main(String[] args) throws Exception {
    System.out.println("${JAR_MARKER}");
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE);
  }
}
`;

/** Publishes built-in runtime `name` as a HypervisorToolsConfig; resolves with its READY seed. */
async function readyRuntime(env: BenchEnv, name: BuiltInRuntime): Promise<HypervisorSeed> {
  const image = await builtInRuntime(name);
  const key = hypervisorSeedKey(DEFAULT_NODE, name);
  let seed: HypervisorSeed | undefined;
  const seen = (k: string, v: HypervisorSeed): void => {
    if (k === key) seed = v;
  };
  const seeds = await subscribe(env.bus, {
    ...messageTable("HypervisorSeed"),
    onCreate: seen,
    onModify: seen,
  });
  try {
    await new Publication(env.bus, messageTable("HypervisorToolsConfig")).publish(name, {
      schemaVersion: 1,
      image: image.ref,
    });
    const deadline = nowMs() + 300_000;
    while (seed?.state !== "READY") {
      if (seed?.state === "FAILED") throw new Error(`runtime ${name}: seed FAILED: ${seed.error.message}`);
      if (nowMs() > deadline) throw new Error(`runtime ${name}: no READY seed in 300 s (${seed?.state})`);
      await sleep(50);
    }
    log(`${name}: runtime image ${image.ref}, seed ${seed.rootfsPath}`);
    return seed;
  } finally {
    await seeds.close();
  }
}

/** The task cgroup of app `uuid` in cgroup v1 hierarchy `controller` (runc's cgroupsPath). */
function taskCgroup(controller: string, uuid: string): string {
  return join(CGROUP_ROOT, controller, CONTAINERD_NAMESPACE, uuid);
}

async function readNumber(file: string): Promise<number> {
  const n = Number((await readFile(file, "utf8")).trim());
  if (!Number.isFinite(n)) throw new Error(`${file}: not a number`);
  return n;
}

/** The limits the baseline copies from a task's cgroup. */
interface CgroupLimits {
  memoryLimitBytes: number;
  cpuQuotaUs: number;
  cpuPeriodUs: number;
}

async function limitsOf(uuid: string): Promise<CgroupLimits> {
  return {
    memoryLimitBytes: await readNumber(join(taskCgroup("memory", uuid), "memory.limit_in_bytes")),
    cpuQuotaUs: await readNumber(join(taskCgroup("cpu", uuid), "cpu.cfs_quota_us")),
    cpuPeriodUs: await readNumber(join(taskCgroup("cpu", uuid), "cpu.cfs_period_us")),
  };
}

/**
 * The baseline's own cgroups (memory and cpu, cgroup v1), named `eve-bench-jar-<this PID>` so
 * they are recognisably this bench's; {@link BaselineCgroup.remove} removes them (after the
 * processes in them have exited).
 */
interface BaselineCgroup {
  readonly memory: string;
  readonly cpu: string;
  remove(): Promise<void>;
}

async function makeBaselineCgroup(limits: CgroupLimits): Promise<BaselineCgroup> {
  const name = `eve-bench-jar-${process.pid}`;
  const memory = join(CGROUP_ROOT, "memory", name);
  const cpu = join(CGROUP_ROOT, "cpu", name);
  const made: string[] = [];
  const remove = async (): Promise<void> => {
    for (const d of made.reverse()) {
      // rmdir is refused while a process is in it: retry briefly (an exit is reaped first).
      for (let i = 0; ; i++) {
        try {
          await rmdir(d);
          log(`jar: removed cgroup ${d}`);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") break;
          if (i >= 50)
            throw new Error(`jar: cannot remove cgroup ${d}: ${(err as Error).message}`, { cause: err });
          await sleep(100);
        }
      }
    }
  };
  try {
    await mkdir(memory);
    made.push(memory);
    await writeFile(join(memory, "memory.limit_in_bytes"), String(limits.memoryLimitBytes));
    await mkdir(cpu);
    made.push(cpu);
    await writeFile(join(cpu, "cpu.cfs_period_us"), String(limits.cpuPeriodUs));
    await writeFile(join(cpu, "cpu.cfs_quota_us"), String(limits.cpuQuotaUs));
  } catch (err) {
    await remove();
    throw err;
  }
  return { memory, cpu, remove };
}

/** The options the `jvm` loader (packages/tools-image/loaders/jvm.sh) gives java. */
function jvmOptions(memoryMiB: number, vcpus: number): string[] {
  return [
    `-Xmx${Math.max(1, Math.floor((memoryMiB * 3) / 4))}m`,
    `-XX:ActiveProcessorCount=${vcpus}`,
    "-XX:+ExitOnOutOfMemoryError",
  ];
}

/**
 * `java` started directly: a shell moves itself into the baseline cgroups and execs java (as the
 * loader execs it), spawn → `marker` on stdout. The process (one PID: sh, then java) is killed
 * by its PID and waited for.
 */
async function directJava(java: string, args: readonly string[], cg: BaselineCgroup): Promise<number> {
  const script = `echo $$ > '${cg.memory}/cgroup.procs' && echo $$ > '${cg.cpu}/cgroup.procs' && exec "$@"`;
  return spawnToMarker({
    what: "direct java",
    command: "/bin/sh",
    args: ["-c", script, "sh", java, ...args],
    marker: JAR_MARKER,
    timeoutMs: FIRST_LINE_TIMEOUT_MS,
  });
}

/** Scenario "jar": JAR app published → first line in its log vs `java -jar` in the same limits. */
export async function jarFirstLine(
  env: BenchEnv,
  o: { rounds: number; memoryMiB: number },
): Promise<ScenarioResult> {
  const seed = await readyRuntime(env, "jvm");
  if (seed.rootfsPath === null) throw new Error("jar: the jvm seed is READY without a rootfsPath");
  const java = join(seed.rootfsPath, "opt/eve-jre/bin/java");

  // The JAR, built with Debian's JDK, in the node's volume root.
  const dir = join(env.volumes, "bench-jar");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "BenchUp.java"), BENCH_JAVA);
  await run("javac", ["-d", dir, join(dir, "BenchUp.java")], { timeout: 120_000 });
  const jar = join(dir, "bench-up.jar");
  await run("jar", ["cfe", jar, "BenchUp", "-C", dir, "BenchUp.class"], { timeout: 60_000 });

  const vcpus = 1;
  const app = (uuid: string): AppInstanceConfigInput => ({
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: `bench-jar-${uuid.slice(0, 6)}`,
    activate: true,
    resources: { memoryMiB: o.memoryMiB, vcpus },
    runtime: { tools: "jvm", artifacts: [{ name: "bench-up.jar", path: jar, readOnly: true }] },
    stopTimeoutMs: 5000,
  });

  // Where ours goes: publish → RUNNING seen (the loader started), RUNNING → the line in the log.
  const toRunning: number[] = [];
  const runningToLine: number[] = [];
  /** Publish → the marker in the task log; `onUp` runs while it is up; then it is deleted. */
  const throughTasks = async (onUp?: (uuid: string) => Promise<void>): Promise<number> => {
    const uuid = crypto.randomUUID();
    const t0 = nowMs();
    await env.configs.publish(uuid, app(uuid));
    try {
      const t1 = await seenInFile(
        taskLogPath(join(env.dir, "data"), uuid),
        JAR_MARKER,
        FIRST_LINE_TIMEOUT_MS,
      );
      const running = await env.seen.when(uuid, "RUNNING", 10_000);
      toRunning.push(running - t0);
      runningToLine.push(t1 - running);
      await onUp?.(uuid);
      return t1 - t0;
    } finally {
      await env.configs.unpublish(uuid);
      await env.seen.when(uuid, "deleted", 60_000);
    }
  };

  log("jar: warm-up (one run each way)");
  let limits: CgroupLimits | undefined;
  await throughTasks(async (uuid) => void (limits = await limitsOf(uuid)));
  if (limits === undefined) throw new Error("jar: no limits read from the task's cgroup");
  log(
    `jar: task cgroup: memory limit ${limits.memoryLimitBytes / MiB} MiB, CPU quota ${limits.cpuQuotaUs}/${limits.cpuPeriodUs} µs`,
  );
  const cg = await makeBaselineCgroup(limits);
  const javaArgs = [...jvmOptions(o.memoryMiB, vcpus), "-jar", jar];
  try {
    await directJava(java, javaArgs, cg);
    toRunning.length = 0;
    runningToLine.length = 0;
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < o.rounds; i++) {
      // Alternating which side goes first, so drift within a round hits both.
      if (i % 2 === 0) {
        ours.push(await throughTasks());
        base.push(await directJava(java, javaArgs, cg));
      } else {
        base.push(await directJava(java, javaArgs, cg));
        ours.push(await throughTasks());
      }
      log(
        `jar: round ${i + 1}/${o.rounds}: tasks ${r1(ours.at(-1)!)} ms (RUNNING after ${r1(toRunning.at(-1)!)}), direct ${r1(base.at(-1)!)} ms`,
      );
      await env.assertWorkersAlive();
    }
    return {
      scenario: "jar",
      n: o.rounds,
      ...medianRatio(ours, base, 1.1),
      baseline: `java -jar of the same JAR with the jvm seed's JRE and the loader's options, spawned directly in a cgroup with the task's memory limit and CPU quota, to its first line on stdout`,
      publishToRunningMedianMs: r1(median(toRunning)),
      runningToFirstLineMedianMs: r1(median(runningToLine)),
      memoryMiB: o.memoryMiB,
      memoryLimitBytes: limits.memoryLimitBytes,
      cpuQuotaUs: limits.cpuQuotaUs,
      cpuPeriodUs: limits.cpuPeriodUs,
      loadAverage: (await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" "),
    };
  } finally {
    await cg.remove();
  }
}

/** What one settled task holds. */
interface TaskMemory {
  /** Sum of VmRSS of the task cgroup's processes. */
  rssBytes: number;
  /** Sum of Pss (smaps_rollup) of the same processes. */
  pssBytes: number;
  /** The task cgroup's memory.usage_in_bytes. */
  cgroupUsageBytes: number;
  /** memory.stat total_rss (anonymous memory) of the task cgroup. */
  cgroupAnonBytes: number;
  processes: number;
}

async function memoryOf(uuid: string): Promise<TaskMemory> {
  const cg = taskCgroup("memory", uuid);
  const pids = (await readFile(join(cg, "cgroup.procs"), "utf8")).split("\n").filter((l) => l !== "");
  let rssBytes = 0;
  let pssBytes = 0;
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    rssBytes += Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
    pssBytes += Number(/^Pss:\s+(\d+) kB$/m.exec(rollup)?.[1] ?? 0) * 1024;
  }
  const stat = await readFile(join(cg, "memory.stat"), "utf8");
  return {
    rssBytes,
    pssBytes,
    cgroupUsageBytes: await readNumber(join(cg, "memory.usage_in_bytes")),
    cgroupAnonBytes: Number(/^total_rss (\d+)$/m.exec(stat)?.[1] ?? NaN),
    processes: pids.length,
  };
}

/** The memory figures of one side, as MiB medians over the rounds. */
function sideMiB(xs: readonly TaskMemory[]) {
  const m = (f: (x: TaskMemory) => number): number => r1(median(xs.map(f)) / MiB);
  return {
    rssMiB: m((x) => x.rssBytes),
    pssMiB: m((x) => x.pssBytes),
    cgroupUsageMiB: m((x) => x.cgroupUsageBytes),
    cgroupAnonMiB: m((x) => x.cgroupAnonBytes),
    processes: median(xs.map((x) => x.processes)),
  };
}

/** One row of the emulators scenario, for the summary. */
export interface EmulatorsResult {
  scenario: "emulators";
  rounds: number;
  settleMs: number;
  /** The app's memoryMiB on both sides (the arm64 task's limit adds the emulation tax). */
  memoryMiB: number;
  /** Publish → RUNNING seen, median per side. */
  publishToRunningMedianMs: { arm64: number; native: number };
  arm64: ReturnType<typeof sideMiB>;
  native: ReturnType<typeof sideMiB>;
  /** arm64 − native, MiB (medians). */
  differenceMiB: { rss: number; pss: number; cgroupUsage: number; cgroupAnon: number };
  loadAverage: string;
}

/** Scenario "emulators": idle busybox shell, arm64 under qemu-aarch64 vs native, memory. */
export async function emulatorsMemory(
  env: BenchEnv,
  o: { rounds: number; settleMs: number },
): Promise<EmulatorsResult> {
  await readyRuntime(env, "emulators");
  // The arm64 root: Debian's static arm64 busybox and the applets the shell runs, as symlinks.
  const armRoot = join(env.volumes, "arm64-busybox");
  for (const d of ["bin", "proc", "dev", "sys", "tmp"]) await mkdir(join(armRoot, d), { recursive: true });
  await copyFile(await arm64Busybox(), join(armRoot, "bin", "busybox"));
  await chmod(join(armRoot, "bin", "busybox"), 0o755);
  for (const applet of ["sh", "sleep", "echo"]) {
    await symlink("busybox", join(armRoot, "bin", applet)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
  }
  const marker = "eve-bench-idle-up";
  // The bench's idle shell (env.ts's TASK_ARGS) with a line first, to know it has started, and
  // its sleep run as `/bin/busybox sleep`: busybox's shell runs a bare `sleep` by re-executing
  // itself through /proc/self/exe with argv[0] "sleep", and under binfmt_misc without the P
  // flag (the node registers flag F only) the emulated busybox gets argv[0] "/bin/sh" instead
  // and fails ("/bin/sh: can't open '3600'"), leaving a shell with no child.
  const args = ["/bin/sh", "-c", `echo ${marker}; trap 'exit 0' TERM; /bin/busybox sleep 3600 & wait`];
  const native = (uuid: string): AppInstanceConfigInput => {
    const a = env.app(uuid);
    return { ...a, process: { ...a.process, args } } as AppInstanceConfigInput;
  };
  const arm64 = (uuid: string): AppInstanceConfigInput =>
    ({
      ...native(uuid),
      displayName: `bench-arm64-${uuid.slice(0, 6)}`,
      arch: "aarch64",
      root: { volume: { path: armRoot, readOnly: true } },
    }) as AppInstanceConfigInput;

  // Publish → RUNNING of each side: the time a plain task (and an emulated one) takes to start
  // at this moment's load, a reference for the jar scenario's publish → RUNNING.
  const toRunning = { arm64: [] as number[], native: [] as number[] };
  /** Publishes both, waits for both markers, settles, samples, deletes both. */
  const round = async (order: readonly ("arm64" | "native")[]) => {
    const uuids = { arm64: crypto.randomUUID(), native: crypto.randomUUID() };
    try {
      for (const side of order) {
        const uuid = uuids[side];
        const t0 = nowMs();
        await env.configs.publish(uuid, side === "arm64" ? arm64(uuid) : native(uuid));
        toRunning[side].push((await env.seen.when(uuid, "RUNNING", 120_000)) - t0);
        await seenInFile(taskLogPath(join(env.dir, "data"), uuid), marker, 60_000);
      }
      await sleep(o.settleMs);
      const sample = async (side: "arm64" | "native"): Promise<TaskMemory> => {
        const uuid = uuids[side];
        try {
          return await memoryOf(uuid);
        } catch (err) {
          const states = ["RUNNING", "HALTED", "BROKEN", "FAILED", "exit"].filter((l) =>
            env.seen.time(uuid, l),
          );
          const tail = (
            await readFile(taskLogPath(join(env.dir, "data"), uuid), "utf8").catch(() => "")
          ).slice(-500);
          throw new Error(
            `emulators: the ${side} task ${uuid} (seen: ${states.join(", ")}; log: ${tail}): ${(err as Error).message}`,
            { cause: err },
          );
        }
      };
      const r = { arm64: await sample("arm64"), native: await sample("native") };
      // The same shape on both sides (the shell and its sleep), or the comparison says nothing.
      if (r.arm64.processes !== 2 || r.native.processes !== 2) {
        throw new Error(
          `emulators: expected 2 processes (sh, sleep) in each task, found arm64 ${r.arm64.processes}, native ${r.native.processes}`,
        );
      }
      return r;
    } finally {
      for (const uuid of Object.values(uuids)) await env.configs.unpublish(uuid);
      for (const uuid of Object.values(uuids)) await env.seen.when(uuid, "deleted", 60_000);
    }
  };

  const a: TaskMemory[] = [];
  const n: TaskMemory[] = [];
  for (let i = 0; i < o.rounds; i++) {
    const r = await round(i % 2 === 0 ? ["arm64", "native"] : ["native", "arm64"]);
    a.push(r.arm64);
    n.push(r.native);
    log(
      `emulators: round ${i + 1}/${o.rounds}: RSS arm64 ${r1(r.arm64.rssBytes / MiB)} MiB (${r.arm64.processes} processes), native ${r1(r.native.rssBytes / MiB)} MiB (${r.native.processes}); cgroup ${r1(r.arm64.cgroupUsageBytes / MiB)} vs ${r1(r.native.cgroupUsageBytes / MiB)} MiB`,
    );
    await env.assertWorkersAlive();
  }
  const arm = sideMiB(a);
  const nat = sideMiB(n);
  return {
    scenario: "emulators",
    rounds: o.rounds,
    settleMs: o.settleMs,
    memoryMiB: TASK_MEMORY_MIB,
    publishToRunningMedianMs: { arm64: r1(median(toRunning.arm64)), native: r1(median(toRunning.native)) },
    arm64: arm,
    native: nat,
    differenceMiB: {
      rss: r1(arm.rssMiB - nat.rssMiB),
      pss: r1(arm.pssMiB - nat.pssMiB),
      cgroupUsage: r1(arm.cgroupUsageMiB - nat.cgroupUsageMiB),
      cgroupAnon: r1(arm.cgroupAnonMiB - nat.cgroupAnonMiB),
    },
    loadAverage: (await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" "),
  };
}
