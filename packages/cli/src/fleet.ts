/**
 * The CLI against a fleet's hub (docs/fleet.md): the server's JetStream domain says whether it is
 * a hub; there `apply` writes to `controller-<node of the config>`, `get` and `watch` show every
 * device's apps with a NODE column (configs from every `controller-<node>`, statuses from the
 * hub's `task-executor`, which aggregates the devices'), and `nodes` lists the devices.
 */
import { HUB_DOMAIN, listHubDevices, subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import {
  AppInstanceConfigSchema,
  TaskStatusSchema,
  hubControllerBucket,
  nodeOfHubControllerBucket,
} from "@eve-tasks/schemas";
import type { AppInstanceConfig, TaskStatus } from "@eve-tasks/schemas";
import type { AppView } from "./apps.js";
import { joinApps, matchApps, refersTo, resolveApp, unknownAppError } from "./apps.js";
import type { CliContext } from "./context.js";
import { UserError } from "./errors.js";
import { getRow } from "./get-view.js";
import { formatAge } from "./human.js";
import type { Stored } from "./kv.js";
import { readTable } from "./kv.js";
import { STATUS_AGENT, loadApps } from "./load-apps.js";
import { renderTable } from "./table.js";
import { describeStatus, formatWatchLine, statusChanges } from "./watch-lines.js";

/** Whether the connected server is a fleet's hub (its JetStream domain is `hub`). */
export async function isHub(bus: Bus): Promise<boolean> {
  try {
    return (await bus.jsm.getAccountInfo()).domain === HUB_DOMAIN;
  } catch {
    return false;
  }
}

/** The devices that have a `controller-<node>` bucket on the hub. */
export async function hubNodes(bus: Bus): Promise<string[]> {
  const nodes: string[] = [];
  for await (const name of bus.jsm.streams.names()) {
    const node = name.startsWith("KV_") ? nodeOfHubControllerBucket(name.slice(3)) : undefined;
    if (node !== undefined) nodes.push(node);
  }
  return nodes.sort();
}

/**
 * The hub bucket an app's config goes to: `controller-<config.node>`.
 * @throws {UserError} when the config names no device of this hub.
 */
export async function hubBucketFor(bus: Bus, config: { readonly node: string }): Promise<string> {
  const nodes = await hubNodes(bus);
  if (!nodes.includes(config.node)) {
    throw new UserError(
      `this server is a fleet's hub and the config's node is ${JSON.stringify(config.node)}, which is not one ` +
        `of its devices (${nodes.join(", ") || "none"}): set "node" to the device that should run it`,
    );
  }
  return hubControllerBucket(config.node);
}

/** An app on the hub, with the device it belongs to. */
export interface HubAppView extends AppView {
  node: string;
}

/** Every device's apps: configs from each `controller-<node>`, statuses from the hub's `task-executor`. */
export async function loadHubApps(bus: Bus): Promise<HubAppView[]> {
  const nodes = await hubNodes(bus);
  const configs = new Map<string, Stored<AppInstanceConfig>>();
  const nodeOf = new Map<string, string>();
  for (const node of nodes) {
    const t = await readTable(bus, hubControllerBucket(node), "AppInstanceConfig", AppInstanceConfigSchema);
    for (const [k, v] of t.values) {
      configs.set(k, v);
      nodeOf.set(k, node);
    }
  }
  const statuses = await readTable(bus, STATUS_AGENT, "TaskStatus", TaskStatusSchema);
  const statusValues = new Map([...statuses.values].map(([k, v]) => [k, v.value]));
  return joinApps(configs, statusValues).map((a) => ({
    ...a,
    node: nodeOf.get(a.uuid) ?? a.status?.node ?? "-",
  }));
}

/**
 * The app `<app>` names, and the node whose task-executor serves it (its logs and signals, on
 * `eve.rpc.task-executor.<node>.…`): on a hub, any device's app (configs from every
 * `controller-<node>`, so names work as on the device) and that device; on a node, its own apps.
 * @throws {UserError} when `<app>` names no app, or several.
 */
export async function resolveAppAndNode(bus: Bus, ref: string): Promise<{ app: AppView; node: string }> {
  if (await isHub(bus)) {
    const app = resolveApp(
      (await loadHubApps(bus)).filter((a) => a.node !== "-"),
      ref,
    );
    return { app, node: app.node };
  }
  const { apps } = await loadApps(bus);
  const app = resolveApp(
    apps.filter((a) => a.config !== undefined || a.status !== undefined),
    ref,
  );
  return { app, node: app.status?.node ?? app.config?.value.node ?? "local" };
}

/** `get` on a hub: NODE, then the usual columns. */
export function renderHubGetTable(apps: readonly HubAppView[], now: Date): string {
  return renderTable(
    ["NODE", "NAME", "UUID", "STATE", "TASK ID", "MEMORY", "AGE", "ERROR"],
    apps.map((a) => [
      a.node,
      ...getRow(a, now),
      a.status?.error ? `${a.status.error.source}: ${a.status.error.message}` : "",
    ]),
  );
}

/** `eve-tasks get [app]` on a hub. */
export async function runHubGet(
  ctx: CliContext,
  bus: Bus,
  o: { app: string | undefined; json: boolean },
): Promise<void> {
  let apps = await loadHubApps(bus);
  if (o.app !== undefined) {
    const all = apps;
    const matched = new Set(matchApps(all, o.app).map((a) => a.uuid));
    apps = all.filter((a) => matched.has(a.uuid));
    if (apps.length === 0) throw unknownAppError(all, o.app);
  }
  if (o.json) {
    ctx.out(
      `${JSON.stringify(
        apps.map((a) => ({
          node: a.node,
          uuid: a.uuid,
          revision: a.config?.revision ?? null,
          config: a.config?.value ?? null,
          status: a.status ?? null,
        })),
        null,
        2,
      )}\n`,
    );
  } else if (apps.length === 0) ctx.err("no apps\n");
  else ctx.out(renderHubGetTable(apps, ctx.now()));
}

/**
 * `eve-tasks watch [app]` on a hub: every device's statuses as they reach the hub, one line per
 * change prefixed with the node, until Ctrl-C. Names come from the devices' configs as they were
 * when the watch started.
 */
export async function runHubWatch(
  ctx: CliContext,
  bus: Bus,
  o: { app: string | undefined; json: boolean },
): Promise<void> {
  const apps = await loadHubApps(bus);
  const names = new Map(apps.map((a) => [a.uuid, a.config?.value.displayName ?? ""]));
  const nodes = new Map(apps.map((a) => [a.uuid, a.node]));
  let live = false;
  const line = (
    type: "current" | "status-created" | "status-changed" | "status-deleted",
    uuid: string,
    s: TaskStatus | null,
    changes: string[],
  ): void => {
    const name = names.get(uuid) || null;
    if (o.app !== undefined && !refersTo(o.app, uuid, name ?? undefined)) return;
    const node = s?.node ?? nodes.get(uuid) ?? "-";
    const e = {
      time: ctx.now().toISOString(),
      event: type,
      uuid,
      name,
      changes,
      revision: s?.configRevision ?? null,
      config: null,
      status: s,
    };
    ctx.out(o.json ? `${JSON.stringify({ node, ...e })}\n` : `${node}  ${formatWatchLine(e)}`);
  };
  const sub = await subscribe(bus, {
    agent: STATUS_AGENT,
    type: "TaskStatus",
    schema: TaskStatusSchema,
    onCreate: (k, v) => (live ? line("status-created", k, v, describeStatus(v)) : undefined),
    onModify: (k, v, old) => {
      const c = statusChanges(old, v);
      if (live && c.length > 0) line("status-changed", k, v, c);
    },
    onDelete: (k) => (live ? line("status-deleted", k, null, []) : undefined),
  });
  try {
    await sub.synchronized;
    for (const [k, v] of sub.getAll()) line("current", k, v.value, describeStatus(v.value));
    live = true;
    if (!ctx.signal.aborted)
      await new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r(), { once: true }));
  } finally {
    await Promise.race([sub.close(), new Promise((r) => setTimeout(r, 300).unref())]);
  }
}

