/**
 * `eve-tasks workers`: every worker process that answers `$SRV.INFO` as NATS service
 * `eve-tasks-<worker>` (replicas each on their own line), with its node, PID, version, uptime,
 * metrics URL and the requests its endpoints served.
 */
import { discoverWorkers } from "@eve-tasks/runtime";
import type { DiscoveredWorker } from "@eve-tasks/runtime";
import type { CliContext } from "../context.js";
import { formatAge } from "../human.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";
import { renderTable } from "../table.js";

/** How long `workers` listens for answers by default. */
export const DISCOVER_WAIT_MS = 1000;

/** Options of `workers`. */
export interface WorkersOptions {
  json: boolean;
  /** How long to wait for answers. */
  waitMs: number;
  server: NatsTarget;
}

/** The table of `workers`. */
export function workersTable(workers: readonly DiscoveredWorker[], now: Date): string {
  return renderTable(
    ["WORKER", "NODE", "PID", "VERSION", "UP", "METRICS", "REQUESTS"],
    workers.map((w) => [
      w.worker,
      w.metadata.node,
      w.metadata.pid,
      w.version,
      w.started ? formatAge(now.getTime() - Date.parse(w.started)) : "-",
      w.metadata.metrics || "-",
      w.endpoints.map((e) => `${e.name}=${e.requests}${e.errors ? ` (${e.errors} errors)` : ""}`).join(" "),
    ]),
  );
}

/** Runs `workers`. */
export async function runWorkers(ctx: CliContext, o: WorkersOptions): Promise<void> {
  const workers = await withBus(o.server, (bus) => discoverWorkers(bus.nc, { maxWaitMs: o.waitMs }));
  if (o.json) {
    ctx.out(`${JSON.stringify(workers, null, 2)}\n`);
    return;
  }
  if (workers.length === 0) {
    ctx.err(`no worker answered $SRV.INFO within ${o.waitMs} ms: is eve-tasks running there?\n`);
    return;
  }
  ctx.out(workersTable(workers, ctx.now()));
}
