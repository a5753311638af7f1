// The VM tests' guest on its own: Debian's kernel and the busybox initramfs from
// examples/vm/make-guest.sh, booted directly by the host's qemu (no containerd, TCG: nested KVM
// hangs). It prints its marker on the serial console and powers off on QMP system_powerdown.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "./harness/index.js";
import { VM_GUEST_MARKER, VM_GUEST_POWERDOWN_MARKER, ensureVmGuest } from "./harness/vm-guest.js";
import type { VmGuest } from "./harness/vm-guest.js";

const QEMU = "/usr/bin/qemu-system-x86_64";
const MARKER_TIMEOUT_MS = 60_000;
const POWERDOWN_TIMEOUT_MS = 20_000;
const echo = process.env.EVE_TEST_ECHO === "1";

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One qemu process running the guest. */
interface Boot {
  pid: number;
  qmpSocket: string;
  /** Everything qemu wrote to stdout (the serial console) and stderr so far. */
  output(): string;
  /** Resolves with ms since spawn once `line` was printed as a line of its own. */
  lineSeen(line: string, timeoutMs: number): Promise<number>;
  /** Resolves with qemu's exit, or rejects after `timeoutMs`. */
  exit(timeoutMs: number): Promise<Exit>;
  /** SIGKILLs this qemu (by its PID) if it still runs, and waits for its exit. */
  kill(): Promise<void>;
}

/** Starts qemu with the guest; `dir` gets the QMP socket. */
function bootGuest(guest: VmGuest, memoryMiB: number, dir: string): Boot {
  const qmpSocket = join(dir, `q-${memoryMiB}-${Date.now()}.sock`);
  const started = performance.now();
  // prettier-ignore
  const child = spawn(QEMU, [
    "-accel", "tcg", "-m", String(memoryMiB), "-smp", "1",
    "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
    "-kernel", guest.kernelPath, "-initrd", guest.initrdPath, "-append", guest.cmdline,
    "-qmp", `unix:${qmpSocket},server=on,wait=off`,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  let spawnError: Error | undefined;
  child.on("error", (err) => (spawnError = err));
  if (child.pid === undefined) throw new Error(`could not start ${QEMU}: ${spawnError?.message ?? "no PID"}`);
  const pid = child.pid;

  let out = "";
  const seen = new Map<string, number>();
  let exitInfo: Exit | undefined;
  const watchers = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...watchers]) w();
  };
  const onData = (chunk: Buffer): void => {
    const text = chunk.toString("utf8");
    if (echo) process.stderr.write(text);
    const before = out.length;
    out += text;
    // Lines completed by this chunk (the serial console ends them with \r\n).
    const from = out.lastIndexOf("\n", before - 1) + 1;
    const lines = out.slice(from).split("\n");
    lines.pop();
    const now = performance.now() - started;
    for (const l of lines) {
      const line = l.replace(/\r$/, "");
      if (!seen.has(line)) seen.set(line, now);
    }
    notify();
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", (chunk: Buffer) => {
    if (echo) process.stderr.write(chunk);
    out += chunk.toString("utf8");
  });
  const exited = new Promise<Exit>((resolve) => {
    child.on("exit", (code, signal) => {
      exitInfo = { code, signal };
      notify();
      resolve(exitInfo);
    });
  });

  function until<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        watchers.delete(watcher);
      };
      const watcher = (): void => {
        const value = check();
        if (value !== undefined) {
          done();
          resolve(value);
        } else if (exitInfo !== undefined) {
          done();
          reject(new Error(`qemu exited (${JSON.stringify(exitInfo)}) before ${what}; output:\n${out}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${what} within ${timeoutMs} ms; output:\n${out}`));
      }, timeoutMs);
      watchers.add(watcher);
      watcher();
    });
  }

  return {
    pid,
    qmpSocket,
    output: () => out,
    lineSeen: (line, timeoutMs) => until(`line ${line}`, timeoutMs, () => seen.get(line)),
    exit: (timeoutMs) => until("exit", timeoutMs, () => exitInfo),
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

/**
 * Sends `commands` to qemu's QMP socket one after another (after the greeting) and resolves with
 * their `return` values; rejects on an `error` reply or after `timeoutMs`.
 */
function qmp(socketPath: string, commands: readonly string[], timeoutMs = 10_000): Promise<unknown[]> {
  return new Promise<unknown[]>((resolve, reject) => {
    const socket = connect(socketPath);
    const results: unknown[] = [];
    let buffer = "";
    let greeted = false;
    const timer = setTimeout(
      () => finish(new Error(`QMP ${commands.join(", ")}: no reply in ${timeoutMs} ms`)),
      timeoutMs,
    );
    function finish(err?: Error): void {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(results);
    }
    function sendNext(): void {
      const next = commands[results.length];
      if (next === undefined) finish();
      else socket.write(`${JSON.stringify({ execute: next })}\n`);
    }
    socket.setEncoding("utf8");
    socket.on("error", (err) => finish(err));
    socket.on("close", () => finish(new Error(`QMP socket closed after ${results.length} replies`)));
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line === "") continue;
        const msg = JSON.parse(line) as { QMP?: unknown; return?: unknown; error?: unknown; event?: string };
        if (msg.QMP !== undefined && !greeted) {
          greeted = true;
          sendNext();
        } else if (msg.error !== undefined) {
          finish(new Error(`QMP ${commands[results.length]}: ${JSON.stringify(msg.error)}`));
          return;
        } else if ("return" in msg) {
          results.push(msg.return);
          sendNext();
        }
        // Events (POWERDOWN, SHUTDOWN, …) are skipped.
      }
    });
  });
}

