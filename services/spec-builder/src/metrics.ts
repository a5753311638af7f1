/** What the spec-builder measures besides the bus (work queue, KV writes): its build outcomes. */
import { Counter, Registry } from "prom-client";
import { METRICS_PREFIX } from "@eve-tasks/schemas";
import type { BuildOutcome } from "./outcome.js";

/** The spec-builder's instruments. */
export interface SpecBuilderMetrics {
  /**
   * TaskConfigs built, by status (READY, PENDING, FAILED, UNREPORTABLE) and, for FAILED, the
   * reason (schema, seed, spec, too-large, …; `none` otherwise).
   */
  readonly builds: Counter<"status" | "reason">;
}

/** The spec-builder's instruments on `registry` (a private one when none is given). */
export function specBuilderMetrics(registry: Registry = new Registry()): SpecBuilderMetrics {
  return {
    builds: new Counter({
      name: `${METRICS_PREFIX}spec_builds_total`,
      help: "TaskConfigs built from AppInstanceConfigs, by status and (for FAILED) reason.",
      labelNames: ["status", "reason"],
      registers: [registry],
    }),
  };
}

/** Counts one build. */
export function countBuild(metrics: SpecBuilderMetrics, outcome: BuildOutcome): void {
  metrics.builds.inc({
    status: outcome.status,
    reason: outcome.status === "FAILED" ? outcome.reason : "none",
  });
}
