/** Encoding and decoding of bus values: size rule, JSON, schema; one place for every worker. */
import { z } from "zod";
import { safeParseWorded } from "./error-messages.js";
import { SchemaValidationError, ValueTooLargeError, type ValueContext } from "./errors.js";
import { findJsonSyntaxProblem } from "./json-syntax.js";
import { messageTypeNameOf } from "./message-types.js";
import { MAX_ACCEPTED_VALUE_BYTES, tooLargeMessage } from "./size.js";

/** Why a received value was refused. */
export type DecodeFailureReason = "too-large" | "malformed-json" | "schema";

/** A value that passed every check. */
export interface DecodeSuccess<T> {
  readonly ok: true;
  /** The parsed value, defaults applied, unknown keys of non-strict objects dropped. */
  readonly value: T;
}

/** A value that was refused, and why, for a human. */
export interface DecodeFailure {
  readonly ok: false;
  readonly reason: DecodeFailureReason;
  /** One or more lines for a human, naming sizes, the JSON error position or the field paths. */
  readonly message: string;
  /** For `reason: "schema"`, the zod issues with their paths. */
  readonly issues?: readonly z.core.$ZodIssue[];
}

/** The result of {@link decodeValue}. */
export type DecodeResult<T> = DecodeSuccess<T> | DecodeFailure;

/** Most schema issues a {@link DecodeFailure}'s message lists; the others are counted. */
export const MAX_LISTED_ISSUES = 20;

/**
 * Longest {@link DecodeFailure} message, in characters. The message travels in a FAILED
 * TaskConfig and in TaskStatus.error, which must stay under 64 KiB however the value was made:
 * one issue per element of a long list turns a 6 KB config into 130 KB of text, and a message
 * may quote the offending value.
 */
export const MAX_DECODE_MESSAGE_CHARS = 4096;

/** `text` cut to `max` characters (never inside a surrogate pair), saying how much was cut. */
export function boundedMessage(text: string, max: number = MAX_DECODE_MESSAGE_CHARS): string {
  if (text.length <= max) return text;
  const note = (cut: number): string => `… (${cut} more characters)`;
  let keep = max - note(text.length).length;
  const code = text.charCodeAt(keep - 1);
  if (code >= 0xd800 && code <= 0xdbff) keep -= 1;
  return text.slice(0, keep) + note(text.length - keep);
}

/** The lines for a human of zod's issues: the first {@link MAX_LISTED_ISSUES}, the rest counted. */
function describeIssues(error: z.ZodError): string {
  const listed = error.issues.slice(0, MAX_LISTED_ISSUES);
  const more = error.issues.length - listed.length;
  const text = z.prettifyError(new z.ZodError(listed));
  return boundedMessage(more > 0 ? `${text}\n✖ … and ${more} more problems` : text);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const encoder = new TextEncoder();

/**
 * Checks a received value, in this order: at most {@link MAX_ACCEPTED_VALUE_BYTES} (else
 * `too-large`), UTF-8 JSON (else `malformed-json`), valid for `schema` (else `schema`, with one
 * line per issue naming its field path, at most {@link MAX_LISTED_ISSUES} issues). The message is
 * at most {@link MAX_DECODE_MESSAGE_CHARS} characters. Never throws.
 */
export function decodeValue<S extends z.ZodType>(schema: S, bytes: Uint8Array): DecodeResult<z.output<S>> {
  if (bytes.byteLength > MAX_ACCEPTED_VALUE_BYTES) {
    return { ok: false, reason: "too-large", message: tooLargeMessage(bytes.byteLength) };
  }
  if (bytes.byteLength === 0) {
    return { ok: false, reason: "malformed-json", message: "malformed JSON: the value is empty" };
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: "malformed-json", message: "malformed JSON: the value is not valid UTF-8" };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return {
      ok: false,
      reason: "malformed-json",
      message: boundedMessage(`malformed JSON: ${describeJsonError(error, text)}`),
    };
  }
  const result = safeParseWorded(schema, json);
  if (!result.success) {
    return {
      ok: false,
      reason: "schema",
      message: describeIssues(result.error),
      issues: result.error.issues,
    };
  }
  return { ok: true, value: result.data };
}

/** Where the text stops being JSON, else V8's own message. */
function describeJsonError(error: unknown, text: string): string {
  const found = findJsonSyntaxProblem(text);
  if (found !== undefined) {
    return `${found.problem} at line ${found.line} column ${found.column} (position ${found.position})`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** A value validated and encoded by {@link encodeValueText}. */
export interface EncodedValue {
  /** What is sent: UTF-8 JSON. */
  readonly bytes: Uint8Array;
  /** The same JSON as text: equal texts mean equal values (a cheap fingerprint). */
  readonly text: string;
}

/**
 * Validates `value` with `schema` and encodes the parsed value (defaults applied) as UTF-8 JSON.
 * Throws {@link SchemaValidationError} if invalid and {@link ValueTooLargeError} if the result
 * exceeds {@link MAX_ACCEPTED_VALUE_BYTES}. `context` names the type and key in messages; the
 * type defaults to the registry's name for `schema`.
 */
export function encodeValue<S extends z.ZodType>(
  schema: S,
  value: z.input<S>,
  context: ValueContext = {},
): Uint8Array {
  return encodeValueText(schema, value, context).bytes;
}

/** {@link encodeValue}, also giving the JSON text. */
export function encodeValueText<S extends z.ZodType>(
  schema: S,
  value: z.input<S>,
  context: ValueContext = {},
): EncodedValue {
  const named: ValueContext = { type: context.type ?? messageTypeNameOf(schema), key: context.key };
  const result = safeParseWorded(schema, value);
  if (!result.success) throw new SchemaValidationError(result.error, named);
  const text = JSON.stringify(result.data);
  const bytes = encoder.encode(text);
  if (bytes.byteLength > MAX_ACCEPTED_VALUE_BYTES) {
    throw new ValueTooLargeError(bytes.byteLength, MAX_ACCEPTED_VALUE_BYTES, named);
  }
  return { bytes, text };
}
