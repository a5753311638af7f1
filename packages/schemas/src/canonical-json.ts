/** Canonical JSON and SHA-256, used to fingerprint specs (`specSha256`). */
import { createHash } from "node:crypto";

/**
 * Serialises `value` as JSON with every object's keys in ascending UTF-16 code-unit order and no
 * whitespace, so equal data gives equal text whatever the key insertion order (the ordering and
 * number format of RFC 8785 JCS). Like `JSON.stringify` it calls `toJSON`, drops object members
 * whose value is `undefined`, a function or a symbol, and writes those as `null` in arrays.
 * Unlike it, it throws a `TypeError` for non-finite numbers (NaN, ±Infinity), bigints, cycles and
 * a top-level value that has no JSON form, since a fingerprint must not silently change data.
 */
export function canonicalJson(value: unknown): string {
  let text: string | undefined;
  try {
    text = serialise(value, []);
  } catch (err) {
    if (err instanceof NotJson) {
      throw new TypeError(`canonicalJson: ${describeRefusal(value)}`, { cause: err });
    }
    throw err;
  }
  if (text === undefined) {
    throw new TypeError(`canonicalJson: a value of type ${typeof value} has no JSON form`);
  }
  return text;
}

/** What JSON writes for `value`: the result of its `toJSON` when it has one (a Date), else itself. */
function jsonView(value: unknown): unknown {
  return typeof value === "object" &&
    value !== null &&
    typeof (value as { toJSON?: unknown }).toJSON === "function"
    ? (value as { toJSON: () => unknown }).toJSON()
    : value;
}

/** Thrown inside the serialiser; the refusal is then located and described by {@link describeRefusal}. */
class NotJson extends Error {}

/**
 * Below this depth no cycle check is made: a cycle nests without end, so it is still caught,
 * one lap deeper, and the common shallow value pays nothing for the check.
 */
const CYCLE_CHECK_DEPTH = 32;

/** A string JSON writes as it is between quotes: no quote, backslash, control or surrogate. */
// eslint-disable-next-line no-control-regex -- JSON escapes exactly the control characters
const PLAIN_STRING = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

function quote(s: string): string {
  return PLAIN_STRING.test(s) ? `"${s}"` : JSON.stringify(s);
}

/**
 * The canonical text of `input`, or undefined when it has none (an object member that is then
 * left out); `ancestors` holds the objects being serialised around it. It runs for every spec
 * fingerprint, so it concatenates strings and allocates nothing per node beyond sorted keys.
 */
function serialise(input: unknown, ancestors: object[]): string | undefined {
  const value = jsonView(input);
  switch (typeof value) {
    case "string":
      return quote(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new NotJson();
      return String(value); // the same digits as JSON.stringify, -0 as "0"
    case "bigint":
      throw new NotJson();
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
    case "object":
      break;
  }
  if (value === null) return "null";
  const obj = value;
  if (ancestors.length >= CYCLE_CHECK_DEPTH && ancestors.includes(obj)) throw new NotJson();
  ancestors.push(obj);
  let out: string;
  if (Array.isArray(obj)) {
    const items = obj as unknown[];
    out = "[";
    for (let i = 0; i < items.length; i++) {
      out += (i === 0 ? "" : ",") + (serialise(items[i], ancestors) ?? "null");
    }
    out += "]";
  } else {
    const record = obj as Record<string, unknown>;
    const keys = Object.keys(record);
    keys.sort();
    out = "{";
    let first = true;
    for (const key of keys) {
      const text = serialise(record[key], ancestors);
      if (text === undefined) continue;
      out += (first ? "" : ",") + quote(key) + ":" + text;
      first = false;
    }
    out += "}";
  }
  ancestors.pop();
  return out;
}

/** Finds what {@link serialise} refused in `root` and says where: `NaN at $.a[0] is not JSON`. */
function describeRefusal(root: unknown): string {
  const seen = new Set<object>();
  const walk = (input: unknown, where: string): string | undefined => {
    const value = jsonView(input);
    if (typeof value === "number" && !Number.isFinite(value))
      return `${String(value)} at ${where} is not JSON`;
    if (typeof value === "bigint") return `the bigint at ${where} is not JSON`;
    if (typeof value !== "object" || value === null) return undefined;
    if (seen.has(value)) return `the value at ${where} contains itself (a cycle)`;
    seen.add(value);
    const entries: [string, unknown][] = Array.isArray(value)
      ? value.map((v, i) => [`${where}[${i}]`, v])
      : Object.entries(value).map(([k, v]) => [`${where}.${k}`, v]);
    for (const [w, v] of entries) {
      const found = walk(v, w);
      if (found) return found;
    }
    seen.delete(value);
    return undefined;
  };
  return walk(root, "$") ?? "a value is not JSON";
}

/** The SHA-256 of `data` (a string is hashed as UTF-8), as 64 lowercase hex digits. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * The fingerprint of an OCI spec: `sha256Hex(canonicalJson(spec))`. It is TaskConfig.specSha256
 * and the container label `org.lfedge.eve-tasks.spec-sha256`; equal fingerprints mean the same
 * spec, so no task replacement is needed.
 */
export function specSha256(spec: unknown): string {
  return sha256Hex(canonicalJson(spec));
}

/** Members JSON leaves out of an object, and writes as `null` in an array. */
function isAbsent(v: unknown): boolean {
  return v === undefined || typeof v === "function" || typeof v === "symbol";
}

/**
 * Whether `a` and `b` are the same JSON data: `canonicalJson(a) === canonicalJson(b)` for plain
 * data (objects, arrays, strings, finite numbers, booleans, null; members whose value is
 * undefined count as absent), without building either text, and stopping at the first
 * difference. Used to suppress identical updates. Values with `toJSON` (a Date) are compared by
 * what it returns.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const x = jsonView(a);
  const y = jsonView(b);
  if (x === y) return true;
  if (typeof x !== "object" || typeof y !== "object" || x === null || y === null) return false;
  if (Array.isArray(x)) {
    if (!Array.isArray(y) || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) {
      const u: unknown = x[i];
      const v: unknown = y[i];
      if (isAbsent(u) || isAbsent(v)) {
        if (!((isAbsent(u) || u === null) && (isAbsent(v) || v === null))) return false;
      } else if (!jsonEqual(u, v)) return false;
    }
    return true;
  }
  if (Array.isArray(y)) return false;
  const rx = x as Record<string, unknown>;
  const ry = y as Record<string, unknown>;
  let present = 0;
  for (const k of Object.keys(rx)) {
    const u = rx[k];
    if (isAbsent(u)) continue;
    present++;
    if (!Object.prototype.hasOwnProperty.call(ry, k) || !jsonEqual(u, ry[k])) return false;
  }
  for (const k of Object.keys(ry)) if (!isAbsent(ry[k])) present--;
  return present === 0;
}
