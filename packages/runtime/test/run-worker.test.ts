// Runs a real worker process on the built package (`npx tsc -b packages/runtime` first).
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { baseWorkerEnv, readHeartbeats, runWorker } from "../src/index.js";

const fixture = fileURLToPath(new URL("./fixtures/worker.mjs", import.meta.url));
const started: number[] = [];
let dir: string | undefined;

afterEach(async () => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

interface Run {
  pid: number;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

async function startFixture(env: Record<string, string>): Promise<Run> {
  dir ??= await mkdtemp(path.join(tmpdir(), "eve-rw-"));
  const child = spawn(process.execPath, [fixture], {
    env: { PATH: process.env.PATH ?? "", EVE_RUN_DIR: dir, EVE_DATA_DIR: dir, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child.pid!);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on("exit", (code) => resolve({ code, stdout, stderr })),
  );
  return { pid: child.pid!, done };
}

async function until<T>(probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("runWorker", () => {
  it("exits 2 with one clear line on a bad configuration", async () => {
    const run = await startFixture({ FIXTURE_MIB: "lots" });
    const { code, stderr, stdout } = await run.done;
    expect(code).toBe(2);
    expect(stderr.trim()).toBe(
      'fixture: invalid configuration: FIXTURE_MIB: expected a positive integer, got "lots"',
    );
    expect(stdout).toBe("");
  });

  it("heartbeats while running and on SIGTERM runs cleanup in reverse order, then exits 0", async () => {
    const run = await startFixture({});
    const healthDir = path.join(dir!, "health");
    await until(async () =>
      (await readHeartbeats(healthDir)).find((h) => h.pid === run.pid && h.state === "running"),
    );
    process.kill(run.pid, "SIGTERM");
    const { code, stdout } = await run.done;
    expect(code).toBe(0);
    const msgs = stdout
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { msg: string; worker: string }).msg);
    expect(msgs).toContain("fixture ready");
    expect(msgs.indexOf("cleanup: registered second")).toBeLessThan(
      msgs.indexOf("cleanup: registered first"),
    );
    expect(msgs.at(-1)).toBe("shutdown: stopped");
    expect(await readdir(healthDir)).toEqual([]);
  });

  it("exits 1 when main throws, after cleaning up", async () => {
    const run = await startFixture({ FIXTURE_FAIL: "true" });
    const { code, stdout } = await run.done;
    expect(code).toBe(1);
    expect(stdout).toContain("worker failed to start");
    expect(stdout).toContain("cleanup: registered first");
  });
});

describe("runWorker types", () => {
  it("hands main the extended config, and refuses a schema without the base variables", () => {
    const schema = z.object({ ...baseWorkerEnv, EVE_ACCEL: z.enum(["auto", "kvm", "tcg"]).default("auto") });
    // Never called: these only have to type-check.
    const good = (): Promise<void> =>
      runWorker({
        name: "typed",
        envSchema: schema,
        main: async ({ config }) => {
          expectTypeOf(config.EVE_ACCEL).toEqualTypeOf<"auto" | "kvm" | "tcg">();
          expectTypeOf(config.EVE_DATA_DIR).toEqualTypeOf<string>();
          await Promise.resolve();
        },
      });
    const bad = (): Promise<void> =>
      // @ts-expect-error EVE_NODE, LOG_LEVEL, ... are missing
      runWorker({ name: "untyped", envSchema: z.object({ X: z.string() }), main: () => Promise.resolve() });
    expect(typeof good).toBe("function");
    expect(typeof bad).toBe("function");
  });
});
