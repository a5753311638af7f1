// QmpClient against a real qemu (TCG, paused with -S, nothing but a QMP socket). Each test
// SIGKILLs the qemu processes it started, by PID, in afterEach.
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  QmpClosedError,
  QmpCommandError,
  QmpConnectError,
  QmpTimeoutError,
  connectQmp,
} from "@eve-tasks/qmp";
import type { ExecuteOptions, QmpClient } from "@eve-tasks/qmp";
import { QemuProcesses, qmpOnlyArgs, within } from "../../../test/harness/qemu-process.js";

const procs = new QemuProcesses();
const clients: QmpClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await procs.cleanup();
});

/** Starts a paused qemu and connects to it. */
async function startAndConnect(): Promise<{ client: QmpClient; pid: number; exited: Promise<unknown> }> {
  const dir = await procs.tempDir();
  const socketPath = join(dir, "qmp.sock");
  const q = procs.start(qmpOnlyArgs(socketPath));
  const client = await connectQmp(socketPath, { timeoutMs: 10_000 });
  clients.push(client);
  return { client, pid: q.pid, exited: q.exited };
}

/** `query-status`: whether the vCPUs run, and qemu's run state. */
async function queryStatus(
  client: QmpClient,
  options?: ExecuteOptions,
): Promise<{ running: boolean; status: string }> {
  const r = await client.execute<{ running: boolean; status: string }>("query-status", undefined, options);
  return { running: r.running, status: r.status };
}

describe("QmpClient against qemu", () => {
  it("connects while the socket does not exist yet, reads the greeting and the run state", async () => {
    const dir = await procs.tempDir();
    const socketPath = join(dir, "qmp.sock");
    // Connect first: qemu creates the socket only while it starts.
    const connecting = connectQmp(socketPath, { timeoutMs: 10_000 });
    expect(existsSync(socketPath)).toBe(false);
    procs.start(qmpOnlyArgs(socketPath));
    const client = await connecting;
    clients.push(client);

    expect(client.socketPath).toBe(socketPath);
    expect(client.version.major).toBeGreaterThanOrEqual(7);
    expect(typeof client.greeting.version.package).toBe("string");
    expect(await queryStatus(client)).toEqual({ running: false, status: "prelaunch" });

    await client.execute("cont");
    expect(await queryStatus(client)).toEqual({ running: true, status: "running" });
    await client.execute("stop");
    expect(await queryStatus(client)).toEqual({ running: false, status: "paused" });
  });

  it("pipelines commands and matches each reply to its command; an unknown command is a QmpCommandError", async () => {
    const { client } = await startAndConnect();
    const [name, version, unknown, status] = await Promise.allSettled([
      client.execute<Record<string, unknown>>("query-name"),
      client.execute<{ qemu: { major: number } }>("query-version"),
      client.execute("no-such-command", { really: true }),
      queryStatus(client),
    ]);
    expect(name).toEqual({ status: "fulfilled", value: {} });
    expect(version.status === "fulfilled" && version.value.qemu.major).toBe(client.version.major);
    expect(status).toEqual({ status: "fulfilled", value: { running: false, status: "prelaunch" } });
    expect(unknown.status).toBe("rejected");
    const err = (unknown as PromiseRejectedResult).reason as unknown;
    expect(err).toBeInstanceOf(QmpCommandError);
    const e = err as QmpCommandError;
    expect(e.errorClass).toBe("CommandNotFound");
    expect(e.command).toBe("no-such-command");
    expect(e.desc).toMatch(/no-such-command/);
    expect(e.message).toContain(client.socketPath);
    // Arguments qemu rejects: GenericError, and the connection goes on.
    await expect(client.execute("cont", { bogus: 1 })).rejects.toMatchObject({ errorClass: "GenericError" });
    expect((await queryStatus(client)).status).toBe("prelaunch");
  });

  it("reads and drops qemu's events: system_powerdown's POWERDOWN and cont's RESUME disturb no reply", async () => {
    const { client } = await startAndConnect();
    await client.execute("cont");
    await client.systemPowerdown();
    await client.execute("stop");
    expect(await queryStatus(client)).toEqual({ running: false, status: "paused" });
    expect(client.isClosed).toBe(false);
  });

  it("quit: qemu exits, the connection closes, pending and later commands reject with QmpClosedError", async () => {
    const { client, exited } = await startAndConnect();
    // Pipelined behind quit: answered, or rejected as closed; never left hanging.
    const behind = client.execute("query-status").then(
      () => "answered",
      (err: unknown) => err,
    );
    await client.quit({ timeoutMs: 5000 });

    const b = await behind;
    if (b !== "answered") expect(b).toBeInstanceOf(QmpClosedError);
    expect(await client.closed).toBeUndefined();
    expect(client.isClosed).toBe(true);
    await expect(queryStatus(client)).rejects.toBeInstanceOf(QmpClosedError);
    await expect(client.execute("cont")).rejects.toThrow(/"cont".*closed/);
    expect(await within(exited, 5000, "qemu exiting after quit")).toEqual({ code: 0, signal: null });
  });

  it("drops a reply that comes after its command timed out; rejects a pending command when qemu dies", async () => {
    const { client, pid } = await startAndConnect();
    process.kill(pid, "SIGSTOP");
    await expect(queryStatus(client, { timeoutMs: 300 })).rejects.toBeInstanceOf(QmpTimeoutError);
    const late = client.execute("query-name", undefined, { timeoutMs: 10_000 });
    process.kill(pid, "SIGCONT");
    // The late reply to query-status (id 2) must not answer query-name (id 3).
    expect(await late).toEqual({});
    expect((await queryStatus(client)).status).toBe("prelaunch");

    process.kill(pid, "SIGSTOP");
    const pending = queryStatus(client, { timeoutMs: 10_000 });
    process.kill(pid, "SIGKILL");
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QmpClosedError);
    expect((err as QmpClosedError).command).toBe("query-status");
    await within(client.closed, 5000, "closed");
  });

  it("a second client gets no greeting (qemu serves one at a time) and fails by its deadline", async () => {
    const { client } = await startAndConnect();
    const started = Date.now();
    const err = await connectQmp(client.socketPath, { timeoutMs: 500 }).then(
      (c) => {
        c.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QmpConnectError);
    expect((err as QmpConnectError).reason).toBe("deadline");
    expect((err as Error).message).toContain(client.socketPath);
    expect((err as Error).message).toMatch(/greeting/);
    expect(Date.now() - started).toBeLessThan(3000);
    // The first session is unaffected.
    expect((await queryStatus(client)).status).toBe("prelaunch");
  });

  it("close() ends the session: pending commands reject, closed settles", async () => {
    const { client, pid } = await startAndConnect();
    process.kill(pid, "SIGSTOP"); // nothing answers from here on
    const pending = queryStatus(client);
    client.close();
    await expect(pending).rejects.toBeInstanceOf(QmpClosedError);
    await within(client.closed, 3000, "closed");
  });
});

