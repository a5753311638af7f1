// The QMP stop steps against a real qemu (the host's, under TCG, paused: no guest handles the
// power button, so `quit` is what ends it).
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stopVmByQmp } from "@eve-tasks/executor";

const QEMU = "/usr/bin/qemu-system-x86_64";
const started: { kill(signal: NodeJS.Signals): boolean; exitCode: number | null }[] = [];

afterEach(() => {
  for (const p of started.splice(0)) if (p.exitCode === null) p.kill("SIGKILL");
});

function startQemu(socket: string) {
  const child = spawn(
    QEMU,
    [
      "-accel",
      "tcg",
      "-machine",
      "pc",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-S",
      "-qmp",
      `unix:${socket},server=on,wait=off`,
    ],
    { stdio: "ignore" },
  );
  started.push(child);
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  return { child, exited };
}

describe("stopVmByQmp", () => {
  it("sends system_powerdown, then quit when the guest does not power off, and says which ended it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "eve-vm-stop-"));
    try {
      const socket = join(dir, "qmp.sock");
      const { exited } = startQemu(socket);
      const steps: string[] = [];
      const t0 = Date.now();
      const result = await stopVmByQmp({
        socketPath: socket,
        exited,
        powerdownTimeoutMs: 800,
        quitTimeoutMs: 5000,
        connectTimeoutMs: 10_000,
        onStep: (step) => void steps.push(step),
      });
      expect(result).toEqual({ ended: "quit" });
      expect(steps).toEqual(["system_powerdown", "quit"]);
      // The powerdown deadline was waited out before quit.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(800);
      expect(await exited).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it("reports no QMP when nothing answers on the socket, sending nothing", async () => {
    const steps: string[] = [];
    const result = await stopVmByQmp({
      socketPath: join(tmpdir(), "eve-no-such-dir", "qmp.sock"),
      exited: new Promise(() => undefined),
      powerdownTimeoutMs: 1000,
      quitTimeoutMs: 1000,
      connectTimeoutMs: 200,
      onStep: (step) => void steps.push(step),
    });
    expect(result).toMatchObject({
      ended: undefined,
      noQmp: expect.stringContaining("eve-no-such-dir/qmp.sock") as unknown,
    });
    expect(steps).toEqual([]);
  });
});
