/**
 * `eve-tasks kill [--signal S] <app>`: the signal request to the app's node's task-executor, on
 * the node or from a fleet's hub (any device's app; the request crosses the device's leaf).
 */
import { constants } from "node:os";
import { RequestError, request } from "@eve-tasks/bus";
import { SignalReplySchema, SignalRequestSchema, nodeReplyPrefix, signalSubject } from "@eve-tasks/schemas";
import { describeApp, nameOf } from "../apps.js";
import type { CliContext } from "../context.js";
import { UserError } from "../errors.js";
import { resolveAppAndNode } from "../fleet.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";

/** Options of `kill`. */
export interface KillOptions {
  app: string;
  /** A name (HUP, SIGHUP, sighup) or a number (1). */
  signal: string;
  server: NatsTarget;
}

/** `HUP`, `sighup`, `SIGHUP` and `1` all give `SIGHUP`; anything else is a UserError. */
export function normalizeSignal(text: string): NodeJS.Signals {
  const t = text.trim().toUpperCase();
  const signals = constants.signals as Record<string, number>;
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    const name = Object.keys(signals).find((k) => signals[k] === n);
    if (name) return name as NodeJS.Signals;
  } else {
    const name = t.startsWith("SIG") ? t : `SIG${t}`;
    if (name in signals) return name as NodeJS.Signals;
  }
  throw new UserError(`unknown signal "${text}" (use a name such as HUP, TERM or KILL, or its number)`);
}

export async function runKill(ctx: CliContext, o: KillOptions): Promise<void> {
  const signal = normalizeSignal(o.signal);
  await withBus(o.server, async (bus) => {
    const { app, node } = await resolveAppAndNode(bus, o.app);
    const label = describeApp(app.uuid, nameOf(app));
    let reply;
    try {
      reply = await request(
        bus,
        signalSubject(node),
        { request: SignalRequestSchema, reply: SignalReplySchema },
        { uuid: app.uuid, signal },
        undefined,
        // From a fleet's hub the device may answer only there (docs/fleet.md).
        { replyPrefix: nodeReplyPrefix(bus.inboxPrefix, node) },
      );
    } catch (err) {
      if (err instanceof RequestError) throw new UserError(`cannot signal ${label}: ${err.message}`);
      throw err;
    }
    if (!reply.accepted) throw new UserError(`${signal} not sent to ${label}: ${reply.error}`);
    ctx.out(`${signal} sent to ${label}; see eve-tasks events for what it did\n`);
  });
}