describe("the VM tests' guest, booted by the host's qemu", () => {
  let guest: VmGuest;
  let dir: string;

  beforeAll(async () => {
    if (!existsSync(QEMU)) throw new Error(`${QEMU} is missing: apt-get install qemu-system-x86`);
    // A kernel download takes seconds; an apt-get update before it, up to a few minutes.
    guest = await ensureVmGuest({ log: (line) => process.stderr.write(`[vm-guest] ${line}\n`) });
    dir = await tempDir("vmg-");
  }, 600_000);

  it("names its files and markers", () => {
    expect(guest.marker).toBe(VM_GUEST_MARKER);
    expect(guest.powerdownMarker).toBe(VM_GUEST_POWERDOWN_MARKER);
    expect(existsSync(guest.kernelPath)).toBe(true);
    expect(existsSync(guest.initrdPath)).toBe(true);
    expect(guest.kernelPackage).toMatch(/^linux-image-/);
  });

  it("prints its marker, then powers off on system_powerdown", async () => {
    const boot = bootGuest(guest, 128, dir);
    try {
      const ms = await boot.lineSeen(guest.marker, MARKER_TIMEOUT_MS);
      process.stderr.write(`[vm-guest] marker after ${Math.round(ms)} ms\n`);
      if (guest.powerdown) {
        const sent = performance.now();
        await qmp(boot.qmpSocket, ["qmp_capabilities", "system_powerdown"]);
        await boot.lineSeen(guest.powerdownMarker, POWERDOWN_TIMEOUT_MS);
        const exit = await boot.exit(Math.max(1, POWERDOWN_TIMEOUT_MS - (performance.now() - sent)));
        expect(exit).toEqual({ code: 0, signal: null });
        // The powerdown marker came after the up marker, each on a line of its own.
        const lines = boot.output().split(/\r?\n/);
        expect(lines.indexOf(guest.powerdownMarker)).toBeGreaterThan(lines.indexOf(guest.marker));
      } else {
        await qmp(boot.qmpSocket, ["qmp_capabilities", "quit"]).catch(() => undefined);
        expect((await boot.exit(POWERDOWN_TIMEOUT_MS)).code).toBe(0);
      }
    } finally {
      await boot.kill();
    }
  }, 120_000);
});
