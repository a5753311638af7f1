// The anchor's PID-reuse guard and the whole sampler: on fixture trees (always), then on live
// processes and this kernel's cgroups (a v1 hierarchy when the host has one; a cgroup2 mounted
// by the test when the kernel allows it).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  AnchorReader,
  TaskSampler,
  detectCgroupLayout,
  pageSizeBytes,
  readProcStat,
} from "@eve-tasks/procfs";
import type { CgroupLayout } from "@eve-tasks/procfs";
import { fixtureDir, statLine, statmText, writeTree } from "./fixtures.js";

const TASK = "/eve-user-apps/6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
const MiB = 2 ** 20;

describe("AnchorReader on fixtures", () => {
  it("is alive while the PID has the expected start ticks", () => {
    const proc = fixtureDir();
    writeTree(proc, { "100/stat": statLine(100, 5000), "100/statm": statmText(512) });
    const a = new AnchorReader(100, 5000, proc, 4096);
    expect(a.read()).toEqual({ alive: true, rssBytes: 512 * 4096 });
    a.close();
  });

  it("says pid-reused when the PID's start ticks differ, and stays gone", () => {
    const proc = fixtureDir();
    writeTree(proc, { "100/stat": statLine(100, 7777), "100/statm": statmText(10) });
    const a = new AnchorReader(100, 5000, proc);
    expect(a.read()).toEqual({ alive: false, reason: "pid-reused", foundStartTicks: 7777 });
    writeTree(proc, { "100/stat": statLine(100, 5000) });
    expect(a.read()).toEqual({ alive: false, reason: "pid-reused", foundStartTicks: 7777 });
  });

  it("says gone for no /proc/<pid>, and for a zombie", () => {
    const proc = fixtureDir();
    expect(new AnchorReader(100, 5000, proc).read()).toEqual({ alive: false, reason: "gone" });
    writeTree(proc, { "101/stat": statLine(101, 5000, "Z"), "101/statm": statmText(0) });
    expect(new AnchorReader(101, 5000, proc).read()).toEqual({ alive: false, reason: "gone" });
    // Alive first, a zombie later (no memory left): gone.
    writeTree(proc, { "102/stat": statLine(102, 5000), "102/statm": statmText(10) });
    const a = new AnchorReader(102, 5000, proc);
    expect(a.read().alive).toBe(true);
    writeTree(proc, { "102/stat": statLine(102, 5000, "Z"), "102/statm": statmText(0) });
    expect(a.read()).toEqual({ alive: false, reason: "gone" });
  });

  it("checks nothing when the expected start ticks are unknown (null)", () => {
    const proc = fixtureDir();
    writeTree(proc, { "100/stat": statLine(100, 7777), "100/statm": statmText(10) });
    expect(new AnchorReader(100, null, proc).read().alive).toBe(true);
  });
});

describe("TaskSampler on fixtures", () => {
  it("lists what it read in measured, in the schema's order; a gone anchor has no rssBytes", () => {
    const root = fixtureDir();
    writeTree(root, {
      "proc/100/stat": statLine(100, 5000),
      "proc/100/statm": statmText(256),
      [`cg${TASK}/memory.current`]: "2097152\n",
      [`cg${TASK}/memory.max`]: "max\n",
      [`cg${TASK}/cpu.stat`]: "usage_usec 10\nuser_usec 5\nsystem_usec 5\n",
    });
    const layout: CgroupLayout = { version: 2, unified: { mountPoint: join(root, "cg"), root: "/" } };
    const at = new Date("2024-05-01T12:00:00.000Z");
    const s = new TaskSampler({
      pid: 100,
      anchorStartTicks: 5000,
      cgroupsPath: TASK,
      layout,
      procRoot: join(root, "proc"),
      now: () => at,
    });
    expect(s.sample()).toEqual({
      pid: 100,
      sampledAt: at,
      anchor: { alive: true, rssBytes: 256 * pageSizeBytes() },
      values: {
        cpuNs: 10_000,
        rssBytes: 256 * pageSizeBytes(),
        memoryUsageBytes: 2 * MiB,
        memoryPeakBytes: null,
        memoryLimitBytes: null,
        oomKills: null,
        threads: null,
      },
      measured: ["cpuNs", "rssBytes", "memoryUsageBytes", "memoryLimitBytes"],
      problems: [],
    });
    const other = new TaskSampler({
      pid: 100,
      anchorStartTicks: 1,
      cgroupsPath: TASK,
      layout,
      procRoot: join(root, "proc"),
    }).sample();
    expect(other.anchor).toEqual({ alive: false, reason: "pid-reused", foundStartTicks: 5000 });
    expect(other.measured).toEqual(["cpuNs", "memoryUsageBytes", "memoryLimitBytes"]);
    s.close();
  });
});

