/** What the seed fetcher measures besides the bus: its pulls and the bytes they fetched. */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { METRICS_PREFIX } from "@eve-tasks/schemas";

/** Which seeds a pull is for: an app's image root, or hypervisor tools (runtimes). */
export type SeedKind = "image" | "tools";

/** The seed fetcher's instruments. */
export interface SeedFetcherMetrics {
  /** Pulls finished, by kind and outcome: `ready`, `failed`, `retrying` (a failure that may heal). */
  readonly pulls: Counter<"kind" | "outcome">;
  /** Time of one pull (resolve, fetch what is missing, unpack), by kind and outcome, in seconds. */
  readonly pullDuration: Histogram<"kind" | "outcome">;
  /** Bytes fetched from registries and layouts (blobs already in the content store not counted). */
  readonly fetchedBytes: Counter<"kind">;
  /** Pulls in progress in this process. */
  readonly pullsInProgress: Gauge<"kind">;
}

/** The seed fetcher's instruments on `registry` (a private one when none is given). */
export function seedFetcherMetrics(registry: Registry = new Registry()): SeedFetcherMetrics {
  const registers = [registry];
  const p = METRICS_PREFIX;
  return {
    pulls: new Counter({
      name: `${p}pulls_total`,
      help: "Seed pulls finished, by kind (image, tools) and outcome (ready, failed, retrying).",
      labelNames: ["kind", "outcome"],
      registers,
    }),
    pullDuration: new Histogram({
      name: `${p}pull_duration_seconds`,
      help: "Time of one seed pull (resolve, fetch, unpack), by kind and outcome, in seconds.",
      labelNames: ["kind", "outcome"],
      buckets: [0.1, 0.5, 2, 10, 30, 120, 600, 1800],
      registers,
    }),
    fetchedBytes: new Counter({
      name: `${p}pull_fetched_bytes_total`,
      help: "Bytes of blobs fetched for seeds (those already in the content store not counted).",
      labelNames: ["kind"],
      registers,
    }),
    pullsInProgress: new Gauge({
      name: `${p}pulls_in_progress`,
      help: "Seed pulls in progress in this process.",
      labelNames: ["kind"],
      registers,
    }),
  };
}
