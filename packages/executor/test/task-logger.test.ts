// The task logger, built from its C source by ensureTaskLogger and run the way containerd's shim
// runs a binary logging driver: the task's stdout on fd 3, stderr on fd 4, a pipe on fd 5 that it
// closes once ready, SIGTERM when the task is deleted.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTaskLogger, taskLogFiles, taskLogUri } from "@eve-tasks/executor";

/** A running logger: its stdout and stderr pipes, and whether it said it is ready. */
interface Logger {
  child: ChildProcess;
  out: Writable;
  err: Writable;
  ready: Promise<void>;
  exited: Promise<number | null>;
}

describe("the task logger (containerd's binary logging driver)", () => {
  let dir: string;
  let logger: string;
  let n = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "eve-logger-"));
    logger = await ensureTaskLogger(join(dir, "data"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A fresh log path, in a directory that exists (the executor makes the task's). */
  const logPath = async () => {
    const d = join(dir, `t${++n}`);
    await mkdir(d);
    return join(d, "console.log");
  };

  /** Starts the logger with the shim's arguments (key/value pairs in any order) and fds. */
  function start(args: string[]): Logger {
    const child = spawn(logger, args, { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe", "pipe"] });
    const stdio = child.stdio as unknown as [null, null, null, Writable, Writable, Readable];
    const [out, err, ready] = [stdio[3], stdio[4], stdio[5]];
    return {
      child,
      out,
      err,
      ready: new Promise((r) => ready.on("close", () => r()).resume()),
      exited: new Promise((r) => child.on("exit", (code) => r(code))),
    };
  }

  const write = (w: Writable, data: string | Buffer) =>
    new Promise<void>((resolve, reject) => w.write(data, (e) => (e ? reject(e) : resolve())));

  /** The log's files, oldest first, as they exist. */
  async function files(path: string, keep: number): Promise<{ name: string; data: string }[]> {
    const out = [];
    for (const f of taskLogFiles(path, keep)) {
      if (existsSync(f)) out.push({ name: f, data: await readFile(f, "utf8") });
    }
    return out;
  }

  it("is built once per source, where the node keeps it", async () => {
    expect(logger).toMatch(new RegExp(`^${join(dir, "data", "bin")}/eve-task-logger-[0-9a-f]{16}$`));
    expect(((await stat(logger)).mode & 0o777).toString(8)).toBe("755");
    expect(await ensureTaskLogger(join(dir, "data"))).toBe(logger);
    expect((await readdir(join(dir, "data", "bin"))).length).toBe(1);
  });

  it("keeps at most `files` files, none over `max` bytes, holding exactly the tail of the output", async () => {
    const path = await logPath();
    const l = start(["files", "3", "path", path, "max", "1000"]);
    await l.ready;
    let all = "";
    let chunk = "";
    for (let i = 0; i < 5000; i++) {
      chunk += `line ${i} ${"x".repeat(i % 50)}\n`;
      // Chunks that end mid-line, as pipes deliver them.
      if (chunk.length > 333 || i === 4999) {
        const cut = i === 4999 ? chunk.length : 300;
        await write(l.out, chunk.slice(0, cut));
        all += chunk.slice(0, cut);
        chunk = chunk.slice(cut);
      }
    }
    l.out.end();
    l.err.end();
    expect(await l.exited).toBe(0);
    const kept = await files(path, 3);
    expect(kept.map((f) => f.name)).toEqual([`${path}.2`, `${path}.1`, path]);
    for (const f of kept) expect(Buffer.byteLength(f.data)).toBeLessThanOrEqual(1000);
    const tail = kept.map((f) => f.data).join("");
    expect(all.endsWith(tail)).toBe(true);
    // Rotated on line boundaries: every kept file starts a line.
    expect(all[all.length - tail.length - 1]).toBe("\n");
    for (const f of kept) expect(f.data).toMatch(/^line \d+ /);
    expect(existsSync(`${path}.3`)).toBe(false);
    expect(tail.length).toBeGreaterThan(2000);
  });

  it("splits only a line longer than a whole file, and logs stderr too", async () => {
    const path = await logPath();
    const l = start(["path", path, "max", "100", "files", "4"]);
    await l.ready;
    const long = `${"y".repeat(250)}\n`;
    await write(l.out, "short\n");
    await write(l.out, long);
    await write(l.err, "to stderr\n");
    l.out.end();
    l.err.end();
    expect(await l.exited).toBe(0);
    const kept = await files(path, 4);
    // The long line starts a file of its own (it did not fit after "short"), fills two, and
    // ends in the current one, where stderr's line follows.
    expect(kept.map((f) => f.data)).toEqual([
      "short\n",
      "y".repeat(100),
      "y".repeat(100),
      `${"y".repeat(50)}\nto stderr\n`,
    ]);
    expect(existsSync(`${path}.4`)).toBe(false);
  });

  it("says it is ready only with its log open, and on SIGTERM writes what the pipes hold and leaves", async () => {
    const path = await logPath();
    const l = start(["path", path, "max", "1048576", "files", "2"]);
    await l.ready;
    expect(existsSync(path)).toBe(true);
    const data = "z".repeat(200_000);
    await write(l.out, data);
    // The shim signals with its ends of the pipes still open: nothing more will come.
    l.child.kill("SIGTERM");
    const started = Date.now();
    expect(await l.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await readFile(path, "utf8")).toBe(data);
  });

  it("appends to the log a task's earlier run left, rotating it first when it is already full", async () => {
    const path = await logPath();
    const l1 = start(["path", path, "max", "100", "files", "2"]);
    await l1.ready;
    await write(l1.out, "first run\n");
    l1.out.end();
    l1.err.end();
    await l1.exited;
    const l2 = start(["path", path, "max", "100", "files", "2"]);
    await l2.ready;
    await write(l2.out, "second run\n");
    l2.out.end();
    l2.err.end();
    await l2.exited;
    expect(await readFile(path, "utf8")).toBe("first run\nsecond run\n");
    await writeFile(path, "o".repeat(150));
    const l3 = start(["path", path, "max", "100", "files", "2"]);
    await l3.ready;
    await write(l3.out, "third run\n");
    l3.out.end();
    l3.err.end();
    await l3.exited;
    expect(await readFile(`${path}.1`, "utf8")).toBe("o".repeat(150));
    expect(await readFile(path, "utf8")).toBe("third run\n");
  });

  it("never blocks the task: with no log to write, or bad arguments, it still drains its pipes", async () => {
    for (const args of [
      ["path", join(dir, "no-such-dir", "x", "console.log"), "max", "100", "files", "2"],
      ["path", "relative.log", "max", "0"],
    ]) {
      const l = start(args);
      await l.ready;
      // Far more than a pipe holds: this would never finish if nobody read.
      for (let i = 0; i < 64; i++) await write(l.out, Buffer.alloc(64 * 1024, 0x61));
      l.out.end();
      l.err.end();
      expect(await l.exited).toBe(0);
    }
    expect(existsSync(join(dir, "no-such-dir"))).toBe(false);
  });

  it("is named by a binary:// URI whose query carries its arguments", () => {
    const uri = taskLogUri(
      { loggerPath: "/var/lib/eve tasks/bin/logger", maxBytes: 4096, files: 3 },
      "/d/t?#/console.log",
    );
    const url = new URL(uri);
    expect(url.protocol).toBe("binary:");
    expect(decodeURIComponent(url.pathname)).toBe("/var/lib/eve tasks/bin/logger");
    expect(Object.fromEntries(url.searchParams)).toEqual({
      path: "/d/t?#/console.log",
      max: "4096",
      files: "3",
    });
  });
});
