import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { backoffDelayMs, nextFailureCount } from "../src/backoff.js";
import { UsageError, parseLauncherArgs } from "../src/args.js";
import { ConsoleView } from "../src/console-view.js";
import { formatDuration, formatWorkerLine } from "../src/status-format.js";
import { MALLOC_TUNABLES, discoverWorkers, withMallocTunables } from "../src/workers.js";
import { readStartTicks } from "../src/proc.js";
import type { WorkerSnapshot } from "../src/worker-supervisor.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("back-off", () => {
  it("starts at 1 s, doubles, caps at 30 s", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 100].map(backoffDelayMs)).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
  });
  it("resets after a run of 60 s", () => {
    expect(nextFailureCount(5, 59_999)).toBe(6);
    expect(nextFailureCount(5, 60_000)).toBe(1);
  });
});

describe("args", () => {
  it("parses the flags", () => {
    expect(parseLauncherArgs(["--services-dir", "x", "--keep-tasks"])).toMatchObject({
      servicesDir: path.resolve("x"),
      keepTasks: true,
      workerGraceMs: 10_000,
      help: false,
    });
    expect(parseLauncherArgs([]).servicesDir).toMatch(/services$/);
  });
  it("rejects unknown flags and bad numbers", () => {
    expect(() => parseLauncherArgs(["--nope"])).toThrow(UsageError);
    expect(() => parseLauncherArgs(["--worker-grace-ms", "soon"])).toThrow(
      'expected milliseconds, got "soon"',
    );
  });
});

describe("discoverWorkers", () => {
  it("finds every folder with dist/main.js, known workers first, and lists missing known ones", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "eve-disc-"));
    for (const name of ["zeta", "proc-monitor", "alpha", "spec-builder"]) {
      await mkdir(path.join(dir, name, "dist"), { recursive: true });
      await writeFile(path.join(dir, name, "dist", "main.js"), "");
    }
    await mkdir(path.join(dir, "task-executor", "src"), { recursive: true });
    const d = await discoverWorkers(dir);
    expect(d.workers.map((w) => w.name)).toEqual(["spec-builder", "proc-monitor", "alpha", "zeta"]);
    expect(d.workers[0]?.main).toBe(path.join(dir, "spec-builder", "dist", "main.js"));
    expect(d.missing).toEqual(["task-executor", "hypervisor-seed-fetcher"]);
  });
  it("copes with a missing folder", async () => {
    expect((await discoverWorkers("/nonexistent/services")).workers).toEqual([]);
  });
});

describe("status", () => {
  const w: WorkerSnapshot = {
    name: "task-executor",
    main: "/m.js",
    logFile: "/l.log",
    state: "running",
    pid: 4242,
    startTicks: 1,
    restarts: 2,
    startedAt: 1_000,
    nextStartAt: null,
    lastExit: null,
  };
  it("formats durations", () => {
    expect([0, 12_400, 187_000, 3_720_000, 90_000_000].map(formatDuration)).toEqual([
      "0s",
      "12s",
      "3m07s",
      "1h02m",
      "1d01h",
    ]);
  });
  it("shows pid, state, restarts, uptime and heartbeat age", () => {
    const line = formatWorkerLine(w, 2_000, 63_000);
    expect(line.split(/\s+/)).toEqual(["task-executor", "4242", "running", "2", "1m02s", "2s", "ago"]);
    expect(
      formatWorkerLine(
        { ...w, state: "backing-off", pid: null, startedAt: null, nextStartAt: 5_000 },
        undefined,
        1_000,
      ),
    ).toMatch(/^task-executor\s+-\s+backing-off 4s\s+2\s+-\s+-$/);
    expect(formatWorkerLine(w, 25_000, 63_000)).toMatch(/25s ago \(stale\)$/);
  });
});

describe("ConsoleView", () => {
  const sink = (isTTY: boolean): { text: () => string; out: { write(t: string): void; isTTY: boolean } } => {
    let buf = "";
    return { text: () => buf, out: { isTTY, write: (t: string) => void (buf += t) } };
  };
  it("prints timestamped lines without a TTY and ignores the block", () => {
    const s = sink(false);
    const v = new ConsoleView(s.out);
    v.setBlock(["status"]);
    v.note("hello");
    expect(s.text()).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z hello\n$/);
  });
  it("redraws the block in place on a TTY, notes above it", () => {
    const s = sink(true);
    const v = new ConsoleView(s.out);
    v.setBlock(["a", "b"]);
    v.note("event");
    v.setBlock(["c"]);
    expect(s.text()).toBe("a\nb\n" + "\x1b[2F\x1b[J" + "event\n" + "a\nb\n" + "\x1b[2F\x1b[J" + "c\n");
  });
});

describe("readStartTicks", () => {
  it("reads field 22 of /proc/<pid>/stat", () => {
    expect(readStartTicks(process.pid)).toBeGreaterThan(0);
    expect(readStartTicks(2 ** 30)).toBeUndefined();
  });
});

describe("the malloc setting of the node's Node processes", () => {
  it("is added to GLIBC_TUNABLES unless they set the mmap threshold themselves", () => {
    expect(withMallocTunables(undefined)).toBe(MALLOC_TUNABLES);
    expect(withMallocTunables("")).toBe(MALLOC_TUNABLES);
    expect(withMallocTunables("glibc.malloc.arena_max=2")).toBe(
      `glibc.malloc.arena_max=2:${MALLOC_TUNABLES}`,
    );
    expect(withMallocTunables("glibc.malloc.mmap_threshold=65536")).toBe("glibc.malloc.mmap_threshold=65536");
    expect(withMallocTunables("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1")).toBe(
      "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1",
    );
  });

  it("is the one `npm start` gives the launcher when the caller sets none", async () => {
    const pkg = JSON.parse(
      await readFile(path.join(import.meta.dirname, "../../../package.json"), "utf8"),
    ) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toContain(`GLIBC_TUNABLES=\${GLIBC_TUNABLES:-${MALLOC_TUNABLES}} node `);
  });
});