/** One row of `eve-tasks nodes`. */
export interface NodeRow {
  node: string;
  /** Whether the hub's source of the device's statuses heard from it lately (its leaf is connected). */
  connected: boolean;
  apps: number;
  /** The newest TaskStatus `updatedAt` of its apps seen on the hub. */
  lastStatusAt: string | null;
  statusSourceLag: number | null;
  statusSourceError: string | null;
}

/**
 * A device's leaf counts as connected while the hub's source of its statuses has heard from it
 * within this time: the source's consumer on the device sends heartbeats (about every 2 s on
 * nats-server 2.9), so silence for longer means the link is down.
 */
export const LEAF_SILENCE_MS = 10_000;

/** `eve-tasks nodes`: the hub's devices, whether their leaf is connected, their last status. */
export async function runNodes(ctx: CliContext, bus: Bus, o: { json: boolean }): Promise<void> {
  if (!(await isHub(bus)))
    throw new UserError("nodes: this server is not a fleet's hub (its JetStream domain is not hub)");
  const devices = await listHubDevices(bus);
  const statuses = await readTable(bus, STATUS_AGENT, "TaskStatus", TaskStatusSchema);
  const rows: NodeRow[] = devices.map((d) => {
    const mine = [...statuses.values.values()].filter((s) => s.value.node === d.node);
    const last =
      mine
        .map((s) => s.value.updatedAt)
        .sort()
        .at(-1) ?? null;
    return {
      node: d.node,
      connected: d.statusSourceActiveMs !== null && d.statusSourceActiveMs < LEAF_SILENCE_MS,
      apps: mine.length,
      lastStatusAt: last,
      statusSourceLag: d.statusSourceLag,
      statusSourceError: d.statusSourceError,
    };
  });
  if (o.json) {
    ctx.out(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    ctx.err("no devices\n");
    return;
  }
  const now = ctx.now().getTime();
  ctx.out(
    renderTable(
      ["NODE", "LEAF", "APPS", "LAST STATUS", "SOURCE LAG", "SOURCE ERROR"],
      rows.map((r) => [
        r.node,
        r.connected ? "connected" : "disconnected",
        String(r.apps),
        r.lastStatusAt === null ? "-" : `${formatAge(now - new Date(r.lastStatusAt).getTime())} ago`,
        r.statusSourceLag === null ? "-" : String(r.statusSourceLag),
        r.statusSourceError ?? "",
      ]),
    ),
  );
}
