// A task's console.log rotates by size (EVE_LOG_MAX_BYTES, EVE_LOG_FILES) through containerd's
// binary logging driver, end to end with the real task-executor, containerd, its runc shim and the
// task logger: a task that writes more than the cap keeps exactly EVE_LOG_FILES files, none over
// the cap, whose concatenation is exactly the tail of what it wrote; the logger belongs to the
// shim, so an executor restart loses nothing; a task writing fast is never held up.
import { existsSync } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { AppInstanceConfigInput } from "@eve-tasks/schemas";
import { makeRootfs, tempDir, uuidMaker } from "./harness/index.js";
import { startExecutorNode } from "./executor-node.js";
import type { ExecutorNode } from "./executor-node.js";

const newUuid = uuidMaker("e0130000");
const MAX_BYTES = 4096;
const FILES = 3;

/** The log files of `logPath` that exist, oldest first (console.log.2, console.log.1, console.log). */
async function logFiles(logPath: string, files = FILES): Promise<{ path: string; text: string }[]> {
  const out = [];
  for (let i = files - 1; i >= 0; i--) {
    const path = i === 0 ? logPath : `${logPath}.${i}`;
    if (existsSync(path)) out.push({ path, text: await readFile(path, "utf8") });
  }
  return out;
}

describe("task logs rotate by size", () => {
  let node: ExecutorNode;
  let rootfs: string;

  beforeAll(async () => {
    const dir = await tempDir("logs-");
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "rootfs");
    await mkdir(volumes, { recursive: true });
    await makeRootfs(rootfs);
    node = await startExecutorNode(dir, {
      EVE_LOG_MAX_BYTES: String(MAX_BYTES),
      EVE_LOG_FILES: String(FILES),
    });
  }, 90_000);

  function app(uuid: string, script: string): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "logs",
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: true } },
      volumes: [],
      process: { args: ["/bin/sh", "-c", script] },
      stopTimeoutMs: 2000,
    };
  }

  const ended = (uuid: string, timeoutMs = 60_000) =>
    node.until(uuid, (s) => s.state === "HALTED" || s.state === "BROKEN", "never ended", timeoutMs);

  it("keeps exactly EVE_LOG_FILES files, none over the cap, holding exactly the tail of the output", async () => {
    const uuid = newUuid();
    const lines = 3000;
    // Numbered lines of varying length, written one echo (one write) at a time.
    await node.put(
      node.build(
        app(
          uuid,
          `i=0; while [ $i -lt ${lines} ]; do echo "line-$i $(( i % 7 ))abcdefghijklmnop"; i=$((i+1)); done`,
        ),
        1,
      ),
    );
    const s = await ended(uuid);
    expect(s.state).toBe("HALTED");
    let written = "";
    for (let i = 0; i < lines; i++) written += `line-${i} ${i % 7}abcdefghijklmnop\n`;
    expect(written.length).toBeGreaterThan(FILES * MAX_BYTES);
    const files = await logFiles(s.logPath);
    expect(files.map((f) => f.path)).toEqual([`${s.logPath}.2`, `${s.logPath}.1`, s.logPath]);
    expect(existsSync(`${s.logPath}.3`)).toBe(false);
    for (const f of files) expect((await stat(f.path)).size).toBeLessThanOrEqual(MAX_BYTES);
    const tail = files.map((f) => f.text).join("");
    // Exactly the tail: no line lost, none twice, none cut (rotation falls between lines).
    expect(written.endsWith(tail)).toBe(true);
    expect(written[written.length - tail.length - 1]).toBe("\n");
    expect(tail.length).toBeGreaterThan((FILES - 1) * MAX_BYTES - 100);
  });

  it("logs stderr with stdout, and keeps the log across a restart of the task", async () => {
    const uuid = newUuid();
    const good = node.build(app(uuid, "echo to-stdout; echo to-stderr >&2; exit 3"), 1);
    await node.put(good);
    const s = await node.until(uuid, (x) => x.state === "BROKEN", "never BROKEN");
    const first = await readFile(s.logPath, "utf8");
    expect(first).toContain("to-stdout\n");
    expect(first).toContain("to-stderr\n");
    await node.put({ ...good, restartCounter: 1, configRevision: 2 });
    await node.until(
      uuid,
      (x) => x.state === "BROKEN" && x.configRevision === 2 && x.lastTaskId !== s.lastTaskId,
      "never ran again",
    );
    // Appended to what the first run wrote (the order of stdout and stderr lines is not fixed).
    const both = await readFile(s.logPath, "utf8");
    expect(both.startsWith(first)).toBe(true);
    expect(both.match(/^to-stdout$/gm)).toHaveLength(2);
    expect(both.match(/^to-stderr$/gm)).toHaveLength(2);
  });

  it("keeps logging while the executor is down: the logger belongs to the shim", async () => {
    const uuid = newUuid();
    await node.put(
      node.build(app(uuid, "i=0; while [ $i -lt 60 ]; do echo tick-$i; i=$((i+1)); sleep 0.05; done"), 1),
    );
    const s = await node.settled(uuid, ["RUNNING", "HALTED"]);
    await node.executor.kill(0, "SIGKILL");
    const down = await readFile(s.logPath, "utf8");
    await new Promise((r) => setTimeout(r, 1500));
    // Written while no executor ran.
    expect((await readFile(s.logPath, "utf8")).length).toBeGreaterThan(down.length);
    const pid = node.executor.respawn(0).pid;
    await node.executor.waitForLine((l) => l.pid === pid && l.json?.event === "resynced", 60_000);
    const end = await ended(uuid);
    expect(end.state).toBe("HALTED");
    const expected = Array.from({ length: 60 }, (_, i) => `tick-${i}\n`).join("");
    expect(await readFile(s.logPath, "utf8")).toBe(expected);
  });

  it("never holds up a task writing fast: 32 MiB go through with the log capped", async () => {
    const uuid = newUuid();
    await node.put(
      node.build(app(uuid, "busybox yes 0123456789abcdefghijklmnopqrstuvwxyz | busybox head -c 33554432"), 1),
    );
    const s = await ended(uuid, 120_000);
    expect(s.state).toBe("HALTED");
    const files = await logFiles(s.logPath);
    expect(files).toHaveLength(FILES);
    for (const f of files) {
      expect((await stat(f.path)).size).toBeLessThanOrEqual(MAX_BYTES);
      // Whole lines, but for the end of the output (head cut it mid-line).
      expect(f.text).toMatch(/^(0123456789abcdefghijklmnopqrstuvwxyz\n)+[0-9a-z]*$/);
    }
  });
});
