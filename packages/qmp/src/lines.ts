/**
 * QMP is one JSON object per line (qemu ends each with CRLF). A socket delivers arbitrary chunks:
 * a line can be split over chunks (even inside a multi-byte UTF-8 character) and a chunk can hold
 * several lines. {@link LineDecoder} turns chunks into complete lines; {@link parseQmpMessage}
 * turns a line into a typed message.
 */
import { StringDecoder } from "node:string_decoder";

/** Default limit of one line: far above any QMP reply qemu sends (query-qmp-schema is ~200 KiB). */
export const DEFAULT_MAX_LINE_BYTES = 16 * 2 ** 20;

/** A line was longer than the decoder's limit; the decoder drops what it buffered. */
export class LineTooLongError extends Error {
  readonly start: string;
  constructor(limit: number, start: string) {
    super(`a line exceeded ${limit} characters`);
    this.name = "LineTooLongError";
    this.start = start;
  }
}

/** Splits a byte stream into lines: LF-terminated, a trailing CR removed, blank lines skipped. */
export class LineDecoder {
  readonly #text = new StringDecoder("utf8");
  readonly #maxLine: number;
  #partial = "";

  constructor(options: { maxLineBytes?: number } = {}) {
    this.#maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  /**
   * Takes the next chunk and returns the lines it completed (possibly none). Throws
   * {@link LineTooLongError} when the unfinished line grows past the limit.
   */
  push(chunk: Buffer | string): string[] {
    const text = this.#partial + (typeof chunk === "string" ? chunk : this.#text.write(chunk));
    const lines: string[] = [];
    let from = 0;
    // The buffered part holds no LF: search only the new text.
    for (let nl = text.indexOf("\n", this.#partial.length); nl !== -1; nl = text.indexOf("\n", from)) {
      const end = nl > from && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      if (end > from) lines.push(text.slice(from, end));
      from = nl + 1;
    }
    this.#partial = text.slice(from);
    if (this.#partial.length > this.#maxLine) {
      const start = this.#partial.slice(0, 200);
      this.#partial = "";
      throw new LineTooLongError(this.#maxLine, start);
    }
    return lines;
  }

  /** The unterminated rest at the end of the stream (undefined when there is none). */
  end(): string | undefined {
    const rest = (this.#partial + this.#text.end()).replace(/\r$/, "");
    this.#partial = "";
    return rest.length > 0 ? rest : undefined;
  }

  /** How many characters of an unfinished line are buffered. */
  get buffered(): number {
    return this.#partial.length;
  }
}

/** The time qemu stamps on an event. */
export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

/** qemu's version, from the greeting. */
export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
  /** The distribution's package string, e.g. "Debian 1:7.2+dfsg-7+deb12u7". */
  package: string;
}

/** The first line qemu sends: `{"QMP": {"version": ..., "capabilities": [...]}}`. */
export interface QmpGreeting {
  version: QemuVersion;
  capabilities: string[];
}

/** An asynchronous event: `{"event": NAME, "data": {...}, "timestamp": {...}}`. */
export interface QmpEvent<D = Record<string, unknown>> {
  event: string;
  /** The event's data; `{}` for events without any (POWERDOWN, STOP, RESUME). */
  data: D;
  timestamp: QmpTimestamp;
}

/** One message from qemu. `id` is the id of the command a reply answers (absent if none given). */
export type QmpMessage =
  | { kind: "greeting"; greeting: QmpGreeting }
  | { kind: "return"; id: unknown; value: unknown }
  | { kind: "error"; id: unknown; errorClass: string; desc: string }
  | { kind: "event"; event: QmpEvent }
  | { kind: "unknown"; value: Record<string, unknown> };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

/**
 * Parses one line into a {@link QmpMessage}. Throws a `SyntaxError` (not JSON) or a `TypeError`
 * (JSON but not an object). Unrecognised objects come back as `kind: "unknown"`.
 */
export function parseQmpMessage(line: string): QmpMessage {
  const value: unknown = JSON.parse(line);
  if (!isObject(value)) throw new TypeError("a QMP message must be a JSON object");
  if (isObject(value.QMP)) {
    const qmp = value.QMP;
    const version = isObject(qmp.version) ? qmp.version : {};
    const qemu = isObject(version.qemu) ? version.qemu : {};
    const capabilities = Array.isArray(qmp.capabilities)
      ? qmp.capabilities.filter((c): c is string => typeof c === "string")
      : [];
    return {
      kind: "greeting",
      greeting: {
        version: {
          major: num(qemu.major),
          minor: num(qemu.minor),
          micro: num(qemu.micro),
          package: typeof version.package === "string" ? version.package : "",
        },
        capabilities,
      },
    };
  }
  if ("return" in value) return { kind: "return", id: value.id, value: value.return };
  if (isObject(value.error)) {
    const e = value.error;
    return {
      kind: "error",
      id: value.id,
      errorClass: typeof e.class === "string" ? e.class : "GenericError",
      desc: typeof e.desc === "string" ? e.desc : JSON.stringify(e),
    };
  }
  if (typeof value.event === "string") {
    const ts = isObject(value.timestamp) ? value.timestamp : {};
    return {
      kind: "event",
      event: {
        event: value.event,
        data: isObject(value.data) ? value.data : {},
        timestamp: { seconds: num(ts.seconds), microseconds: num(ts.microseconds) },
      },
    };
  }
  return { kind: "unknown", value };
}
