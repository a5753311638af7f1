import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AppInstanceConfigSchema,
  MAX_ACCEPTED_VALUE_BYTES,
  MAX_DECODE_MESSAGE_CHARS,
  MAX_LISTED_ISSUES,
  MAX_STORED_VALUE_BYTES,
  SchemaValidationError,
  SignalReplySchema,
  TaskEventSchema,
  ValueTooLargeError,
  boundedMessage,
  decodeValue,
  encodeValue,
  findJsonSyntaxProblem,
} from "../src/index.js";
import { designExampleJson, minimalNative, TIME, UUID } from "./fixtures.js";

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("size limits", () => {
  it("are EVE's 64 KiB accepted and NATS's 1 MiB stored", () => {
    expect(MAX_ACCEPTED_VALUE_BYTES).toBe(64 * 1024);
    expect(MAX_STORED_VALUE_BYTES).toBe(1024 * 1024);
  });
});

describe("decodeValue", () => {
  it("returns the parsed value with defaults applied", () => {
    const result = decodeValue(AppInstanceConfigSchema, utf8(JSON.stringify(minimalNative())));
    expect(result).toMatchObject({ ok: true, value: { node: "local", activate: true } });
  });

  it("decodes DESIGN.md's example", () => {
    expect(decodeValue(AppInstanceConfigSchema, utf8(designExampleJson)).ok).toBe(true);
  });

  it("refuses a 100 KiB value before parsing it", () => {
    const bytes = new Uint8Array(100 * 1024).fill(0x20);
    expect(decodeValue(AppInstanceConfigSchema, bytes)).toEqual({
      ok: false,
      reason: "too-large",
      message: "value is 102400 bytes; the limit is 65536 bytes (64 KiB)",
    });
  });

  it("accepts exactly 64 KiB and refuses one byte more", () => {
    const event = (padding: number): string =>
      JSON.stringify({
        schemaVersion: 1,
        uuid: UUID,
        type: "error",
        time: TIME,
        message: "x".repeat(padding),
        fields: {},
      });
    const base = event(0).length;
    const exact = utf8(event(MAX_ACCEPTED_VALUE_BYTES - base));
    expect(exact.byteLength).toBe(MAX_ACCEPTED_VALUE_BYTES);
    expect(decodeValue(TaskEventSchema, exact).ok).toBe(true);
    const over = utf8(event(MAX_ACCEPTED_VALUE_BYTES - base + 1));
    expect(decodeValue(TaskEventSchema, over)).toMatchObject({ ok: false, reason: "too-large" });
  });

  it("names the line, column and position of malformed JSON", () => {
    const result = decodeValue(AppInstanceConfigSchema, utf8('{\n  "a": 1,\n  "b": }'));
    expect(result).toEqual({
      ok: false,
      reason: "malformed-json",
      message: "malformed JSON: expected a JSON value, found '}' at line 3 column 8 (position 19)",
    });
  });

  it("explains a trailing comma, empty input and bad UTF-8", () => {
    expect(decodeValue(AppInstanceConfigSchema, utf8('{"a": 1,}'))).toMatchObject({
      reason: "malformed-json",
      message: expect.stringContaining(
        "(a trailing comma is not JSON) at line 1 column 9 (position 8)",
      ) as unknown,
    });
    expect(decodeValue(AppInstanceConfigSchema, new Uint8Array())).toMatchObject({
      reason: "malformed-json",
      message: "malformed JSON: the value is empty",
    });
    expect(decodeValue(AppInstanceConfigSchema, new Uint8Array([0x22, 0xff, 0x22]))).toMatchObject({
      reason: "malformed-json",
      message: "malformed JSON: the value is not valid UTF-8",
    });
  });

  it("reports schema violations with every field path", () => {
    const bad = { ...minimalNative(), uuid: "nope", resources: { memoryMiB: 0, vcpus: 1 } };
    const result = decodeValue(AppInstanceConfigSchema, utf8(JSON.stringify(bad)));
    if (result.ok) throw new Error("expected a failure");
    expect(result.reason).toBe("schema");
    expect(result.message).toContain("→ at uuid");
    expect(result.message).toContain("→ at resources.memoryMiB");
    expect(result.issues?.map((i) => i.path.join("."))).toEqual(["uuid", "resources.memoryMiB"]);
  });

  it("keeps the message short when one small value makes thousands of issues", () => {
    // 6 KB of config, one issue per element: the message must fit a FAILED TaskConfig (64 KiB).
    const bad = { ...minimalNative(), process: { args: Array.from({ length: 3000 }, () => 0) } };
    const result = decodeValue(AppInstanceConfigSchema, utf8(JSON.stringify(bad)));
    if (result.ok) throw new Error("expected a failure");
    expect(result.message.length).toBeLessThanOrEqual(MAX_DECODE_MESSAGE_CHARS);
    expect(result.message).toMatch(/→ at process\.args\[\d+\]/);
  });

  it("lists at most MAX_LISTED_ISSUES issues and counts the rest", () => {
    const Args = z.object({ args: z.array(z.string()) });
    const result = decodeValue(Args, utf8(JSON.stringify({ args: Array.from({ length: 3000 }, () => 0) })));
    if (result.ok) throw new Error("expected a failure");
    expect(result.message.match(/→ at args\[\d+\]/g)).toHaveLength(MAX_LISTED_ISSUES);
    expect(result.message).toContain(`… and ${3000 - MAX_LISTED_ISSUES} more problems`);
    expect(result.issues).toHaveLength(3000);
  });

  it("cuts a message that quotes a huge value", () => {
    const bad = { ...minimalNative(), virtualization: "v".repeat(50_000) };
    const result = decodeValue(AppInstanceConfigSchema, utf8(JSON.stringify(bad)));
    if (result.ok) throw new Error("expected a failure");
    expect(result.message.length).toBeLessThanOrEqual(MAX_DECODE_MESSAGE_CHARS);
    expect(result.message).toMatch(/^✖ virtualization must be "NOHYPER"/);
    expect(result.message).toMatch(/… \(\d+ more characters\)$/);
  });

  it("never throws, even for JSON that is a bare scalar", () => {
    expect(decodeValue(SignalReplySchema, utf8("42"))).toMatchObject({ ok: false, reason: "schema" });
  });
});

