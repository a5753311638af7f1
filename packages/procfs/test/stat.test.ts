import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { parseProcStat, readProcStat, readProcStatSync } from "@eve-tasks/procfs";

describe("/proc/<pid>/stat", () => {
  it("parses a comm with spaces and parentheses", () => {
    const line =
      "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 987654 1000000 321 " +
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    const s = parseProcStat(line);
    expect(s).toEqual({
      pid: 4242,
      comm: "my (odd) name",
      state: "S",
      ppid: 1,
      utimeTicks: 7,
      stimeTicks: 3,
      numThreads: 5,
      startTimeTicks: 987654,
      rssPages: 321,
    });
  });

  it("reads a live process and tells a PID that is gone", async () => {
    const child = spawn("sleep", ["30"]);
    try {
      const s = await readProcStat(child.pid!);
      // The same process through the synchronous read (its CPU and RSS may have moved since).
      const sync = readProcStatSync(child.pid!);
      expect([sync?.pid, sync?.comm, sync?.ppid, sync?.startTimeTicks]).toEqual([
        s?.pid,
        s?.comm,
        s?.ppid,
        s?.startTimeTicks,
      ]);
      expect(s?.pid).toBe(child.pid);
      expect(s?.comm).toBe("sleep");
      expect(s?.ppid).toBe(process.pid);
      expect(s?.startTimeTicks).toBeGreaterThan(0);
      const self = await readProcStat(process.pid);
      // The child started after this process.
      expect(s!.startTimeTicks).toBeGreaterThanOrEqual(self!.startTimeTicks);
    } finally {
      child.kill("SIGKILL");
    }
    await new Promise((r) => child.once("exit", r));
    expect(await readProcStat(child.pid!)).toBeUndefined();
    expect(readProcStatSync(child.pid!)).toBeUndefined();
  });
});
