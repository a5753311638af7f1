/**
 * `eve-tasks logs <app> [--follow] [--tail N] [--since T]`: an app's console output (stdout and
 * stderr of its anchor; a VM's serial console), read through its node's task-executor over NATS
 * (eve.rpc.task-executor.<node>.logs), so it works wherever NATS reaches that node: on the node
 * or from a fleet's hub (its replies come on `<inbox>.fleet.<node>.…`, the only replies a
 * device's leaf connection may send into the hub). A follower asks again from where the last reply ended (a cursor that survives
 * rotation); the executor holds each request until there is new output or its wait is over.
 */
import { RequestError, request } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import {
  LOG_WAIT_MAX_MS,
  LogsReplySchema,
  LogsRequestSchema,
  logsSubject,
  nodeReplyPrefix,
} from "@eve-tasks/schemas";
import type { LogCursor, LogsReply, LogsRequest } from "@eve-tasks/schemas";
import { describeApp, nameOf } from "../apps.js";
import type { CliContext } from "../context.js";
import { UserError } from "../errors.js";
import { resolveAppAndNode } from "../fleet.js";
import { parseDuration } from "../human.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";

/** Options of `logs`. */
export interface LogsOptions {
  app: string;
  follow: boolean;
  /** Start at the last N lines. */
  tail?: number | undefined;
  /** Start at output written since then: a duration back from now (`10m`) or a timestamp. */
  since?: string | undefined;
  server: NatsTarget;
  /** How long the executor may hold a follower's request; default 25 s. */
  waitMs?: number;
}

/** How long a follower's request waits at the executor for new output (under LOG_WAIT_MAX_MS). */
export const FOLLOW_WAIT_MS = 25_000;

/** How much longer than its wait a request may take before the executor counts as gone. */
const REPLY_GRACE_MS = 10_000;

/** `--since`: `10m` (before `now`) or an ISO timestamp, as the timestamp the request carries. */
export function parseSince(text: string, now: Date): string {
  const t = text.trim();
  if (/^\d{4}-\d{2}-\d{2}/.test(t)) {
    const ms = Date.parse(t);
    if (Number.isNaN(ms)) throw new UserError(`--since: not a valid time: ${JSON.stringify(text)}`);
    return new Date(ms).toISOString();
  }
  return new Date(now.getTime() - parseDuration(t, "--since")).toISOString();
}

export async function runLogs(ctx: CliContext, o: LogsOptions): Promise<void> {
  if (o.tail !== undefined && (!Number.isInteger(o.tail) || o.tail < 0)) {
    throw new UserError(`--tail must be a whole number of lines, not ${o.tail}`);
  }
  const since = o.since === undefined ? undefined : parseSince(o.since, ctx.now());
  await withBus(o.server, async (bus) => {
    const { app, node } = await resolveAppAndNode(bus, o.app);
    const label = describeApp(app.uuid, nameOf(app));
    const decoder = new TextDecoder("utf-8");
    const waitMs = Math.min(o.waitMs ?? FOLLOW_WAIT_MS, LOG_WAIT_MAX_MS);
    let cursor: LogCursor | undefined;
    let first = true;
    while (!ctx.signal.aborted) {
      const body: LogsRequest = cursor
        ? { uuid: app.uuid, cursor }
        : {
            uuid: app.uuid,
            ...(first && o.tail !== undefined ? { tailLines: o.tail } : {}),
            ...(first && since !== undefined ? { since } : {}),
          };
      const reply = await ask(bus, node, label, o.follow ? { ...body, waitMs } : body, ctx.signal);
      if (reply === undefined) break; // Ctrl-C
      if (reply.error !== null) throw new UserError(`cannot read the log of ${label}: ${reply.error}`);
      first = false;
      if (reply.gap) ctx.err(`-- ${reply.gap.message} --\n`);
      const text = decoder.decode(Buffer.from(reply.dataBase64, "base64"), { stream: true });
      if (text) ctx.out(text);
      // Without a log yet (the app has not started), a follower asks from the start again.
      cursor = reply.cursor ?? undefined;
      if (!reply.more && !o.follow) break;
    }
    const rest = decoder.decode();
    if (rest) ctx.out(rest);
  });
}

/** One request, or undefined when Ctrl-C came first. */
async function ask(
  bus: Bus,
  node: string,
  label: string,
  body: LogsRequest,
  signal: AbortSignal,
): Promise<LogsReply | undefined> {
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([
      request(
        bus,
        logsSubject(node),
        { request: LogsRequestSchema, reply: LogsReplySchema },
        body,
        (body.waitMs ?? 0) + REPLY_GRACE_MS,
        // Below our inbox and naming the node: from a hub, where the device may answer (docs/fleet.md).
        { replyPrefix: nodeReplyPrefix(bus.inboxPrefix, node) },
      ),
      aborted,
    ]);
  } catch (err) {
    if (signal.aborted) return undefined;
    if (err instanceof RequestError) {
      throw new UserError(
        `cannot read the log of ${label}: ${err.message} (the task-executor of node ${node} answers it)`,
      );
    }
    throw err;
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}
