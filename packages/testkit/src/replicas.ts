/** How many processes of each worker a system runs (pure). */
import { TestkitError } from "./errors.js";

/** The workers of a node. */
export const SYSTEM_WORKERS = [
  "spec-builder",
  "task-executor",
  "proc-monitor",
  "hypervisor-seed-fetcher",
] as const;

/** Workers that share their work, so any number of them may run. */
export const SCALABLE_WORKERS = ["spec-builder", "hypervisor-seed-fetcher"] as const;

/** Most processes of one worker. */
export const MAX_REPLICAS = 16;

/** A count for every scalable worker, or one per worker name. */
export type Replicas = number | Readonly<Partial<Record<(typeof SYSTEM_WORKERS)[number], number>>>;

/**
 * The count of each worker: a number applies to the scalable workers (the task-executor and the
 * proc-monitor run once per node: one executor drives a node's containerd, one monitor samples
 * its tasks); a map gives each worker its own, unlisted ones 1.
 *
 * @throws {TestkitError} for a count that is not a whole number from 1 to {@link MAX_REPLICAS},
 *   an unknown worker, or more than one of a once-per-node worker.
 */
export function planReplicas(replicas: Replicas): Map<string, number> {
  const out = new Map<string, number>(SYSTEM_WORKERS.map((w) => [w, 1]));
  const entries: [string, unknown][] =
    typeof replicas === "number" ? SCALABLE_WORKERS.map((w) => [w, replicas]) : Object.entries(replicas);
  for (const [name, count] of entries) {
    if (!(SYSTEM_WORKERS as readonly string[]).includes(name)) {
      throw new TestkitError(
        `replicas: no worker ${JSON.stringify(name)} (workers: ${SYSTEM_WORKERS.join(", ")})`,
      );
    }
    if (typeof count !== "number" || !Number.isInteger(count) || count < 1 || count > MAX_REPLICAS) {
      throw new TestkitError(`replicas: ${name}=${String(count)}: a whole number from 1 to ${MAX_REPLICAS}`);
    }
    if (!(SCALABLE_WORKERS as readonly string[]).includes(name) && count > 1) {
      throw new TestkitError(
        `replicas: ${name} runs once per node; for more of it, start more systems (nodes)`,
      );
    }
    out.set(name, count);
  }
  return out;
}
