// The line decoder and message parser, fed the way a socket feeds them: lines split over chunks,
// several lines in one chunk, a UTF-8 character cut in two.
import { describe, expect, it } from "vitest";
import { LineDecoder, LineTooLongError, parseQmpMessage } from "@eve-tasks/qmp";

const greeting =
  '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}, "capabilities": ["oob"]}}';
const reply = '{"return": {"status": "running", "singlestep": false, "running": true}, "id": 7}';
const event = '{"timestamp": {"seconds": 1700000000, "microseconds": 12}, "event": "POWERDOWN"}';

/** Feeds `chunks` in order and collects every line. */
function feed(decoder: LineDecoder, chunks: (string | Buffer)[]): string[] {
  return chunks.flatMap((c) => decoder.push(c));
}

describe("LineDecoder", () => {
  it("returns nothing until a line is complete, then the line without CR LF", () => {
    const d = new LineDecoder();
    expect(d.push(greeting.slice(0, 10))).toEqual([]);
    expect(d.push(greeting.slice(10, 50))).toEqual([]);
    expect(d.buffered).toBe(50);
    expect(d.push(`${greeting.slice(50)}\r`)).toEqual([]);
    expect(d.push("\n")).toEqual([greeting]);
    expect(d.buffered).toBe(0);
  });

  it("returns several lines from one chunk, and keeps the unfinished rest", () => {
    const d = new LineDecoder();
    expect(d.push(`${greeting}\r\n${reply}\r\n${event.slice(0, 20)}`)).toEqual([greeting, reply]);
    expect(d.push(`${event.slice(20)}\r\n`)).toEqual([event]);
  });

  it("gives the same lines however the stream is cut", () => {
    const stream = Buffer.from(`${greeting}\r\n${reply}\n\r\n${event}\r\n{"return": {"name": "vm-é"}}\r\n`);
    const expected = [greeting, reply, event, '{"return": {"name": "vm-é"}}'];
    for (const size of [1, 2, 3, 7, 64, stream.length]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
      expect(feed(new LineDecoder(), chunks), `chunks of ${size} bytes`).toEqual(expected);
    }
  });

  it("joins a UTF-8 character split between two chunks", () => {
    const bytes = Buffer.from('{"return": "é"}\n');
    const cut = bytes.indexOf(0xc3) + 1; // inside the two-byte é
    const d = new LineDecoder();
    expect(d.push(bytes.subarray(0, cut))).toEqual([]);
    expect(d.push(bytes.subarray(cut))).toEqual(['{"return": "é"}']);
  });

  it("hands out an unterminated last line at the end, and refuses an over-long line", () => {
    const d = new LineDecoder();
    expect(d.push('{"return": {}}\r\n{"ret')).toEqual(['{"return": {}}']);
    expect(d.end()).toBe('{"ret');
    expect(d.end()).toBeUndefined();

    const small = new LineDecoder({ maxLineBytes: 16 });
    expect(() => small.push("x".repeat(17))).toThrow(LineTooLongError);
    expect(small.push("ok\n")).toEqual(["ok"]);
  });
});

describe("parseQmpMessage", () => {
  it("recognises the greeting, replies, errors and events", () => {
    expect(parseQmpMessage(greeting)).toEqual({
      kind: "greeting",
      greeting: { version: { major: 7, minor: 2, micro: 0, package: "Debian 1:7.2" }, capabilities: ["oob"] },
    });
    expect(parseQmpMessage(reply)).toEqual({
      kind: "return",
      id: 7,
      value: { status: "running", singlestep: false, running: true },
    });
    expect(
      parseQmpMessage(
        '{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}',
      ),
    ).toEqual({
      kind: "error",
      id: 3,
      errorClass: "CommandNotFound",
      desc: "The command x has not been found",
    });
    expect(parseQmpMessage(event)).toEqual({
      kind: "event",
      event: { event: "POWERDOWN", data: {}, timestamp: { seconds: 1700000000, microseconds: 12 } },
    });
    expect(
      parseQmpMessage(
        '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}',
      ),
    ).toMatchObject({ kind: "event", event: { data: { guest: false, reason: "host-qmp-quit" } } });
    expect(parseQmpMessage('{"return": {}}')).toEqual({ kind: "return", id: undefined, value: {} });
    expect(parseQmpMessage('{"something": 1}')).toEqual({ kind: "unknown", value: { something: 1 } });
  });

  it("throws on what is not a JSON object", () => {
    expect(() => parseQmpMessage("SSH-2.0-x")).toThrow(SyntaxError);
    expect(() => parseQmpMessage("[1, 2]")).toThrow(TypeError);
    expect(() => parseQmpMessage("null")).toThrow(TypeError);
  });
});