/** Spawns `sleep`, returns it with its start ticks. */
async function sleeper(): Promise<{ child: ChildProcess; pid: number; startTicks: number }> {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  const pid = child.pid!;
  const stat = await readProcStat(pid);
  return { child, pid, startTicks: stat!.startTimeTicks };
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

describe("live processes and cgroups", () => {
  it("follows a live anchor until it exits, and tells a PID with other start ticks", async () => {
    const { child, pid, startTicks } = await sleeper();
    try {
      const a = new AnchorReader(pid, startTicks);
      const r = a.read();
      const vmRss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
      expect(r.alive && r.rssBytes).toBe(vmRss);
      expect(new AnchorReader(pid, startTicks + 1).read()).toEqual({
        alive: false,
        reason: "pid-reused",
        foundStartTicks: startTicks,
      });
      await killAndWait(child);
      expect(a.read()).toEqual({ alive: false, reason: "gone" });
    } finally {
      await killAndWait(child);
    }
  });

  it("reads a real v1 cgroup through open handles: values, then nothing once removed, then again once made again", async (ctx) => {
    const layout = detectCgroupLayout();
    if (layout.version !== 1 || !layout.controllers.memory) {
      ctx.skip(`this host's cgroup layout is v${layout.version} without a v1 memory hierarchy`);
      return;
    }
    const name = `/eve-procfs-test-${process.pid}`;
    const dirs = Object.values(layout.controllers).map((m) => join(m.mountPoint, name));
    const { child, pid, startTicks } = await sleeper();
    try {
      for (const d of dirs) {
        mkdirSync(d);
        writeFileSync(join(d, "cgroup.procs"), String(pid));
      }
      const memDir = join(layout.controllers.memory.mountPoint, name);
      writeFileSync(join(memDir, "memory.limit_in_bytes"), String(64 * MiB));
      const s = new TaskSampler({ pid, anchorStartTicks: startTicks, cgroupsPath: name, layout });
      const first = s.sample();
      expect(first.anchor.alive).toBe(true);
      expect(first.values.memoryLimitBytes).toBe(64 * MiB);
      expect(first.values.memoryUsageBytes).toBe(
        Number(readFileSync(join(memDir, "memory.usage_in_bytes"), "utf8")),
      );
      expect(first.values.oomKills).toBe(0);
      if (layout.controllers.pids) expect(first.values.threads).toBe(1);
      if (layout.controllers.cpuacct) expect(first.values.cpuNs).toBeGreaterThanOrEqual(0);
      await killAndWait(child);
      for (const d of dirs) rmdirSync(d);
      const after = s.sample();
      expect(after.anchor).toEqual({ alive: false, reason: "gone" });
      expect(after.measured).toEqual([]);
      // The same cgroup path made again (a task restarted): its files are opened again.
      for (const d of dirs) mkdirSync(d);
      expect(s.sample().measured).toContain("memoryUsageBytes");
      s.close();
    } finally {
      await killAndWait(child);
      for (const d of dirs) if (existsSync(d)) rmdirSync(d);
    }
  });

  it("reads a cgroup2 hierarchy mounted by the test", async (ctx) => {
    const mnt = mkdtempSync(join(tmpdir(), "eve-cg2-"));
    try {
      try {
        execFileSync("mount", ["-t", "cgroup2", "none", mnt], { stdio: "pipe" });
      } catch (err) {
        const e = err as { stderr?: Buffer; message: string };
        ctx.skip(`mount -t cgroup2 failed: ${e.stderr?.toString().trim() || e.message}`);
      }
      const cg = join(mnt, `eve-procfs-test-${process.pid}`);
      const { child, pid, startTicks } = await sleeper();
      try {
        mkdirSync(cg);
        writeFileSync(join(cg, "cgroup.procs"), String(pid));
        const layout: CgroupLayout = { version: 2, unified: { mountPoint: mnt, root: "/" } };
        const s = new TaskSampler({
          pid,
          anchorStartTicks: startTicks,
          cgroupsPath: `/eve-procfs-test-${process.pid}`,
          layout,
        });
        const sample = s.sample();
        // What is measured is exactly what this kernel's hierarchy has: controllers bound to v1
        // (a hybrid host) leave their files out of cgroup2.
        const has = (f: string) => existsSync(join(cg, f));
        expect(sample.measured.includes("cpuNs")).toBe(has("cpu.stat"));
        expect(sample.measured.includes("memoryUsageBytes")).toBe(has("memory.current"));
        expect(sample.measured.includes("memoryPeakBytes")).toBe(has("memory.peak"));
        expect(sample.measured.includes("memoryLimitBytes")).toBe(has("memory.max"));
        expect(sample.values.threads).toBe(1); // pids.current, else cgroup.threads
        expect(sample.anchor.alive).toBe(true);
        await killAndWait(child);
        rmdirSync(cg);
        const after = s.sample();
        expect(after.anchor.alive).toBe(false);
        expect(after.measured).toEqual([]);
        s.close();
      } finally {
        await killAndWait(child);
        if (existsSync(cg)) rmdirSync(cg);
      }
    } finally {
      try {
        execFileSync("umount", [mnt], { stdio: "pipe" });
      } catch {
        // Not mounted (the mount failed).
      }
      rmdirSync(mnt);
    }
  });
});
