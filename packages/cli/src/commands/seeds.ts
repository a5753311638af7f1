/** `eve-tasks seeds`: every seed on the bus (HypervisorSeed and ImageSeed), with digest, size and state. */
import type { Command } from "@commander-js/extra-typings";
import { Publication } from "@eve-tasks/bus";
import { SeedSchema } from "@eve-tasks/schemas";
import type { Seed } from "@eve-tasks/schemas";
import type { CliContext } from "../context.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";
import { renderTable, sanitize } from "../table.js";

/** One row of `seeds`. */
export interface SeedRow {
  type: "HypervisorSeed" | "ImageSeed";
  node: string;
  key: string;
  seed: Seed;
}

function size(seed: Seed): string {
  const p = seed.progress;
  if (!p) return "-";
  const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)}MiB`;
  if (seed.state === "PULLING")
    return `${mib(p.doneBytes)}/${p.totalBytes === null ? "?" : mib(p.totalBytes)}`;
  return p.totalBytes === null ? "-" : mib(p.totalBytes);
}

/** Runs `seeds`. */
export async function runSeeds(ctx: CliContext, o: { json: boolean; server: NatsTarget }): Promise<void> {
  const rows = await withBus(o.server, async (bus) => {
    const out: SeedRow[] = [];
    for (const type of ["HypervisorSeed", "ImageSeed"] as const) {
      const pub = new Publication(bus, { agent: "hypervisor-seed-fetcher", type, schema: SeedSchema });
      for (const [key, seed] of await pub.getAll()) {
        const dot = key.indexOf(".");
        out.push({ type, node: key.slice(0, dot), key: key.slice(dot + 1), seed: seed });
      }
    }
    return out;
  });
  if (o.json) {
    ctx.out(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    ctx.err("no seeds\n");
    return;
  }
  ctx.out(
    renderTable(
      ["TYPE", "NODE", "NAME", "REF", "STATE", "DIGEST", "SIZE", "ERROR"],
      rows.map((r) => [
        r.type === "HypervisorSeed" ? "tools" : "image",
        r.node,
        r.type === "HypervisorSeed" ? r.key : r.key.slice(0, 12),
        r.seed.ref,
        r.seed.state,
        r.seed.digest ? r.seed.digest.slice(0, 19) : "-",
        size(r.seed),
        r.seed.error ? sanitize(r.seed.error.message) : "",
      ]),
    ),
  );
}

/** Adds `seeds` to the program. */
export function registerSeeds(
  program: Command<[], { server?: string }>,
  ctx: CliContext,
  server: () => NatsTarget,
): void {
  program
    .command("seeds")
    .summary("list seeds (hypervisor tools and app images) with digest, size and state")
    .description(
      "List every HypervisorSeed and ImageSeed the seed fetchers published: TYPE, NODE, NAME (the tools' " +
        "name, or the start of the ref's sha256), REF, STATE (PULLING, READY, FAILED), DIGEST, SIZE " +
        "(compressed; done/total while pulling) and ERROR.",
    )
    .option("--json", "print a JSON array of { type, node, key, seed }")
    .action(async (opts) => {
      await runSeeds(ctx, { json: opts.json === true, server: server() });
    });
}
