/**
 * `eve-tasks apply -f <file|->`: validate an AppInstanceConfig or a NetworkInstanceConfig locally,
 * then put it in the KV.
 */
import { ensureBucket } from "@eve-tasks/bus";
import { AppInstanceConfigSchema, NetworkInstanceConfigSchema } from "@eve-tasks/schemas";
import { describeApp } from "../apps.js";
import { updateKey } from "@eve-tasks/bus";
import { parseApplyInput, readConfigSource } from "../config-input.js";
import type { CliContext } from "../context.js";
import { CONFIG_AGENT } from "../load-apps.js";
import { hubBucketFor, isHub } from "../fleet.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";

/** Options of `apply`. */
export interface ApplyOptions {
  /** A path, or `-` for stdin. */
  file: string;
  /** Validate only; publish nothing (and do not connect). */
  dryRun: boolean;
  server: NatsTarget;
}

/**
 * Validates the config (nothing is sent if it is invalid), then writes it to
 * `$KV.controller.AppInstanceConfig.<uuid>` with a KV put (compare-and-set, so the
 * "unchanged" check is exact). Prints `applied <name> (<uuid>) at revision N`, with
 * `(unchanged)` when the stored config was already this one and nothing was written.
 */
export async function runApply(ctx: CliContext, o: ApplyOptions): Promise<void> {
  const { bytes, source } = await readConfigSource(o.file, ctx);
  const input = parseApplyInput(bytes, source);
  const label =
    input.kind === "app"
      ? describeApp(input.config.uuid, input.config.displayName || undefined)
      : `network instance ${input.config.name} (node ${input.config.node})`;
  if (o.dryRun) {
    ctx.out(`valid ${label}: nothing published (dry run)\n`);
    return;
  }
  await withBus(o.server, async (bus) => {
    // Against a fleet's hub, the config goes to its device's controller-<node> (docs/fleet.md).
    const hub = await isHub(bus);
    const agent = hub ? await hubBucketFor(bus, input.config) : CONFIG_AGENT;
    // The controller bucket is the user's own; create it (with the bus's configuration) if missing.
    if (!hub) await ensureBucket(bus, CONFIG_AGENT);
    const kv = await bus.bucket(agent);
    const r =
      input.kind === "app"
        ? await updateKey(
            kv,
            agent,
            "AppInstanceConfig",
            input.config.uuid,
            AppInstanceConfigSchema,
            () => input.config,
          )
        : await updateKey(
            kv,
            agent,
            "NetworkInstanceConfig",
            input.config.name,
            NetworkInstanceConfigSchema,
            () => input.config,
          );
    const note = r.outcome === "unchanged" ? " (unchanged)" : "";
    ctx.out(`applied ${label}${hub ? ` to ${agent}` : ""} at revision ${r.revision}${note}\n`);
  });
}
