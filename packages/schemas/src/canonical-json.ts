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
  const text = serialise(value, new Set<object>(), "$");
  if (text === undefined) {
    throw new TypeError(`canonicalJson: a value of type ${typeof value} has no JSON form`);
  }
  return text;
}

function serialise(input: unknown, ancestors: Set<object>, where: string): string | undefined {
  let value = input;
  if (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { toJSON?: unknown }).toJSON === "function"
  ) {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value))
        throw new TypeError(`canonicalJson: ${String(value)} at ${where} is not JSON`);
      return JSON.stringify(value);
    case "bigint":
      throw new TypeError(`canonicalJson: the bigint at ${where} is not JSON`);
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
    case "object":
      break;
  }
  if (value === null) return "null";
  const obj = value;
  if (ancestors.has(obj))
    throw new TypeError(`canonicalJson: the value at ${where} contains itself (a cycle)`);
  ancestors.add(obj);
  try {
    if (Array.isArray(obj)) {
      const items = (obj as unknown[]).map(
        (item, i) => serialise(item, ancestors, `${where}[${i}]`) ?? "null",
      );
      return `[${items.join(",")}]`;
    }
    const record = obj as Record<string, unknown>;
    const members: string[] = [];
    for (const key of Object.keys(record).sort()) {
      const text = serialise(record[key], ancestors, `${where}.${key}`);
      if (text !== undefined) members.push(`${JSON.stringify(key)}:${text}`);
    }
    return `{${members.join(",")}}`;
  } finally {
    ancestors.delete(obj);
  }
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
