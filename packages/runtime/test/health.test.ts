import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readHeartbeats, startHeartbeat } from "../src/index.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("heartbeat", () => {
  it("writes <worker>.<pid>.alive, updates it, and removes it on stop", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "eve-hb-"));
    const healthDir = path.join(dir, "health");
    const hb = await startHeartbeat({ dir: healthDir, worker: "proc-monitor", intervalMs: 20 });
    expect(hb.file).toBe(path.join(healthDir, `proc-monitor.${process.pid}.alive`));
    const first = JSON.parse(await readFile(hb.file, "utf8")) as { at: string };
    expect(first).toMatchObject({ pid: process.pid, worker: "proc-monitor", state: "starting" });
    await new Promise((r) => setTimeout(r, 60));
    await hb.setState("running");
    const [reading] = await readHeartbeats(healthDir);
    expect(reading).toMatchObject({
      pid: process.pid,
      worker: "proc-monitor",
      state: "running",
      file: hb.file,
    });
    expect(Date.parse(reading!.at)).toBeGreaterThan(Date.parse(first.at));
    expect(reading!.ageMs).toBeLessThan(1000);
    await hb.stop();
    expect(await readdir(healthDir)).toEqual([]);
  });

  it("reads nothing from a missing dir", async () => {
    expect(await readHeartbeats("/nonexistent/eve-tasks-health")).toEqual([]);
  });
});
