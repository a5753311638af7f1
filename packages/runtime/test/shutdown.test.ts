import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { Lifecycle, LifecycleError, installShutdown } from "../src/index.js";
import type { SignalSource } from "../src/index.js";

const logger = pino({ level: "silent" });

class FakeProcess extends EventEmitter implements SignalSource {
  send(signal: NodeJS.Signals): void {
    this.emit(signal, signal);
  }
}

describe("Lifecycle", () => {
  it("runs steps once, in reverse order, and aborts its signal first", async () => {
    const lc = new Lifecycle({ logger });
    const order: string[] = [];
    lc.onShutdown("close bus", () => {
      order.push(`close bus (aborted=${lc.signal.aborted})`);
    });
    lc.onShutdown("finish in-flight work", async () => {
      await new Promise((r) => setTimeout(r, 10));
      order.push("finish in-flight work");
    });
    const [a, b] = await Promise.all([lc.shutdown("test"), lc.shutdown("again")]);
    expect(a).toBe(b);
    expect(order).toEqual(["finish in-flight work", "close bus (aborted=true)"]);
    expect(a).toMatchObject({ ok: true, reason: "test", failed: [], timedOut: false });
    expect(lc.state).toBe("stopped");
    await expect(lc.stopped).resolves.toBe(a);
    expect(() => lc.onShutdown("late", () => undefined)).toThrow(LifecycleError);
  });

  it("goes on after a failing step and reports it", async () => {
    const lc = new Lifecycle({ logger });
    const ran: string[] = [];
    lc.onShutdown("first", () => void ran.push("first"));
    lc.onShutdown("boom", () => {
      throw new Error("boom");
    });
    const result = await lc.shutdown("test");
    expect(ran).toEqual(["first"]);
    expect(result).toMatchObject({ ok: false, failed: ["boom"], timedOut: false });
    expect(lc.state).toBe("failed");
  });

  it("gives up after the grace period", async () => {
    const lc = new Lifecycle({ logger, graceMs: 50 });
    let later = false;
    lc.onShutdown("never reached", () => {
      later = true;
    });
    lc.onShutdown("hangs", () => new Promise<void>(() => undefined));
    const result = await lc.shutdown("test");
    expect(result).toMatchObject({ ok: false, timedOut: true });
    expect(later).toBe(false);
  });
});

describe("installShutdown", () => {
  it("exits 0 after a clean stop on the first signal, forced on the second", async () => {
    const source = new FakeProcess();
    const codes: number[] = [];
    let release!: () => void;
    const lc = installShutdown({ logger, source, exit: (c) => void codes.push(c) });
    lc.onShutdown("drain", () => new Promise<void>((r) => (release = r)));
    source.send("SIGTERM");
    expect(lc.state).toBe("stopping");
    await new Promise((r) => setImmediate(r));
    source.send("SIGINT");
    expect(codes).toEqual([130]);
    release();
    await lc.stopped;
    await new Promise((r) => setImmediate(r));
    expect(codes).toEqual([130, 0]);
    lc.uninstall();
    expect(source.listenerCount("SIGTERM")).toBe(0);
  });

  it("exits 1 when a step fails", async () => {
    const source = new FakeProcess();
    const codes: number[] = [];
    const lc = installShutdown({ logger, source, signals: ["SIGTERM"], exit: (c) => void codes.push(c) });
    lc.onShutdown("broken", () => Promise.reject(new Error("nope")));
    source.send("SIGTERM");
    await lc.stopped;
    await new Promise((r) => setImmediate(r));
    expect(codes).toEqual([1]);
    lc.uninstall();
  });
});