describe("connectQmp without qemu", () => {
  it("fails by the deadline, naming the path, when the socket does not exist", async () => {
    const dir = await procs.tempDir();
    const socketPath = join(dir, "nobody.sock");
    const started = Date.now();
    const err = await connectQmp(socketPath, { timeoutMs: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(QmpConnectError);
    const e = err as QmpConnectError;
    expect(e.reason).toBe("deadline");
    expect(e.lastErrorCode).toBe("ENOENT");
    expect(e.socketPath).toBe(socketPath);
    expect(e.attempts).toBeGreaterThan(1);
    expect(e.message).toContain(socketPath);
    expect(e.message).toMatch(/within 500 ms.*does not exist/);
    expect(elapsed).toBeGreaterThanOrEqual(490);
    expect(elapsed).toBeLessThan(2000);
  });

  it("fails by the deadline when nothing listens on the path (ECONNREFUSED)", async () => {
    const dir = await procs.tempDir();
    const socketPath = join(dir, "stale.sock");
    await writeFile(socketPath, "");
    const err = await connectQmp(socketPath, { timeoutMs: 300 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QmpConnectError);
    expect((err as QmpConnectError).lastErrorCode).toBe("ECONNREFUSED");
    expect((err as Error).message).toContain(socketPath);
  });

  it("stops at once when its signal aborts", async () => {
    const dir = await procs.tempDir();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("test abort")), 100);
    const started = Date.now();
    const err = await connectQmp(join(dir, "late.sock"), { timeoutMs: 10_000, signal: ac.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QmpConnectError);
    expect((err as QmpConnectError).reason).toBe("aborted");
    expect(((err as Error).cause as Error).message).toBe("test abort");
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("rejects a peer that does not speak QMP", async () => {
    const dir = await procs.tempDir();
    const socketPath = join(dir, "other.sock");
    const server = createServer((s) => s.end("SSH-2.0-not-qmp\r\n"));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const err = await connectQmp(socketPath, { timeoutMs: 2000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(QmpConnectError);
      expect((err as QmpConnectError).reason).toBe("protocol");
      expect((err as Error).message).toContain("SSH-2.0-not-qmp");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
