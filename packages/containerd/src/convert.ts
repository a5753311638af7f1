import { constants } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { AnyMessage, Mount, TaskStatus } from "./types.js";
import type { WireAny, WireMount, WireTimestamp } from "./wire.js";

/** Type URL of an OCI runtime spec in an Any; the value is the spec's JSON. */
export const SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/** The runc shim v2 runtime, the default for new containers. */
export const RUNC_V2_RUNTIME = "io.containerd.runc.v2";

/** Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: containerd's "never". */
const GO_ZERO_TIME_SECONDS = -62_135_596_800;

/**
 * Wraps an OCI runtime spec for containerd: JSON bytes in an Any with type URL
 * {@link SPEC_TYPE_URL}. The bytes are `JSON.stringify(spec)`, so hashing them gives a stable
 * digest of what containerd stores.
 */
export function specToAny(spec: object): AnyMessage {
  return { typeUrl: SPEC_TYPE_URL, value: Buffer.from(JSON.stringify(spec), "utf8") };
}

/** Parses a spec Any written by {@link specToAny} (or any containerd client). */
export function specFromAny(any: AnyMessage): Record<string, unknown> {
  if (any.typeUrl !== SPEC_TYPE_URL) {
    throw new TypeError(`not an OCI runtime spec: type URL ${any.typeUrl}, expected ${SPEC_TYPE_URL}`);
  }
  const parsed: unknown = JSON.parse(Buffer.from(any.value).toString("utf8"));
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new TypeError("OCI runtime spec JSON is not an object");
  }
  return parsed as Record<string, unknown>;
}

/**
 * A `file://` URI for task IO: the runc shim appends the stream to that file (creating it and
 * its directory). Relative paths are resolved against the current directory.
 */
export function fileUri(path: string): string {
  return pathToFileURL(resolve(path)).href;
}

/** The number of a signal given by number or name ("SIGTERM"). */
export function signalNumber(signal: number | NodeJS.Signals): number {
  if (typeof signal === "number") {
    if (!Number.isInteger(signal) || signal <= 0) throw new RangeError(`invalid signal number ${signal}`);
    return signal;
  }
  const n = constants.signals[signal];
  if (typeof n !== "number") throw new RangeError(`unknown signal ${String(signal)}`);
  return n;
}

/**
 * The signal that ended a process with this exit status, by the shell convention containerd
 * follows (128 + N), or null for a normal exit. 255 (containerd's "unknown") gives null.
 */
export function exitSignal(exitStatus: number): NodeJS.Signals | null {
  if (exitStatus <= 128 || exitStatus >= 255) return null;
  const n = exitStatus - 128;
  for (const [name, value] of Object.entries(constants.signals)) {
    if (value === n) return name as NodeJS.Signals;
  }
  return null;
}

/** A protobuf Timestamp as a Date; null when unset or Go's zero time. */
export function timestampToDate(ts: WireTimestamp | null | undefined): Date | null {
  if (ts === null || ts === undefined || ts.seconds <= GO_ZERO_TIME_SECONDS) return null;
  return new Date(ts.seconds * 1000 + Math.floor(ts.nanos / 1e6));
}

export function anyFromWire(any: WireAny | null | undefined): AnyMessage | null {
  if (any === null || any === undefined) return null;
  return { typeUrl: any.type_url, value: any.value };
}

export function anyToWire(any: AnyMessage): WireAny {
  return { type_url: any.typeUrl, value: any.value };
}

export function mountToWire(m: Mount): WireMount {
  return { type: m.type, source: m.source, target: m.target ?? "", options: [...(m.options ?? [])] };
}

export function mountFromWire(m: WireMount): Mount {
  return { type: m.type, source: m.source, target: m.target, options: m.options };
}

const STATUSES: ReadonlySet<string> = new Set<TaskStatus>([
  "UNKNOWN",
  "CREATED",
  "RUNNING",
  "STOPPED",
  "PAUSED",
  "PAUSING",
]);

export function statusFromWire(status: string | number): TaskStatus {
  return typeof status === "string" && STATUSES.has(status) ? (status as TaskStatus) : "UNKNOWN";
}

export function mapValues<A, B>(record: Record<string, A>, f: (a: A) => B): Record<string, B> {
  const out: Record<string, B> = {};
  for (const [k, v] of Object.entries(record)) out[k] = f(v);
  return out;
}
