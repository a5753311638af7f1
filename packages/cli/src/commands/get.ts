/** `eve-tasks get [app]`: every app (or the ones `app` names) with its state, as a table or JSON. */
import { matchApps, unknownAppError } from "../apps.js";
import type { CliContext } from "../context.js";
import { appsJson, renderGetTable } from "../get-view.js";
import { invalidWarnings, loadApps } from "../load-apps.js";
import { isHub, runHubGet } from "../fleet.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";

/** Options of `get`. */
export interface GetOptions {
  /** A uuid, a display name (all apps of that name are shown) or a uuid prefix. */
  app: string | undefined;
  json: boolean;
  server: NatsTarget;
}

/**
 * Prints the apps: a table (NAME, UUID, STATE, TASK ID, MEMORY, AGE, and ERROR when an app has
 * one), or with `json` an array of `{ uuid, revision, config, status }`. An app whose config has
 * no status yet shows state `-`. Invalid stored values are warned about on stderr.
 */
export async function runGet(ctx: CliContext, o: GetOptions): Promise<void> {
  const loaded = await withBus(o.server, async (bus) =>
    (await isHub(bus)) ? runHubGet(ctx, bus, o).then(() => undefined) : loadApps(bus),
  );
  if (loaded === undefined) return; // a hub's table, printed by runHubGet
  let apps = loaded.apps;
  if (o.app !== undefined) {
    apps = matchApps(loaded.apps, o.app);
    if (apps.length === 0) throw unknownAppError(loaded.apps, o.app);
  }
  ctx.err(invalidWarnings(loaded));
  if (o.json) {
    ctx.out(`${JSON.stringify(appsJson(apps), null, 2)}\n`);
  } else if (apps.length === 0) {
    ctx.err("no apps\n");
  } else {
    ctx.out(renderGetTable(apps, ctx.now()));
  }
}