describe("boundedMessage", () => {
  it("keeps short text and cuts long text to the limit, never inside a surrogate pair", () => {
    expect(boundedMessage("short", 100)).toBe("short");
    const cut = boundedMessage("a".repeat(200), 100);
    expect(cut).toHaveLength(100);
    expect(cut).toMatch(/^a+… \(\d+ more characters\)$/);
    for (let at = 70; at < 80; at++) {
      const text = "a".repeat(at) + "💥".repeat(100);
      const out = boundedMessage(text, 100);
      expect(out.length).toBeLessThanOrEqual(100);
      expect(() => encodeURIComponent(out)).not.toThrow();
    }
  });
});

describe("encodeValue", () => {
  it("validates, applies defaults and encodes", () => {
    const bytes = encodeValue(AppInstanceConfigSchema, minimalNative());
    const decoded = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    expect(decoded).toMatchObject({ node: "local", stopTimeoutMs: 10000, restartPolicy: { mode: "never" } });
  });

  it("throws SchemaValidationError naming the type, key and fields", () => {
    const bad = { ...minimalNative(), uuid: "nope" };
    let caught: unknown;
    try {
      encodeValue(AppInstanceConfigSchema, bad, { key: "nope" });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SchemaValidationError);
    const error = caught as SchemaValidationError;
    expect(error.name).toBe("SchemaValidationError");
    expect(error.typeName).toBe("AppInstanceConfig");
    expect(error.key).toBe("nope");
    expect(error.message).toMatch(/^invalid AppInstanceConfig at key "nope":\n✖ must be a lowercase UUID/);
    expect(error.issues[0]?.path).toEqual(["uuid"]);
    expect(error.cause).toBeDefined();
  });

  it("throws ValueTooLargeError above 64 KiB", () => {
    const event = {
      schemaVersion: 1,
      uuid: UUID,
      type: "error",
      time: TIME,
      message: "x".repeat(70_000),
    } as const;
    let caught: unknown;
    try {
      encodeValue(TaskEventSchema, event, { type: "TaskEvent" });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ValueTooLargeError);
    const error = caught as ValueTooLargeError;
    expect(error.name).toBe("ValueTooLargeError");
    expect(error.limitBytes).toBe(65536);
    expect(error.sizeBytes).toBeGreaterThan(70_000);
    expect(error.message).toBe(`TaskEvent is ${error.sizeBytes} bytes; the limit is 65536 bytes (64 KiB)`);
  });
});

describe("findJsonSyntaxProblem", () => {
  it("finds nothing in valid JSON of every kind", () => {
    for (const text of ['{"a":[1,-2.5e3,true,false,null,"\\u00e9\\n"],"b":{}}', " [] ", '"x"', "0"]) {
      expect(findJsonSyntaxProblem(text)).toBeUndefined();
      expect(() => JSON.parse(text) as unknown).not.toThrow();
    }
  });

  it("locates common mistakes", () => {
    expect(findJsonSyntaxProblem("{'a': 1}")).toMatchObject({
      position: 1,
      problem: expect.stringContaining("double quotes") as unknown,
    });
    expect(findJsonSyntaxProblem('{"a" 1}')).toMatchObject({ position: 5 });
    expect(findJsonSyntaxProblem("[1 2]")).toMatchObject({
      position: 3,
      problem: "expected ',' or ']' after an array element, found '2'",
    });
    expect(findJsonSyntaxProblem('{"a":1} {}')).toMatchObject({ position: 8 });
    expect(findJsonSyntaxProblem('"a\\x"')).toMatchObject({
      position: 2,
      problem: "an invalid escape in a string",
    });
    expect(findJsonSyntaxProblem('{"a":\n"b}')).toMatchObject({ line: 2, column: 1 });
  });

  it("copes with deep nesting without recursion", () => {
    expect(findJsonSyntaxProblem("[".repeat(100_000))).toMatchObject({ position: 100_000 });
  });
});
