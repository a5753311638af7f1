/**
 * `eve-tasks runtimes`: the runtime images (HypervisorToolsConfigs) with what their labels say
 * (contract, stop method, tax, devices, emulators), the seed's state on each node and its digest.
 */
import type { Command } from "@commander-js/extra-typings";
import {
  HypervisorToolsConfigSchema,
  RUNTIME_LABELS,
  SeedSchema,
  readRuntimeLabels,
} from "@eve-tasks/schemas";
import type { HypervisorToolsConfig, RuntimeImageFacts, RuntimeTax, Seed } from "@eve-tasks/schemas";
import type { CliContext } from "../context.js";
import { readTable } from "../kv.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";
import { renderTable, sanitize } from "../table.js";

/** One row of `runtimes`: a runtime name, and its seed on one node (when there is one). */
export interface RuntimeRow {
  name: string;
  /** The configured image; null when only a seed is left (its config was deleted). */
  image: string | null;
  /** The node of the seed; null when no node has seeded it yet. */
  node: string | null;
  seed: Seed | null;
  /** What the seed's labels say, when it is READY and a usable runtime image. */
  runtime: RuntimeImageFacts | null;
  /** Why it is not usable as a runtime (no runtime label, a label the node cannot use). */
  problem: string | null;
}

/** The rows of `runtimes` from the HypervisorToolsConfigs and HypervisorSeeds, sorted by name and node. */
export function runtimeRows(
  configs: ReadonlyMap<string, HypervisorToolsConfig>,
  seeds: ReadonlyMap<string, Seed>,
): RuntimeRow[] {
  const rows: RuntimeRow[] = [];
  const seeded = new Set<string>();
  for (const [key, seed] of seeds) {
    const dot = key.indexOf(".");
    const node = key.slice(0, dot);
    const name = key.slice(dot + 1);
    seeded.add(name);
    let runtime: RuntimeImageFacts | null = null;
    let problem: string | null = null;
    if (seed.state === "READY") {
      const read = readRuntimeLabels(seed.labels, seed.stopSignal);
      if (read.ok) runtime = read.facts;
      else problem = seed.labels === null ? "seeded by a fetcher that kept no labels" : read.message;
    }
    rows.push({ name, image: configs.get(name)?.image ?? null, node, seed, runtime, problem });
  }
  for (const [name, config] of configs) {
    if (!seeded.has(name))
      rows.push({ name, image: config.image, node: null, seed: null, runtime: null, problem: null });
  }
  return rows.sort((a, b) => a.name.localeCompare(b.name) || (a.node ?? "").localeCompare(b.node ?? ""));
}

/** A tax as `370+3/vcpu+0.025/MiB`; `-` for none. */
export function formatTax(tax: RuntimeTax): string {
  const parts: string[] = [];
  if (tax.baseMiB) parts.push(`${tax.baseMiB}Mi`);
  if (tax.perVcpuMiB) parts.push(`${tax.perVcpuMiB}Mi/vcpu`);
  if (tax.perGuestMiB) parts.push(`${tax.perGuestMiB}/guest MiB`);
  return parts.length === 0 ? "-" : parts.join("+");
}

function stopOf(r: RuntimeImageFacts): string {
  return r.stop.method === "qmp" ? "qmp" : `signal ${r.stop.signal}`;
}

function kindOf(row: RuntimeRow): string {
  if (!row.runtime) return "-";
  const emulators = Object.keys(row.runtime.emulators);
  const loader = (row.seed?.process?.args.length ?? 0) > 0;
  if (emulators.length > 0 && !loader) return `emulators ${emulators.join(",")}`;
  return loader ? "loader" : "no loader";
}

/** Runs `runtimes`. */
export async function runRuntimes(ctx: CliContext, o: { json: boolean; server: NatsTarget }): Promise<void> {
  const { configs, seeds } = await withBus(o.server, async (bus) => {
    const c = await readTable(bus, "controller", "HypervisorToolsConfig", HypervisorToolsConfigSchema);
    const s = await readTable(bus, "hypervisor-seed-fetcher", "HypervisorSeed", SeedSchema);
    return {
      configs: new Map([...c.values].map(([k, v]) => [k, v.value])),
      seeds: new Map([...s.values].map(([k, v]) => [k, v.value])),
    };
  });
  const rows = runtimeRows(configs, seeds);
  if (o.json) {
    ctx.out(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    ctx.err("no runtimes: no HypervisorToolsConfig is published (npm start registers the built-in ones)\n");
    return;
  }
  ctx.out(
    renderTable(
      ["NAME", "NODE", "STATE", "KIND", "STOP", "TAX", "DEVICES", "DIGEST", "IMAGE", "NOTE"],
      rows.map((r) => [
        r.name,
        r.node ?? "-",
        r.seed?.state ?? "not seeded",
        kindOf(r),
        r.runtime ? stopOf(r.runtime) : "-",
        r.runtime ? formatTax(r.runtime.tax) : "-",
        r.runtime && r.runtime.devices.length > 0 ? r.runtime.devices.join(",") : "-",
        r.seed?.digest ? r.seed.digest.slice(0, 19) : "-",
        sanitize(r.image ?? r.seed?.ref ?? "-"),
        sanitize(r.seed?.error?.message ?? r.problem ?? ""),
      ]),
    ),
  );
}

/** Adds `runtimes` to the program. */
export function registerRuntimes(
  program: Command<[], { server?: string }>,
  ctx: CliContext,
  server: () => NatsTarget,
): void {
  program
    .command("runtimes")
    .summary("list runtime images with their labels, seed state and digest")
    .description(
      "List every runtime (HypervisorToolsConfig) and its seed on each node: NAME, NODE, STATE (PULLING, " +
        "READY, FAILED, or not seeded), KIND (loader, or the emulators it carries), STOP (qmp, or signal and " +
        `its name), TAX (from ${RUNTIME_LABELS.tax}), DEVICES, DIGEST (the platform manifest's), IMAGE and ` +
        "NOTE (a seed's error, or why the image is not a usable runtime).",
    )
    .option("--json", "print a JSON array of { name, image, node, seed, runtime, problem }")
    .action(async (opts) => {
      await runRuntimes(ctx, { json: opts.json === true, server: server() });
    });
}
