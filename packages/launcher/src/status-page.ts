/**
 * The live status page the launcher serves on 127.0.0.1 (@eve-tasks/status-page), read from the
 * bus as the read-only `viewer` user: which port (decided here, pure) and with which
 * credentials, and the launcher's own view of its workers for the page's workers table.
 */
import { natsPasswordFile } from "@eve-tasks/embedded";
import { openStatusPage } from "@eve-tasks/status-page";
import type { LocalWorker, StatusPage } from "@eve-tasks/status-page";
import type { Logger } from "@eve-tasks/runtime";
import type { NatsUsersPlan } from "./nats-users.js";
import { portIsFree } from "./port-probe.js";
import { STALE_HEARTBEAT_MS } from "./status-format.js";
import type { WorkerSnapshot } from "./worker-supervisor.js";

/** The page's port when EVE_UI_PORT is unset (any free port when it is taken). */
export const DEFAULT_UI_PORT = 4280;
/** Where the page listens. */
export const UI_HOST = "127.0.0.1";

/** Which port to listen on, or why there is no page. */
export type UiPortPlan = { readonly port: number; readonly note?: string } | { readonly off: string };

/**
 * The port: EVE_UI_PORT as given (0 = any), `off` = none; unset = {@link DEFAULT_UI_PORT}, or
 * any free port when that one is taken (said in `note`).
 */
export function planUiPort(configured: number | "off" | undefined, defaultIsFree: boolean): UiPortPlan {
  if (configured === "off") return { off: "EVE_UI_PORT=off" };
  if (configured !== undefined) return { port: configured };
  if (defaultIsFree) return { port: DEFAULT_UI_PORT };
  return {
    port: 0,
    note: `${UI_HOST}:${DEFAULT_UI_PORT} is taken; the status page gets a free port (set EVE_UI_PORT to choose)`,
  };
}

/** The page's view of the launcher's workers. */
export function localWorkersOf(
  snapshots: readonly WorkerSnapshot[],
  heartbeatAgeMs: (s: WorkerSnapshot) => number | undefined,
): LocalWorker[] {
  return snapshots.map((s) => {
    const age = heartbeatAgeMs(s) ?? null;
    return {
      name: s.name,
      pid: s.pid,
      state: s.state,
      restarts: s.restarts,
      heartbeatAgeMs: age,
      heartbeatStale: age !== null && age > STALE_HEARTBEAT_MS,
    };
  });
}

/** What {@link startStatusPage} needs. */
export interface StartStatusPageOptions {
  readonly configuredPort: number | "off" | undefined;
  readonly natsUrl: string;
  readonly natsUsers: NatsUsersPlan;
  readonly node: string;
  readonly logger: Logger;
  readonly localWorkers: () => readonly LocalWorker[];
}

/**
 * Starts the page, reading as `viewer` when the launcher has the users' passwords (else as the
 * launcher itself). Never throws: the system runs without its page. Returns the page, or the
 * sentence saying why there is none.
 */
export async function startStatusPage(
  o: StartStatusPageOptions,
): Promise<{ page: StatusPage; notes: string[] } | { reason: string }> {
  const plan = planUiPort(
    o.configuredPort,
    o.configuredPort === undefined ? await portIsFree(DEFAULT_UI_PORT, UI_HOST) : true,
  );
  if ("off" in plan) return { reason: `status page off (${plan.off})` };
  const notes = plan.note === undefined ? [] : [plan.note];
  const credentials =
    o.natsUsers.credentialsDir !== undefined
      ? { user: "viewer", passwordFile: natsPasswordFile(o.natsUsers.credentialsDir, "viewer") }
      : o.natsUsers.launcher;
  if (o.natsUsers.credentialsDir === undefined) {
    notes.push(
      `the status page reads NATS as ${credentials ? credentials.user : "an anonymous client"} ` +
        `(no read-only viewer password without EVE_NATS_CREDENTIALS_DIR)`,
    );
  }
  try {
    const page = await openStatusPage({
      servers: o.natsUrl,
      credentials,
      host: UI_HOST,
      port: plan.port,
      node: o.node,
      logger: o.logger.child({ child: "status-page" }),
      localWorkers: o.localWorkers,
    });
    return { page, notes };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { reason: `status page not started: ${UI_HOST}:${plan.port}: ${why}` };
  }
}
