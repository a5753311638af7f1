import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  ProcfsParseError,
  pageSizeBytes,
  parseProcStatm,
  parseProcStatus,
  readProcStatus,
} from "@eve-tasks/procfs";
import { statusText } from "./fixtures.js";

describe("/proc/<pid>/status", () => {
  it("parses sizes in kB as bytes, the state letter and the thread count", () => {
    expect(parseProcStatus(statusText(77, { rssKiB: 100 }))).toEqual({
      name: "sh",
      state: "S",
      tgid: 77,
      pid: 77,
      ppid: 1,
      threads: 3,
      vmRssBytes: 100 * 1024,
      vmHwmBytes: 110 * 1024,
      vmSizeBytes: 8800 * 1024,
    });
  });

  it("gives null memory for a process without Vm lines (zombie, kernel thread)", () => {
    const s = parseProcStatus(statusText(78, { state: "Z (zombie)", rssKiB: null }));
    expect(s.state).toBe("Z");
    expect(s.vmRssBytes).toBeNull();
    expect(s.vmHwmBytes).toBeNull();
  });

  it("throws a ProcfsParseError naming the file for text that is not a status", () => {
    expect(() => parseProcStatus("hello\n", "/proc/9/status")).toThrow(ProcfsParseError);
    expect(() => parseProcStatus("hello\n", "/proc/9/status")).toThrow(/\/proc\/9\/status: no Name or State/);
    expect(() => parseProcStatus(statusText(9).replace("4242 kB", "lots"), "/proc/9/status")).toThrow(
      /VmRSS is not/,
    );
  });

  it("reads a live process, and undefined for one that is gone", async () => {
    const child = spawn("sleep", ["30"]);
    try {
      const s = await readProcStatus(child.pid!);
      expect(s?.pid).toBe(child.pid);
      expect(s?.ppid).toBe(process.pid);
      expect(s?.threads).toBe(1);
      expect(s?.vmRssBytes).toBeGreaterThan(0);
      const self = await readProcStatus(process.pid);
      expect(self!.vmRssBytes! / 2 ** 20).toBeCloseTo(process.memoryUsage().rss / 2 ** 20, -1);
    } finally {
      child.kill("SIGKILL");
    }
    await new Promise((r) => child.once("exit", r));
    expect(await readProcStatus(child.pid!)).toBeUndefined();
  });
});

describe("/proc/<pid>/statm and the page size", () => {
  it("parses page counts; a zombie's are all zero", () => {
    expect(parseProcStatm("2200 512 100 50 0 300 0\n")).toEqual({
      sizePages: 2200,
      residentPages: 512,
      sharedPages: 100,
      textPages: 50,
      dataPages: 300,
    });
    expect(parseProcStatm("0 0 0 0 0 0 0\n").residentPages).toBe(0);
    expect(() => parseProcStatm("1 2\n", "/proc/9/statm")).toThrow(/\/proc\/9\/statm: not 7 page counts/);
  });

  it("knows this kernel's page size (statm × page size = VmRSS)", async () => {
    expect([4096, 16384, 65536]).toContain(pageSizeBytes());
    const { readFile } = await import("node:fs/promises");
    const [statm, status] = await Promise.all([
      readFile("/proc/1/statm", "utf8"),
      readFile("/proc/1/status", "utf8"),
    ]);
    const vmRss = parseProcStatus(status).vmRssBytes;
    expect(parseProcStatm(statm).residentPages * pageSizeBytes()).toBe(vmRss);
  });
});
