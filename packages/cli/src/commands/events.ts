/** `eve-tasks events [app]`: an app's task events from the TASK_EVENTS stream, optionally followed. */
import { isStreamNotFound, readEvents } from "@eve-tasks/bus";
import type { StoredEvent } from "@eve-tasks/bus";
import { EVENTS_STREAM } from "@eve-tasks/schemas";
import { describeApp, nameOf, resolveApp } from "../apps.js";
import type { CliContext } from "../context.js";
import { UserError } from "../errors.js";
import { loadApps } from "../load-apps.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";

/** Options of `events`. */
export interface EventsOptions {
  /** One app (uuid, unique display name or uuid prefix); every app's events when missing. */
  app?: string | undefined;
  follow: boolean;
  json: boolean;
  /** Only the last N stored events. */
  last?: number | undefined;
  server: NatsTarget;
}

/** One line per event: time, app, type, message, then the machine fields as key=value. */
export function formatEventLine(e: StoredEvent, label: string | undefined): string {
  const ev = e.event;
  const fields = Object.entries(ev.fields)
    .map(([k, v]) => `${k}=${v === null ? "null" : String(v)}`)
    .join(" ");
  const who = label ? `${label}  ` : "";
  return `${ev.time}  ${who}${ev.type.padEnd(14)} ${ev.message}${fields ? `  [${fields}]` : ""}\n`;
}

export async function runEvents(ctx: CliContext, o: EventsOptions): Promise<void> {
  await withBus(o.server, async (bus) => {
    const { apps } = await loadApps(bus);
    const app = o.app === undefined ? undefined : resolveApp(apps, o.app);
    const names = new Map(apps.map((a) => [a.uuid, nameOf(a)]));
    try {
      for await (const e of readEvents(bus, {
        ...(app ? { uuid: app.uuid } : {}),
        follow: o.follow,
        ...(o.last !== undefined ? { last: o.last } : {}),
        signal: ctx.signal,
      })) {
        if (o.json) ctx.out(`${JSON.stringify({ seq: e.seq, ...e.event })}\n`);
        else
          ctx.out(formatEventLine(e, app ? undefined : describeApp(e.event.uuid, names.get(e.event.uuid))));
      }
    } catch (err) {
      if (isStreamNotFound(err)) {
        throw new UserError(
          `the ${EVENTS_STREAM} stream does not exist on ${o.server.url}: is eve-tasks running there?`,
        );
      }
      throw err;
    }
  });
}
