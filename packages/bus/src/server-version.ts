import type { NatsConnection } from "@nats-io/nats-core";
import { ServerVersionError } from "./errors.js";

/** The oldest nats-server the bus runs on: Debian 12 ships 2.9.10. */
export const MIN_SERVER_VERSION = "2.9.0";

/**
 * Server features and the first nats-server version that enforces them. Against an
 * older server some of these fail loudly and some are silently ignored (per-message
 * TTLs are accepted by 2.9 and never applied), so the bus refuses them up front.
 */
export const SERVER_FEATURES = {
  jetstreamKv: "2.6.2",
  consumerBackoff: "2.7.1",
  multipleFilterSubjects: "2.10.0",
  streamMetadata: "2.10.0",
  streamCompression: "2.10.0",
  perMessageTtl: "2.11.0",
} as const;

export type ServerFeature = keyof typeof SERVER_FEATURES;

/** Compares two dotted versions numerically; a pre-release suffix is ignored. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string): number[] =>
    (v.replace(/^v/, "").split("-")[0] ?? "").split(".").map((n) => Number.parseInt(n, 10) || 0);
  const [pa, pb] = [parse(a), parse(b)];
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** The version the server reported in its INFO. */
export function serverVersionOf(nc: NatsConnection): string {
  return nc.info?.version ?? "0.0.0";
}

/** Throws ServerVersionError unless the server supports `feature`. */
export function assertServerSupports(serverVersion: string, feature: ServerFeature): void {
  const required = SERVER_FEATURES[feature];
  if (compareVersions(serverVersion, required) < 0) {
    throw new ServerVersionError(serverVersion, required, feature);
  }
}

/** Throws ServerVersionError when the server is older than MIN_SERVER_VERSION. */
export function assertMinimumServer(serverVersion: string): void {
  if (compareVersions(serverVersion, MIN_SERVER_VERSION) < 0) {
    throw new ServerVersionError(serverVersion, MIN_SERVER_VERSION, "eve-tasks");
  }
}
