// Runs a real worker process on the built package (`npx tsc -b packages/runtime` first): what
// happens before it connects to NATS. The rest is in run-worker.e2e.test.ts.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { baseWorkerEnv, runWorker } from "../src/index.js";

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

  it("refuses a metrics port that is not one (0 to 65535, or off)", async () => {
    const run = await startFixture({ EVE_METRICS_PORT: "65536" });
    const { code, stderr } = await run.done;
    expect(code).toBe(2);
    expect(stderr.trim()).toBe(
      'fixture: invalid configuration: EVE_METRICS_PORT: expected a port (0 to 65535; 0 = any free port) or off, got "65536"',
    );
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
