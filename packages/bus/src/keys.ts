import { InvalidKeyError } from "./errors.js";

/**
 * KV keys are `<Type>.<key>`, so the subject of a value is `$KV.<agent>.<Type>.<key>`.
 * A `<key>` starting with `_` is reserved for the bus (the restarted marker).
 */

/** The `<key>` of a publication's restarted marker: `<Type>._restarted`. */
export const RESTARTED_MARKER = "_restarted";

const TOKEN = /^[A-Za-z0-9_=/-]+$/;

/** Checks a type name: one subject token, starting with a letter. */
export function assertTypeName(type: string): void {
  if (!/^[A-Za-z][A-Za-z0-9]*$/.test(type)) {
    throw new InvalidKeyError(type, "a type name is letters and digits, starting with a letter");
  }
}

/**
 * Checks a user key: one or more dot-separated tokens of letters, digits, `_ = / -`,
 * not starting with `_` (reserved). Seed keys such as `<node>.<name>` have two tokens.
 */
export function assertUserKey(key: string): void {
  if (key.length === 0) throw new InvalidKeyError(key, "empty");
  if (key.startsWith("_")) throw new InvalidKeyError(key, "keys starting with '_' are reserved");
  for (const token of key.split(".")) {
    if (!TOKEN.test(token)) {
      throw new InvalidKeyError(key, "each dot-separated part must be letters, digits, '_', '=', '/' or '-'");
    }
  }
}

/** The KV key of `key` in table `type`. */
export function kvKey(type: string, key: string): string {
  return `${type}.${key}`;
}

/** The user key of a KV key of table `type`, or undefined when it belongs to another table. */
export function userKeyOf(type: string, fullKey: string): string | undefined {
  const prefix = `${type}.`;
  return fullKey.startsWith(prefix) ? fullKey.slice(prefix.length) : undefined;
}

/** The stream behind an agent's bucket. */
export function streamOf(agent: string): string {
  return `KV_${agent}`;
}

/** The subject a value of `type` under `key` is stored at in `agent`'s bucket. */
export function subjectOf(agent: string, type: string, key: string): string {
  return `$KV.${agent}.${type}.${key}`;
}

/** The part of a stream's config that says whether it is a mirror. */
export interface MirrorLike {
  mirror?: { name: string } | null;
}

/**
 * The subject prefix under which a bucket's stream holds its keys: `$KV.<agent>`, or for a bucket
 * whose stream mirrors another bucket (a device's `controller` mirrors the hub's
 * `controller-<node>`), the origin's `$KV.<origin>`: a mirror keeps the origin's subjects
 * (nats-server 2.9 has no subject transforms), and its sequence numbers, so KV revisions are
 * the origin's.
 */
export function bucketSubjectPrefix(agent: string, config: MirrorLike): string {
  const origin = config.mirror?.name;
  if (origin !== undefined && origin.startsWith("KV_")) return `$KV.${origin.slice(3)}`;
  return `$KV.${agent}`;
}
