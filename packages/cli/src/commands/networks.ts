/** `eve-tasks networks`: every network instance, its config beside what its node made of it. */
import type { Command } from "@commander-js/extra-typings";
import { Publication } from "@eve-tasks/bus";
import { NetworkInstanceConfigSchema, networkInstanceStatusKey, messageTable } from "@eve-tasks/schemas";
import type { NetworkInstanceConfig, NetworkInstanceStatus } from "@eve-tasks/schemas";
import type { CliContext } from "../context.js";
import { CONFIG_AGENT } from "../load-apps.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";
import { renderTable, sanitize } from "../table.js";

/** One instance: its config (null once deleted) and its node's status (null before one). */
export interface NetworkRow {
  name: string;
  node: string;
  config: NetworkInstanceConfig | null;
  status: NetworkInstanceStatus | null;
}

/** Joins configs and statuses by `<node>.<name>` (pure). */
export function networkRows(
  configs: ReadonlyMap<string, NetworkInstanceConfig>,
  statuses: ReadonlyMap<string, NetworkInstanceStatus>,
): NetworkRow[] {
  const rows = new Map<string, NetworkRow>();
  for (const c of configs.values()) {
    rows.set(networkInstanceStatusKey(c.node, c.name), {
      name: c.name,
      node: c.node,
      config: c,
      status: null,
    });
  }
  for (const [key, s] of statuses) {
    const row = rows.get(key) ?? { name: s.name, node: s.node, config: null, status: null };
    rows.set(key, { ...row, status: s });
  }
  return [...rows.values()].sort((a, b) => a.node.localeCompare(b.node) || a.name.localeCompare(b.name));
}

/** The table of `networks`. */
export function renderNetworks(rows: readonly NetworkRow[]): string {
  return renderTable(
    ["NAME", "NODE", "TYPE", "STATE", "SUBNET", "GATEWAY", "BRIDGE", "APPS", "ERROR"],
    rows.map((r) => [
      r.name,
      r.node,
      r.config?.type ?? "-",
      r.status?.state ?? "-",
      r.config?.subnet ?? r.status?.subnet ?? "-",
      r.config?.gateway ?? r.status?.gateway ?? "-",
      r.status?.bridge ?? "-",
      String(r.status?.apps.length ?? 0),
      r.status?.error ? sanitize(r.status.error.message) : r.config ? "" : "(config deleted)",
    ]),
  );
}

/** Runs `networks`. */
export async function runNetworks(ctx: CliContext, o: { json: boolean; server: NatsTarget }): Promise<void> {
  const rows = await withBus(o.server, async (bus) => {
    const configs = new Publication(bus, {
      agent: CONFIG_AGENT,
      type: "NetworkInstanceConfig",
      schema: NetworkInstanceConfigSchema,
    });
    const statuses = new Publication(bus, messageTable("NetworkInstanceStatus"));
    const byName = new Map<string, NetworkInstanceConfig>();
    for (const [, c] of await configs.getAll().catch(() => new Map<string, NetworkInstanceConfig>()))
      byName.set(c.name, c);
    return networkRows(byName, await statuses.getAll().catch(() => new Map<string, NetworkInstanceStatus>()));
  });
  if (o.json) {
    ctx.out(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    ctx.err("no network instances\n");
    return;
  }
  ctx.out(renderNetworks(rows));
}

/** Adds `networks` to the program. */
export function registerNetworks(
  program: Command<[], { server?: string }>,
  ctx: CliContext,
  server: () => NatsTarget,
): void {
  program
    .command("networks")
    .summary("list network instances with their state, subnet and apps")
    .description(
      "List every NetworkInstanceConfig beside its node's NetworkInstanceStatus: NAME, NODE, TYPE " +
        "(local or switch), STATE (READY, FAILED; - before the node reported), SUBNET, GATEWAY, BRIDGE, " +
        "APPS (how many apps have an interface on it) and ERROR.",
    )
    .option("--json", "print a JSON array of { name, node, config, status }")
    .action(async (opts) => {
      await runNetworks(ctx, { json: opts.json === true, server: server() });
    });
}
