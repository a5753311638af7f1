import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, forApp, redactUrl } from "../src/index.js";

function capture(): { lines: () => Record<string, unknown>[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe("createLogger", () => {
  it("writes one JSON line per event with worker, node, pid, level name and ISO time", () => {
    const out = capture();
    const logger = createLogger({
      worker: "task-executor",
      node: "n1",
      level: "debug",
      destination: out.stream,
    });
    logger.info({ x: 1 }, "hello");
    logger.debug("detail");
    logger.trace("hidden");
    const [first, second, third] = out.lines();
    expect(first).toMatchObject({
      worker: "task-executor",
      node: "n1",
      pid: process.pid,
      level: "info",
      x: 1,
    });
    expect(first?.msg).toBe("hello");
    expect(typeof first?.time).toBe("string");
    expect(Date.parse(first?.time as string)).not.toBeNaN();
    expect(second).toMatchObject({ level: "debug", msg: "detail" });
    expect(third).toBeUndefined();
  });

  it("redacts secrets", () => {
    const out = capture();
    const logger = createLogger({ worker: "w", node: "n", destination: out.stream });
    logger.info(
      { registry: { host: "r:5000", password: "hunter2", auth: "dXNlcjpwYXNz" }, token: "t" },
      "login",
    );
    const [line] = out.lines();
    expect(JSON.stringify(line)).not.toMatch(/hunter2|dXNlcjpwYXNz|"t"/);
    expect(line).toMatchObject({ registry: { host: "r:5000", password: "[redacted]", auth: "[redacted]" } });
  });

  it("forApp adds the app's uuid", () => {
    const out = capture();
    const logger = createLogger({ worker: "w", node: "n", destination: out.stream });
    forApp(logger, "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10").warn("slow");
    expect(out.lines()[0]).toMatchObject({
      uuid: "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10",
      worker: "w",
      level: "warn",
    });
  });
});

describe("redactUrl", () => {
  it("masks credentials in URLs only", () => {
    expect(redactUrl("nats://user:pass@127.0.0.1:4222")).toBe("nats://***@127.0.0.1:4222");
    expect(redactUrl("nats://a:b@h1:4222,nats://c@h2:4222")).toBe("nats://***@h1:4222,nats://***@h2:4222");
    expect(redactUrl("nats://127.0.0.1:4222")).toBe("nats://127.0.0.1:4222");
  });
});
