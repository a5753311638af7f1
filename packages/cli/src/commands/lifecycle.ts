/** `eve-tasks stop|start|restart|delete <app>`: change an app's desired state, optionally wait for it. */
import type { Bus } from "@eve-tasks/bus";
import { kvKey } from "@eve-tasks/bus";
import { AppInstanceConfigSchema } from "@eve-tasks/schemas";
import type { AppInstanceConfig, AppInstanceConfigInput } from "@eve-tasks/schemas";
import type { AppView } from "../apps.js";
import { describeApp, nameOf, resolveApp } from "../apps.js";
import { updateKey } from "@eve-tasks/bus";
import type { Current } from "@eve-tasks/bus";
import type { CliContext } from "../context.js";
import { UserError } from "../errors.js";
import { CONFIG_AGENT, STATUS_AGENT, loadApps } from "../load-apps.js";
import { requireBucket, withBus } from "../server.js";
import type { NatsTarget } from "../server.js";
import type { WaitCondition } from "../wait-status.js";
import { removedCondition, runningCondition, stoppedCondition, waitForStatus } from "../wait-status.js";

/** Default of `--timeout` for `--wait`. */
export const DEFAULT_WAIT_TIMEOUT_MS = 60_000;

/** Options shared by stop, start, restart and delete. */
export interface LifecycleOptions {
  /** A uuid, a unique display name or a unique uuid prefix. */
  app: string;
  /** Wait until the status shows the change took effect. */
  wait: boolean;
  timeoutMs: number;
  server: NatsTarget;
}

/**
 * The app `o.app` names among the apps that have a config. With `--wait`, first checks that the
 * status bucket exists, so a wait that cannot work fails before anything is changed.
 */
async function findApp(bus: Bus, o: LifecycleOptions): Promise<AppView> {
  await requireBucket(bus, CONFIG_AGENT, o.server);
  if (o.wait) await requireBucket(bus, STATUS_AGENT, o.server);
  const { apps } = await loadApps(bus);
  return resolveApp(
    apps.filter((a) => a.config !== undefined),
    o.app,
  );
}

/** The stored config, or a UserError when it was deleted meanwhile or is invalid. */
function existing(current: Current<AppInstanceConfig>, label: string): AppInstanceConfig {
  if (current.value) return current.value;
  if (current.invalid !== undefined) {
    throw new UserError(
      `the stored config of ${label} is invalid, so it cannot be changed; fix it with eve-tasks apply:\n${current.invalid}`,
    );
  }
  throw new UserError(`${label} was deleted meanwhile`);
}

async function waitIfAsked(
  ctx: CliContext,
  bus: Bus,
  o: LifecycleOptions,
  app: AppView,
  label: string,
  condition: WaitCondition,
): Promise<void> {
  if (!o.wait) return;
  const s = await waitForStatus(bus, {
    uuid: app.uuid,
    label,
    condition,
    timeoutMs: o.timeoutMs,
    signal: ctx.signal,
  });
  ctx.out(
    s ? `${label} is ${s.state}${s.taskId > 0 ? ` (taskId ${s.taskId})` : ""}\n` : `${label} is gone\n`,
  );
}

/** `stop` (activate false) or `start` (activate true), with compare-and-set. */
export async function runSetActivate(ctx: CliContext, o: LifecycleOptions, activate: boolean): Promise<void> {
  await withBus(o.server, async (bus) => {
    const app = await findApp(bus, o);
    const label = describeApp(app.uuid, nameOf(app));
    const kv = await bus.bucket(CONFIG_AGENT);
    const r = await updateKey(
      kv,
      CONFIG_AGENT,
      "AppInstanceConfig",
      app.uuid,
      AppInstanceConfigSchema,
      (cur): AppInstanceConfigInput => ({ ...existing(cur, label), activate }),
    );
    const verb = activate ? "starting" : "stopping";
    if (r.outcome === "written")
      ctx.out(`${verb} ${label}: activate ${activate} at revision ${r.revision}\n`);
    else ctx.out(`${label} is already ${activate ? "started" : "stopped"} (activate is ${activate})\n`);
    const condition = activate ? runningCondition(r.revision) : stoppedCondition(r.revision);
    await waitIfAsked(ctx, bus, o, app, label, condition);
  });
}

/** `restart`: raise restartCounter by one, with compare-and-set. */
export async function runRestart(ctx: CliContext, o: LifecycleOptions): Promise<void> {
  await withBus(o.server, async (bus) => {
    const app = await findApp(bus, o);
    const label = describeApp(app.uuid, nameOf(app));
    const before = app.status;
    const kv = await bus.bucket(CONFIG_AGENT);
    const r = await updateKey(
      kv,
      CONFIG_AGENT,
      "AppInstanceConfig",
      app.uuid,
      AppInstanceConfigSchema,
      (cur) => {
        const c = existing(cur, label);
        if (!c.activate && o.wait) {
          throw new UserError(`${label} is stopped (activate is false): start it instead of restarting it`);
        }
        return { ...c, restartCounter: c.restartCounter + 1 };
      },
    );
    ctx.out(`restarting ${label}: restartCounter ${r.value.restartCounter} at revision ${r.revision}\n`);
    if (!r.value.activate) {
      ctx.err(`note: ${label} is stopped (activate is false): the restart takes effect when it is started\n`);
    }
    await waitIfAsked(ctx, bus, o, app, label, runningCondition(r.revision, before));
  });
}

/** `delete`: a KV delete of the app's config (the executor then stops and removes its task). */
export async function runDelete(ctx: CliContext, o: LifecycleOptions): Promise<void> {
  await withBus(o.server, async (bus) => {
    const app = await findApp(bus, o);
    const label = describeApp(app.uuid, nameOf(app));
    const kv = await bus.bucket(CONFIG_AGENT);
    await kv.delete(kvKey("AppInstanceConfig", app.uuid));
    ctx.out(`deleted ${label}\n`);
    await waitIfAsked(ctx, bus, o, app, label, removedCondition());
  });
}
